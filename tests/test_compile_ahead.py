"""Compiling ahead: the next programs compile on threads while one runs, each once, in the planned
order; the histories equal those of programs compiled in turn, bit for bit; a compile that fails
is that program's one-line error, with the programs before it kept."""

from __future__ import annotations

import dataclasses
import threading
import time

import jax
import numpy as np
import pytest

from optax_lab import compile_ahead, engine, workloads
from optax_lab.cli import main
from optax_lab.compile_ahead import CompileAhead
from optax_lab.config import Config
from optax_lab.errors import UsageError
from optax_lab.lessons import RunSpec
from optax_lab.run_store import RUNS_FILE, RunStore
from optax_lab.runner import train_and_evaluate

IMDB_MLP = workloads.get("imdb-mlp")
CONFIG = dataclasses.replace(
    Config(),
    optimizers=("sgd", "adam", "momentum", "rmsprop"),
    batches=(500,),
    dataset="synthetic-imdb",
    train_examples=1000,
    seeds=2,
    epochs=2,
)


def test_programs_come_in_order_with_at_most_workers_ahead():
    started, handed_out = [], []

    def task(index):
        def run():
            started.append(index)
            assert len(started) - len(handed_out) <= 2 + 1, (started, handed_out)  # 2 ahead, 1 being waited for
            return index

        return run

    with CompileAhead(2) as ahead:
        for future in ahead.in_order(task(index) for index in range(7)):
            handed_out.append(future.result())
    assert handed_out == list(range(7)) and sorted(started) == list(range(7))


def test_a_failed_task_raises_in_its_turn_and_the_rest_are_cancelled():
    def task(index):
        def run():
            if index == 1:
                raise UsageError("program 1 cannot compile")
            return index

        return run

    got = []
    with CompileAhead(1) as ahead, pytest.raises(UsageError, match="program 1"):
        for future in ahead.in_order(task(index) for index in range(5)):
            got.append(future.result())
    assert got == [0]


def test_overlap_counts_the_seconds_a_compile_ran_beside_a_window():
    with CompileAhead(1) as ahead:
        start = time.perf_counter()
        future = next(ahead.in_order([lambda: time.sleep(0.2)]))
        future.result()
        end = time.perf_counter() + 1.0
        overlap = ahead.overlap_s(start, end)
        assert 0.2 <= overlap <= end - start
        assert ahead.overlap_s(end, end + 1.0) == 0.0  # after the compile ended: none


def test_threads_asking_for_one_program_compile_it_once(small_data, count_compiles):
    engine.forget_compiled()
    spec = RunSpec("Adam", "adam", {"learning_rate": 1e-3}, 500)
    got = []

    def ask():
        got.append(engine.prepare_points([spec], small_data, workload=IMDB_MLP, seeds=(0, 1), epochs=1).compiled)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(count_compiles) == 1 and len({id(compiled) for compiled in got}) == 1


def test_compiled_ahead_equals_compiled_in_turn_bit_for_bit(count_compiles):
    engine.forget_compiled()
    in_turn = train_and_evaluate(CONFIG, compile_workers=None)
    compiles_in_turn = len(count_compiles)
    engine.forget_compiled()
    ahead = train_and_evaluate(CONFIG, compile_workers=2)
    # The same compiles either way (each program once, and the data's small helpers), 4 programs.
    assert len(count_compiles) - compiles_in_turn == compiles_in_turn and len(ahead["programs"]) == 4
    assert [run["name"] for run in ahead["runs"]] == [run["name"] for run in in_turn["runs"]]
    for run, reference in zip(ahead["runs"], in_turn["runs"], strict=True):
        for key, values in reference["history"].items():
            np.testing.assert_array_equal(np.asarray(run["history"][key]), np.asarray(values), err_msg=key)
    assert ahead["compile_workers"] == 2 and in_turn["compile_workers"] == 0
    assert all(program["overlap_s"] == 0.0 for program in in_turn["programs"].values())
    assert all(program["overlap_s"] >= 0.0 for program in ahead["programs"].values())


def test_a_compile_error_is_one_line_and_the_programs_before_it_are_kept(tmp_path, monkeypatch, capsys):
    prepare = engine.prepare_points

    def fails_for_momentum(specs, *args, **kwargs):
        if specs[0].optimizer == "momentum":
            raise UsageError("momentum @500 cannot fit: give --max-replicas 1")
        return prepare(specs, *args, **kwargs)

    monkeypatch.setattr(engine, "prepare_points", fails_for_momentum)
    out = tmp_path / "out"
    argv = ["run", "--optimizers", "sgd,adam,momentum", "--batch", "500", "--dataset", "synthetic-imdb"]
    argv += ["--train-examples", "1000", "--seeds", "2", "--epochs", "2", "--out", str(out), "--compile-workers", "2"]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("optax-lab: error: momentum @500 cannot fit: give --max-replicas 1 (after 2 of")
    assert "Traceback" not in "\n".join(error)
    store = RunStore.open(out, resume=True, command="")
    assert len(store.stored) == 2 and (out / RUNS_FILE).is_file()


@pytest.mark.parametrize("argv", [["--compile-workers", "0"], ["--compile-workers", "-2"]])
def test_compile_workers_below_one_are_refused(argv, tmp_path, error_line):
    out = tmp_path / "out"
    assert main(["run", "--dataset", "synthetic-imdb", "--out", str(out), *argv]) == 2
    assert error_line() == (
        f"optax-lab: error: --compile-workers {argv[1]}: give at least 1 (the threads that compile the next "
        "programs while one runs), or --no-compile-ahead to compile each in turn"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "backend, cores, free_gb, workers",
    [("cpu", 64, 256, None), ("gpu", 2, 64, 1), ("gpu", 16, 64, 4), ("tpu", 96, 64, 4), ("gpu", 16, 2.5, 2)],
)
def test_the_default_compiles_ahead_on_accelerators_only_within_memory(backend, cores, free_gb, workers, monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    monkeypatch.setattr(compile_ahead, "cores", lambda: cores)
    monkeypatch.setattr(compile_ahead, "host_available_bytes", lambda: int(free_gb * 2**30))
    assert compile_ahead.auto_compile_workers() == workers
