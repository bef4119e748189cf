"""The results contract, once: what `results.json` holds, how a run's status is decided, and the
checks a saved file must pass before it is rendered.

The metrics stage writes records by these rules and the report stage reads them by the same ones;
neither spells them out again. Pure Python and numpy: reading results needs no JAX.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from optax_lab.errors import UsageError

__all__ = ["FIX_RESULTS", "SCHEMA", "Status", "check_results", "diverged_seeds", "status_of", "to_jsonable"]

SCHEMA = 1  # results.json's version; a reader refuses any other
FIX_RESULTS = "pass the results.json written by optax-lab run, or run again"
# The per-seed curves the divergence rule reads, [seeds, epochs] each.
WATCHED_LOSSES = ("train_loss", "val_loss")


class Status(enum.StrEnum):
    """How a run ended. A diverged run is an outcome to report, never an exception."""

    OK = "ok"
    DIVERGED = "diverged"  # some seed's training or validation loss stopped being finite


def diverged_seeds(history: Mapping[str, Any]) -> np.ndarray:
    """[S] bool: the seeds whose training or validation loss stopped being finite at some epoch
    (None in a saved file counts as not finite). Histories without those curves: none diverged."""
    flags = None
    for key in WATCHED_LOSSES:
        rows = history.get(key)
        if rows is None or not len(rows):
            continue
        if isinstance(rows, np.ndarray):
            bad = ~np.isfinite(rows).all(axis=tuple(range(1, rows.ndim)))
        else:  # a saved file's lists: None stands for NaN, and rows may be ragged
            bad = np.array([not all(v is not None and math.isfinite(v) for v in row) for row in rows])
        flags = bad if flags is None else flags | bad
    return np.zeros(0, bool) if flags is None else flags


def status_of(diverged: np.ndarray) -> Status:
    return Status.DIVERGED if np.any(diverged) else Status.OK


def to_jsonable(value: Any) -> Any:
    """A JSON-safe deep copy: NaN/inf -> None, tuples -> lists, numpy values and enums -> plain values."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def check_results(results: Any, source: str = "results") -> None:
    """Enough of the contract to render without a KeyError traceback; one-line UsageErrors."""
    if not isinstance(results, Mapping):
        raise UsageError(f"{source} is not a results object: {FIX_RESULTS}")
    if "schema" not in results:
        raise UsageError(f"{source} has no 'schema': it is not a results.json of optax-lab; {FIX_RESULTS}")
    if results["schema"] != SCHEMA:
        raise UsageError(f"{source} has schema {results['schema']!r}, this optax-lab reads schema {SCHEMA}: "
                         f"{FIX_RESULTS}")
    for key in ("preset", "dataset", "device", "lessons", "runs"):
        if key not in results:
            raise UsageError(f"{source} lacks {key!r}: {FIX_RESULTS}")
    for run in results["runs"]:
        for key in ("name", "optimizer", "history", "final"):
            if key not in run:
                raise UsageError(f"{source}: run {run.get('name', '?')!r} lacks {key!r}: {FIX_RESULTS}")
    names = {run["name"] for run in results["runs"]}
    for lesson in results["lessons"]:
        for run_name in lesson.get("runs", ()):
            if run_name not in names:
                raise UsageError(f"{source}: lesson {lesson.get('name')!r} names run {run_name!r}, "
                                 f"which is not among the runs: {FIX_RESULTS}")
