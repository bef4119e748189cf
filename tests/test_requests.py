"""Big requests say what they cost: the work a plan trains, estimated before anything compiles;
a run estimated past the bound asks on a terminal (or needs --yes); seeds past the engine's range
are one line. Every big request here stops before training."""

from __future__ import annotations

import dataclasses
import json

import pytest

from optax_lab import _cli_cost, engine, workloads
from optax_lab._cli_cost import ASK_ABOVE_S, Growth, Work, go_ahead, planned_work
from optax_lab.cli import main
from optax_lab.config import MAX_SEED, Config
from optax_lab.errors import UsageError
from optax_lab.lessons import RunSpec
from optax_lab.planning import Round, RunPlanner
from optax_lab.records import Job
from optax_lab.sweep import Protocol
from optax_lab.tuning import TunePlanner

TINY = ["--dataset", "synthetic-imdb", "--train-examples", "200", "--seeds", "1", "--epochs", "1"]
TINY_RUN = ["run", "--optimizers", "adam", "--batch", "full", *TINY, "--no-compile-cache"]


@dataclasses.dataclass
class HandMadePlanner:
    """adam at two rates (one program, 5 epochs) and sgd (another, 10 epochs). Not growing: all
    three on config.seeds (3). Growing: a first round of all three on 3 seeds, then a ranking of
    the last two (its memory jobs) on config.seeds (2)."""

    grows: bool = False

    def __post_init__(self):
        workload = workloads.get("imdb-mlp")
        self.first = (
            Job(RunSpec("adam 0.1", "adam", {"learning_rate": 0.1}), workload, 100, None, 5, False),
            Job(RunSpec("adam 0.01", "adam", {"learning_rate": 0.01}), workload, 100, None, 5, False),
            Job(RunSpec("sgd", "sgd"), workload, 100, None, 10, False),
        )
        self.memory_jobs = self.first[1:] if self.grows else self.first
        self.config = Config(seeds=2 if self.grows else 3)

    def rounds(self):
        assert self.grows, "a plan that does not grow is estimated without listing its seeds"
        yield Round(self.first, (0, 1, 2))
        raise AssertionError("estimating a plan must not ask for its later rounds")


def test_the_estimate_of_a_hand_made_plan_counts_its_programs_replicas_and_replica_epochs():
    work = planned_work(HandMadePlanner())
    assert work == Work(programs=2, replicas=3 * 3, replica_epochs=(5 + 5 + 10) * 3)
    assert work.seconds == pytest.approx(60 / _cli_cost.REPLICA_EPOCHS_PER_S + 2 * _cli_cost.COMPILE_S)
    # Growing: each of the 2 first-round programs may add 2 rounds of 4 points on its 3 seeds, then
    # the ranking (2 jobs: adam 0.01 at 5 epochs, sgd at 10) on config.seeds = 2.
    grown = planned_work(HandMadePlanner(grows=True), Growth(rounds=2, points=4))
    assert grown == Work(
        programs=2 + 2 * 2 + 2,
        replicas=9 + 2 * (2 * 4 * 3) + 2 * 2,
        replica_epochs=60 + (2 * 4 * 3) * 5 + (2 * 4 * 3) * 10 + (5 + 10) * 2,
        at_most=True,
    )
    assert planned_work(HandMadePlanner(grows=True)) == Work(2 + 2, 9 + 4, 60 + 30)  # no growth: exact
    assert "up to 8 programs, 61 replicas" in grown.describe() and "40 replica-epochs/s" in grown.describe()


@pytest.mark.parametrize(
    "config, asks",
    [
        (Config(), False),  # the default run
        (Config(optimizers=("all",)), False),
        (Config(seeds=4096), True),
    ],
)
def test_ordinary_runs_go_on_unasked_and_huge_ones_ask(config, asks):
    work = planned_work(RunPlanner(config))
    assert (work.seconds > ASK_ABOVE_S) is asks, work.describe()


def test_a_tune_of_every_optimizer_goes_on_unasked_even_if_every_grid_grows():
    protocol = Protocol()
    growth = Growth(protocol.max_extensions, protocol.per_decade)
    work = planned_work(TunePlanner(Config(optimizers=("all",)), protocol), growth)
    assert work.at_most and work.seconds <= ASK_ABOVE_S, work.describe()


