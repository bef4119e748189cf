"""The vanishing-gradients section (lessons of kind "vanishing-gradients"): runs `<family> depth <d>`
(activation, maybe residual) × depths, each recording the gradient norm of every Dense kernel at
initialisation and per epoch.

Gradient norms span orders of magnitude, so they are averaged as logarithms: the geometric mean
over seeds, with the 95% CI of the mean log10 turned back into an interval. The headline number
is log10(first hidden layer's norm ÷ output layer's), per seed: −3 means the first layer gets a
thousandth of the output layer's gradient. Its plots are in `vanishing_plot`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

from optax_lab.report.formatting import (
    DASH,
    lesson_title,
    mean_ci,
    names_text,
    png_name,
    section_head,
    signed,
    status_text,
    table_row,
)
from optax_lab.report.plotting import BAND
from optax_lab.report.records import (
    CHANCE_LOSS,
    CHANCE_TOLERANCE,
    LessonRuns,
    Stat,
    at_chance,
    finite,
    healthy_history,
    history,
    seed_count,
    val_loss,
)

VANISHED_ORDERS = 3.0  # a first layer more than 10^3 below the output layer's gradient has "vanished"
TINY_NORM = float(np.finfo(np.float32).tiny)  # a norm of exactly 0 is logged as this: "at least this small"


@dataclasses.dataclass(frozen=True)
class DepthRun:
    """One run of the grid and its gradient numbers; the norms' Stats are of log10(norm)."""

    run: Mapping
    family: str
    depth: int
    first_init: Stat  # log10 of the first hidden layer's gradient norm at initialisation
    output_init: Stat  # log10 of the output layer's
    log_ratio_init: Stat  # log10(first ÷ output), per seed, at initialisation
    log_ratio_end: Stat  # the same in the last epoch (its mini-batch steps' mean norms)
    val_loss: Stat


