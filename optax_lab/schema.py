"""The results contract, once: what `results.json` holds, how a run's status is decided, the
checks a saved file must pass before it is rendered, and `upgrade`, which fills in what a file
written by an earlier version lacks (and `upgrade_tuned`, the same for a tuned.json).

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
from optax_lab.grids import Criterion

__all__ = [
    "FIX_RESULTS",
    "SCHEMA",
    "UNNAMED_WORKLOAD",
    "LessonKind",
    "Status",
    "check_results",
    "diverged_seeds",
    "status_of",
    "to_jsonable",
    "upgrade",
    "upgrade_tuned",
]

SCHEMA = 1  # results.json's version; a reader refuses any other
FIX_RESULTS = "pass the results.json written by optax-lab run, or run again"
# The per-seed curves the divergence rule reads, [seeds, epochs] each.
WATCHED_LOSSES = ("train_loss", "val_loss")
# What a lesson, run or tuned.json that names no workload trained on: the lesson's MLP on IMDB, the
# only workload such a file can hold. A constant of its own, not config's DEFAULT_WORKLOAD: what
# those files hold stays the same whatever the default becomes.
UNNAMED_WORKLOAD = "imdb-mlp"


class Status(enum.StrEnum):
    """How a run ended. A diverged run is an outcome to report, never an exception."""

    OK = "ok"
    DIVERGED = "diverged"  # some seed's training or validation loss stopped being finite


class LessonKind(enum.StrEnum):
    """How the report discusses a lesson: which section renders it."""

    COMPARE = "compare"  # a few runs side by side: table, generated summary, curves
    RANKING = "ranking"  # every registry optimizer at one batch mode, ranked (batch modes side by side)
    SWEEP = "sweep"  # optimizers at a grid of hyperparameter points: sensitivity and best points
    VANISHING_GRADIENTS = "vanishing-gradients"
    INITIALISATION = "initialisation"
    OVERFITTING = "overfitting"


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
        raise UsageError(
            f"{source} has schema {results['schema']!r}, this optax-lab reads schema {SCHEMA}: {FIX_RESULTS}"
        )
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
                raise UsageError(
                    f"{source}: lesson {lesson.get('name')!r} names run {run_name!r}, "
                    f"which is not among the runs: {FIX_RESULTS}"
                )


# ---------------------------------------------------------------------------------------------
# Files of earlier versions: what they lack, filled in the way this version writes it


def upgrade(results: Mapping[str, Any]) -> dict[str, Any]:
    """`results` (a results.json of any version that `check_results` passes) with every field this
    version writes, so that readers index fields directly and none asks how old a file is. A new
    dict: `results` is never mutated (values no rule touches, such as histories, are shared with
    it, not copied). Upgrading an upgraded dict changes nothing. The rules, for what a file lacks:

    - a lesson's "kind": one this version does not know, or none, is "compare"; beside a top-level
      "ranking" record, "compare" or none is "ranking" (files whose kinds have no "ranking" mark a
      ranking that way);
    - a lesson's or run's "workload": none (or empty) is `UNNAMED_WORKLOAD`;
    - "workloads": none is {}; `UNNAMED_WORKLOAD`, when lessons run on it and it has no record,
      gets the fields the report reads of it: "metrics" ["acc"] (a binary classifier) and
      "optimum" None;
    - a sweep lesson's "criterion": one this version does not know, or none, is "final-val-loss"
      (the one every version records);
    - a ranking or sweep lesson's "target": none is a val-loss target (minimised) at the lesson's
      "target_val_loss", else at the "ranking" record's; neither: none;
    - a lesson's "num_words": the dataset's; "train_examples": None (every review); "epochs": its
      first run's;
    - a run's "target" (its time to target): none is {} (not recorded); one without "metric" is
      on the val loss (minimised, "value" its "val_loss"), "epochs_per_seed" None;
    - a run's "model": the results' "model" (every run trained it); "num_words" and "n_train":
      None (not recorded); "point": {} (the defaults); its timing's "program": None;
    - "programs": none is {} (not recorded); a program's "devices": 1, "memory_bound": False,
      "replicas_per_call" and "memory_per_device": None, "overlap_s": None;
    - "device": "process_count" 1, "local_device_count" its "device_count" (one process);
    - a tune's "tuning" record: "search" (the ruleset that chose stage 1's points) "grid", the only
      one a tune without it could have used.
    """
    ranking = results.get("ranking") or {}
    upgraded = dict(results)
    upgraded["runs"] = [_upgraded_run(run, results) for run in results.get("runs", ())]
    epochs = {run.get("name"): run.get("epochs") for run in upgraded["runs"]}
    upgraded["lessons"] = [
        _upgraded_lesson(lesson, ranking, results.get("dataset") or {}, epochs) for lesson in results.get("lessons", ())
    ]
    workloads = {name: dict(record) for name, record in (results.get("workloads") or {}).items()}
    if any(lesson["workload"] == UNNAMED_WORKLOAD for lesson in upgraded["lessons"]):
        workloads.setdefault(UNNAMED_WORKLOAD, {"name": UNNAMED_WORKLOAD, "metrics": ["acc"], "optimum": None})
    upgraded["workloads"] = workloads
    upgraded["programs"] = {
        name: _filled(
            program,
            {
                "devices": 1,
                "replicas_per_call": None,
                "memory_per_device": None,
                "memory_bound": False,
                "overlap_s": None,
            },
        )
        for name, program in (results.get("programs") or {}).items()
    }
    device = results.get("device") or {}
    upgraded["device"] = _filled(device, {"process_count": 1, "local_device_count": device.get("device_count")})
    if isinstance(results.get("tuning"), Mapping):
        upgraded["tuning"] = _filled(results["tuning"], {"search": "grid"})
    return upgraded


def upgrade_tuned(record: Mapping[str, Any]) -> dict[str, Any]:
    """A tuned.json's record (an object of its kind) with every field this version writes: one
    without "workload" was tuned on `UNNAMED_WORKLOAD`. A new dict; `record` is not mutated."""
    return _filled(record, {"workload": UNNAMED_WORKLOAD})


def _filled(record: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `record` with each of `defaults` that it lacks, after its own keys."""
    return {**record, **{key: value for key, value in defaults.items() if key not in record}}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _lesson_kind(kind: Any, ranked: bool) -> LessonKind:
    if ranked and kind in (None, LessonKind.COMPARE):
        return LessonKind.RANKING
    try:
        return LessonKind(kind)
    except ValueError:  # none, or a kind of a newer version's: the generic section
        return LessonKind.COMPARE


