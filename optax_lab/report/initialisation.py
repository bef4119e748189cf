"""The initialisation section (lessons of kind "initialisation"): one run per kernel initialiser
under one optimizer. The numbers: the final validation loss, how many of the first hidden layer's
units still differ after each epoch (the symmetry problem leaves 1), and each initialiser's weight
scale from its formula and the layer's fans, which is what sets the frameworks' defaults (Keras,
PyTorch, Flax) apart. Its plot is in `initialisation_plot`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from optax_lab.report.formatting import (
    DASH,
    fmt,
    lesson_title,
    mean_ci,
    names_text,
    png_name,
    range_text,
    section_head,
    short_names,
    status_text,
    table_row,
)
from optax_lab.report.plotting import BAND
from optax_lab.report.records import (
    CHANCE_LOSS,
    CHANCE_TOLERANCE,
    LessonRuns,
    above_chance,
    at_chance,
    below_chance,
    final_stat,
    finite,
    healthy_history,
    healthy_seeds,
    history,
    seed_count,
    val_loss,
)

MAX_LISTED = 3  # name at most this many runs in a clause; beyond that, count them


class InitScale(NamedTuple):
    """An initialiser's distribution in words, and its weights' standard deviation."""

    distribution: str
    std: Callable[[int, int], float]  # (fan_in, fan_out) -> std
    by_fans: bool = True  # whether the std depends on the layer (else the distribution says it all)


# As model.KERNEL_INITS draws them (Flax's variance scaling corrects its truncated normals to the
# named variance). "zeros" and "constant" have no spread at all.
KERNEL_INIT_SCALES: dict[str, InitScale] = {
    "zeros": InitScale("all 0", lambda fan_in, fan_out: 0.0, by_fans=False),
    "constant": InitScale("all 0.01", lambda fan_in, fan_out: 0.0, by_fans=False),
    "normal_0.01": InitScale("N(0, 0.01²)", lambda fan_in, fan_out: 0.01, by_fans=False),
    "normal_1": InitScale("N(0, 1)", lambda fan_in, fan_out: 1.0, by_fans=False),
    "glorot_uniform": InitScale("U(±√(6/(fan_in+fan_out)))", lambda fan_in, fan_out: math.sqrt(2 / (fan_in + fan_out))),
    "glorot_normal": InitScale(
        "N(0, 2/(fan_in+fan_out)), truncated", lambda fan_in, fan_out: math.sqrt(2 / (fan_in + fan_out))
    ),
    "he_uniform": InitScale("U(±√(6/fan_in))", lambda fan_in, fan_out: math.sqrt(2 / fan_in)),
    "he_normal": InitScale("N(0, 2/fan_in), truncated", lambda fan_in, fan_out: math.sqrt(2 / fan_in)),
    "lecun_uniform": InitScale("U(±√(3/fan_in))", lambda fan_in, fan_out: math.sqrt(1 / fan_in)),
    "lecun_normal": InitScale("N(0, 1/fan_in), truncated", lambda fan_in, fan_out: math.sqrt(1 / fan_in)),
    # Kaiming uniform with a=√5: bound √(6/((1+a²)·fan_in)) = 1/√fan_in, so std 1/√(3·fan_in)
    "torch_default": InitScale("U(±1/√fan_in)", lambda fan_in, fan_out: math.sqrt(1 / (3 * fan_in))),
}
BIAS_INIT_TEXT = {"zeros": "0", "torch_default": "U(±1/√fan_in)"}
# Each framework's default for a Dense/Linear layer: (framework, kernel init, bias init, its name there).
FRAMEWORK_DEFAULTS = (
    ("Keras", "glorot_uniform", "zeros", "Glorot uniform"),
    ("PyTorch", "torch_default", "torch_default", "Kaiming uniform a=√5"),
    ("Flax", "lecun_normal", "zeros", "LeCun normal"),
)


def layer_fans(run: Mapping, results: Mapping | None = None) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of the first hidden layer and, if there is one, the second."""
    widths = list((run.get("model") or {}).get("widths") or [])
    inputs = run.get("num_words") or ((results or {}).get("dataset") or {}).get("num_words")
    if not widths or not inputs:
        return []
    return list(zip([inputs, *widths], widths, strict=False))[:2]


