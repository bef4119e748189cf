"""`optax-lab`: the command line. Bad input is one line naming the value and the fix, exit 2.

optax-lab run [--preset P | [--workloads all|NAME[,...]] [--workload MODULE:FUNCTION]
              --optimizers all|NAME[,NAME...] [--batch full,500]] [--set OPT.HP=VALUE]
              [--dataset D] [--imdb-archive PATH] [--num-words N] [--train-examples N] [--seeds S]
              [--epochs E] [--shared-order] [model: --depth/--width/--widths/--activation/--init/
              --bias-init/--dropout/--residual/--norm/--l2] [--out DIR [--resume]] [--yes]
optax-lab run --optimizers all|NAME[,...] [--sweep [OPT.]HP=VALUES ...] [--criterion C] | [--tuned TUNED_JSON]
optax-lab tune --optimizers all|NAME[,...] [--batch full,500] [--seeds S] [--points N] [--decades D]
               [--search-seeds K] [--extend X] [--criterion C] [data, model, --out and --yes as for run]
optax-lab tune --search halton|random [--trials N] [--studies K] [--space SPACE_JSON] [as for tune]
optax-lab list [optimizers|workloads] [--json]
optax-lab report RESULTS_JSON [--out DIR]
optax-lab export RESULTS_JSON [--format csv|parquet] [--out FILE]
optax-lab compare BENCHMARK_JSON BENCHMARK_JSON [...] [--out FILE.md]
optax-lab merge DIR DIR [...] --out DIR
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from optax_lab._cli_config import config_from, protocol_from
from optax_lab._cli_options import parser
from optax_lab._cli_output import EXIT_INTERRUPTED, EXIT_TERMINATED
from optax_lab.config import DEFAULT_WORKLOAD, check_seed_range
from optax_lab.errors import UsageError

if TYPE_CHECKING:
    from optax_lab._cli_cost import Growth
    from optax_lab.planning import Planner

__all__ = ["EXIT_USAGE", "main"]

EXIT_USAGE = 2


def _execute(
    args, console, planner: Planner, closing: Callable[[dict, Path], None], growth: Growth | None = None
) -> int:
    """The one command path of `run` and `tune`, which differ in their planner alone: a big
    request's question (its work estimated from the plan, and how far `growth` lets a search
    grow), the output folder and its store, the runner, the complete report, then
    `closing(results, report path)` tells the user what was written; the exit code. A stop keeps
    every finished program."""
    from optax_lab._cli_cost import EXIT_DECLINED, NO_GROWTH, ask_on_terminal, can_ask, go_ahead, planned_work
    from optax_lab._cli_output import prepare, stopped, training, warn_to
    from optax_lab.compile_ahead import AUTO, check_compile_workers
    from optax_lab.report import write_report
    from optax_lab.run_store import Unfinished
    from optax_lab.runner import run

    compile_workers = (
        None
        if args.no_compile_ahead
        else AUTO
        if args.compile_workers is None
        else check_compile_workers(args.compile_workers)
    )
    launcher = _launcher(args, compile_workers)
    work = planned_work(planner, growth or NO_GROWTH)
    if not go_ahead(work, args.command, yes=args.yes, interactive=can_ask, ask=ask_on_terminal):
        print(f"optax-lab: {args.command} not started; nothing was written", file=sys.stderr)
        return EXIT_DECLINED
    output = prepare(args, planner)
    try:
        with training(output):
            results = run(
                planner,
                command=output.command,
                progress=output.progress,
                warn=warn_to(console),
                compile_cache=not args.no_compile_cache,
                store=output.store,
                compile_workers=None if launcher else compile_workers,
                launcher=launcher,
            )
    except Unfinished as stop:
        return stopped(output, stop.results, stop.cause)
    except KeyboardInterrupt as cause:  # before training began, or after it ended
        return stopped(output, None, cause)
    if output.out is None:  # another process of a multi-process run: process 0 writes
        return 0
    path = write_report(results, output.out, extra_files=planner.finish(results))
    output.store.close()
    closing(results, path)
    return 0


def _launcher(args, compile_workers: int | None):
    """The jobs `--launcher` asks for (checked before anything is written), or None."""
    if args.launcher is None:
        return None
    import jax

    from optax_lab.launch import Launcher

    if jax.process_count() > 1:
        raise UsageError(f"--launcher {args.launcher} starts its own processes: run it without jax.distributed")
    return Launcher(
        args.launcher,
        args.jobs,
        args.partition,
        args.time_limit,
        args.gpus_per_job,
        args.cpus_per_job,
        args.devices,
        compile_workers,
        not args.no_compile_cache,
    )


def _planner(args) -> Planner:
    """The plan of `run` or `tune` from its arguments, every value checked (no device touched)."""
    from optax_lab.planning import RunPlanner

    config = config_from(args)
    if args.command == "run":
        return RunPlanner(config)
    from optax_lab.search import read_space
    from optax_lab.tuning import TunePlanner

    if not args.optimizers:
        raise UsageError("tune needs the optimizers to tune: add --optimizers, e.g. --optimizers all or adam,sgd")
    protocol = protocol_from(args)
    asked = f"--seed {config.seed} --seeds {config.seeds} --search-seeds {protocol.search_seeds} (which follow --seeds)"
    check_seed_range(config.seed, config.seeds + protocol.search_seeds, asked)
    return TunePlanner(config, protocol, read_space(args.space) if args.space else None)


def _run(args, console) -> int:
    from optax_lab._console import summary_table
    from optax_lab.devices import configure_devices

    planner = _planner(args)
    configure_devices(args.devices, coordinator_timeout=args.coordinator_timeout)

    def closing(results: dict, report: Path) -> None:
        summary_table(console, results, planner.config.seeds)
        console.print(f"report: {report}")

    return _execute(args, console, planner, closing)


def _tune(args, console) -> int:
    from optax_lab._cli_cost import Growth
    from optax_lab.devices import configure_devices

    planner = _planner(args)
    config, protocol = planner.config, planner.protocol
    configure_devices(args.devices, coordinator_timeout=args.coordinator_timeout)

    def closing(results: dict, report: Path) -> None:
        tuned = report.parent / "tuned.json"
        workloads = "" if config.workloads == (DEFAULT_WORKLOAD,) else f" --workloads {','.join(config.workloads)}"
        console.print(
            f"report: {report}\ntuned points: {tuned} (rank at them: optax-lab run{workloads} "
            f"--optimizers {','.join(args.optimizers)} --tuned {tuned})"
        )

    # A grid grows a decade a round; a sampled search plans all of its studies at once.
    growth = Growth() if protocol.search.sampled else Growth(protocol.max_extensions, protocol.per_decade)
    return _execute(args, console, planner, closing, growth)


def _merge(args, console) -> None:
    from optax_lab.merging import merge
    from optax_lab.report import check_writable, write_report

    def planner_for(argv: list[str]) -> Planner:
        stored = parser().parse_args(argv)
        stored.argv = argv
        return _planner(stored)

    out = check_writable(Path(args.out))
    results, planner, store = merge([Path(folder) for folder in args.folders], out, planner_for)
    report = write_report(results, out, extra_files=planner.finish(results))
    store.close()
    machines = len(results["machines"])
    console.print(
        f"merged {len(args.folders)} runs, {len(store.used)} programs from {machines} "
        f"machine{'s' if machines > 1 else ''}: report: {report}"
    )


def _list(args, console) -> None:
    """The registry on stdout (the console is stderr's): a table on a terminal, one entry per
    tab-separated line in a pipe (`optax-lab list | grep adam` gets whole names), or JSON."""
    import json
    import os

    from rich.console import Console

    from optax_lab._console import registry_json, registry_lines, registry_table

    try:
        if args.json:
            print(json.dumps(registry_json(args.what, args.optimizers), indent=1))
        elif sys.stdout.isatty():
            terminal = Console()
            terminal.print(registry_table(args.what, terminal.width, args.optimizers))
        else:
            print("\n".join(registry_lines(args.what, args.optimizers)))
        sys.stdout.flush()
    except BrokenPipeError:  # `optax-lab list | head`: the reader has what it wanted; no traceback at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _report(args, console) -> None:
    from optax_lab.report import read_results, write_report

    out = args.out or Path(args.results).parent
    console.print(f"report: {write_report(read_results(args.results), out)}")


def _export(args, console) -> None:
    from optax_lab import tidy

    fmt = tidy.format_for(args.out, args.format)
    tidy.require(f"export --format {fmt}", "pandas", *(("pyarrow",) if fmt == "parquet" else ()))
    from optax_lab.report import read_results

    out = args.out or Path(args.results).parent / f"results.{fmt}"
    table = tidy.frame(read_results(args.results))
    console.print(f"table: {tidy.write_table(table, out, fmt)} ({len(table)} rows)")


def _compare(args, console) -> None:
    from optax_lab.benchmarking.compare import compare

    console.print(f"comparison: {compare(args.files, args.out)}")


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        args = parser().parse_args(argv)
        args.argv = argv  # for the report's "reproduce" line
        args.console = console
        command = {
            "run": _run,
            "tune": _tune,
            "list": _list,
            "report": _report,
            "export": _export,
            "compare": _compare,
            "merge": _merge,
        }[args.command]
        return command(args, console) or 0
    except UsageError as error:
        print(f"optax-lab: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # run and tune handle their own (finished programs are kept); this is the rest
        print("optax-lab: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED


def entry() -> None:
    """The `optax-lab` command. After a Ctrl-C or SIGTERM, everything finished is on disk (atomic
    and fsynced), but the program that was running may still run on the device, and the runtime
    waits for it before the interpreter exits (minutes, for a long program): leave at once."""
    code = main()
    if code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
