"""Report: a results dict -> results.json, report.md and one curves PNG per lesson. The last stage.

It works from the plain results dict alone (the one saved as results.json), so a report can be
regenerated from a saved run with `write_report(read_results(path), out_dir)`.

Nothing half-written: everything is rendered into a staging dir beside out_dir (same filesystem)
and moved into place with `os.replace` only once all of it rendered, report.md last.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from optax_lab.errors import UsageError

SCHEMA = 1
FIX_OUT = "choose a writable directory with --out DIR"
FIX_RESULTS = "pass the results.json written by optax-lab run, or run again"
BAND = "min–max across seeds"  # what the shaded band in the curves shows; named in captions
HISTORY_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc")
DASH = "—"  # a value that is missing, e.g. the loss of a run whose seeds all diverged


# ---------------------------------------------------------------------------------------------
# Entry points


def check_writable(out_dir: str | Path) -> Path:
    """Fail fast (before training) if out_dir can't be created or written; leaves nothing behind."""
    out = Path(out_dir).expanduser()
    try:
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out} is a file, not a directory: {FIX_OUT}")
        existing = next(p for p in (out, *out.parents) if p.exists())
        if not existing.is_dir():
            raise UsageError(f"cannot create {out}: {existing} is a file, not a directory: {FIX_OUT}")
        # Permission bits lie (root, read-only mounts): try the real thing and undo it.
        os.rmdir(tempfile.mkdtemp(prefix=".optax-lab-probe-", dir=existing))
    except OSError as error:
        raise UsageError(f"cannot write to {out} ({error.strerror or error}): {FIX_OUT}") from None
    return out


def read_results(path: str | Path) -> dict:
    """Load a saved results.json for re-reporting; bad files become one-line UsageErrors."""
    try:
        results = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise UsageError(f"cannot read {path} ({error.strerror or error}): {FIX_RESULTS}") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"{path} is not valid JSON ({error.msg}, line {error.lineno}): {FIX_RESULTS}") from None
    check_results(results, source=str(path))
    return results