def _upgraded_lesson(
    lesson: Mapping[str, Any], ranking: Mapping[str, Any], dataset: Mapping[str, Any], epochs: Mapping[str, Any]
) -> dict[str, Any]:
    kind = _lesson_kind(lesson.get("kind"), bool(ranking))
    upgraded = _filled(
        lesson,
        {
            "num_words": dataset.get("num_words"),
            "train_examples": None,
            "epochs": next((epochs.get(name) for name in lesson.get("runs", ())), None),
        },
    )
    upgraded["kind"] = kind.value
    upgraded["workload"] = lesson.get("workload") or UNNAMED_WORKLOAD
    if kind is LessonKind.SWEEP:
        try:
            upgraded["criterion"] = Criterion(lesson.get("criterion") or Criterion.FINAL_VAL_LOSS).value
        except ValueError:
            upgraded["criterion"] = Criterion.FINAL_VAL_LOSS.value
    if kind in (LessonKind.RANKING, LessonKind.SWEEP) and not isinstance(lesson.get("target"), Mapping):
        value = next((v for v in (lesson.get("target_val_loss"), ranking.get("target_val_loss")) if _finite(v)), None)
        if value is not None:
            upgraded["target"] = {"metric": "val_loss", "value": value, "direction": "min"}
    return upgraded


def _upgraded_run(run: Mapping[str, Any], results: Mapping[str, Any]) -> dict[str, Any]:
    upgraded = _filled(run, {"model": results.get("model"), "num_words": None, "n_train": None, "point": {}})
    upgraded["workload"] = run.get("workload") or UNNAMED_WORKLOAD
    target = dict(run.get("target") or {})
    if target and "metric" not in target:
        target = _filled(
            target, {"metric": "val_loss", "value": target.get("val_loss"), "direction": "min", "epochs_per_seed": None}
        )
    upgraded["target"] = target
    if isinstance(run.get("timing"), Mapping):
        upgraded["timing"] = _filled(run["timing"], {"program": None})
    return upgraded
