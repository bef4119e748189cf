"""What `optax-lab` shows on the terminal while it works: a progress bar over the programs and
the closing summary table (rich, imported lazily so that `--help` stays fast)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = [
    "ProgressBar",
    "optimizers_table",
    "registry_json",
    "registry_lines",
    "registry_table",
    "summary_table",
    "workloads_table",
]


class ProgressBar:
    """A rich progress bar over the programs (compile, then train each) and a log line per event.
    Started once the data is loaded: the data stage may show its own bars (download, tokenising)
    and rich allows one live display at a time."""

    def __init__(self, console, programs: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = console
        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task = self.bar.add_task("loading the data", total=2 * programs)

    def __call__(self, event: str, name: str, seconds: float) -> None:
        if event == "loaded":
            self.console.log(f"dataset {name} loaded in {seconds:.2f} s")
            self.bar.update(self.task, description="compiling")
            self.bar.start()
            return
        task = self.bar.tasks[0]
        if task.completed + 1 > task.total:  # a tuner's grid grew
            self.bar.update(self.task, total=task.total + 2)
        self.bar.advance(self.task)
        self.console.log(f"{name}: {event} in {seconds:.2f} s")
        self.bar.update(self.task, description=f"training {name}" if event == "compiled" else "compiling the next")

    def stop(self) -> None:
        if self.bar.live.is_started:  # rich's stop prints a blank line off a terminal, before a one-line error too
            self.bar.stop()


def summary_table(console, results: dict, seeds: int) -> None:
    from rich.table import Table

    dataset = results["dataset"]
    table = Table(title=f"{dataset['name']} ({dataset['source']}): {seeds} seeds, {results['order']} order")
    # a run's name is never cut: its column keeps the longest name's width, the numbers wrap
    table.add_column("run", no_wrap=True, min_width=max((len(run["name"]) for run in results["runs"]), default=3))
    for column in ("val loss ± 95% CI", "val acc", "compile s", "seed-epochs/s", "status"):
        table.add_column(column)
    for run in results["runs"]:
        final, timing = run["final"], run["timing"]
        accuracy = final.get("val_acc_mean")  # a workload without an accuracy metric has none
        table.add_row(
            run["name"],
            f"{final['val_loss_mean']:.4f} ± {final['val_loss_ci95']:.4f}",
            "—" if accuracy is None else f"{accuracy:.3f}",
            f"{timing['compile_s']:.2f}",
            f"{timing['seed_epochs_per_s']:.1f}",
            run["status"],
        )
    console.print(table)


# --- `optax-lab list`: one registry three ways (a terminal table, tab-separated lines for pipes,
# JSON for scripts), all from the same rows so that they cannot disagree.


def _text(value) -> str:
    """A cell as one line: tabs and newlines would split a tab-separated row."""
    return " ".join(str(value).split())


def _json_safe(value):
    """A value as JSON has it: numbers, text, booleans, null, lists and objects as such;
    non-finite floats, dtypes and functions as their Python repr."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, str)) or (isinstance(value, float) and math.isfinite(value)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return repr(value)


def _optimizer_entries(yours: Sequence[str] = ()) -> list:
    """The registry's entries, those other packages registered (entry points), and `yours`
    (`module:function` names), each loaded and checked."""
    from optax_lab import optimizers

    names = [*optimizers.REGISTRY, *optimizers.entry_point_names(), *yours]  # the registry in its own order
    return [optimizers.get(name) for name in dict.fromkeys(names)]


def _optimizer_rows(yours: Sequence[str] = ()) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    header = ("name", "default hyperparameters", "update() also needs", "tags", "note")
    return header, [
        (
            entry.name,
            ", ".join(f"{k}={v}" for k, v in entry.defaults.items()),
            ", ".join(sorted(entry.needs)),
            ", ".join(sorted(entry.tags)),
            entry.note,
        )
        for entry in _optimizer_entries(yours)
    ]


def _workload_rows(yours: Sequence[str] = ()) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    from optax_lab import workloads

    header = ("name", "what", "epochs, batch", "target", "reference and defaults")
    rows = []
    for workload in workloads.REGISTRY.values():
        target = workload.target
        batches = ",".join("full" if batch is None else str(batch) for batch in workload.batches)
        defaults = "; ".join(
            f"{name}: " + ", ".join(f"{k}={v}" for k, v in values.items())
            for name, values in workload.optimizer_defaults.items()
        )
        rows.append(
            (
                workload.name,
                workload.description,
                f"{workload.epochs}, {batches}",
                f"{target.metric} {'≤' if target.direction == 'min' else '≥'} {target.value:g}",
                workload.reference + (f" ({defaults})" if defaults else ""),
            )
        )
    return header, rows