def init_stds(run: Mapping, results: Mapping | None = None) -> list[float]:
    """The kernel std of the first (and second) hidden layer, from the initialiser's formula."""
    scale = KERNEL_INIT_SCALES.get((run.get("model") or {}).get("kernel_init"))
    return [scale.std(fan_in, fan_out) for fan_in, fan_out in layer_fans(run, results)] if scale else []


def kernel_text(run: Mapping, results: Mapping | None) -> str:
    """`U(±√(6/(fan_in+fan_out))), std 0.123`: the distribution, and the first layer's std it gives."""
    init = (run.get("model") or {}).get("kernel_init")
    scale = KERNEL_INIT_SCALES.get(init)
    if scale is None:
        return str(init or DASH)
    stds = init_stds(run, results)
    return scale.distribution + (f", std {stds[0]:.3g}" if stds and scale.by_fans else "")


def units_per_epoch(run: Mapping) -> np.ndarray:
    """[healthy seeds, epochs] how many first-layer units differ from each other after each epoch."""
    return healthy_history(run, "distinct_units")


def first_width(run: Mapping) -> int | None:
    widths = (run.get("model") or {}).get("widths") or []
    return widths[0] if widths else None


def symmetric_runs(runs: list[Mapping]) -> list[Mapping]:
    """Runs whose first layer has 1 distinct unit after every epoch, on every healthy seed."""
    return [run for run in runs if units_per_epoch(run).size and (units_per_epoch(run) == 1).all()]


def units_text(run: Mapping) -> str:
    """`1 → 1 → 1`: distinct units at initialisation (when recorded), after the first and after
    the last epoch (each min–max over seeds)."""
    units = units_per_epoch(run)
    if not units.size:
        return DASH
    first, last = range_text(units[:, 0]), range_text(units[:, -1])
    text = first if units.shape[1] == 1 else f"{first} → {last}"
    at_init = history(run, "init_distinct_units")
    healthy = healthy_seeds(run)
    if at_init.ndim == 1 and len(at_init) == len(healthy) and healthy.any():
        text = f"{range_text(at_init[healthy])} → {text}"
    return text


def framework_runs(runs: list[Mapping]) -> list[tuple[tuple[str, str, str, str], Mapping]]:
    """(FRAMEWORK_DEFAULTS entry, its run) for each framework whose default the lesson ran."""
    found = []
    for default in FRAMEWORK_DEFAULTS:
        _, kernel, bias, _ = default
        run = next(
            (
                run
                for run in runs
                if (run.get("model") or {}).get("kernel_init") == kernel
                and (run.get("model") or {}).get("bias_init", "zeros") == bias
            ),
            None,
        )
        if run is not None:
            found.append((default, run))
    return found


# ---------------------------------------------------------------------------------------------
# Text


def summarize_initialisation(runs: list[Mapping], results: Mapping | None = None) -> str:
    """Three sentences read off the numbers: which initialisers leave the first layer's units
    identical (the symmetry problem) and what that costs; which learn best and which stay at or
    above chance; Keras' default vs PyTorch's, their scales and whether their CIs separate."""
    names = short_names(runs)
    sentences = [_symmetry_sentence(runs, names), _outcome_sentence(runs, names), _framework_sentence(runs, results)]
    return " ".join(s for s in sentences if s)


def _verdict(loss: float) -> str:
    return (
        "at chance"
        if at_chance(loss)
        else "worse than chance"
        if above_chance(loss)
        else "better than chance"
        if below_chance(loss)
        else "no finite loss"
    )


def _symmetry_sentence(runs: list[Mapping], names: dict[str, str]) -> str:
    recorded = [run for run in runs if units_per_epoch(run).size]
    if not recorded:
        return ""
    width = first_width(recorded[0]) or "?"
    stuck = symmetric_runs(recorded)
    if not stuck:
        fewest = min(recorded, key=lambda run: units_per_epoch(run)[:, -1].min())
        return (
            f"No initialiser leaves the first layer's units identical: after the last epoch the fewest distinct "
            f"units, {range_text(units_per_epoch(fewest)[:, -1])} of {width}, are {names[fewest['name']]}'s."
        )
    one = len(stuck) == 1
    outcomes = [f"{names[run['name']]} {fmt(val_loss(run).mean, 4)}, {_verdict(val_loss(run).mean)}" for run in stuck]
    return (
        f"{names_text([names[run['name']] for run in stuck])} keep{'s' if one else ''} every first-layer unit "
        f"identical: 1 distinct unit of {width} after every epoch on every seed (units that start equal get equal "
        f"gradients, so they stay equal), and the layer works as a single unit (final val loss: "
        f"{'; '.join(outcomes)})."
    )


