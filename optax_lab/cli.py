"""`optax-lab`: the command line. Bad input is one line naming the value and the fix, exit 2.

optax-lab run [--preset P | [--workloads all|NAME[,...]] [--workload MODULE:FUNCTION]
              --optimizers all|NAME[,NAME...] [--batch full,500]] [--set OPT.HP=VALUE]
              [--dataset D] [--imdb-archive PATH] [--num-words N] [--train-examples N] [--seeds S]
              [--epochs E] [--shared-order] [model: --depth/--width/--widths/--activation/--init/
              --bias-init/--dropout/--residual/--norm/--l2] [--out DIR [--resume]]
optax-lab run --optimizers all|NAME[,...] [--sweep [OPT.]HP=VALUES ...] [--criterion C] | [--tuned TUNED_JSON]
optax-lab tune --optimizers all|NAME[,...] [--batch full,500] [--seeds S] [--points N] [--decades D]
               [--search-seeds K] [--extend X] [--criterion C] [data, model and --out as for run]
optax-lab list [optimizers|workloads] [--json]
optax-lab report RESULTS_JSON [--out DIR]
optax-lab compare BENCHMARK_JSON BENCHMARK_JSON [...] [--out FILE.md]
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from optax_lab._cli_options import parser
from optax_lab._cli_output import EXIT_INTERRUPTED, EXIT_TERMINATED
from optax_lab.config import DEFAULT_WORKLOAD, Config, ModelConfig, Order
from optax_lab.errors import UsageError
from optax_lab.sweep import Protocol

if TYPE_CHECKING:
    from optax_lab.planning import Planner

__all__ = ["EXIT_USAGE", "main"]

EXIT_USAGE = 2


_MODEL_OPTIONS = (
    "depth",
    "width",
    "widths",
    "activation",
    "kernel_init",
    "bias_init",
    "dropout",
    "residual",
    "normalization",
    "l2",
)


def _model(args) -> ModelConfig | None:
    """The MLP the model options describe (unset ones take ModelConfig's defaults), or None when
    none is given: then each workload trains its own."""
    if args.residual is False and all(
        getattr(args, option) is None for option in _MODEL_OPTIONS if option != "residual"
    ):
        return None
    if args.widths is not None and args.depth is not None:
        raise UsageError("--widths and --depth both set the hidden layers: give one of them")
    depth = 2 if args.depth is None else args.depth
    if depth < 1:
        raise UsageError(f"--depth {depth} must be at least 1 hidden layer, e.g. --depth 2")
    widths = args.widths if args.widths is not None else (32 if args.width is None else args.width,) * depth
    given = {
        field: getattr(args, field)
        for field in ("activation", "kernel_init", "bias_init", "dropout", "normalization", "l2")
        if getattr(args, field) is not None
    }
    return ModelConfig(widths, residual=args.residual, **given)


def _overrides(items: list[str]) -> dict[str, dict]:
    """`adam.b1=0.95` -> {"adam": {"b1": 0.95}}; values are Python literals, else strings."""
    overrides: dict[str, dict] = {}
    for item in items:
        target, _, text = item.partition("=")
        name, _, hyperparam = target.partition(".")
        if not (name and hyperparam and text):
            raise UsageError(f"--set {item!r} is not OPTIMIZER.HYPERPARAMETER=VALUE, e.g. --set adam.b1=0.95")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        overrides.setdefault(name, {})[hyperparam] = value
    return overrides


def _workloads(args) -> tuple[str, ...]:
    """--workloads and --workload together (--workload module:function adds one of your own)."""
    named = args.workloads if args.workloads is not None else (() if args.workload else (DEFAULT_WORKLOAD,))
    return tuple(dict.fromkeys(named + tuple(args.workload)))


def _config(args) -> Config:
    """The run's configuration from the shared options; every value checked."""
    if getattr(args, "preset", None) and args.optimizers:
        raise UsageError(f"--preset {args.preset} and --optimizers rank different things: give one of them")
    chosen = _workloads(args)
    if getattr(args, "preset", None) and chosen != (DEFAULT_WORKLOAD,):
        raise UsageError(
            f"--preset {args.preset} runs on {DEFAULT_WORKLOAD}, not on {','.join(chosen)}: drop "
            "--preset, or --workloads (to rank optimizers there, give --optimizers)"
        )
    tuned = None
    if getattr(args, "tuned", None):
        from optax_lab.tuning import read_tuned_files

        tuned = read_tuned_files(args.tuned)
    return Config(
        preset=getattr(args, "preset", None) or "lesson",
        optimizers=args.optimizers,
        workloads=chosen,
        batches=args.batch,
        overrides=_overrides(args.overrides),
        dataset=args.dataset,
        imdb_archive=args.imdb_archive,
        num_words=args.num_words,
        train_examples=args.train_examples,
        seeds=args.seeds,
        seed=args.seed,
        epochs=args.epochs,
        order=Order.SHARED if args.shared_order else Order.PER_SEED,
        model=_model(args),
        out=args.out,
        sweeps=tuple(getattr(args, "sweep", ())),
        tuned=tuned,
        criterion=args.criterion,
        devices=args.devices,
        max_replicas=args.max_replicas,
    )


def _execute(args, console, planner: Planner, closing: Callable[[dict, Path], None]) -> int:
    """The one command path of `run` and `tune`, which differ in their planner alone: the output
    folder and its store, the runner, the complete report, then `closing(results, report path)`
    tells the user what was written; the exit code. A stop keeps every finished program."""
    from optax_lab._cli_output import prepare, stopped, training, warn_to
    from optax_lab.report import write_report
    from optax_lab.run_store import Unfinished
    from optax_lab.runner import run

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


def _run(args, console) -> int:
    from optax_lab._console import summary_table
    from optax_lab.devices import configure_devices
    from optax_lab.planning import RunPlanner

    config = _config(args)
    configure_devices(args.devices, coordinator_timeout=args.coordinator_timeout)

    def closing(results: dict, report: Path) -> None:
        summary_table(console, results, config.seeds)
        console.print(f"report: {report}")

    return _execute(args, console, RunPlanner(config), closing)


def _tune(args, console) -> int:
    from optax_lab.devices import configure_devices
    from optax_lab.tuning import TunePlanner

    if not args.optimizers:
        raise UsageError("tune needs the optimizers to tune: add --optimizers, e.g. --optimizers all or adam,sgd")
    config = _config(args)
    protocol = Protocol(args.points, args.decades, args.search_seeds, args.extend, args.criterion)
    configure_devices(args.devices, coordinator_timeout=args.coordinator_timeout)

    def closing(results: dict, report: Path) -> None:
        tuned = report.parent / "tuned.json"
        workloads = "" if config.workloads == (DEFAULT_WORKLOAD,) else f" --workloads {','.join(config.workloads)}"
        console.print(
            f"report: {report}\ntuned points: {tuned} (rank at them: optax-lab run{workloads} "
            f"--optimizers {','.join(args.optimizers)} --tuned {tuned})"
        )

    return _execute(args, console, TunePlanner(config, protocol), closing)


def _list(args, console) -> None:
    """The registry on stdout (the console is stderr's): a table on a terminal, one entry per
    tab-separated line in a pipe (`optax-lab list | grep adam` gets whole names), or JSON."""
    import json
    import os

    from rich.console import Console

    from optax_lab._console import registry_json, registry_lines, registry_table

    try:
        if args.json:
            print(json.dumps(registry_json(args.what), indent=1))
        elif sys.stdout.isatty():
            terminal = Console()
            terminal.print(registry_table(args.what, terminal.width))
        else:
            print("\n".join(registry_lines(args.what)))
        sys.stdout.flush()
    except BrokenPipeError:  # `optax-lab list | head`: the reader has what it wanted; no traceback at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _report(args, console) -> None:
    from optax_lab.report import read_results, write_report

    out = args.out or Path(args.results).parent
    console.print(f"report: {write_report(read_results(args.results), out)}")


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
        command = {"run": _run, "tune": _tune, "list": _list, "report": _report, "compare": _compare}[args.command]
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
