"""The main job as config.py promises it: `dataclasses.replace(Config(), ...)` into
`train_and_evaluate`; the runner driving a planner of its own in rounds; and the foundations every
stage shares (the results contract, atomic files)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from optax_lab import engine, runner
from optax_lab.config import Config, ModelConfig, Order
from optax_lab.errors import UsageError
from optax_lab.files import atomic_file, write_files
from optax_lab.planning import Round, distinct_jobs, plan
from optax_lab.runner import train_and_evaluate
from optax_lab.schema import SCHEMA, LessonKind, Status, check_results, diverged_seeds, to_jsonable


def test_a_shrunk_default_config_runs_the_main_job():
    config = dataclasses.replace(
        Config(), preset="momentum", dataset="synthetic-imdb", seeds=2, epochs=2, order=Order.SHARED
    )
    results = train_and_evaluate(config)
    check_results(to_jsonable(results))
    assert results["schema"] == SCHEMA and results["order"] == "shared"
    assert [lesson["kind"] for lesson in results["lessons"]] == [LessonKind.COMPARE]
    assert [run["name"] for run in results["runs"]] == ["SGD", "Momentum"]
    for run in results["runs"]:
        assert np.asarray(run["history"]["val_loss"]).shape == (2, 2)
        assert run["status"] is Status.OK and run["seeds"] == [0, 1]
        assert run["timing"]["compile_s"] > 0 and run["timing"]["run_s"] > 0
    assert json.loads(json.dumps(to_jsonable(results)))["runs"][0]["status"] == "ok"


def test_an_optimizer_ranking_is_a_lesson_of_kind_ranking_per_batch_mode():
    config = dataclasses.replace(
        Config(), optimizers=("sgd",), batches=(None,), dataset="synthetic-imdb", seeds=1, epochs=1
    )
    results = train_and_evaluate(config)
    assert [(lesson["name"], lesson["kind"]) for lesson in results["lessons"]] == [("batch-full", LessonKind.RANKING)]


class _HalvingPlanner:
    """A planner of one's own: SGD at one rate, then at half the rate whose final val loss was
    higher, each a round of its own, the second planned from the first's results."""

    command, not_started, programs, grows, resume_extras = "run", "", 1, True, {}

    def __init__(self, config: Config):
        self.config = config
        self.lessons = plan(config)
        self.memory_jobs = distinct_jobs(config, self.lessons)
        self.seen: list[float] = []

    def rounds(self):
        seeds = (0, 1)
        first = yield Round(self.memory_jobs, seeds)
        self.seen = [float(np.mean(result.history["val_loss"][:, -1])) for result in first]
        spec = self.lessons[0].runs[0]
        half = dataclasses.replace(spec, name=f"{spec.name} half", hyperparams={"learning_rate": 0.05})
        self.lessons = (dataclasses.replace(self.lessons[0], runs=(spec, half)),)
        yield Round(distinct_jobs(self.config, self.lessons)[1:], seeds)

    def finish(self, results):
        return {}


def test_the_runner_trains_a_planners_rounds_each_program_once():
    config = Config(
        optimizers=("sgd",),
        batches=(500,),
        overrides={"sgd": {"learning_rate": 0.1}},
        dataset="synthetic-imdb",
        seeds=2,
        epochs=1,
    )
    planner = _HalvingPlanner(config)
    with engine.counting_compiles() as compiles:
        results = runner.run(planner)
    assert len(planner.seen) == 1, "the second round was planned from the first round's results"
    assert [run["name"] for run in results["runs"]] == ["sgd @500", "sgd @500 half"]
    assert [run["hyperparams"]["learning_rate"] for run in results["runs"]] == [0.1, 0.05]
    assert results["lessons"][0]["runs"] == ["sgd @500", "sgd @500 half"]
    # The rate is traced: the second round reuses the first round's executable.
    assert len(compiles) == 1 and len(results["programs"]) == 1


def test_a_config_cannot_exist_invalid():
    with pytest.raises(UsageError, match="--seeds 0 must be a positive integer"):
        Config(seeds=0)
    with pytest.raises(UsageError, match="--sweep works on an optimizer ranking"):
        dataclasses.replace(Config(), sweeps=(object(),))


def test_a_model_config_cannot_exist_invalid():
    with pytest.raises(UsageError, match="dropout rate 1.0"):
        ModelConfig(dropout=1.0)
    with pytest.raises(UsageError, match="unknown activation 'swish'"):
        dataclasses.replace(ModelConfig(), activation="swish")


def test_the_divergence_rule_reads_arrays_and_saved_lists_alike():
    arrays = {"train_loss": np.array([[0.6, 0.5], [0.6, np.nan]]), "val_loss": np.array([[0.6, np.inf], [0.6, 0.5]])}
    saved = to_jsonable(arrays)
    assert saved["train_loss"][1][1] is None and saved["val_loss"][0][1] is None
    np.testing.assert_array_equal(diverged_seeds(arrays), [True, True])
    np.testing.assert_array_equal(diverged_seeds(saved), [True, True])
    np.testing.assert_array_equal(diverged_seeds({"train_loss": [[0.6, 0.5]], "val_loss": [[0.6, 0.4]]}), [False])
    assert to_jsonable(math.nan) is None and to_jsonable(Status.DIVERGED) == "diverged"


def test_an_atomic_file_appears_whole_or_not_at_all(tmp_path):
    path = tmp_path / "sub" / "table.md"
    with pytest.raises(RuntimeError):
        with atomic_file(path) as f:
            f.write(b"half")
            raise RuntimeError("interrupted")
    assert not path.exists() and list(path.parent.iterdir()) == []
    with atomic_file(path) as f:
        f.write(b"whole")
    assert path.read_bytes() == b"whole" and list(path.parent.iterdir()) == [path]


def test_write_files_changes_nothing_when_one_file_cannot_be_written(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    first = tmp_path / "first.md"
    with pytest.raises(UsageError, match="cannot write"):
        write_files({first: "one", blocker / "second.md": "two"})
    assert not first.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]
    write_files({first: "one", tmp_path / "second.md": b"two"})
    assert first.read_text() == "one" and (tmp_path / "second.md").read_bytes() == b"two"


def test_commands_in_reports_name_files_not_machine_paths():
    from optax_lab.files import shareable_command

    shown = shareable_command(
        "optax-lab",
        [
            "run",
            "--imdb-archive",
            "/data/aclImdb_v1.tar.gz",
            "--out=/tmp/x/run",
            "--set",
            "adam.b1=0.9",
            "relative/out",
        ],
    )
    assert shown == "optax-lab run --imdb-archive aclImdb_v1.tar.gz --out=run --set adam.b1=0.9 relative/out"