def write_report(results: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write results.json, report.md and `<lesson>-curves.png` per lesson into out_dir.

    Returns the path of report.md. Raises UsageError if out_dir can't be written or the
    results are malformed; on any failure out_dir gains no file.
    """
    results = to_jsonable(results)  # one view for all outputs: every NaN/inf is now None
    check_results(results)
    out = check_writable(out_dir)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = _make_staging(out)
    except OSError as error:
        raise UsageError(f"cannot write to {out} ({error.strerror or error}): {FIX_OUT}") from None
    try:
        names = []
        runs = _runs_by_name(results)
        for lesson in results["lessons"]:
            name = curves_name(lesson)
            plot_curves(lesson, [runs[r] for r in lesson["runs"]], staging / name)
            names.append(name)
        (staging / "results.json").write_text(json.dumps(results, indent=1, allow_nan=False) + "\n",
                                              encoding="utf-8")
        (staging / "report.md").write_text(render_markdown(results), encoding="utf-8")
        # report.md last: once it exists, everything it links to exists too.
        for name in [*names, "results.json", "report.md"]:
            os.replace(staging / name, out / name)
    except OSError as error:
        _drop_if_empty(out, created)
        raise UsageError(f"cannot write the report to {out} ({error.strerror or error}): {FIX_OUT}") from None
    except BaseException:
        _drop_if_empty(out, created)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / "report.md"


def _make_staging(out: Path) -> Path:
    """A staging dir beside out (same filesystem, so os.replace is a rename); inside it if the
    parent is not ours to write (e.g. --out is a writable mount point under a read-only dir)."""
    try:
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    except OSError:
        return Path(tempfile.mkdtemp(prefix=".staging-", dir=out))


def _drop_if_empty(out: Path, created: bool) -> None:
    if created:
        try:
            out.rmdir()
        except OSError:
            pass  # not empty (or gone): it is not ours to clean further


# ---------------------------------------------------------------------------------------------
# The results dict


def to_jsonable(value: Any) -> Any:
    """A JSON-safe deep copy: NaN/inf -> None, tuples -> lists, numpy values -> Python values."""
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
    """Enough of the contract to render without a KeyError traceback."""
    if not isinstance(results, Mapping):
        raise UsageError(f"{source} is not a results object: {FIX_RESULTS}")
    if results.get("schema") != SCHEMA:
        raise UsageError(f"{source} has schema {results.get('schema')!r}, this optax-lab reads schema {SCHEMA}: "
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


def _runs_by_name(results: Mapping) -> dict[str, Mapping]:
    return {run["name"]: run for run in results["runs"]}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def seed_matrix(rows: Any) -> np.ndarray:
    """History rows (seeds x epochs, None for NaN, maybe ragged) -> a float array padded with NaN."""
    rows = [[np.nan if v is None else v for v in row] for row in (rows or [])]
    epochs = max((len(row) for row in rows), default=0)
    matrix = np.full((len(rows), epochs), np.nan)
    for i, row in enumerate(rows):
        matrix[i, :len(row)] = row
    return matrix


# ---------------------------------------------------------------------------------------------
# Formatting


def _fmt(value: Any, digits: int, scale: float = 1.0) -> str:
    return f"{value * scale:.{digits}f}" if _finite(value) else DASH


def _mean_ci(mean: Any, ci: Any, digits: int, scale: float = 1.0) -> str:
    if not _finite(mean):
        return DASH
    if not _finite(ci):
        return _fmt(mean, digits, scale)
    return f"{mean * scale:.{digits}f} ± {ci * scale:.{digits}f}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _hyper(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def optimizer_text(run: Mapping) -> str:
    """`sgd(lr=0.01, momentum=0.7)`: the optimizer and its hyperparameters, compact."""
    params = ", ".join(f"{'lr' if key == 'learning_rate' else key}={_hyper(value)}"
                       for key, value in (run.get("hyperparams") or {}).items())
    return f"{run['optimizer']}({params})"


def batch_text(run: Mapping, n_train: Any) -> str:
    if run.get("full_batch"):
        size = run.get("batch_size") or n_train
        return f"full ({size})" if size else "full"
    return str(run.get("batch_size", DASH))


def status_text(run: Mapping) -> str:
    status = run.get("status", "ok")
    diverged, seeds = run.get("diverged_seeds") or 0, len(run.get("seeds") or ())
    if status == "diverged":
        return f"diverged ({diverged}/{seeds} seeds)"
    if diverged:
        return f"{status} ({diverged}/{seeds} seeds diverged)"
    return str(status)


def seeds_text(seeds: list) -> str:
    if not seeds:
        return "no seeds"
    if list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 2:
        return f"{len(seeds)} seeds ({seeds[0]}–{seeds[-1]})"
    return f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))})"


def curves_name(lesson: Mapping) -> str:
    """`<lesson-name>-curves.png`, made safe as a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(lesson["name"])).strip("-.") + "-curves.png"


def _names(names: list[str], possessive: bool = False) -> str:
    names = [f"{n}'s" if possessive else n for n in names]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# ---------------------------------------------------------------------------------------------
# report.md


def render_markdown(results: Mapping) -> str:
    """The whole report.md. Expects `to_jsonable` results (missing numbers are None)."""
    runs = _runs_by_name(results)
    parts = [f"# optax-lab report: preset `{results['preset']}`", "", *_header(results), ""]
    for lesson in results["lessons"]:
        parts += _lesson_section(lesson, [runs[name] for name in lesson["runs"]], results) + [""]
    parts += _footer(results)
    return "\n".join(parts) + "\n"


