"""The command line's options: the parser of every `optax-lab` command and the option types,
each turning a bad value into one line (a UsageError) naming it and the fix. `cli` builds the
configuration from what they parse."""

from __future__ import annotations

import argparse

from optax_lab._cli_training import names, training_options
from optax_lab.errors import UsageError
from optax_lab.grids import Criterion
from optax_lab.presets import PRESETS
from optax_lab.sweep import Protocol, Search, parse_sweep

__all__ = ["parser"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage too; we promise one line
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="optax-lab", description="Which Optax optimizer trains your model best, and how fast.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="train the preset's runs and write report.md + results.json")
    run.add_argument("--preset", default=None, help=f"one of {', '.join(PRESETS)} (default: lesson, all three lessons)")
    training_options(run)
    run.add_argument(
        "--sweep",
        metavar="[OPT.]HP=VALUES",
        action="append",
        default=[],
        type=parse_sweep,
        help="a grid of one hyperparameter for --optimizers: log:LOW:HIGH:N, lin:LOW:HIGH:N, "
        "around:DECADES:N (around each default) or V1,V2,...; `main` is each optimizer's main "
        "scale; several give their product, e.g. --sweep learning_rate=log:1e-4:1e-1:16",
    )
    run.add_argument(
        "--tuned",
        metavar="TUNED_JSON",
        action="append",
        default=None,
        help="rank --optimizers at the points of a tuned.json written by `optax-lab tune`; "
        "one per workload of --workloads (repeat it)",
    )
    _criterion_option(run, "how a sweep's best point is chosen")

    tune = commands.add_parser(
        "tune",
        help="tune every optimizer's main scale the same way, then rank them "
        "at their tuned points; writes report.md, results.json, tuned.json",
    )
    training_options(tune)
    protocol = tune.add_argument_group(
        "protocol",
        "stage 1: a log grid of each optimizer's main scale around its default, or a sampled "
        "search space (--search halton|random), on the search seeds; stage 2: the best point on --seeds",
    )
    protocol.add_argument(
        "--search",
        metavar="grid|halton|random",
        type=_search,
        default=Search.GRID,
        help="stage 1's ruleset (grid); halton and random sample a space of several hyperparameters "
        "in --studies studies of --trials points, as AlgoPerf's external tuning",
    )
    protocol.add_argument("--points", type=int, default=None, help=f"grid: stage-1 grid points ({Protocol.points})")
    protocol.add_argument(
        "--decades",
        type=float,
        default=Protocol.decades,
        help="the grid's span in decades, and the default space's around each main scale (4)",
    )
    protocol.add_argument(
        "--search-seeds",
        type=int,
        default=Protocol.search_seeds,
        help="stage-1 seeds per point, disjoint from --seeds (2)",
    )
    protocol.add_argument(
        "--extend",
        type=int,
        default=None,
        help=f"grid: decades a grid may grow where its best point is on the edge ({Protocol.max_extensions})",
    )
    protocol.add_argument(
        "--trials", type=int, default=None, help=f"halton/random: points per study ({Protocol.trials})"
    )
    protocol.add_argument(
        "--studies", type=int, default=None, help=f"halton/random: independent studies ({Protocol.studies})"
    )
    protocol.add_argument(
        "--space",
        metavar="SPACE_JSON",
        default=None,
        help='halton/random: the search space, hyperparameter -> {"min", "max", "scale": "log"|"linear"} '
        "(default: each main scale, 1-b1, 1-b2 and weight_decay; see docs/sweeps.md)",
    )
    _criterion_option(protocol, "how stage 1 chooses")

    _reading_commands(commands)
    return parser


def _reading_commands(commands) -> None:
    """The commands that read what exists: a registry, a saved run, benchmark files."""
    listing = commands.add_parser(
        "list",
        help="a registry: the optimizers (names, default hyperparameters, tags) "
        "or the workloads (data, model, target, defaults)",
    )
    listing.add_argument(
        "what", nargs="?", choices=("optimizers", "workloads"), default="optimizers", help="which registry (optimizers)"
    )
    listing.add_argument(
        "--json",
        action="store_true",
        help="print it as JSON for scripts (hyperparameters with defaults and domains; targets...)",
    )
    listing.add_argument(
        "--optimizers",
        metavar="MODULE:FUNCTION[,...]",
        type=names("my_pkg.opts:my_adam"),
        default=(),
        help="list these optimizers of your own too (those registered by entry points are listed anyway)",
    )

    report = commands.add_parser("report", help="re-render report.md and plots from a saved results.json")
    report.add_argument("results", metavar="RESULTS_JSON")
    report.add_argument("--out", metavar="DIR", default=None, help="output folder (default: beside RESULTS_JSON)")

    export = commands.add_parser(
        "export",
        help="a saved results.json as one tidy table, a row per run x seed x epoch, in CSV or "
        "Parquet (needs the analysis extra)",
    )
    export.add_argument("results", metavar="RESULTS_JSON")
    export.add_argument(
        "--format",
        choices=("csv", "parquet"),
        default=None,
        help="the table's format (default: --out's suffix, else csv)",
    )
    export.add_argument(
        "--out",
        metavar="FILE",
        default=None,
        help="the table (default: results.csv or results.parquet beside RESULTS_JSON)",
    )

    compare = commands.add_parser(
        "compare",
        help="step times of `pytest bench/ --benchmark-json` files from "
        "different machines, side by side, with speed-ups",
    )
    compare.add_argument("files", metavar="BENCHMARK_JSON", nargs="+", help="the first one is the baseline")
    compare.add_argument(
        "--out",
        metavar="FILE.md",
        default=None,
        help="the report (default: reports/bench/compare-<machines>.md; the chart goes beside it)",
    )

    merge = commands.add_parser(
        "merge",
        help="runs of one configuration from other machines or times (their --out folders) as one "
        "results.json and report",
    )
    merge.add_argument("folders", metavar="DIR", nargs="+", help="--out folders of run or tune, complete or not")
    merge.add_argument("--out", metavar="DIR", required=True, help="a new folder for the merged run")


def _criterion_option(parser, what: str) -> None:
    parser.add_argument(
        "--criterion",
        type=_criterion,
        default=Criterion.FINAL_VAL_LOSS,
        help=f"{what}: one of {', '.join(Criterion)} (final-val-loss)",
    )


def _criterion(text: str) -> Criterion:
    try:
        return Criterion(text)
    except ValueError:
        raise UsageError(
            f"--criterion {text!r} is not a criterion: choose one of {', '.join(Criterion)}, "
            "e.g. --criterion best-val-loss"
        ) from None


def _search(text: str) -> Search:
    try:
        return Search(text)
    except ValueError:
        raise UsageError(
            f"--search {text!r} is not a ruleset: choose one of {', '.join(Search)}, e.g. --search halton"
        ) from None
