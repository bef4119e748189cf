"""Peers side by side: the lesson's Adam and SGD runs timed several ways.

Batch 500, 20 epochs, the loss on the whole test split after every epoch, on IMDB when an archive
is available locally (else synthetic-imdb):
- Keras, written as the lesson writes it (Sequential Dense 32 relu, 32 relu, 1 sigmoid; compile
  with 'adam' / 'sgd' and binary cross-entropy; `model.fit`), one seed per run; and the same with
  `jit_compile=True` (XLA, which Keras' default leaves off on a CPU-only machine);
- PyTorch, a plain training loop (nn.Sequential, torch.optim, BCELoss, shuffled batches), one seed
  per run; and a `torch.func` ensemble, the seeds of a run in one vmapped model, eager and with
  `torch.compile`, each with per-seed and shared shuffling (`bench/_torch_peers.py`);
- optax_lab, 8 seeds in one compiled program, on one device and on all devices, each with
  per-seed shuffling (what separate runs do) and shared shuffling (its faster `--shared-order`).
Seed-epochs/s and the final val loss of each go into one table of the bench report (the
`report_section` fixture), with every row's speed over Keras', its final val loss against
optax_lab's within seed noise, and optax_lab's speed-up targets (`TARGETS`) judged. The last test
asserts that every row's final val loss agrees with optax_lab's (not under --smoke).

Keras and PyTorch come with the `peers` extra (`pip install -e '.[dev,peers]'`, torch from its
CPU index first); without it their benchmarks are skipped with the reason, and the table shows
them as skipped. Under --smoke everything shrinks to a quick check that it runs, and no target or
agreement is judged.

Run: pytest bench/bench_peers.py --benchmark-columns=median,iqr,rounds
"""

from __future__ import annotations

import math
import os
import time

import jax
import numpy as np
import optax
import pytest

from optax_lab import engine, workloads
from optax_lab.benchmarking.peers import TARGETS, PeerRun, agreement, disagreements, peers_markdown, workload_text
from optax_lab.config import Order
from optax_lab.devices import cores
from optax_lab.lessons import RunSpec

IMDB_MLP = workloads.get("imdb-mlp")  # the lesson's MLP on IMDB's multi-hot rows

BATCH = 500
RATES = {"adam": 1e-3, "sgd": 1e-2}  # what Keras' 'adam' and 'sgd' strings use
# optax_lab's runs of the same: Keras' Adam eps (optax's default is 1e-8), as the PyTorch rows use too.
SPECS = {
    "adam": RunSpec("Adam", "adam", {"learning_rate": RATES["adam"], "b1": 0.9, "b2": 0.999, "eps": 1e-7}, BATCH),
    "sgd": RunSpec("SGD", "sgd", {"learning_rate": RATES["sgd"]}, BATCH),
}
# Keras' compile() as the lesson calls it, and with XLA (on a CPU-only machine Keras' "auto" is off).
KERAS_WAYS = {"keras": {}, "keras_xla": {"jit_compile": True}}
INSTALL = "pip install -e '.[peers]' (torch from its CPU index first)"


@pytest.fixture(scope="module")
def sizes(smoke):
    # Keras and the plain PyTorch loop train one seed per timed run; the ensembles and optax_lab all
    # their seeds in each.
    if smoke:
        return {"epochs": 2, "seeds": 2, "peer_rounds": 1, "optax_lab_rounds": 1}
    return {"epochs": 20, "seeds": 8, "peer_rounds": 3, "optax_lab_rounds": 3}


@pytest.fixture(scope="module")
def peer_runs(report_section, bench_data, sizes, smoke) -> list[PeerRun]:
    """Every benchmark of this file adds its PeerRun here; the report renders them at the end."""
    runs: list[PeerRun] = []
    name, arrays = bench_data
    (n_train, num_words), n_test = arrays.x_train.shape, arrays.x_test.shape[0]
    workload = workload_text(name, n_train, n_test, num_words, BATCH, sizes["epochs"])
    if smoke:
        workload = "Smoke run: sizes shrunk, the figures mean nothing and no target is judged. " + workload
    targets = None if smoke else TARGETS  # a smoke run's figures judge nothing
    report_section("Peers: Keras, PyTorch and optax_lab", lambda stem: (peers_markdown(runs, workload, targets), {}))
    return runs