def _listed(names: list[str], noun: str) -> str:
    """The names, or how many when there are too many to read: `4 initialisers`."""
    return names_text(names) if len(names) <= MAX_LISTED else f"{len(names)} {noun}"


def _outcome_sentence(runs: list[Mapping], names: dict[str, str]) -> str:
    scored = sorted((run for run in runs if finite(val_loss(run).mean)), key=lambda run: val_loss(run).mean)
    if not scored:
        return "No initialiser ends with a finite validation loss: every seed diverged."
    learners = [run for run in scored if below_chance(val_loss(run).mean)]
    if learners:
        best = learners[0]
        tied = [
            names[run["name"]]
            for run in learners[1:]
            if val_loss(run).has_ci and val_loss(best).has_ci and not val_loss(best).clears(val_loss(run))
        ]
        text = f"Lowest final validation loss: {names[best['name']]}, {mean_ci(val_loss(best))}"
        if tied:
            text += f" (its 95% CI overlaps those of {_listed(tied, 'others')})"
    else:
        epochs = max((run.get("epochs") or 0 for run in runs), default=0)
        text = (
            f"No initialiser gets below chance level (ln 2 = {CHANCE_LOSS:.4f}, ± {CHANCE_TOLERANCE}) in "
            f"{epochs} epochs"
        )
    clauses = []
    chance = [names[run["name"]] for run in runs if at_chance(val_loss(run).mean)]  # in the lesson's order
    worse = [f"{names[run['name']]} ({val_loss(run).mean:.4f})" for run in runs if above_chance(val_loss(run).mean)]
    if chance:
        clauses.append(
            f"{_listed(chance, 'initialisers') if learners else names_text(chance)} "
            f"{'ends' if len(chance) == 1 else 'end'} at chance"
        )
    if worse:
        clauses.append(f"{names_text(worse)} {'ends' if len(worse) == 1 else 'end'} worse than chance")
    diverged = [
        f"{names[run['name']]} on {run['diverged_seeds']} of {len(run.get('seeds') or ())} seeds"
        for run in runs
        if run.get("diverged_seeds")
    ]
    if diverged:
        clauses.append(f"diverged (NaN loss): {names_text(diverged)}")
    return text + ("; " + "; ".join(clauses) if clauses else "") + "."


def _framework_sentence(runs: list[Mapping], results: Mapping | None) -> str:
    found = {default[0]: (default, run) for default, run in framework_runs(runs)}
    if "Keras" not in found or "PyTorch" not in found:
        return ""
    (keras_default, keras), (torch_default, torch) = found["Keras"], found["PyTorch"]
    keras_loss, torch_loss = val_loss(keras), val_loss(torch)
    if not (finite(keras_loss.mean) and finite(torch_loss.mean)):
        return ""
    keras_std, torch_std = (next(iter(init_stds(run, results)), math.nan) for run in (keras, torch))
    scale = ""
    if finite(keras_std) and finite(torch_std) and min(keras_std, torch_std) > 0:
        relation = (
            f"{keras_std / torch_std:.1f}× smaller" if torch_std < keras_std else f"{torch_std / keras_std:.1f}× larger"
        )
        scale = f" with std {keras_std:.3g} and {torch_std:.3g} ({relation})"
    lower = "Keras'" if keras_loss.mean <= torch_loss.mean else "PyTorch's"
    gap = abs(keras_loss.mean - torch_loss.mean)
    if keras_loss.clears(torch_loss):
        verdict = f"{lower} is {gap:.4f} lower, more than the seed-to-seed noise (95% CIs apart)"
    elif keras_loss.has_ci and torch_loss.has_ci:
        verdict = f"the {gap:.4f} between them is within the seed-to-seed noise (95% CIs overlap)"
    else:
        verdict = f"{lower} is {gap:.4f} lower (too few seeds for a CI)"
    return (
        f"Keras' default, {keras_default[3]}, and PyTorch's, {torch_default[3]}, draw the first layer's weights"
        f"{scale or ' differently'}; the net ends at {mean_ci(keras_loss)} with Keras' and {mean_ci(torch_loss)} "
        f"with PyTorch's: {verdict}."
    )


