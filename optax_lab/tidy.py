"""A results dict as one tidy table: one row per run x seed x epoch, for pandas, a CSV or a
Parquet file (`optax-lab export`, `Results.frame()`).

Columns, in order: workload, optimizer, run (its name), one column per hyperparameter that any run
sets (NaN where a run's optimizer has none; a value that is not a number, string or bool, such as
a tuple, is its JSON text), batch (the batch size as text, or "full"), seed, epoch (from 1), every
per-epoch metric of the histories (train_loss, val_loss, val_acc, distinct_units, ...; NaN where a
run lacks it or a seed diverged), status (the run's: "ok" or "diverged") and diverged (this seed's).
Per-layer curves ([seeds][epochs][layers], e.g. grad_norms) and values at initialisation (init_*)
have no epoch row: they stay in the results dict.

Needs pandas (pyarrow too for Parquet), the `analysis` extra; without it, one UsageError line.
Imports no JAX.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from optax_lab.config import batch_label
from optax_lab.errors import UsageError
from optax_lab.files import write_files
from optax_lab.schema import check_results, diverged_seeds, status_of, to_jsonable, upgrade

if TYPE_CHECKING:
    import pandas

__all__ = ["EXTRA", "FORMATS", "format_for", "frame", "require", "write_table"]

EXTRA = "pip install 'optax_lab[analysis]'"
FORMATS = ("csv", "parquet")
AT_INIT = "init_"  # the histories' values at initialisation: one per seed, no epochs
_FIRST, _LAST = ("workload", "optimizer", "run"), ("status", "diverged")
_RUN_AXES = ("batch", "seed", "epoch")


def require(what: str, *modules: str) -> None:
    """One UsageError line naming the extra when a module `what` needs is not installed."""
    for module in modules:
        try:
            __import__(module)
        except ImportError:
            raise UsageError(f"{what} needs {' and '.join(modules)} (the analysis extra): {EXTRA}") from None


def frame(results: Mapping[str, Any]) -> pandas.DataFrame:
    """The tidy table of `results` (a results dict, or a results.json as read; any version)."""
    require("a results table", "pandas")
    import pandas

    runs = upgrade(_checked(results))["runs"]
    metrics = _metric_names(runs)
    hyperparams = _hyperparam_columns(runs, reserved={*_FIRST, *_RUN_AXES, *metrics, *_LAST})
    columns: dict[str, list] = {name: [] for name in (*_FIRST, *hyperparams.values(), *_RUN_AXES, *metrics, *_LAST)}
    for run in runs:
        for name, values in _run_columns(run, metrics, hyperparams).items():
            columns[name].append(values)
    table = {name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in columns.items()}
    return pandas.DataFrame(table).infer_objects()  # the repeated columns' numbers and text get their dtypes


def format_for(path: str | Path | None, given: str | None) -> str:
    """The table format: `given`, else the suffix of `path` when it names one, else csv."""
    if given is not None:
        if given not in FORMATS:
            raise UsageError(f"--format {given!r} is not a table format: choose one of {', '.join(FORMATS)}")
        return given
    suffix = Path(path).suffix.lstrip(".") if path is not None else ""
    return suffix if suffix in FORMATS else FORMATS[0]


def write_table(table: pandas.DataFrame, path: str | Path, fmt: str) -> Path:
    """`table` written whole to `path` as csv or parquet (atomically: never half a file)."""
    if fmt not in FORMATS:
        raise UsageError(f"table format {fmt!r} is unknown: choose one of {', '.join(FORMATS)}")
    path = Path(path).expanduser()
    if path.is_dir():
        raise UsageError(f"--out {path} is a directory: name the file, e.g. --out {path / ('results.' + fmt)}")
    if fmt == "parquet":
        require("a Parquet table", "pandas", "pyarrow")
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        content: bytes | str = buffer.getvalue()
    else:
        content = table.to_csv(index=False)
    write_files({path: content}, fix="choose a writable --out FILE")
    return path


def _checked(results: Mapping[str, Any]) -> dict[str, Any]:
    plain = to_jsonable(results)  # NaN/inf -> None and enums -> text, as a saved file holds them
    check_results(plain)
    return plain


def _metric_names(runs: list[dict[str, Any]]) -> list[str]:
    """The per-epoch curves ([seeds][epochs] of numbers) of any run, the losses first."""
    names: dict[str, None] = {}
    for run in runs:
        for key, rows in run["history"].items():
            if not key.startswith(AT_INIT) and _per_epoch(rows):
                names[key] = None
    return sorted(names, key=lambda name: (not name.endswith("_loss"), not name.startswith(("train_", "val_")), name))


def _per_epoch(rows: Any) -> bool:
    return isinstance(rows, list) and all(
        isinstance(row, list) and all(not isinstance(value, list) for value in row) for row in rows
    )


def _hyperparam_columns(runs: list[dict[str, Any]], reserved: set[str]) -> dict[str, str]:
    """Each hyperparameter any run sets -> its column name (itself, unless another column has it)."""
    names = dict.fromkeys(name for run in runs for name in run.get("hyperparams", {}))
    return {name: f"hyperparam_{name}" if name in reserved else name for name in names}


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)


def _run_columns(run: dict[str, Any], metrics: list[str], hyperparams: dict[str, str]) -> dict[str, np.ndarray]:
    """One run's rows, seed-major: [seeds x epochs] values of every column."""
    history = run["history"]
    curves = {key: history[key] for key in metrics if key in history}
    seeds = list(run.get("seeds") or range(max((len(rows) for rows in curves.values()), default=0)))
    epochs = max((len(row) for rows in curves.values() for row in rows), default=0)
    rows = len(seeds) * epochs

    def repeated(value: Any) -> np.ndarray:
        filled = np.empty(rows, dtype=object)
        filled[:] = [value] * rows
        return filled

    columns = {"workload": repeated(run["workload"]), "optimizer": repeated(run["optimizer"])}
    columns["run"] = repeated(run["name"])
    for name, column in hyperparams.items():
        columns[column] = repeated(_cell(run["hyperparams"].get(name, math.nan)))
    columns["batch"] = repeated("full" if run.get("full_batch") else batch_label(run.get("batch_size")))
    columns["seed"] = np.repeat(np.asarray(seeds, dtype=np.int64), epochs)
    columns["epoch"] = np.tile(np.arange(1, epochs + 1, dtype=np.int64), len(seeds))
    for key in metrics:
        columns[key] = _curve(curves.get(key), len(seeds), epochs).ravel()
    diverged = diverged_seeds(history)
    columns["status"] = repeated(str(run.get("status") or status_of(diverged)))
    columns["diverged"] = np.repeat(diverged if len(diverged) == len(seeds) else np.zeros(len(seeds), bool), epochs)
    return columns


def _curve(rows: list[list] | None, seeds: int, epochs: int) -> np.ndarray:
    """[seeds, epochs] float64: None (a saved NaN) and what a ragged or missing row lacks are NaN."""
    values_SxE = np.full((seeds, epochs), np.nan)
    for seed, row in enumerate((rows or [])[:seeds]):
        values_SxE[seed, : len(row)] = [math.nan if value is None else value for value in row]
    return values_SxE
