"""One point, one result: the same program is bitwise reproducible, a hyperparameter computes the
same arithmetic compiled in or traced, and one point run as other programs ends within seed noise
of itself.

What other files check: a rerun, `test_train.py::test_same_seeds_give_identical_histories`
(bitwise); a resumed run, `test_resume.py` (the results, histories included, equal an
uninterrupted run's). Here: a run in calls of the program's own shape (bitwise); a compiled-in
hyperparameter against the same value traced (bitwise); and one point as other programs (every
real hyperparameter traced, grids, calls of chunks, 2 CPU devices), whose rounding differs and
which Adam-like optimizers amplify over the epochs: its final validation loss must stay within
the seeds' noise, a handful of entries in CI and every entry with a traced main scale under
`slow`. Figures and the reasons: docs/rounding.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optax_lab import engine, optimizers, workloads
from optax_lab.lessons import RunSpec
from optax_lab.selection import TIE_ALPHA, paired_tie
from optax_lab.stats import ci95

IMDB_MLP = workloads.get("imdb-mlp")  # the lesson's MLP on IMDB's multi-hot rows
CI_ENTRIES = ("adam", "amsgrad", "adamw", "lion", "sgd")
SLOW_ENTRIES = tuple(
    sorted(
        name
        for name, entry in optimizers.REGISTRY.items()
        if entry.main and optimizers.is_traced(name, entry.main, entry.all_defaults[entry.main])
    )
)
# The small data of `small_data` (conftest) and `optimizer_data`, for the process with 2 devices.
SMALL, OPTIMIZER = (1050, 400), (2000, 1000)
# A final loss within this many float32 ulps of another is the same number read out by another
# reduction order; beyond it the seeds decide.
READOUT_ULPS = 4


BASE = "one point, defaults compiled in"  # the shape every other is compared with


def _spec(name: str, every_real: bool = False, scale: float = 1.0) -> RunSpec:
    """`name` at its registry point (the constructor's defaults compiled in), or with every real
    hyperparameter traced; `scale` multiplies the main scale (a grid's other points)."""
    entry = optimizers.get(name)
    values = optimizers.split(name, entry.all_defaults)[1] if every_real else {}
    main = {entry.main: entry.all_defaults[entry.main] * scale} if scale != 1.0 else {}
    return RunSpec(f"{name} x{scale:g}", name, {**values, **main}, 500)


def _grid(name: str, points: int) -> list[RunSpec]:
    """The point first, then neighbours on the main scale: one program, every real hyperparameter traced."""
    return [_spec(name, True, scale) for scale in (1.0, 0.5, 2.0)[:points]]


def _final_val_loss(result) -> list[float]:
    return result.history["val_loss"][:, -1].tolist()


def _disagreement(base_S, other_S, comparisons: int) -> str:
    """Why `other_S` (a point's final val loss per seed, run as another program) is not `base_S`
    within seed noise, or "" when it is. Within seed noise: every seed within READOUT_ULPS; or no
    difference by the ranking's paired test over the seeds at a 5 % family-wise level over
    `comparisons` (each is a chance of a false alarm), with a mean gap inside the seeds' 95 % CI
    half-width as either program measured it (at an unstable point, rounding decides which seeds
    end on a spike, as the seeds themselves do)."""
    base_S, other_S = np.asarray(base_S, np.float32), np.asarray(other_S, np.float32)
    gap_S = other_S.astype(np.float64) - base_S
    if np.all(np.abs(gap_S) <= READOUT_ULPS * np.spacing(np.abs(base_S))):
        return ""
    tied, p = paired_tie(other_S, base_S, alpha=TIE_ALPHA / comparisons)
    half_width = max(ci95(base_S), ci95(other_S))
    if tied and abs(gap_S.mean()) < half_width:
        return ""
    return f"gaps {gap_S.tolist()}: paired p {p:.3g}, mean gap {gap_S.mean():.3g} vs CI half-width {half_width:.3g}"


# --- The same program: bitwise -------------------------------------------------------------------


def test_calls_of_a_programs_own_shape_equal_single_calls(small_data, count_compiles):
    """A grid run in calls of one point, or one point's seeds in calls of two, is the program a
    point trained alone compiles: every call's histories are bitwise those of the call alone."""
    engine.forget_compiled()
    specs = [_spec("adam"), _spec("adam", scale=0.5), _spec("adam", scale=2.0)]
    chunked = engine.train_points(specs, small_data, workload=IMDB_MLP, seeds=(0, 1), epochs=2, max_replicas=2)
    assert chunked[0].program_calls == 3 and len(count_compiles) == 1
    for spec, result in zip(specs, chunked, strict=True):
        alone = engine.train(spec, small_data, workload=IMDB_MLP, seeds=(0, 1), epochs=2)
        assert alone.program == result.program
        for key, values in alone.history.items():
            np.testing.assert_array_equal(result.history[key], values, err_msg=f"{spec.name}: {key}")
    seed_calls = engine.train_points(
        specs[:1], small_data, workload=IMDB_MLP, seeds=(0, 1, 4, 5), epochs=2, max_replicas=2
    )
    later = engine.train(specs[0], small_data, workload=IMDB_MLP, seeds=(4, 5), epochs=2)
    assert seed_calls[0].program_calls == 2 and len(count_compiles) == 1
    for key, values in seed_calls[0].history.items():
        np.testing.assert_array_equal(values[:2], chunked[0].history[key], err_msg=key)
        np.testing.assert_array_equal(values[2:], later.history[key], err_msg=key)


# --- Compiled in or traced: the same arithmetic ------------------------------------------------

PARAMS = {"kernel": jax.random.normal(jax.random.key(0), (100, 32)) * 0.1, "bias": jnp.zeros(32)}
GRADS_T = jax.tree.map(lambda p: jax.random.normal(jax.random.key(1), (10, *p.shape)) * 0.01, PARAMS)


def _trajectory(name: str, traced: dict[str, jax.Array]):
    """The params after each of 10 steps on fixed gradients, `traced` the program's inputs."""
    tx = optimizers.build(name, traced)

    def step(carry, grads):
        params, state = carry
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), params

    return jax.lax.scan(step, (PARAMS, tx.init(PARAMS)), GRADS_T)[1]


@pytest.mark.parametrize("name", ["adam", "amsgrad", "adamw", "nadam", "rmsprop", "yogi", "lion", "sgd"])
def test_a_compiled_in_hyperparameter_steps_as_the_same_value_traced(name):
    """optax takes `1 - b2` of a Python float in float64, of a program input in float32: 1.3e-5
    apart at 0.999, from the first step. The registry hands optax every real hyperparameter as
    float32, so the defaults compiled in step bitwise as the same values traced."""
    values = optimizers.split(name, optimizers.get(name).all_defaults)[1]
    compiled_in = jax.jit(lambda: _trajectory(name, {}))()
    traced = jax.jit(lambda inputs: _trajectory(name, inputs))({k: jnp.float32(v) for k, v in values.items()})
    for a, b in zip(jax.tree.leaves(compiled_in), jax.tree.leaves(traced), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_point_with_its_betas_traced_trains_bitwise_as_the_default(small_data):
    """`--set adam.b2=0.999` is Adam's default point: the same histories, bit for bit."""
    default = engine.train(_spec("adam"), small_data, workload=IMDB_MLP, seeds=(0, 1), epochs=3)
    traced = engine.train(_spec("adam", every_real=True), small_data, workload=IMDB_MLP, seeds=(0, 1), epochs=3)
    assert traced.program != default.program
    for key, values in default.history.items():
        np.testing.assert_array_equal(traced.history[key], values, err_msg=key)


# --- One point as other programs: within seed noise ---------------------------------------------

DEVICES_SCRIPT = textwrap.dedent("""
    import json, sys
    from optax_lab import engine, workloads
    from optax_lab.data import synthetic
    from optax_lab.engine import Arrays
    from optax_lab.lessons import RunSpec
    grids, seeds, epochs, (n_train, n_test) = json.loads(sys.argv[1])
    data = Arrays.from_numpy(*synthetic.generate(num_words=100, seed=0, num_train=n_train, num_test=n_test))
    finals = {}
    for name, points in grids.items():
        specs = [RunSpec(f"{name} {i}", name, values, 500) for i, values in enumerate(points)]
        result = engine.train_points(specs, data, workload=workloads.get("imdb-mlp"), seeds=tuple(seeds),
                                     epochs=epochs, devices=2)[0]
        assert result.devices == 2, result.devices
        finals[name] = result.history["val_loss"][:, -1].tolist()
    print(json.dumps(finals))
""")


def _start_on_two_devices(tmp_path, entries, seeds, epochs, sizes) -> subprocess.Popen:
    """Each entry's 3-point grid split over 2 forced CPU devices, in a process of its own (the
    device count is fixed when JAX starts), started now to run beside this one's shapes; its
    output goes to files, so that it never waits on a pipe this process is not reading."""
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": "2", "OPTAX_LAB_CACHE": str(tmp_path / "cache")}
    grids = {name: [dict(spec.hyperparams) for spec in _grid(name, 3)] for name in entries}
    arguments = json.dumps([grids, list(seeds), epochs, list(sizes)])
    with open(tmp_path / "two_devices.out", "w") as out, open(tmp_path / "two_devices.err", "w") as err:
        return subprocess.Popen([sys.executable, "-c", DEVICES_SCRIPT, arguments], stdout=out, stderr=err, env=env)


def _finals_on_two_devices(process: subprocess.Popen, tmp_path, timeout: float) -> dict[str, list[float]]:
    """What the process started by `_start_on_two_devices` found: each point's final val loss per seed."""
    process.wait(timeout=timeout)
    assert process.returncode == 0, (tmp_path / "two_devices.err").read_text()[-3000:]
    return json.loads((tmp_path / "two_devices.out").read_text().strip().splitlines()[-1])


def _shapes(name, data, seeds, epochs, slow: bool) -> dict[str, list[float]]:
    """The point's final val loss per seed as each program shape of this process: CI's two, and
    under `slow` one for each way a program can differ."""
    train = dict(data=data, workload=IMDB_MLP, seeds=seeds, epochs=epochs)
    shapes = {
        BASE: _final_val_loss(engine.train(_spec(name), **train)),
        "3-point grid, every real traced, in calls of 2 points": _final_val_loss(
            engine.train_points(_grid(name, 3), **train, max_replicas=2 * len(seeds))[0]
        ),
    }
    if slow:
        shapes["one point, every real traced"] = _final_val_loss(engine.train(_spec(name, True), **train))
        shapes["2-point grid, every real traced"] = _final_val_loss(engine.train_points(_grid(name, 2), **train)[0])
        shapes["3-point grid, every real traced"] = _final_val_loss(engine.train_points(_grid(name, 3), **train)[0])
    return shapes


def _check_shapes(entries, data, seeds, epochs, devices: subprocess.Popen, tmp_path, timeout: float, slow: bool):
    try:
        shapes = {name: _shapes(name, data, seeds, epochs, slow) for name in entries}
        on_two_devices = _finals_on_two_devices(devices, tmp_path, timeout)
    finally:
        devices.kill()  # nothing once it has finished; a failure here must not leave it running
    for name, finals in on_two_devices.items():
        shapes[name]["3-point grid, every real traced, on 2 CPU devices"] = finals
    comparisons = sum(len(by_shape) - 1 for by_shape in shapes.values())
    problems = {
        f"{name}, {shape}": why
        for name, by_shape in shapes.items()
        for shape, finals in by_shape.items()
        if (why := _disagreement(by_shape[BASE], finals, comparisons))
    }
    assert not problems, problems


def test_a_point_ends_within_seed_noise_of_itself_as_every_program_shape(small_data, tmp_path):
    """adam, amsgrad, adamw, lion and sgd at their registry points, 4 seeds, 3 epochs: as one
    point, as a 3-point grid with every real hyperparameter traced run in calls of 2 points, and
    as that grid in one call over 2 CPU devices."""
    run = dict(seeds=(0, 1, 2, 3), epochs=3)
    devices = _start_on_two_devices(tmp_path, CI_ENTRIES, run["seeds"], run["epochs"], SMALL)
    _check_shapes(CI_ENTRIES, small_data, **run, devices=devices, tmp_path=tmp_path, timeout=600, slow=False)


@pytest.mark.slow  # every entry with a traced main scale, 6 program shapes: minutes
def test_every_entry_ends_within_seed_noise_of_itself_as_every_program_shape(optimizer_data, tmp_path):
    run = dict(seeds=tuple(range(8)), epochs=20)
    # An entry the registry keeps on one CPU device (galore: its batched SVD deadlocks on two) has no such shape.
    on_two = [name for name in SLOW_ENTRIES if not optimizers.get(name).one_cpu_device]
    devices = _start_on_two_devices(tmp_path, on_two, run["seeds"], run["epochs"], OPTIMIZER)
    _check_shapes(SLOW_ENTRIES, optimizer_data, **run, devices=devices, tmp_path=tmp_path, timeout=1800, slow=True)