def initialisation_section(lessons: Sequence[LessonRuns], results: Mapping) -> list[str]:
    ((lesson, runs),) = lessons  # one section per lesson
    width = next((first_width(run) for run in runs if first_width(run)), None)
    fans = next((layer_fans(run, results) for run in runs if layer_fans(run, results)), [])
    fan_text = f" ({fans[0][0]} → {fans[0][1]})" if fans else ""
    scored = [run for run in runs if finite(val_loss(run).mean)]
    best = min(scored, key=lambda run: val_loss(run).mean, default=None)
    at_init = any(history(run, "init_distinct_units").size for run in runs)
    stages = "init → epoch 1 → last" if at_init else "epoch 1 → last"
    lines = section_head(lesson, runs) + [
        summarize_initialisation(runs, results),
        "",
        f"| Run | First-layer kernels{fan_text} | Val loss ± 95% CI | Val acc % ± 95% CI | Best val loss ± 95% CI "
        f"| Distinct first-layer units of {width or '?'}: {stages} | Status |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        loss = mean_ci(val_loss(run))
        lines.append(
            table_row(
                [
                    run["name"],
                    kernel_text(run, results),
                    f"**{loss}**" if run is best else loss,
                    mean_ci(final_stat(run, "val_acc"), 2, 100),
                    mean_ci(final_stat(run, "best_val_loss")),
                    units_text(run),
                    status_text(run),
                ]
            )
        )
    lines += [
        "",
        f"*Mean ± 95% CI over the seeds that did not diverge, of {seed_count(runs)}; **bold**: lowest. "
        f"Chance level: ln 2 = {CHANCE_LOSS:.4f}. Distinct units: how many of the first hidden layer's units "
        f"differ from each other after the first and the last epoch (min–max over seeds); 1: they are all "
        f"one unit.*",
        "",
    ]
    lines += _framework_table(runs, results)
    lines += [
        f"![{lesson_title(lesson)}: validation loss and distinct units per epoch]({png_name(lesson, 'curves')})",
        "",
        f"*Left: validation loss per epoch; right: distinct first-layer units per epoch. One line per "
        f"initialiser: the mean over the seeds that did not diverge, bands the {BAND}. The loss axis stops a "
        f"little above chance level (dotted, ln 2); a run ending above it is named in its corner.*",
    ]
    return lines


def _framework_table(runs: list[Mapping], results: Mapping) -> list[str]:
    found = framework_runs(runs)
    if not found:
        return []
    fans = layer_fans(found[0][1], results)
    heads = [f"Layer {i + 1} ({fan_in} → {fan_out}) std" for i, (fan_in, fan_out) in enumerate(fans)]
    lines = [
        "**The frameworks' default Dense/Linear initialisation, side by side**",
        "",
        "| Framework | Default | Run | Kernels | "
        + "".join(f"{head} | " for head in heads)
        + "Biases | Val loss ± 95% CI | Best val loss ± 95% CI |",
        "|---|---|---|---|" + "---:|" * len(heads) + "---|---:|---:|",
    ]
    for (framework, _, _, default_name), run in found:
        model = run.get("model") or {}
        scale = KERNEL_INIT_SCALES.get(model.get("kernel_init"))
        stds = init_stds(run, results)
        lines.append(
            table_row(
                [
                    framework,
                    default_name,
                    run["name"],
                    scale.distribution if scale else model.get("kernel_init", DASH),
                    *(f"{std:.3g}" for std in stds),
                    *([DASH] * (len(heads) - len(stds))),
                    BIAS_INIT_TEXT.get(model.get("bias_init", "zeros"), model.get("bias_init")),
                    mean_ci(val_loss(run)),
                    mean_ci(final_stat(run, "best_val_loss")),
                ]
            )
        )
    return lines + [
        "",
        "*Std: the kernel's standard deviation, from the initialiser's formula and the layer's fan-in "
        "and fan-out. The same architecture starts at a different scale in each framework, so the same "
        "lesson gives different numbers in Keras, PyTorch and Flax.*",
        "",
    ]
