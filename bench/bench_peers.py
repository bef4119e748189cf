"""Peers side by side: the lesson's Adam and SGD runs timed three ways.

Batch 500, 20 epochs, the loss on the whole test split after every epoch, on IMDB when an archive
is available locally (else synthetic-imdb):
- Keras, written as the lesson writes it (Sequential Dense 32 relu, 32 relu, 1 sigmoid; compile
  with 'adam' / 'sgd' and binary cross-entropy; `model.fit`), one seed per run;
- PyTorch, a plain training loop (nn.Sequential, torch.optim, BCELoss, shuffled batches), one seed
  per run;
- optax_lab, 8 seeds in one compiled program, on one device and on all devices, each with
  per-seed shuffling (what separate runs do) and shared shuffling (its faster `--shared-order`).
Seed-epochs/s and the final val loss of each go into one table of the bench report (the
`report_section` fixture), with every row's speed over Keras'.

Keras and PyTorch come with the `peers` extra (`pip install -e '.[dev,peers]'`, torch from its
CPU index first); without it their benchmarks are skipped with the reason, and the table shows
them as skipped. Under --smoke everything shrinks to a quick check that it runs.

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
from optax_lab.benchmarking.peers import PeerRun, peers_markdown, workload_text
from optax_lab.config import Order
from optax_lab.devices import cores
from optax_lab.lessons import RunSpec

IMDB_MLP = workloads.get("imdb-mlp")  # the lesson's MLP on IMDB's multi-hot rows

BATCH = 500
RATES = {"adam": 1e-3, "sgd": 1e-2}  # what Keras' 'adam' and 'sgd' strings use
# optax_lab's runs of the same: Keras' Adam eps (optax's default is 1e-8).
SPECS = {
    "adam": RunSpec("Adam", "adam", {"learning_rate": RATES["adam"], "b1": 0.9, "b2": 0.999, "eps": 1e-7}, BATCH),
    "sgd": RunSpec("SGD", "sgd", {"learning_rate": RATES["sgd"]}, BATCH),
}
INSTALL = "pip install -e '.[peers]' (torch from its CPU index first)"
TARGET = 40.0  # the speed-up over the lesson's Keras code that the peers' table checks for


@pytest.fixture(scope="module")
def sizes(smoke):
    # Keras and PyTorch train one seed per timed run; optax_lab all its seeds in each.
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
        workload = "Smoke run: sizes shrunk, the figures mean nothing. " + workload
    target = None if smoke else TARGET  # a smoke run's figures judge nothing
    report_section("Peers: Keras, PyTorch and optax_lab", lambda stem: (peers_markdown(runs, workload, target), {}))
    return runs


@pytest.fixture(scope="module")
def numpy_data(bench_data):
    """x_train, y_train, x_test, y_test as float32 numpy arrays, for Keras and PyTorch (copies:
    a view of a JAX array is read-only, which torch.from_numpy warns about)."""
    return tuple(np.array(array, np.float32) for array in bench_data[1])


def need(module: str, framework: str, way: str, optimizer: str, runs: list[PeerRun]):
    """The module, or a skip with the reason (recorded as a skipped row of the table)."""
    try:
        return pytest.importorskip(module, reason=f"{framework} is not installed: {INSTALL}")
    except pytest.skip.Exception as skip:
        runs.append(PeerRun(way, optimizer, skipped=str(skip.msg)))
        raise


def host_load() -> float | None:
    """The 1-minute load average: on a shared machine, says whether the timed runs had the cores."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def finite_positive(values) -> bool:
    return bool(values) and all(math.isfinite(v) and v > 0 for v in values)


@pytest.mark.parametrize("optimizer", list(RATES))
def test_keras_lesson_code(benchmark, optimizer, numpy_data, sizes, peer_runs):
    tf = need("tensorflow", "TensorFlow", "keras", optimizer, peer_runs)
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
    model.compile(optimizer=optimizer, loss="binary_crossentropy", metrics=["accuracy"])
    model.optimizer.build(model.trainable_variables)
    fresh_state = [variable.numpy() for variable in model.optimizer.variables]  # iterations 0, zero moments
    fit(model, 1)  # the warm-up: traces the train and test functions the timed fits reuse
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
    assert finite_positive(seconds) and finite_positive(losses), (seconds, losses)
    peer_runs.append(
        PeerRun(
            "keras",
            optimizer,
            epochs=sizes["epochs"],
            run_seconds=tuple(seconds),
            setup_s=warm_s,
            val_loss=float(np.mean(losses)),
            host_load=host_load(),
            runs_on=f"CPU, TensorFlow's default threads ({cores()} cores)",
            version=f"tensorflow {tf.__version__}, keras {keras.__version__}",
        )
    )
    benchmark.extra_info.update(
        way="keras", optimizer=optimizer, epochs=sizes["epochs"], val_loss=float(np.mean(losses))
    )


@pytest.mark.parametrize("optimizer", list(RATES))
def test_pytorch_loop(benchmark, optimizer, numpy_data, sizes, peer_runs):
    torch = need("torch", "PyTorch", "pytorch", optimizer, peer_runs)
    x_train, y_train, x_test, y_test = (torch.from_numpy(array) for array in numpy_data)
    optimizer_class = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[optimizer]

    def train_one(seed: int, epochs: int) -> tuple[float, dict[str, float]]:
        """A plain loop; (seconds of its epochs, the last epoch's train loss, val loss and accuracy)."""
        torch.manual_seed(seed)
        model = torch.nn.Sequential(
            torch.nn.Linear(x_train.shape[1], 32),
            torch.nn.ReLU(),
            torch.nn.Linear(32, 32),
            torch.nn.ReLU(),
            torch.nn.Linear(32, 1),
            torch.nn.Sigmoid(),
        )
        opt = optimizer_class(model.parameters(), lr=RATES[optimizer])
        loss_fn = torch.nn.BCELoss()
        shuffle = torch.Generator().manual_seed(seed)
        logs = {}
        start = time.perf_counter()
        for _ in range(epochs):
            model.train()
            train_loss = 0.0  # what Keras logs too: the epoch's batch losses weighted by batch size
            for batch in torch.randperm(len(x_train), generator=shuffle).split(BATCH):
                opt.zero_grad()
                loss = loss_fn(model(x_train[batch]).squeeze(1), y_train[batch])
                loss.backward()
                opt.step()
                train_loss += loss.item() * len(batch)
            model.eval()
            with torch.no_grad():
                predictions = model(x_test).squeeze(1)
                logs = {
                    "train_loss": train_loss / len(x_train),
                    "val_loss": loss_fn(predictions, y_test).item(),
                    "val_acc": ((predictions > 0.5).float() == y_test).float().mean().item(),
                }
        return time.perf_counter() - start, logs

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
            val_loss=float(np.mean(losses)),
            host_load=host_load(),
            runs_on=f"CPU, {torch.get_num_threads()} threads",
            version=f"torch {torch.__version__}",
        )
    )
    benchmark.extra_info.update(
        way="pytorch", optimizer=optimizer, epochs=sizes["epochs"], val_loss=float(np.mean(losses))
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
            float(np.mean(losses)),
            host_load=host_load(),
            runs_on=f"{count} of {jax.local_device_count()} {jax.default_backend().upper()} device(s)",
            version=f"jax {jax.__version__}, optax {optax.__version__}",
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