_ROWS = {"optimizers": _optimizer_rows, "workloads": _workload_rows}
# Per registry, each column after the name: the width below which it is unreadable, the order
# in which a narrow terminal drops it (first dropped first), and the most it may take (short
# words like tags wrap early, so the defaults keep `learning_rate=0.0005619` on one line).
_TERMINAL_COLUMNS = {
    "optimizers": ((24, 4, None), (10, 1, 14), (12, 3, 16), (20, 2, None)),
    "workloads": ((20, 3, None), (8, 4, 13), (12, 5, 19), (16, 1, None)),
}


def registry_table(what: str, width: int | None = None, yours: Sequence[str] = ()):
    """The registry `what` as a rich table `width` columns wide (None: as wide as it likes). A
    name is never cut or folded: its column keeps the longest name's width, the other columns
    wrap, and at a narrow width the least needed ones are left out (the title says which)."""
    from rich.table import Table

    header, rows = _ROWS[what](yours)
    name_width = max(len(row[0]) for row in rows)
    shown = list(range(1, len(header)))
    for index in sorted(shown, key=lambda i: _TERMINAL_COLUMNS[what][i - 1][1]):
        needed = name_width + sum(_TERMINAL_COLUMNS[what][i - 1][0] for i in shown) + 3 * (len(shown) + 1) + 1
        if width is None or needed <= width:
            break
        shown.remove(index)
    hidden = [header[i] for i in range(1, len(header)) if i not in shown]
    table = Table(
        title=what
        + (
            f" (not shown at this width: {', '.join(hidden)}; `optax-lab list {what} | cat` shows every column)"
            if hidden
            else ""
        )
    )
    table.add_column(header[0], no_wrap=True, min_width=name_width)
    for i in shown:
        # a long value folds onto the next line, never cut
        table.add_column(header[i], overflow="fold", max_width=_TERMINAL_COLUMNS[what][i - 1][2])
    for row in rows:
        table.add_row(row[0], *(row[i] for i in shown))
    return table


def registry_lines(what: str, yours: Sequence[str] = ()) -> list[str]:
    """The registry `what` for pipes: a header, then one entry per line, columns tab-separated."""
    header, rows = _ROWS[what](yours)
    return ["\t".join(map(_text, row)) for row in (header, *rows)]


def registry_json(what: str, yours: Sequence[str] = ()) -> list[dict]:
    """The registry `what` for scripts. An optimizer: its name, what it runs, tags, what update()
    needs, its main scale, note, and every hyperparameter with its default (the registry's, else
    the constructor's), its domain and whether a program takes it as an input (traced). A
    workload: its results.json record (target, epochs, batches, reference, defaults...)."""
    if what == "workloads":
        from optax_lab import workloads

        return [_json_safe(workload.record()) for workload in workloads.REGISTRY.values()]
    from optax_lab.optimizers import Kind

    def hyperparameter(entry, name: str) -> dict:
        domain, defaults = entry.domain(name), entry.all_defaults
        return {
            "name": name,
            "default": _json_safe(defaults.get(name)),
            "has_default": name in defaults,
            "registry_default": name in entry.defaults,
            "domain": domain.record(),
            "traced": domain.kind is Kind.REAL and name not in entry.static,
        }

    return [
        {
            "name": entry.name,
            "optax": entry.optax_name,
            "tags": sorted(entry.tags),
            "needs": sorted(entry.needs),
            "main": entry.main or None,
            "no_main": entry.no_main or None,
            "note": entry.note,
            "hyperparameters": [hyperparameter(entry, name) for name in entry.accepted],
        }
        for entry in _optimizer_entries(yours)
    ]


def optimizers_table(width: int | None = None):
    """`optax-lab list` on a terminal: the optimizer registry."""
    return registry_table("optimizers", width)


def workloads_table(width: int | None = None):
    """`optax-lab list workloads` on a terminal: the workload registry."""
    return registry_table("workloads", width)