def log10(values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # NaN stays NaN
        return np.log10(np.where(values == 0, TINY_NORM, values))


def family_and_depth(run: Mapping) -> tuple[str, int]:
    """From the run's model (activation, +residual, +normalisation; depth), else from its name
    `<family> depth <d>`, else the run on its own with the depth its gradient norms imply."""
    model = run.get("model") or {}
    depth = model.get("depth") or len(model.get("widths") or ())
    if model.get("activation") and depth:
        family = model["activation"] + ("+residual" if model.get("residual") else "")
        if model.get("normalization") not in (None, "none"):
            family += f"+{model['normalization']}norm"
        return family, int(depth)
    match = re.fullmatch(r"(.+?) depth (\d+)", str(run["name"]))
    if match:
        return match[1], int(match[2])
    return str(run["name"]), max(history(run, "init_grad_norms").shape[-1] - 1, 0)


def init_norms(run: Mapping) -> np.ndarray:
    """[S, L] each layer's gradient norm at initialisation (whole training set), input → output."""
    norms = history(run, "init_grad_norms")
    return norms if norms.ndim == 2 and norms.shape[1] >= 2 else np.zeros((0, 2))


def end_norms(run: Mapping) -> np.ndarray:
    """[S, L] each layer's gradient norm in the last epoch (mean over its steps), healthy seeds."""
    norms = healthy_history(run, "grad_norms")
    return norms[:, -1, :] if norms.ndim == 3 and norms.shape[1] and norms.shape[2] >= 2 else np.zeros((0, 2))


def log_ratio(norms: np.ndarray) -> np.ndarray:
    """[S] log10(first layer ÷ output layer) from [S, L] norms."""
    logs = log10(norms)
    return logs[:, 0] - logs[:, -1]


def depth_run(run: Mapping) -> DepthRun:
    family, depth = family_and_depth(run)
    init = log10(init_norms(run))
    return DepthRun(
        run,
        family,
        depth,
        Stat.of(init[:, 0]),
        Stat.of(init[:, -1]),
        Stat.of(init[:, 0] - init[:, -1]),
        Stat.of(log_ratio(end_norms(run))),
        val_loss(run),
    )


def depth_grid(runs: list[Mapping]) -> dict[str, dict[int, DepthRun]]:
    """family -> depth -> DepthRun; families in the lesson's order, depths ascending."""
    grid: dict[str, dict[int, DepthRun]] = {}
    for run in runs:
        row = depth_run(run)
        grid.setdefault(row.family, {}).setdefault(row.depth, row)  # a repeated cell keeps its first run
    return {family: dict(sorted(cells.items())) for family, cells in grid.items()}


# ---------------------------------------------------------------------------------------------
# Text


def geometric(log_stat: Stat) -> str:
    """The geometric mean of a Stat of log10 values: `1.4e-10`, `0.57`, `22`."""
    return f"{10**log_stat.mean:.2g}" if finite(log_stat.mean) else DASH


def norm_text(log_stat: Stat) -> str:
    """The geometric mean and its 95% CI: `1.4e-10 [6.5e-11, 3e-10]`."""
    text = geometric(log_stat)
    if log_stat.has_ci:
        text += f" [{10 ** (log_stat.mean - log_stat.ci):.2g}, {10 ** (log_stat.mean + log_stat.ci):.2g}]"
    return text


def orders_text(log_ratio: float) -> str:
    """log10(first ÷ output) as words: `9.6 orders of magnitude below`."""
    if abs(log_ratio) < 0.05:
        return "level with"
    return f"{abs(log_ratio):.1f} orders of magnitude {'below' if log_ratio < 0 else 'above'}"


def slope(cells: dict[int, DepthRun]) -> float:
    """The least-squares change of log10(first ÷ output) at initialisation per added layer."""
    points = [(depth, row.log_ratio_init.mean) for depth, row in cells.items() if finite(row.log_ratio_init.mean)]
    if len({depth for depth, _ in points}) < 2:
        return math.nan
    depths, ratios = zip(*points, strict=False)
    return float(np.polyfit(depths, ratios, 1)[0])


def summarize_vanishing(runs: list[Mapping]) -> str:
    """Three sentences read off the numbers: how fast the first layer's share of the gradient
    falls with depth per family and where it ends at the deepest depth; how the final val loss
    moves with depth and which family ends at chance; whether training lifts the deepest first
    layers out of it."""
    grid = depth_grid(runs)
    sentences = [_init_sentence(grid), _loss_sentence(grid), _end_sentence(grid)]
    return " ".join(s for s in sentences if s) or "No run recorded gradient norms or a final loss."


def _deepest(grid: dict[str, dict[int, DepthRun]], ratio: str) -> tuple[int, dict[str, DepthRun]]:
    """The largest depth at which some family has a finite `ratio`, and those families' runs."""
    for depth in sorted({d for cells in grid.values() for d in cells}, reverse=True):
        rows = {
            family: cells[depth]
            for family, cells in grid.items()
            if depth in cells and finite(getattr(cells[depth], ratio).mean)
        }
        if rows:
            return depth, rows
    return 0, {}


def _init_sentence(grid: dict[str, dict[int, DepthRun]]) -> str:
    depth, rows = _deepest(grid, "log_ratio_init")
    if not rows:
        return "No run recorded its gradient norms at initialisation."
    low = min(rows.values(), key=lambda row: row.log_ratio_init.mean)
    high = max(rows.values(), key=lambda row: row.log_ratio_init.mean)
    deepest = (
        f"at depth {depth}, {low.family}'s first hidden layer gets the smallest share: its gradient norm is "
        f"{orders_text(low.log_ratio_init.mean)} its output layer's ({geometric(low.first_init)} vs "
        f"{geometric(low.output_init)})"
    )
    if high is not low:
        deepest += (
            f"; {high.family}'s, the largest, is {orders_text(high.log_ratio_init.mean)} its output layer's "
            f"({geometric(high.first_init)} vs {geometric(high.output_init)})"
        )
    slopes = {family: slope(cells) for family, cells in grid.items()}
    slopes = {family: value for family, value in slopes.items() if finite(value)}
    if not slopes:
        return deepest[0].upper() + deepest[1:] + "."
    depths = sorted({d for cells in grid.values() for d in cells})
    return (
        "At initialisation, log10(first hidden layer's gradient norm ÷ output layer's) changes per added layer by "
        f"{names_text([f'{signed(value, 2)} in {family}' for family, value in slopes.items()])} "
        f"(least-squares slope over depths {depths[0]}–{depths[-1]}); {deepest}."
    )


def _loss_sentence(grid: dict[str, dict[int, DepthRun]]) -> str:
    ends: dict[str, tuple[DepthRun, DepthRun]] = {}  # family -> (shallowest, deepest) run with a final loss
    for family, cells in grid.items():
        scored = [row for row in cells.values() if finite(row.val_loss.mean)]
        if scored:
            ends[family] = (scored[0], scored[-1])
    if not ends:
        return "No run ended with a finite validation loss."
    shallow = {row.depth for row, _ in ends.values()}
    deep = {row.depth for _, row in ends.values()}
    trends = [
        f"{family} {first.val_loss.mean:.4f} → {last.val_loss.mean:.4f}"
        if last is not first
        else f"{family} {last.val_loss.mean:.4f}"
        for family, (first, last) in ends.items()
    ]
    if len(shallow) == len(deep) == 1 and shallow != deep:
        span = f"from depth {shallow.pop()} to depth {deep.pop()}"
    else:
        span = "from each family's shallowest to its deepest net"
    text = f"Final validation loss {span}: {', '.join(trends)}; "
    deepest = {family: last for family, (_, last) in ends.items()}
    chance = [family for family, row in deepest.items() if at_chance(row.val_loss.mean)]
    best = min(deepest.values(), key=lambda row: row.val_loss.mean)
    if chance:
        text += (
            f"at its deepest, {names_text(chance)} {'ends' if len(chance) == 1 else 'end'} at chance level "
            f"(within {CHANCE_TOLERANCE} of ln 2 = {CHANCE_LOSS:.4f}: nothing learned)"
        )
    else:
        text += f"no family ends at chance level (ln 2 = {CHANCE_LOSS:.4f}) at its deepest"
    if best.family not in chance:
        text += f"; the lowest there is {best.family}'s, {mean_ci(best.val_loss)} at depth {best.depth}"
    return text + "."


def _end_sentence(grid: dict[str, dict[int, DepthRun]]) -> str:
    depth, rows = _deepest(grid, "log_ratio_end")
    if not rows:
        return ""
    moves = names_text(
        [
            f"{family} {signed(row.log_ratio_end.mean)}"
            + (f" (at init {signed(row.log_ratio_init.mean)})" if finite(row.log_ratio_init.mean) else "")
            for family, row in rows.items()
        ]
    )
    vanished = [family for family, row in rows.items() if row.log_ratio_end.mean < -VANISHED_ORDERS]
    text = f"In the last epoch of training, log10(first ÷ output) at depth {depth} is {moves}: "
    if vanished:
        return text + (
            f"{names_text(vanished)}'s first layer still gets less than 1/10^{VANISHED_ORDERS:g} of the "
            f"output layer's gradient."
        )
    return text + f"no family's first layer is left more than {VANISHED_ORDERS:g} orders of magnitude behind."


def vanishing_section(lessons: Sequence[LessonRuns], results: Mapping) -> list[str]:
    ((lesson, runs),) = lessons  # one section per lesson
    grid = depth_grid(runs)
    depths = sorted({d for cells in grid.values() for d in cells})
    lines = section_head(lesson, runs) + [
        summarize_vanishing(runs),
        "",
        "**Final validation loss ± 95% CI** (rows: activation; columns: hidden layers)",
        "",
        "| Family | " + " | ".join(f"depth {d}" for d in depths) + " |",
        "|---|" + "---:|" * len(depths),
    ]
    for family, cells in grid.items():
        values = []
        for depth in depths:
            row = cells.get(depth)
            text = mean_ci(row.val_loss) if row else DASH
            values.append(f"{text} (chance)" if row and at_chance(row.val_loss.mean) else text)
        lines.append(table_row([family, *values]))
    lines += [
        "",
        f"*(chance): within {CHANCE_TOLERANCE} of ln 2 = {CHANCE_LOSS:.4f}, the loss of always predicting 50 %. "
        f"Mean over the seeds that did not diverge, of {seed_count(runs)}.*",
        "",
        "**Gradient norm of the first hidden layer vs the output layer**",
        "",
        "| Run | Dense layers | First hidden layer, init | Output layer, init | log10(first ÷ output), init "
        "| log10(first ÷ output), last epoch | Status |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for cells in grid.values():
        for row in cells.values():
            lines.append(
                table_row(
                    [
                        row.run["name"],
                        row.depth + 1,
                        norm_text(row.first_init),
                        norm_text(row.output_init),
                        mean_ci(row.log_ratio_init, 2),
                        mean_ci(row.log_ratio_end, 2),
                        status_text(row.run),
                    ]
                )
            )
    lines += [
        "",
        "*Gradient norm: the L2 norm of a Dense kernel's loss gradient; at init on the whole training set, in the "
        "last epoch the mean over its mini-batch steps. Norms: geometric mean over seeds [95% CI]; "
        "log10(first ÷ output): taken per seed, mean ± 95% CI, so −3 means the first layer gets a thousandth "
        "of the output layer's gradient.*",
        "",
        f"![{lesson_title(lesson)}: gradient norm per layer]({png_name(lesson, 'grad-norms')})",
        "",
        f"*Gradient norm of every Dense layer, input → output (each line's last point is the output layer), one "
        f"column per family, one line per depth; top: at initialisation, bottom: in the last epoch. Geometric mean "
        f"over seeds, bands the {BAND}; one log scale for all panels.*",
        "",
        f"![{lesson_title(lesson)}: loss and first-layer gradient per epoch]({png_name(lesson, 'curves')})",
        "",
        f"*Top: loss per epoch (solid: validation, dashed: training), dotted grey: chance level ln 2. Bottom: the "
        f"first hidden layer's gradient norm per epoch, one log scale for all panels. One line per depth over the "
        f"seeds that did not diverge, bands the {BAND}.*",
    ]
    return lines