@pytest.fixture(scope="module")
def numpy_data(bench_data):
    """x_train, y_train, x_test, y_test as float32 numpy arrays, for Keras and PyTorch (copies:
    a view of a JAX array is read-only, which torch.from_numpy warns about)."""
    return tuple(np.array(array, np.float32) for array in bench_data[1])


def need(module: str, framework: str, way: str, optimizer: str, runs: list[PeerRun], order: str = ""):
    """The module, or a skip with the reason (recorded as a skipped row of the table)."""
    try:
        return pytest.importorskip(module, reason=f"{framework} is not installed: {INSTALL}")
    except pytest.skip.Exception as skip:
        runs.append(PeerRun(way, optimizer, order=order, skipped=str(skip.msg)))
        raise


def host_load() -> float | None:
    """The 1-minute load average: on a shared machine, says whether the timed runs had the cores."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def finite_positive(values) -> bool:
    return bool(values) and all(math.isfinite(v) and v > 0 for v in values)


@pytest.mark.parametrize("way", list(KERAS_WAYS))
@pytest.mark.parametrize("optimizer", list(RATES))
def test_keras(benchmark, optimizer, way, numpy_data, sizes, peer_runs):
    tf = need("tensorflow", "TensorFlow", way, optimizer, peer_runs)
    import keras

    x_train, y_train, x_test, y_test = numpy_data

    def lesson_model():  # as the lesson writes it
        return keras.Sequential(
            [
                keras.Input(shape=(x_train.shape[1],)),
                keras.layers.Dense(32, activation="relu"),
                keras.layers.Dense(32, activation="relu"),
                keras.layers.Dense(1, activation="sigmoid"),
            ]
        )

    def fit(model, epochs):
        return model.fit(x_train, y_train, batch_size=BATCH, epochs=epochs, validation_data=(x_test, y_test), verbose=0)

    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    model = lesson_model()
    model.compile(optimizer=optimizer, loss="binary_crossentropy", metrics=["accuracy"], **KERAS_WAYS[way])
    model.optimizer.build(model.trainable_variables)
    fresh_state = [variable.numpy() for variable in model.optimizer.variables]  # iterations 0, zero moments
    fit(model, 1)  # the warm-up: traces (and with XLA compiles) the train and test functions the timed fits reuse
    warm_s = time.perf_counter() - start
    seeds, seconds, losses = iter(range(sizes["peer_rounds"])), [], []

    def fresh_start():  # untimed: a fresh seed's initial weights and a fresh optimizer state
        keras.utils.set_random_seed(next(seeds))
        model.set_weights(lesson_model().get_weights())
        for variable, value in zip(model.optimizer.variables, fresh_state, strict=False):
            variable.assign(value)

    def timed():
        start = time.perf_counter()
        history = fit(model, sizes["epochs"])
        seconds.append(time.perf_counter() - start)
        losses.append(history.history["val_loss"][-1])

    benchmark.pedantic(timed, setup=fresh_start, rounds=sizes["peer_rounds"], iterations=1)
    assert float(model.optimizer.learning_rate) == pytest.approx(RATES[optimizer])
    assert model.jit_compile or way == "keras", "jit_compile=True did not hold"
    assert finite_positive(seconds) and finite_positive(losses), (seconds, losses)
    xla = ", XLA" if model.jit_compile else ""
    peer_runs.append(
        PeerRun(
            way,
            optimizer,
            epochs=sizes["epochs"],
            run_seconds=tuple(seconds),
            setup_s=warm_s,
            seed_val_losses=tuple(losses),  # one distinct seed per timed run
            host_load=host_load(),
            runs_on=f"CPU, TensorFlow's default threads ({cores()} cores){xla}",
            version=f"tensorflow {tf.__version__}, keras {keras.__version__}",
        )
    )
    benchmark.extra_info.update(way=way, optimizer=optimizer, epochs=sizes["epochs"], val_loss=float(np.mean(losses)))


@pytest.mark.parametrize("optimizer", list(RATES))
def test_pytorch_loop(benchmark, optimizer, numpy_data, sizes, peer_runs):
    torch = need("torch", "PyTorch", "pytorch", optimizer, peer_runs)
    from _torch_peers import train_plain

    data = tuple(torch.from_numpy(array) for array in numpy_data)

    def train_one(seed: int, epochs: int):
        return train_plain(data, optimizer, RATES[optimizer], seed, epochs, BATCH)

    warm_s, _ = train_one(10_000, 1)  # the warm-up epoch: allocator, kernels, thread pool
    seeds, seconds, losses = iter(range(sizes["peer_rounds"])), [], []

    def timed():
        run_s, logs = train_one(next(seeds), sizes["epochs"])
        seconds.append(run_s)
        losses.append(logs["val_loss"])
        assert math.isfinite(logs["train_loss"]) and 0 < logs["val_acc"] <= 1, logs

    benchmark.pedantic(timed, rounds=sizes["peer_rounds"], iterations=1)
    assert finite_positive(seconds) and finite_positive(losses), (seconds, losses)
    peer_runs.append(
        PeerRun(
            "pytorch",
            optimizer,
            epochs=sizes["epochs"],
            run_seconds=tuple(seconds),
            setup_s=warm_s,
            seed_val_losses=tuple(losses),  # one distinct seed per timed run
            host_load=host_load(),
            runs_on=f"CPU, {torch.get_num_threads()} threads",
            version=f"torch {torch.__version__}",
        )
    )
    benchmark.extra_info.update(
        way="pytorch", optimizer=optimizer, epochs=sizes["epochs"], val_loss=float(np.mean(losses))
    )


def first_line(error: BaseException) -> str:
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {text}"[:200]


@pytest.mark.parametrize("order", list(Order), ids=[order.value for order in Order])
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("optimizer", list(RATES))
def test_pytorch_ensemble(benchmark, optimizer, compiled, order, numpy_data, sizes, peer_runs, smoke):
    way = "pytorch_vmap_compiled" if compiled else "pytorch_vmap"
    if smoke and compiled and (optimizer, order) != ("adam", Order.PER_SEED):
        pytest.skip("--smoke: adam, per-seed, checks the torch.compile path (its compiles are the cost)")
    torch = need("torch", "PyTorch", way, optimizer, peer_runs, order.value)
    from _torch_peers import Ensemble

    data = tuple(torch.from_numpy(array) for array in numpy_data)
    count = sizes["seeds"]  # as many seeds per run as optax_lab's
    start = time.perf_counter()
    try:
        ensemble = Ensemble(
            data, optimizer, RATES[optimizer], range(10_000, 10_000 + count), BATCH, order is Order.SHARED, compiled
        )
        ensemble.run(1)  # the warm-up epoch; with torch.compile, its compiles
    except Exception as error:  # torch.compile unable to build here (no C compiler, ...): a skipped row
        if not compiled:
            raise
        reason = f"torch.compile failed on this machine: {first_line(error)}"
        peer_runs.append(PeerRun(way, optimizer, order=order.value, skipped=reason))
        pytest.skip(reason)
    setup_s = time.perf_counter() - start
    rounds, seconds, losses = iter(range(sizes["peer_rounds"])), [], []

    def fresh_start():  # untimed: the next run's distinct seeds, a fresh optimizer state
        first = next(rounds) * count
        ensemble.reset(range(first, first + count))

    def timed():
        run_s, train_loss_S, val_loss_S = ensemble.run(sizes["epochs"])
        seconds.append(run_s)
        losses.extend(val_loss_S)
        assert all(math.isfinite(loss) for loss in train_loss_S), train_loss_S

    with torch.compiler.set_stance("fail_on_recompile"):  # a compile inside the clock would be measured
        benchmark.pedantic(timed, setup=fresh_start, rounds=sizes["peer_rounds"], iterations=1)
    assert finite_positive(seconds) and finite_positive(losses), (seconds, losses)
    peer_runs.append(
        PeerRun(
            way,
            optimizer,
            count,
            order=order.value,
            epochs=sizes["epochs"],
            run_seconds=tuple(seconds),
            setup_s=setup_s,
            seed_val_losses=tuple(losses),  # every timed run trains distinct seeds
            host_load=host_load(),
            runs_on=f"CPU, {torch.get_num_threads()} threads",
            version=f"torch {torch.__version__}",
        )
    )
    benchmark.extra_info.update(
        way=way, optimizer=optimizer, order=order.value, seeds=count, epochs=sizes["epochs"], setup_s=setup_s
    )


# Per-seed shuffling is what separate Keras or PyTorch runs do; shared (all seeds one order per
# epoch, `--shared-order`) is optax_lab's faster mode: XLA fuses the seeds' first layers.
@pytest.mark.parametrize("order", list(Order), ids=[order.value for order in Order])
@pytest.mark.parametrize("devices", ["1", "all"], ids=["1-device", "all-devices"])
@pytest.mark.parametrize("optimizer", list(RATES))
def test_optax_lab(benchmark, optimizer, devices, order, bench_data, sizes, peer_runs, smoke):
    count = 1 if devices == "1" else jax.local_device_count()
    if devices == "all" and count == 1:
        pytest.skip("one JAX device: the 1-device benchmark is this run")
    if smoke and (optimizer, order) != ("adam", Order.PER_SEED):
        pytest.skip("--smoke: adam, per-seed, checks the optax_lab path (the same engine call; compiles are the cost)")
    _, arrays = bench_data
    seeds = tuple(range(sizes["seeds"]))

    def run():
        return engine.train_points(
            [SPECS[optimizer]],
            arrays,
            workload=IMDB_MLP,
            seeds=seeds,
            epochs=sizes["epochs"],
            order=order,
            devices=count,
        )[0]

    with engine.counting_compiles() as warm_compiles:
        warm = run()  # compiles (or finds this program compiled earlier in the session)
    results = []
    with engine.counting_compiles() as timed_compiles:
        benchmark.pedantic(lambda: results.append(run()), rounds=sizes["optax_lab_rounds"], iterations=1)
    seconds = [result.program_run_s for result in results]  # the engine's clock: the compiled call alone
    losses = [float(np.mean(result.history["val_loss"][:, -1])) for result in results]
    seed_losses = tuple(float(loss) for loss in results[0].history["val_loss"][:, -1])  # rounds repeat these seeds
    assert len(warm_compiles) <= 1 and timed_compiles == [], (warm_compiles, timed_compiles)
    assert warm.devices == count and finite_positive(seconds) and finite_positive(losses), (seconds, losses)
    assert warm.settings.order is order
    peer_runs.append(
        PeerRun(
            "optax_lab",
            optimizer,
            len(seeds),
            count,
            order.value,
            sizes["epochs"],
            tuple(seconds),
            warm.compile_s,
            host_load=host_load(),
            runs_on=f"{count} of {jax.local_device_count()} {jax.default_backend().upper()} device(s)",
            version=f"jax {jax.__version__}, optax {optax.__version__}",
            seed_val_losses=seed_losses,
        )
    )
    benchmark.extra_info.update(
        way="optax_lab",
        optimizer=optimizer,
        devices=count,
        order=order.value,
        seeds=len(seeds),
        epochs=sizes["epochs"],
        compile_s=warm.compile_s,
        val_loss=float(np.mean(losses)),
    )


def test_val_losses_agree_with_optax_lab(peer_runs, smoke):
    """Every row's mean final val loss against optax_lab's of the same optimizer, within seed noise
    (`loss_agreement`). Last in the file: pytest runs a module's tests in order, so every row is in."""
    checked = [run for run in peer_runs if agreement(run, peer_runs) is not None]
    problems = disagreements(peer_runs)
    if smoke:
        pytest.skip(f"--smoke: {len(checked)} rows compared, none judged (the sizes are too small to mean anything)")
    if not checked:
        pytest.skip("no row to compare: no optax_lab row, or no other row with per-seed losses, ran")
    assert not problems, "final val losses that disagree with optax_lab's:\n" + "\n".join(problems)
