"""The memory estimate (`optax_lab.memory`) against XLA's own figure (MLPs, an embedding bag, conv
nets, a transformer), the replicas a call may hold, chunked calls that equal one call, and
requests too big for the machine."""

from __future__ import annotations

import numpy as np
import pytest

from optax_lab import devices, engine, workloads
from optax_lab.cli import main
from optax_lab.config import ModelConfig, Order
from optax_lab.data import chars, synthetic
from optax_lab.embedding import WORD_PAD
from optax_lab.engine import HEADROOM, Arrays, program_settings
from optax_lab.errors import UsageError
from optax_lab.lessons import RunSpec

IMDB_MLP = workloads.get("imdb-mlp")  # the lesson's MLP on IMDB's multi-hot rows

# (optimizer, batch, seeds, points, order, widths): the shapes that move memory differently.
# CI checks the line search's (the largest temporaries); the slow ones complete the set.
ESTIMATED = [
    pytest.param("adam", 500, 8, 1, Order.PER_SEED, (32, 32), marks=pytest.mark.slow),  # per-seed batches
    pytest.param("adam", 500, 4, 4, Order.SHARED, (32, 32), marks=pytest.mark.slow),  # points share batches
    pytest.param("adam", None, 8, 1, Order.PER_SEED, (32, 32), marks=pytest.mark.slow),  # full batch: no gather
    pytest.param("sgd", 100, 4, 1, Order.PER_SEED, (128, 128, 128), marks=pytest.mark.slow),  # wider, deeper
    pytest.param("dpsgd", 500, 2, 1, Order.PER_SEED, (32, 32), marks=pytest.mark.slow),  # per-example gradients
    ("lbfgs", None, 2, 1, Order.PER_SEED, (32, 32)),  # a line search holding the batch
]


def _id(row) -> str:
    values = row.values if hasattr(row, "values") else row
    return f"{values[0]}-{values[1] or 'full'}-{values[2]}x{values[3]}"


@pytest.fixture(scope="module")
def wide_data() -> Arrays:
    """Features wide enough that the data, not the parameters, dominate memory."""
    return Arrays.from_numpy(*synthetic.generate(num_words=400, seed=0, num_train=2000, num_test=1000))


@pytest.mark.parametrize(
    "optimizer, batch, seeds, points, order, widths", ESTIMATED, ids=[_id(row) for row in ESTIMATED]
)
def test_estimate_is_at_least_xla_and_at_most_twice_it(wide_data, optimizer, batch, seeds, points, order, widths):
    model, spec = ModelConfig(widths=widths), RunSpec(optimizer, optimizer, batch_size=batch)
    settings = program_settings(spec, wide_data, 3, seeds, order, num_points=points)
    compiled, _ = engine.compile_program(model, spec, settings, wide_data, IMDB_MLP)
    analysis = compiled.memory_analysis()
    xla = analysis.temp_size_in_bytes + analysis.argument_size_in_bytes + analysis.output_size_in_bytes
    estimate = engine.estimate_memory(model, spec, settings, IMDB_MLP).bytes_for(seeds, points)
    assert xla <= estimate <= 2 * xla, f"estimate {estimate / 1e6:.1f} MB vs XLA's {xla / 1e6:.1f} MB"


def _word_rows(rng: np.random.Generator, n: int, length: int = 64, vocabulary: int = 10_000) -> np.ndarray:
    """uint16 word rows as the words workloads read them: distinct ids, left-aligned, WORD_PAD after."""
    rows = np.full((n, length), WORD_PAD, np.uint16)
    for row, count in zip(rows, rng.integers(1, length, n), strict=False):
        row[:count] = np.sort(rng.choice(vocabulary, count, replace=False))
    return rows


# (optimizer, batch) on imdb-10k-mlp's model; CI checks the closest to XLA's figure (1.15x).
WORDS_ESTIMATED = [
    pytest.param("dpsgd", 100, marks=pytest.mark.slow),  # per-example gradients of the table: 1 % before
    pytest.param("rmsprop", 100, marks=pytest.mark.slow),  # the book's: half of XLA's figure before
    ("adam", None),  # full batch: half before
]


