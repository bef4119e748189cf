"""What a `run` or `tune` will cost, estimated from its plan before anything compiles, and the
question a big one asks before it starts.

The work is counted in replica-epochs (one seed at one hyperparameter point training one epoch,
validation included) over every planned program, and turned into time at the pace of the
lesson's MLP on real IMDB on a 2-core CPU: `optax-lab run --optimizers all` (114 programs,
18,240 replica-epochs) took 12 min 39 s there cold, about 40 replica-epochs/s of training and
2.7 s per compile (docs/performance.md). Larger models and real IMDB's 25,000 reviews cost more
per replica-epoch, a GPU and small problems far less: the estimate says which pace it assumes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

from optax_lab.errors import UsageError
from optax_lab.planning import Planner, program_groups
from optax_lab.records import Job

__all__ = [
    "ASK_ABOVE_S",
    "COMPILE_S",
    "EXIT_DECLINED",
    "REPLICA_EPOCHS_PER_S",
    "Growth",
    "Work",
    "ask_on_terminal",
    "can_ask",
    "go_ahead",
    "planned_work",
    "round_work",
]

REPLICA_EPOCHS_PER_S = 40.0  # training, the lesson's MLP on a 2-core CPU (measured, above)
COMPILE_S = 3.0  # one program's cold compile there (2.0-2.9 s measured)
# Ask above two hours at that pace: the default run (~1 min), `--optimizers all` (~13 min),
# `--workloads all --optimizers all` (~70 min) and `tune --optimizers all` (~75 min even if every
# grid grows) go on unasked; `--seeds 4096` (~3.4 h) or a 200-point sweep of every optimizer asks.
ASK_ABOVE_S = 2 * 3600.0
EXIT_DECLINED = 1  # the user answered no: nothing ran, nothing was written


class Work(NamedTuple):
    """What a plan trains: compiled programs, replicas (points x seeds, summed over programs) and
    replica-epochs; `at_most`: an upper bound, for a planner whose later rounds may grow."""

    programs: int
    replicas: int
    replica_epochs: int
    at_most: bool = False

    @property
    def seconds(self) -> float:
        """At the documented pace: training at REPLICA_EPOCHS_PER_S plus a cold compile per program."""
        return self.replica_epochs / REPLICA_EPOCHS_PER_S + self.programs * COMPILE_S

    def plus(self, other: Work) -> Work:
        return Work(*(a + b for a, b in zip(self[:3], other[:3], strict=True)), self.at_most or other.at_most)

    def describe(self) -> str:
        """One sentence: the programs, replicas and replica-epochs, the time, and the pace assumed."""
        bound = "up to " if self.at_most else ""
        return (
            f"{bound}{_many(self.programs, 'program')}, {_many(self.replicas, 'replica')} (points x seeds) "
            f"and {_many(self.replica_epochs, 'replica-epoch')}: about {_duration(self.seconds)} at "
            f"{REPLICA_EPOCHS_PER_S:g} replica-epochs/s and {COMPILE_S:g} s a compile (the lesson's MLP "
            "on a 2-core CPU; a GPU is faster)"
        )


class Growth(NamedTuple):
    """How far a growing planner's search may grow: each first-round program may add up to
    `rounds` rounds of `points` points, on the first round's seeds (a tune's `--extend` decades
    of its grid's points per decade)."""

    rounds: int = 0
    points: int = 0


NO_GROWTH = Growth()


def round_work(jobs: Sequence[Job], seeds: int) -> Work:
    """One round: a program per group of points (`program_groups`), each job on every seed."""
    return Work(len(program_groups(jobs)), len(jobs) * seeds, sum(job.epochs for job in jobs) * seeds)


def planned_work(planner: Planner, growth: Growth = NO_GROWTH) -> Work:
    """The planner's work, from its plan alone. A planner that does not grow trains its
    `memory_jobs` on `config.seeds` (the host holds all their histories at once); one that grows
    (a tuner) trains its first round (planned without training), at most `growth` more for each of
    that round's programs, and the ranking that ends it, its `memory_jobs` on `config.seeds`.
    Seeds are counted, never listed: `--seeds 2000000000` is estimated as fast as `--seeds 8`."""
    ranking = round_work(planner.memory_jobs, planner.config.seeds)
    if not planner.grows:
        return ranking
    first = next(planner.rounds())
    work = round_work(first.jobs, len(first.seeds))
    if growth.rounds:
        new_replicas = growth.rounds * growth.points * len(first.seeds)
        for group in program_groups(first.jobs):
            work = work.plus(Work(growth.rounds, new_replicas, new_replicas * group[0].epochs, at_most=True))
    return work.plus(ranking)


def go_ahead(
    work: Work,
    command: str,
    *,
    yes: bool,
    interactive: Callable[[], bool],
    ask: Callable[[str], str],
    limit_s: float | None = None,
) -> bool:
    """Whether to start `work`: yes when it is within `limit_s` (ASK_ABOVE_S) or `--yes` was
    given; else the answer to `ask` (y or yes) where `interactive()` (a terminal to answer on);
    without one, a UsageError saying to pass --yes."""
    limit_s = ASK_ABOVE_S if limit_s is None else limit_s
    if yes or work.seconds <= limit_s:
        return True
    what = f"this {command} plans {work.describe()}"
    if not interactive():
        raise UsageError(
            f"{what}, longer than {_duration(limit_s)}, and stdin is not a terminal to confirm it: pass --yes "
            "to go on, or ask for less (--seeds, --sweep, --optimizers, --epochs)"
        )
    return ask(f"{what}. Go on? [y/N] ").strip().lower() in ("y", "yes")


def can_ask() -> bool:
    """Whether there is a terminal to answer on: stdin is one, and this is the only process (the
    processes of a multi-process run go on together or not at all, so they need --yes)."""
    import jax

    return sys.stdin is not None and sys.stdin.isatty() and jax.process_count() == 1


def ask_on_terminal(prompt: str) -> str:
    """The answer typed after `prompt` (shown on stderr, where the console is); end of input is no."""
    print(prompt, end="", file=sys.stderr, flush=True)
    try:
        return input()
    except EOFError:  # Ctrl-D: the line the answer would have ended
        print(file=sys.stderr)
        return ""


def _many(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _duration(seconds: float) -> str:
    """e.g. '45 s', '13 min', '3.4 h', '26 h', '12 days'."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}".removesuffix(".0") + " h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"
