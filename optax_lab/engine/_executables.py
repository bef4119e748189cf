"""Executables: each program compiled once per process, by what it is specialised on, whichever
thread asks first; the ones used last kept in memory (`COMPILED_KEPT`)."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import Future

from optax_lab.config import ModelConfig
from optax_lab.engine._compiling import COMPILED_KEPT, aot_compile, compiled_programs
from optax_lab.engine._inputs import Arrays
from optax_lab.engine._layout import Layout, input_specs
from optax_lab.engine._program import make_program
from optax_lab.lessons import RunSpec
from optax_lab.records import ProgramSettings, program_key, split_hyperparams
from optax_lab.workloads import Workload

__all__ = ["compile_program", "program_id"]


def _executable_key(
    model_config: ModelConfig, spec: RunSpec, settings: ProgramSettings, layout: Layout, workload: Workload
) -> tuple:
    """What one compiled executable is specialised on: the run's program key on this model,
    workload, settings and device layout."""
    return (model_config, program_key(spec), settings, layout, workload.key)


def program_id(
    model_config: ModelConfig, spec: RunSpec, settings: ProgramSettings, workload: Workload, layout: Layout = Layout()
) -> str:
    """A short stable id of one compiled program (the same in every process)."""
    key = _executable_key(model_config, spec, settings, layout, workload)
    return hashlib.sha1(repr(key).encode()).hexdigest()[:10]


# Programs being compiled, by key: a thread that asks for one another thread is compiling waits
# for that compile instead of starting its own (one compile per program, whatever the threads).
_compiling: dict[tuple, Future] = {}
_compiling_lock = threading.Lock()


def compile_program(
    model_config: ModelConfig,
    spec: RunSpec,
    settings: ProgramSettings,
    data: Arrays,
    workload: Workload,
    layout: Layout = Layout(),
):
    """The compiled whole-training program for this configuration (`model_config` resolved) and
    its compile seconds; compiled once per process while it is among the last COMPILED_KEPT used
    (a repeat returns the cached executable and its original compile time). Any traced
    hyperparameter's value, e.g. another learning rate, is the same program. Safe to call from
    several threads: XLA compiles in parallel, and a program is compiled by one of them."""
    key = _executable_key(model_config, spec, settings, layout, workload)
    with _compiling_lock:
        if key in compiled_programs:
            compiled_programs.move_to_end(key)
            return compiled_programs[key]
        waiting = key in _compiling
        future = _compiling.setdefault(key, Future())
    if waiting:
        return future.result()
    try:
        program = make_program(model_config, spec, layout.local(settings), workload)
        traced = tuple(split_hyperparams(spec)[1])
        function = layout.shard(program.train, traced) if layout.devices > 1 else program.train
        result = aot_compile(function, *input_specs(settings, traced, data, layout), gathers_rows=settings.gathers_rows)
    except BaseException as error:
        with _compiling_lock:
            del _compiling[key]
        future.set_exception(error)
        raise
    with _compiling_lock:
        del _compiling[key]
        compiled_programs[key] = result
        while len(compiled_programs) > COMPILED_KEPT:
            compiled_programs.popitem(last=False)
    future.set_result(result)
    return result