def _header(results: Mapping) -> list[str]:
    data, device, model = results["dataset"], results["device"], results.get("model") or {}
    dataset = (f"**{data.get('name', 'unnamed')}** from {data.get('source', 'an unnamed source')}: "
               f"{data.get('n_train', '?')} training / {data.get('n_test', '?')} test examples, "
               f"the {data.get('num_words', '?')} most frequent words")
    if str(data.get("name", "")).startswith("synthetic"):
        dataset += " (synthetic stand-in, not real reviews: compare its numbers only with other synthetic runs)"
    versions = ", ".join(f"{lib} {device[lib]}" for lib in ("jax", "jaxlib", "optax", "flax") if lib in device)
    hardware = (f"{device.get('platform', '?')} ({device.get('device_kind', '?')}) "
                f"× {device.get('device_count', '?')}; {versions}")
    widths = ", ".join(map(str, model.get("widths", []))) or "?"
    mlp = (f"MLP, hidden widths {widths}, {model.get('activation', '?')} activation, "
           f"{model.get('kernel_init', '?')} kernels, one output logit (sigmoid cross-entropy)")
    plans = {(seeds_text(run.get("seeds") or []), run.get("epochs")) for run in results["runs"]}
    plan = (f"{next(iter(plans))[0]}, {next(iter(plans))[1]} epochs per run" if len(plans) == 1
            else "they differ by run: " + "; ".join(f"{run['name']}: {seeds_text(run.get('seeds') or [])}, "
                                                   f"{run.get('epochs')} epochs" for run in results["runs"]))
    shuffling = {"per-seed": "each seed its own shuffling",
                 "shared": "all seeds share one shuffling per epoch"}.get(results.get("order"),
                                                                          f"{results.get('order', 'unknown')}")
    rows = [("Dataset", dataset), ("Device", hardware), ("Model", mlp), ("Seeds", plan),
            ("Shuffling", shuffling), ("Created", results.get("created", DASH))]
    return ["| | |", "|---|---|", *(f"| {key} | {_cell(value)} |" for key, value in rows)]