@pytest.mark.parametrize("optimizer, batch", WORDS_ESTIMATED)
def test_the_estimate_counts_the_workloads_own_model(optimizer, batch):
    """A words model's [10,000, 16] table, not the MLP on the rows' 64 columns, in as many copies
    as the embedding bag's program holds (`memory.BAG_STATE_COPIES`)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 800).astype(np.float32)
    data = Arrays.from_numpy(_word_rows(rng, 600), labels[:600], _word_rows(rng, 200), labels[600:])
    workload, spec = workloads.get("imdb-10k-mlp"), RunSpec(optimizer, optimizer, batch_size=batch)
    model, settings = workload.base_model(None), program_settings(spec, data, 2, 2, Order.PER_SEED)
    compiled, _ = engine.compile_program(model, spec, settings, data, workload=workload)
    analysis = compiled.memory_analysis()
    xla = analysis.temp_size_in_bytes + analysis.argument_size_in_bytes + analysis.output_size_in_bytes
    estimate = engine.estimate_memory(model, spec, settings, workload, data.x_train).bytes_for(2, 1)
    assert xla <= estimate <= 2 * xla, f"estimate {estimate / 1e6:.1f} MB vs XLA's {xla / 1e6:.1f} MB"


IMAGE_ROWS = {"mnist-cnn": (28, 28, 1), "fmnist-2c2d": (28, 28, 1), "cifar10-3c3d": (32, 32, 3)}


def _net_data(name: str, n: int) -> Arrays:
    """`n` random examples a split shaped as `name`'s: uint8 images with 10 classes, or a char
    LM's uint8 symbol windows with the next symbols as targets."""
    rng = np.random.default_rng(0)
    if name in IMAGE_ROWS:
        x = rng.integers(0, 256, (2 * n, *IMAGE_ROWS[name]), dtype=np.uint8)
        y = rng.integers(0, 10, 2 * n)
    else:
        context = workloads.get(name).module.context
        x, y = rng.integers(0, chars.VOCABULARY, (2, 2 * n, context), dtype=np.uint8)
    return Arrays.from_numpy(x[:n], y[:n], x[n:], y[n:])


# (workload, batch, seeds, points, examples a split): a conv net's (on CPU its image patches) and a
# transformer's ([heads, T, T] attention weights) activations, at each workload's batch, with
# splits larger than its eval_batch so that the evaluations and the init's gradient go in chunks;
# with several points a seed's init shares its memory with its points' steps. CI checks the
# cheaper shapes; the slow ones complete the set.
NETS_ESTIMATED = [
    ("mnist-cnn", 128, 4, 1, 640),
    ("imdb-char-lm", 32, 4, 1, 160),
    ("mnist-cnn", 128, 2, 4, 640),
    pytest.param("imdb-char-lm", 32, 4, 4, 160, marks=pytest.mark.slow),
    pytest.param("mnist-cnn", 128, 8, 1, 1200, marks=pytest.mark.slow),
    pytest.param("imdb-char-lm", 32, 8, 1, 300, marks=pytest.mark.slow),
    pytest.param("fmnist-2c2d", 128, 4, 1, 1200, marks=pytest.mark.slow),
    pytest.param("cifar10-3c3d", 128, 2, 1, 1200, marks=pytest.mark.slow),  # max pools with overlapping windows
]


@pytest.mark.parametrize("name, batch, seeds, points, examples", NETS_ESTIMATED)
def test_the_estimate_counts_conv_and_attention_activations(name, batch, seeds, points, examples):
    workload, spec = workloads.get(name), RunSpec("adam", "adam", batch_size=batch)
    assert workload.eval_batch < examples  # the chunked evaluation and init are what is checked
    data = _net_data(name, examples)
    model = workload.base_model(None)
    settings = program_settings(spec, data, 2, seeds, Order.PER_SEED, num_points=points)
    compiled, _ = engine.compile_program(model, spec, settings, data, workload=workload)
    analysis = compiled.memory_analysis()
    xla = analysis.temp_size_in_bytes + analysis.argument_size_in_bytes + analysis.output_size_in_bytes
    estimate = engine.estimate_memory(model, spec, settings, workload, data.x_train).bytes_for(seeds, points)
    assert xla <= estimate <= 2 * xla, f"estimate {estimate / 1e6:.1f} MB vs XLA's {xla / 1e6:.1f} MB"


