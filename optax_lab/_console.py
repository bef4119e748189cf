"""What `optax-lab` shows on the terminal while it works: a progress bar over the programs and
the closing summary table (rich, imported lazily so that `--help` stays fast)."""

from __future__ import annotations

__all__ = ["ProgressBar", "optimizers_table", "summary_table", "workloads_table"]


class ProgressBar:
    """A rich progress bar over the programs (compile, then train each) and a log line per event.
    Started once the data is loaded: the data stage may show its own bars (download, tokenising)
    and rich allows one live display at a time."""

    def __init__(self, console, programs: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = console
        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=console, transient=True)
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
        self.bar.stop()


def summary_table(console, results: dict, seeds: int) -> None:
    from rich.table import Table

    dataset = results["dataset"]
    table = Table("run", "val loss ± 95% CI", "val acc", "compile s", "seed-epochs/s", "status",
                  title=f"{dataset['name']} ({dataset['source']}): {seeds} seeds, {results['order']} order")
    for run in results["runs"]:
        final, timing = run["final"], run["timing"]
        accuracy = final.get("val_acc_mean")  # a workload without an accuracy metric has none
        table.add_row(run["name"], f"{final['val_loss_mean']:.4f} ± {final['val_loss_ci95']:.4f}",
                      "—" if accuracy is None else f"{accuracy:.3f}", f"{timing['compile_s']:.2f}",
                      f"{timing['seed_epochs_per_s']:.1f}", run["status"])
    console.print(table)


def optimizers_table():
    """`optax-lab list`: the optimizer registry."""
    from rich.table import Table

    from optax_lab.optimizers import REGISTRY

    table = Table("name", "default hyperparameters", "update() also needs", "tags", "note", title="optimizers")
    for entry in REGISTRY.values():
        defaults = ", ".join(f"{k}={v}" for k, v in entry.defaults.items())
        table.add_row(entry.name, defaults, ", ".join(sorted(entry.needs)), ", ".join(sorted(entry.tags)), entry.note)
    return table


def workloads_table():
    """`optax-lab list workloads`: the workload registry."""
    from rich.table import Table

    from optax_lab import workloads

    table = Table("name", "what", "epochs, batch", "target", "reference and defaults", title="workloads")
    for workload in workloads.REGISTRY.values():
        target = workload.target
        batches = ",".join("full" if batch is None else str(batch) for batch in workload.batches)
        defaults = "; ".join(f"{name}: " + ", ".join(f"{k}={v}" for k, v in values.items())
                             for name, values in workload.optimizer_defaults.items())
        table.add_row(workload.name, workload.description, f"{workload.epochs}, {batches}",
                      f"{target.metric} {'≤' if target.direction == 'min' else '≥'} {target.value:g}",
                      workload.reference + (f" ({defaults})" if defaults else ""))
    return table
