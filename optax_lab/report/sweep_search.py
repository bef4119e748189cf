"""What the sweep section says of a tune's sampled search (results' "tuning" record, whose "search"
names the ruleset): which ruleset produced the points, over which space, and AlgoPerf's time to
target, the median over studies of each study's fastest trial. A grid's section says nothing more
than it always did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optax_lab.report.formatting import DASH, count_text, names_text
from optax_lab.report.records import finite

__all__ = ["sampled_search", "search_sentence"]

_DRAWN = {
    "halton": "drawn from a scrambled Halton sequence, AlgoPerf's quasirandom search,",
    "random": "drawn uniformly at random,",
}


def sampled_search(lesson: Mapping, results: Mapping) -> Mapping[str, Any] | None:
    """The tuning record when `lesson` is stage 1 of a sampled search, else None (a grid, a plain
    --sweep, or an interrupted tune's report, which has no tuning record yet)."""
    tuning = results.get("tuning") or {}
    return tuning if lesson.get("stage") == 1 and tuning.get("search", "grid") != "grid" else None


def _range_text(name: str, spec: Mapping[str, Any]) -> str:
    if "decades" in spec:
        return f"{name} (log, {spec['decades']:g} decades around each default)"
    return f"{name} ({spec['scale']}, {spec['min']:g} to {spec['max']:g})"


def _target_text(target: Mapping[str, Any] | None) -> str:
    if not isinstance(target, Mapping) or not finite(target.get("value")):
        return "the workload's target"
    relation = "≤" if target.get("direction", "min") == "min" else "≥"
    return f"{target.get('metric', 'val_loss')} {relation} {target['value']:g}"


def _time_text(optimizer: str, record: Mapping[str, Any]) -> str:
    if finite(record.get("epochs")):
        steps = f" ({record['steps']:.0f} steps)" if finite(record.get("steps")) else ""
        return f"{optimizer} {count_text(record['epochs'])} epochs{steps}"
    studies = record.get("study_epochs") or []
    reached = sum(1 for epochs in studies if finite(epochs))
    return f"{optimizer} {DASH} (reached in {reached} of {len(studies)} studies)"


def search_sentence(lesson: Mapping, results: Mapping, batch: str) -> str:
    """Which ruleset chose the points, and each optimizer's time to target by its rule; "" for a grid."""
    tuning = sampled_search(lesson, results)
    if tuning is None:
        return ""
    space = tuning.get("space") or {}
    source = f"the space of {tuning['space_source']}" if tuning.get("space_source") else "the default space"
    seeds = ", ".join(str(seed) for seed in tuning.get("study_seeds") or ())
    text = (
        f"The points are AlgoPerf's external-tuning ruleset: {tuning['studies']} studies of {tuning['trials']} "
        f"trials, {_DRAWN.get(tuning['search'], tuning['search'])} one seed per study ({seeds}), over {source}: "
        f"{names_text([_range_text(name, spec) for name, spec in space.items()])}, each optimizer over those it "
        f"takes. An optimizer's trials of every study are replicas of one compiled program, each on the search "
        f"seeds, and its best point is its best trial of all studies by the criterion."
    )
    times = (tuning.get("time_to_target") or {}).get(batch) or {}
    if times:
        text += (
            f" Time to {_target_text(lesson.get('target'))}, the median over studies of each study's fastest trial "
            f"(a trial counts when every seed reaches it): "
            f"{names_text([_time_text(name, record) for name, record in times.items()])}."
        )
    return text