def test_a_seeds_init_shares_its_memory_with_its_points_steps():
    estimate = engine.MemoryEstimate(100, 10, 5, init_activations=12, replica_activations=4)
    assert estimate.bytes_for(2, 1) == 100 + 2 * (10 + 8) + 2 * 5  # the init holds 8 more than one step
    assert estimate.bytes_for(2, 3) == 100 + 2 * (10 + 0) + 6 * 5  # three points' steps hold more than it


ESTIMATE = engine.MemoryEstimate(fixed=100, per_seed=10, per_replica=5)


@pytest.mark.parametrize(
    "seeds, points, free, devices, expected",
    [
        (8, 4, 10_000, 1, (8, 4)),  # everything fits
        (8, 4, int((100 + 80 + 8 * 2 * 5) / HEADROOM) + 1, 1, (8, 2)),  # two points of every seed
        (8, 1, int((100 + 3 * 15) / HEADROOM) + 1, 1, (3, 1)),  # three seeds
        (8, 1, int((100 + 3 * 15) / HEADROOM) + 1, 2, (6, 1)),  # three seeds on each of two devices
    ],
)
def test_replicas_per_call_is_the_largest_that_fits(seeds, points, free, devices, expected):
    assert engine.replicas_per_call(ESTIMATE, seeds, points, free, devices) == expected


def test_one_replica_that_cannot_fit_names_the_estimate_and_the_fix():
    with pytest.raises(UsageError, match=r"one replica needs about .* GB .* a device has .* GB to give: lower"):
        engine.replicas_per_call(engine.MemoryEstimate(10**9, 0, 1), 1, 1, 10**9)


@pytest.mark.parametrize(
    "max_replicas, fits, expected",
    [
        (128, (8, 16), (8, 16)),
        (64, (8, 16), (8, 8)),  # --max-replicas: two calls of 8 points
        (64, (8, 5), (8, 4)),  # 16 points in 4 balanced calls, not 5 + 5 + 5 + 1
        (4, (8, 16), (4, 1)),  # --max-replicas below the seeds splits the seeds
        (64, (3, 1), (3, 1)),  # 8 seeds in 3 calls of 3 (one padded)
    ],
)
def test_call_shape(max_replicas, fits, expected):
    assert engine.call_shape(8, 16, max_replicas, fits) == expected


def test_memory_bound_calls_equal_one_call_and_compile_once(small_data, monkeypatch):
    specs = [RunSpec(f"adam {rate}", "adam", {"learning_rate": rate}, 500) for rate in (0.001, 0.01)]
    whole = engine.train_points(specs, small_data, workload=IMDB_MLP, seeds=(0, 1, 2), epochs=2, order=Order.SHARED)
    estimate = engine.estimate_memory(
        ModelConfig(), specs[0], program_settings(specs[0], small_data, 2, 1, Order.SHARED), IMDB_MLP
    )
    # Room for two replicas: the three seeds run as two calls of two seeds, one point each.
    monkeypatch.setattr(devices, "memory_per_device", lambda devices: int(estimate.bytes_for(2, 1) / HEADROOM))
    with engine.counting_compiles() as compiles:
        chunked = engine.train_points(
            specs, small_data, workload=IMDB_MLP, seeds=(0, 1, 2), epochs=2, order=Order.SHARED
        )
    assert len(compiles) == 1
    assert [(run.program_calls, run.replicas_per_call, run.memory_bound) for run in chunked] == [(4, 2, True)] * 2
    for one, other in zip(whole, chunked, strict=False):
        assert not one.memory_bound
        for key in one.history:
            np.testing.assert_allclose(other.history[key], one.history[key], rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seeds", "100000000"], "--seeds 100000000: the histories of"),
        (["--num-words", "1000000"], "--num-words 1000000: the dataset would need about"),
    ],
)
def test_requests_too_big_for_the_host_are_one_line(tmp_path, error_line, argv, message):
    out = tmp_path / "out"
    run = ["run", "--dataset", "synthetic-imdb", "--optimizers", "adam", "--out", str(out)]
    assert main([*run, "--yes", *argv]) == 2  # --yes: past the question a long run asks, to the memory check
    error = error_line()
    assert error.startswith(f"optax-lab: error: {message}") and "use at most" in error
    assert not out.exists()