TABLE_HEAD = ("| Run | Optimizer | Batch | Val loss ± 95% CI | Val acc % ± 95% CI | Best epoch "
              "| Compile s | Run s | Seed-epochs/s | Status |\n"
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---|")


def _lesson_section(lesson: Mapping, runs: list[Mapping], results: Mapping) -> list[str]:
    n_train = results["dataset"].get("n_train")
    best = _best_run(runs)
    lines = [f"## {lesson.get('title') or lesson['name']}", "", f"*{lesson.get('question', '')}*", "",
             TABLE_HEAD]
    for run in runs:
        final, timing = run["final"], run.get("timing") or {}
        loss = _mean_ci(final.get("val_loss_mean"), final.get("val_loss_ci95"), 4)
        cells = [run["name"], optimizer_text(run), batch_text(run, n_train),
                 f"**{loss}**" if run is best else loss,
                 _mean_ci(final.get("val_acc_mean"), final.get("val_acc_ci95"), 2, scale=100),
                 _fmt(final.get("best_epoch_mean"), 1), _fmt(timing.get("compile_s"), 2),
                 _fmt(timing.get("run_s"), 2), _fmt(timing.get("seed_epochs_per_s"), 1), status_text(run)]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    seeds = max((len(run.get("seeds") or ()) for run in runs), default=0)
    lines += ["", summarize_lesson(runs), "",
              f"![{lesson.get('title') or lesson['name']}: loss and accuracy per epoch]({curves_name(lesson)})", "",
              f"*Loss (left) and accuracy (right) per epoch; solid: validation, dashed: training. "
              f"Lines are the mean over {seeds} seeds, bands span the {BAND}; "
              f"seeds that diverged are left out of both, and a run whose every seed diverged is drawn "
              f"dotted up to where it blew up.*"]
    return lines


def _footer(results: Mapping) -> list[str]:
    return ["---", "",
            f"Reproduce: `{results.get('command') or 'optax-lab run --preset ' + str(results['preset'])}`", "",
            "Run s and seed-epochs/s exclude compilation, which is listed separately as compile s. "
            "The numbers behind this report are in [results.json](results.json)."]


# ---------------------------------------------------------------------------------------------
# The summary: every clause is chosen and filled from the numbers


def _best_run(runs: list[Mapping]) -> Mapping | None:
    scored = [run for run in runs if _finite(run["final"].get("val_loss_mean"))]
    return min(scored, key=lambda run: run["final"]["val_loss_mean"], default=None)


def summarize_lesson(runs: list[Mapping]) -> str:
    """2-4 sentences read off the numbers: the winner and its margins, whether the 95% CIs
    separate it from the others, the train/val gap, the speed difference, divergences."""
    best = _best_run(runs)
    if best is None:
        return "No run ended with a finite validation loss: every seed of every run diverged."
    loss = lambda run: run["final"]["val_loss_mean"]  # noqa: E731
    others = sorted((run for run in runs if run is not best and _finite(loss(run))), key=loss)
    sentences = [_winner_sentence(best, others, runs)]
    if others:
        sentences.append(_ci_sentence(best, others))
    sentences += [s for s in (_gap_speed_sentence(runs), _diverged_sentence(runs)) if s]  # may be ""
    return " ".join(sentences)


def _winner_sentence(best: Mapping, others: list[Mapping], runs: list[Mapping]) -> str:
    best_loss = best["final"]["val_loss_mean"]
    if others:
        margins = _names([f"{run['name']} ({run['final']['val_loss_mean']:.4f}) by "
                          f"{run['final']['val_loss_mean'] - best_loss:.4f}" for run in others])
        text = f"**{best['name']}** ends with the lowest validation loss, {best_loss:.4f}, below {margins}"
    else:
        text = f"**{best['name']}** ends with validation loss {best_loss:.4f}"
    with_acc = [run for run in runs if _finite(run["final"].get("val_acc_mean"))]
    top = max(with_acc, key=lambda run: run["final"]["val_acc_mean"], default=None)
    if top is best and len(with_acc) > 1:
        text += f", and also the highest validation accuracy ({top['final']['val_acc_mean'] * 100:.2f} %)"
    elif top is not None and top is not best:
        text += (f"; {top['name']} has the highest validation accuracy ({top['final']['val_acc_mean'] * 100:.2f} %"
                 f" vs {_fmt(best['final'].get('val_acc_mean'), 2, 100)} %)")
    return text + "."


def _ci_sentence(best: Mapping, others: list[Mapping]) -> str:
    def interval(run):
        mean, ci = run["final"]["val_loss_mean"], run["final"].get("val_loss_ci95")
        return (mean - ci, mean + ci) if _finite(ci) else None

    if interval(best) is None:
        return "Without a 95% CI for it (too few seeds), seed noise can't be told from the margin."
    overlap = [run["name"] for run in others if interval(run) and interval(run)[0] <= interval(best)[1]]
    clear = [run["name"] for run in others if interval(run) and interval(run)[0] > interval(best)[1]]
    seeds = len(best.get("seeds") or ())
    if not overlap and not clear:
        return "The other runs have no 95% CI (too few seeds) to compare against."
    if not overlap:
        return (f"Its 95% CI does not overlap {_names(clear, possessive=True)}, "
                f"so the lead is larger than the seed-to-seed noise.")
    text = f"Its 95% CI overlaps {_names(overlap, possessive=True)}, so {seeds} seeds do not separate them"
    return text + (f"; it clears {_names(clear, possessive=True)}." if clear else ".")


def _gap_speed_sentence(runs: list[Mapping]) -> str:
    clauses = []
    gaps = {run["name"]: run["final"]["val_loss_mean"] - run["final"]["train_loss_mean"] for run in runs
            if _finite(run["final"].get("val_loss_mean")) and _finite(run["final"].get("train_loss_mean"))}
    if gaps:
        listed = ", ".join(f"{name} {gap:+.4f}" for name, gap in gaps.items())
        widest = max(gaps, key=gaps.get)
        clauses.append(f"Val − train loss at the end: {listed}" +
                       (f" (widest: {widest})" if len(gaps) > 1 else ""))
    rates = {run["name"]: run["timing"]["seed_epochs_per_s"] for run in runs
             if _finite((run.get("timing") or {}).get("seed_epochs_per_s"))}
    if len(rates) > 1:
        fast, slow = max(rates, key=rates.get), min(rates, key=rates.get)
        if rates[slow] > 0 and rates[fast] / rates[slow] >= 1.05:
            clauses.append(f"{fast} trains fastest, {rates[fast]:.1f} seed-epochs/s, "
                           f"{rates[fast] / rates[slow]:.1f}× {slow}'s {rates[slow]:.1f}")
        else:
            clauses.append(f"all train at about the same speed ({rates[slow]:.1f}–{rates[fast]:.1f} seed-epochs/s)")
    elif rates:
        name, rate = next(iter(rates.items()))
        clauses.append(f"{name} trains at {rate:.1f} seed-epochs/s")
    return "; ".join(clauses) + "." if clauses else ""


def _diverged_sentence(runs: list[Mapping]) -> str:
    diverged = [f"{run['name']} on {run['diverged_seeds']} of {len(run.get('seeds') or ())} seeds"
                for run in runs if run.get("diverged_seeds")]
    return f"Diverged (NaN loss): {', '.join(diverged)}." if diverged else ""


# ---------------------------------------------------------------------------------------------
# Curves


def plot_curves(lesson: Mapping, runs: list[Mapping], path: Path) -> None:
    """Loss and accuracy per epoch for the lesson's runs, like the Keras lesson's two plots."""
    # The object API, not pyplot: no global state, no GUI backend, safe off the main thread.
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 4.6), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    bounds = {ax_loss: [], ax_acc: []}  # finite extents of the kept seeds, to frame the axes
    handles, epochs = [], 1
    for index, run in enumerate(runs):
        color = f"C{index % 10}"
        history = run.get("history") or {}
        for key, ax, scale in (("val_loss", ax_loss, 1), ("train_loss", ax_loss, 1),
                               ("val_acc", ax_acc, 100), ("train_acc", ax_acc, 100)):
            values = seed_matrix(history.get(key)) * scale
            if values.size:
                bounds[ax] += _draw_run(ax, values, color, solid=key.startswith("val"))
                epochs = max(epochs, values.shape[1])
        diverged, seeds = run.get("diverged_seeds") or 0, len(run.get("seeds") or ())
        label = run["name"] + (f" ({diverged}/{seeds} seeds diverged)" if diverged else "")
        handles.append(Line2D([], [], color=color, label=label, linestyle=":" if diverged >= seeds > 0 else "-"))
    handles += [Line2D([], [], color="0.3", label="validation"),
                Line2D([], [], color="0.3", linestyle="--", label="training"),
                Patch(color="0.3", alpha=0.2, label=BAND)]
    for ax, title, ylabel in ((ax_loss, "Loss", "binary cross-entropy"), (ax_acc, "Accuracy", "accuracy (%)")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_xlim(0.5, epochs + 0.5)  # whole epochs, even for a one-epoch run
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
        if bounds[ax]:  # frame the kept seeds; a diverged seed's blow-up leaves the frame
            low, high = min(bounds[ax]), max(bounds[ax])
            pad = (high - low) * 0.05 or abs(high) * 0.05 or 0.05
            ax.set_ylim(low - pad, high + pad)
    fig.suptitle(f"{lesson.get('title') or lesson['name']}: loss and accuracy per epoch")
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), frameon=False)
    fig.savefig(path, format="png", dpi=110)


def _draw_run(ax, values: np.ndarray, color: str, solid: bool) -> list[float]:
    """Mean line and min-max band over the seeds with an all-finite history; returns the band's
    extent. Without such a seed, the mean of what is finite, dotted (a diverged run)."""
    epochs = np.arange(1, values.shape[1] + 1)
    marker = "o" if len(epochs) <= 10 else None  # a short run (e.g. one epoch) still shows a point
    style = "-" if solid else "--"
    kept = values[np.isfinite(values).all(axis=1)]
    if len(kept):
        ax.plot(epochs, kept.mean(axis=0), style, color=color, marker=marker, markersize=3)
        low, high = kept.min(axis=0), kept.max(axis=0)
        ax.fill_between(epochs, low, high, color=color, alpha=0.2 if solid else 0.1, linewidth=0)
        return [float(low.min()), float(high.max())]
    with warnings.catch_warnings():  # an epoch where every seed is NaN is expected here
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(np.where(np.isfinite(values), values, np.nan), axis=0)
    ax.plot(epochs, mean, ":", color=color, marker=marker, markersize=3)
    return []
