"""Optimizers of one's own: the docs' example runs wherever a registry optimizer does, computes
what the registry's computes, is recorded with its source's digest, and every mistake in one is
one line before anything compiles."""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from optax_lab import engine, optimizers
from optax_lab.cli import main
from optax_lab.config import Config
from optax_lab.lessons import RunSpec
from optax_lab.planning import distinct_jobs, plan
from optax_lab.records import fingerprint
from optax_lab.run_store import RunStore
from optax_lab.runner import resume_inputs, train_and_evaluate
from optax_lab.sweep import parse_sweep

DOCS = Path(__file__).resolve().parents[1] / "docs" / "optimizers.md"
TINY = ["--dataset", "synthetic-imdb", "--seeds", "2", "--epochs", "2", "--batch", "500", "--no-compile-cache"]
MISTAKES = """
import optax

from optax_lab.optimizers import Domain, Kind, declare

NOT_A_FUNCTION = 3


def no_default(learning_rate):
    return optax.sgd(learning_rate)


def not_a_transformation(learning_rate: float = 0.1):
    return "sgd"


def breaks_on_the_parameters(learning_rate: float = 0.1):
    return optax.masked(optax.sgd(learning_rate), {"no_such_layer": True})


@declare(domains={"trust": Domain(Kind.REAL, 0.0, 1.0, low_open=True)})
def trusted(learning_rate: float = 0.1, trust: float = 0.5):
    return optax.sgd(learning_rate * trust)
"""


def _docs_example() -> str:
    """The module the docs show under "Your own optimizer", as they show it."""
    blocks = re.findall(r"```python\n(# my_optimizers\.py\n.*?)```", DOCS.read_text(), re.S)
    assert len(blocks) == 1, "docs/optimizers.md shows the example module once"
    return blocks[0]


@pytest.fixture
def user_modules(tmp_path, monkeypatch):
    """The docs' example and a module of mistakes, importable; loaded anew by every test."""
    (tmp_path / "my_optimizers.py").write_text(_docs_example())
    (tmp_path / "mistakes.py").write_text(MISTAKES)
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in ("my_optimizers", "mistakes", "noisy"):  # another test's modules of the same names
        monkeypatch.delitem(sys.modules, module, raising=False)
    optimizers.forget_loaded()
    yield tmp_path
    optimizers.forget_loaded()


def test_the_docs_example_computes_what_the_registry_computes(user_modules, tmp_path):
    same = "learning_rate=0.01"
    out = tmp_path / "out"
    args = ["run", "--optimizers", "adam,my_optimizers:my_adam", *TINY, "--out", str(out)]
    point = ["--set", f"adam.{same}", "--set", f"my_optimizers:my_adam.{same}", "--set", "adam.eps=1e-8"]
    assert main([*args, *point]) == 0
    results = json.loads((out / "results.json").read_text())
    adam, mine = results["runs"]
    assert mine["optimizer"] == "my_optimizers:my_adam"
    # The same chain of optax's building blocks: the same numbers, bit for bit.
    assert mine["history"]["val_loss"] == adam["history"]["val_loss"]
    record = results["user_optimizers"]["my_optimizers:my_adam"]
    assert record["reference"] == "my_optimizers:my_adam" and re.fullmatch(r"[0-9a-f]{16}", record["source_sha256"])
    assert f"source sha256 {record['source_sha256']}" in (out / "report.md").read_text()


def test_a_sweep_of_ones_own_hyperparameter_is_one_program(user_modules):
    sweep = parse_sweep("my_optimizers:clipped_lion.trust=0.25,0.5,1.0")
    config = Config(
        optimizers=("my_optimizers:clipped_lion",),
        sweeps=(sweep,),
        batches=(500,),
        dataset="synthetic-imdb",
        seeds=2,
        epochs=1,
    )
    with engine.counting_compiles("_train") as compiles:  # the training program, not eager slices
        results = train_and_evaluate(config)
    [program] = results["programs"].values()
    assert len(program["runs"]) == 3 and program["calls"] == 1
    assert [run["hyperparams"]["trust"] for run in results["runs"]] == [0.25, 0.5, 1.0]
    assert len(compiles) == 1, "one compile of the program"
    assert len({json.dumps(run["history"]["val_loss"]) for run in results["runs"]}) == 3