def test_the_question_yes_a_terminal_and_no_terminal():
    big, small = Work(10, 100_000, 10**7), Work(1, 8, 160)

    def never(*args):
        raise AssertionError("asked")

    assert go_ahead(small, "run", yes=False, interactive=never, ask=never)
    assert go_ahead(big, "run", yes=True, interactive=never, ask=never)
    prompts = []
    for answer, goes in (("y", True), (" YES\n", True), ("n", False), ("", False), ("sure", False)):

        def ask(prompt, answer=answer):
            prompts.append(prompt)
            return answer

        assert go_ahead(big, "run", yes=False, interactive=lambda: True, ask=ask) is goes
    assert prompts[0].startswith("this run plans 10 programs, 100,000 replicas") and prompts[0].endswith("[y/N] ")
    with pytest.raises(UsageError, match=r"this tune plans .* stdin is not a terminal .* pass --yes"):
        go_ahead(big, "tune", yes=False, interactive=lambda: False, ask=never)


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--seeds", "4096"],
        ["run", "--optimizers", "all", "--sweep", "learning_rate=log:1e-6:1:200"],
        ["tune", "--optimizers", "adam", "--seeds", "65536"],
    ],
)
def test_a_huge_request_without_a_terminal_or_yes_is_one_line_and_writes_nothing(argv, tmp_path, error_line):
    out = tmp_path / "out"
    assert main([*argv, "--dataset", "synthetic-imdb", "--out", str(out)]) == 2
    error = error_line()
    assert "replica-epochs" in error and "stdin is not a terminal" in error and "pass --yes" in error
    assert not out.exists()


@pytest.fixture
def asks_everything(monkeypatch):
    """Every run long enough to ask, on a terminal answered by `answers` (the prompts it saw are kept)."""
    monkeypatch.setattr(_cli_cost, "ASK_ABOVE_S", 0.0)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    answers, prompts = [], []

    def answer(prompt=""):
        prompts.append(prompt)
        return answers.pop(0)

    monkeypatch.setattr("builtins.input", answer)
    return answers, prompts


def test_a_terminal_answered_no_stops_cleanly(asks_everything, tmp_path, capsys):
    answers, prompts = asks_everything
    answers.append("n")
    out = tmp_path / "out"
    assert main([*TINY_RUN, "--out", str(out)]) == _cli_cost.EXIT_DECLINED
    err = capsys.readouterr().err
    assert "this run plans 1 program, 1 replica (points x seeds) and 1 replica-epoch: about" in err
    assert err.endswith("Go on? [y/N] optax-lab: run not started; nothing was written\n") and "Traceback" not in err
    assert prompts and not out.exists()


def test_yes_goes_on_without_asking(asks_everything, tmp_path):
    out = tmp_path / "out"
    assert main([*TINY_RUN, "--out", str(out), "--yes"]) == 0  # `input` would fail: no answer is queued
    assert json.loads((out / "results.json").read_text())["runs"][0]["seeds"] == [0]


def test_seeds_past_the_engines_int32_range_are_one_line(tmp_path, error_line):
    assert Config(seed=MAX_SEED, seeds=1).seed == MAX_SEED  # the last seed there is
    # The bound is the engine's: the last seed goes into a program's inputs, one more does not.
    assert engine.replica_inputs((MAX_SEED,))[0].tolist() == [MAX_SEED]
    with pytest.raises(OverflowError):
        engine.replica_inputs((MAX_SEED + 1,))
    with pytest.raises(UsageError, match=rf"--seed {MAX_SEED} --seeds 2 runs seeds up to {MAX_SEED + 1}.*at most"):
        Config(seed=MAX_SEED, seeds=2)
    cases = [
        (["run", "--seed", str(2**64)], f"--seed {2**64} --seeds 8 runs seeds up to", f"at most {MAX_SEED - 7}"),
        (["run", "--seeds", str(MAX_SEED + 2)], f"asks for {MAX_SEED + 2} seeds, more than there are", "--seeds 8"),
        (["tune", "--optimizers", "adam", "--seed", str(MAX_SEED - 8)], "--search-seeds 2", f"at most {MAX_SEED - 9}"),
    ]
    for argv, says, fix in cases:
        out = tmp_path / "out"
        assert main([*argv, "--dataset", "synthetic-imdb", "--out", str(out)]) == 2
        error = error_line()
        assert says in error and fix in error, error
        assert not out.exists()