def test_an_edited_optimizer_is_a_mismatch_on_resume(user_modules, tmp_path):
    config = Config(optimizers=("my_optimizers:my_adam",), batches=(500,), dataset="synthetic-imdb", seeds=1, epochs=1)
    jobs = distinct_jobs(config, plan(config))
    info = {"name": "synthetic-imdb", "source": "s", "n_train": 1, "n_test": 1, "num_words": 100}

    def inputs():
        return resume_inputs(config, jobs, info, (0,))

    store = RunStore.open(tmp_path / "out", resume=False, command="optax-lab run")
    store.begin(fingerprint(inputs()))
    (user_modules / "my_optimizers.py").write_text(_docs_example() + "\n# tuned by hand\n")
    optimizers.forget_loaded()
    resumed = RunStore.open(tmp_path / "out", resume=True, command="optax-lab run")
    with pytest.raises(Exception, match=r"--resume: optimizer my_optimizers:my_adam was .*, now .*source sha256"):
        resumed.begin(fingerprint(inputs()))


@pytest.mark.parametrize(
    "options, message",
    [
        (["--optimizers", "no_such_module:adam"], "optimizer no_such_module:adam: cannot load it (ModuleNotFoundError"),
        (["--optimizers", "mistakes:missing"], "optimizer mistakes:missing: cannot load it (AttributeError"),
        (
            ["--optimizers", "mistakes:NOT_A_FUNCTION"],
            "is a int, not a function returning an optax.GradientTransformation",
        ),
        (["--optimizers", "mistakes:no_default"], "parameter 'learning_rate' has no default"),
        (["--optimizers", "mistakes:not_a_transformation"], "returned a str, not an optax.GradientTransformation"),
        (["--optimizers", "mistakes:breaks_on_the_parameters"], "init/update fail on workload imdb-mlp's parameters"),
        (["--optimizers", "mistakes:trusted", "--set", "mistakes:trusted.b1=0.9"], "takes no hyperparameter 'b1'"),
        (
            ["--optimizers", "mistakes:trusted", "--set", "mistakes:trusted.trust=2.0"],
            "trust=2.0 is outside the domain",
        ),
        (["--optimizers", "mistakes:trusted", "--sweep", "b1=0.9,0.99"], "none of the optimizers takes 'b1'"),
    ],
)
def test_a_mistake_in_ones_own_optimizer_is_one_line(user_modules, tmp_path, error_line, options, message):
    out = tmp_path / "out"
    assert main(["run", *options, *TINY, "--out", str(out)]) == 2
    assert message in error_line()
    assert not out.exists()


def test_an_entry_point_registers_one_for_good(user_modules, tmp_path, capsys):
    info = user_modules / "my_optimizers-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-optimizers\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[optax_lab.optimizers]\nmy_adam = my_optimizers:my_adam\n")
    assert "my_adam" in optimizers.every_name() and "user" in optimizers.get("my_adam").tags
    assert main(["list"]) == 0
    rows = {line.split("\t")[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "user" in rows["my_adam"] and "my_optimizers:my_adam, source sha256" in rows["my_adam"]
    assert main(["list", "--optimizers", "my_optimizers:clipped_lion", "--json"]) == 0
    listed = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)}
    lion = listed["my_optimizers:clipped_lion"]
    assert lion["main"] == "learning_rate" and lion["tags"] == ["user"]
    traced = {h["name"]: h["traced"] for h in lion["hyperparameters"]}
    assert traced == {"learning_rate": True, "b1": True, "b2": True, "trust": True, "max_norm": False}


def test_a_factory_taking_the_key_gets_the_seeds_own(user_modules):
    (user_modules / "noisy.py").write_text(
        textwrap.dedent("""
        import optax

        def noisy_sgd(learning_rate: float = 0.1, eta: float = 0.01, key=None):
            return optax.noisy_sgd(learning_rate, eta=eta, key=key)
    """)
    )
    entry = optimizers.get("noisy:noisy_sgd")
    assert "key" in entry.needs and entry.accepted == ("learning_rate", "eta")
    spec = RunSpec("noisy", "noisy:noisy_sgd", {}, 500)
    config = Config(optimizers=("noisy:noisy_sgd",), batches=(500,), dataset="synthetic-imdb", seeds=2, epochs=1)
    [result] = train_and_evaluate(config)["runs"]
    first, second = (np.asarray(row) for row in result["history"]["val_loss"])
    assert result["optimizer"] == spec.optimizer and not np.array_equal(first, second)


def test_the_declaration_is_exported_by_optax_lab():
    import optax_lab

    assert optax_lab.declare is optimizers.declare and optax_lab.Domain is optimizers.Domain
    assert {"declare", "Domain", "Kind"} <= set(dir(optax_lab))
