"""Report: a results dict -> results.json, report.md and the PNGs of each lesson. The last stage.

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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from optax_lab import report_problems
# The formatting both report stages share (report_problems can't import this module).
from optax_lab.report_problems.common import BAND, DASH, draw_seeds
from optax_lab.report_problems.common import cell as _cell
from optax_lab.report_problems.common import count_text as _count
from optax_lab.report_problems.common import finite as _finite
from optax_lab.report_problems.common import fmt as _fmt
from optax_lab.errors import UsageError
from optax_lab.files import publish_mode

SCHEMA = 1
FIX_OUT = "choose a writable directory with --out DIR"
FIX_RESULTS = "pass the results.json written by optax-lab run, or run again"
HISTORY_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc")
RANKING_CURVES = "ranking-curves.png"
CHANCE_CEILING = 0.75  # ranking plot's y-axis top: a bit above ln 2, the loss of always guessing 0.5


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
    """Write results.json, report.md and `<lesson>-curves.png` per lesson (more PNGs for the kinds in
    `report_problems.SECTIONS`; in ranking mode one `ranking-curves.png` instead) into out_dir.

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
        names = _render_plots(results, staging)
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


def _render_plots(results: Mapping, staging: Path) -> list[str]:
    """The PNGs report.md links to, rendered into staging; returns their file names."""
    if is_ranking(results):
        plot_ranking_curves(results, staging / RANKING_CURVES)
        return [RANKING_CURVES]
    runs, names = _runs_by_name(results), []
    for lesson in results["lessons"]:
        lesson_runs = [runs[r] for r in lesson["runs"]]
        section = lesson_section(lesson)
        if section is not None:
            names += section.plots(lesson, lesson_runs, staging)
            continue
        name = curves_name(lesson)
        plot_curves(lesson, lesson_runs, staging / name)
        names.append(name)
    return names


def lesson_section(lesson: Mapping) -> report_problems.Section | None:
    """The special section for the lesson's kind; None for "compare" (results from before kinds
    existed, and kinds this version doesn't know): the generic table, summary and curves."""
    kind = lesson.get("kind", "compare")
    return report_problems.SECTIONS.get(kind) if isinstance(kind, str) else None


def _make_staging(out: Path) -> Path:
    """A staging dir beside out (same filesystem, so os.replace is a rename); inside it if the
    parent is not ours to write (e.g. --out is a writable mount point under a read-only dir)."""
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    except OSError:
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    publish_mode(staging, folder=True)  # it may become the output folder itself
    return staging


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


def _mean_ci(mean: Any, ci: Any, digits: int, scale: float = 1.0) -> str:
    if not _finite(mean):
        return DASH
    if not _finite(ci):
        return _fmt(mean, digits, scale)
    return f"{mean * scale:.{digits}f} ± {ci * scale:.{digits}f}"


def _hyper(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def hyperparams_text(run: Mapping) -> str:
    """`lr=0.01, momentum=0.7`: a run's hyperparameters, compact."""
    return ", ".join(f"{'lr' if key == 'learning_rate' else key}={_hyper(value)}"
                     for key, value in (run.get("hyperparams") or {}).items())


def optimizer_text(run: Mapping) -> str:
    """`sgd(lr=0.01, momentum=0.7)`: the optimizer and its hyperparameters, compact."""
    return f"{run['optimizer']}({hyperparams_text(run)})"


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
    title = "optimizer ranking" if is_ranking(results) else f"preset `{results['preset']}`"
    parts = [f"# optax-lab report: {title}", "", *_header(results), ""]
    if is_ranking(results):
        parts += _ranking_section(results) + [""]
    else:
        for lesson in results["lessons"]:
            lesson_runs = [runs[name] for name in lesson["runs"]]
            section = lesson_section(lesson)
            render = section.markdown if section is not None else _lesson_section
            parts += render(lesson, lesson_runs, results) + [""]
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
    if len({str(run.get("model")) for run in results["runs"]}) > 1:  # the lessons vary the model
        mlp = f"varies by run (each section says how); the base: {mlp}"
    plan = _plans_text(results)
    lesson_data = [f"{lesson['name']}: {lesson['num_words']} words"
                   + (f", {lesson['train_examples']} training reviews" if lesson.get("train_examples") else "")
                   for lesson in results["lessons"]
                   if lesson.get("num_words", data.get("num_words")) != data.get("num_words")
                   or lesson.get("train_examples")]
    if lesson_data:
        dataset += "; lessons with their own data: " + "; ".join(lesson_data)
    shuffling = {"per-seed": "each seed its own shuffling",
                 "shared": "all seeds share one shuffling per epoch"}.get(results.get("order"),
                                                                          f"{results.get('order', 'unknown')}")
    rows = [("Dataset", dataset), ("Device", hardware), ("Model", mlp), ("Seeds", plan),
            ("Shuffling", shuffling), ("Compile cache", compile_cache_text(results.get("compile_cache"))),
            ("Created", results.get("created", DASH))]
    return ["| | |", "|---|---|", *(f"| {key} | {_cell(value)} |" for key, value in rows)]


def _plans_text(results: Mapping) -> str:
    """Seeds and epochs: one phrase when every run shares them, else one per group of lessons."""
    runs = _runs_by_name(results)
    groups: dict[tuple, list[str]] = {}
    for lesson in results["lessons"]:
        for name in lesson["runs"]:
            run = runs.get(name, {})
            key = (seeds_text(run.get("seeds") or []), run.get("epochs"))
            if lesson["name"] not in groups.setdefault(key, []):
                groups[key].append(lesson["name"])
    if len(groups) == 1:
        seeds, epochs = next(iter(groups))
        return f"{seeds}, {epochs} epochs per run"
    return "; ".join(f"{', '.join(lessons)}: {seeds}, {epochs} epochs per run"
                     for (seeds, epochs), lessons in groups.items())


def compile_cache_text(cache: Any) -> str:
    if cache is True:
        return "on: JAX's persistent compilation cache was used, so compile s may be cache loads, not compiles"
    if cache is False:
        return "off: every compile s is a real XLA compilation"
    return "not recorded"


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
    timed = "Seconds to target and seed-epochs/s" if is_ranking(results) else "Run s and seed-epochs/s"
    return ["---", "",
            f"Reproduce: `{results.get('command') or 'optax-lab run --preset ' + str(results['preset'])}`", "",
            f"{timed} exclude compilation, which is listed separately as compile s. "
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
# Ranking mode: every optimizer once per batch mode (one lesson per mode), ranked in one table


def is_ranking(results: Mapping) -> bool:
    return bool(results.get("ranking"))


def batch_modes(results: Mapping) -> list[tuple[str, list[Mapping]]]:
    """(label, runs) per batch mode in the lessons' order; the label is `full` or the batch size."""
    runs = _runs_by_name(results)
    modes = []
    for lesson in results["lessons"]:
        mode_runs = [runs[name] for name in lesson["runs"]]
        modes.append((_mode_label(lesson, mode_runs), mode_runs))
    return modes


def _mode_label(lesson: Mapping, runs: list[Mapping]) -> str:
    """From the runs' own batch fields; the lesson's name (`batch-500`) only if they lack them."""
    first = runs[0] if runs else {}
    if first.get("full_batch"):
        return "full"
    if first.get("batch_size"):
        return str(first["batch_size"])
    return str(lesson["name"]).removeprefix("batch-")


def mode_prose(label: str) -> str:
    return "full batch" if label == "full" else f"batch {label}"


def _rank_key(run: Mapping | None) -> tuple:
    """Healthy runs by final val loss, then runs where some seed diverged, then no finite loss."""
    loss = run["final"].get("val_loss_mean") if run else None
    if not _finite(loss):
        return (2, math.inf)
    return (1 if run.get("diverged_seeds") else 0, loss)


def ranking_rows(modes: list[tuple[str, list[Mapping]]]) -> list[tuple[str, list[Mapping | None]]]:
    """(optimizer, its run per batch mode or None), ranked by the first batch mode."""
    per_optimizer: dict[str, list[Mapping | None]] = {}
    for index, (_, runs) in enumerate(modes):
        for run in runs:
            slots = per_optimizer.setdefault(run["optimizer"], [None] * len(modes))
            slots[index] = slots[index] or run  # a repeated optimizer keeps its first run
    return sorted(per_optimizer.items(), key=lambda row: _rank_key(row[1][0] if row[1] else None))


def _mode_ranked(runs: list[Mapping]) -> list[Mapping]:
    """A mode's runs with a finite loss, in ranking order: [best, runner-up, ...]."""
    return sorted((run for run in runs if _finite(run["final"].get("val_loss_mean"))), key=_rank_key)


def target_value(results: Mapping) -> float | None:
    target = (results.get("ranking") or {}).get("target_val_loss")
    if _finite(target):
        return target
    return next((run["target"]["val_loss"] for run in results["runs"]
                 if _finite((run.get("target") or {}).get("val_loss"))), None)


def target_text(run: Mapping) -> str:
    """`3 ep / 150 steps / 0.42 s`, `(k/S seeds)` when not every seed got there, — when none did."""
    target = run.get("target") or {}
    reached, seeds = target.get("reached_seeds") or 0, len(run.get("seeds") or ())
    if not reached or not _finite(target.get("epochs_mean")):
        return DASH
    steps = target.get("steps_mean")
    steps = f"{steps:.0f}" if _finite(steps) and steps >= 100 else _count(steps)  # 316.7 steps: noise
    text = (f"{_count(target['epochs_mean'])} ep / {steps} steps / "
            f"{_fmt(target.get('seconds_mean'), 2)} s")
    return text + (f" ({reached}/{seeds} seeds)" if reached < seeds else "")


def _ranking_section(results: Mapping) -> list[str]:
    modes = batch_modes(results)
    rows = ranking_rows(modes)
    target = target_value(results)
    lines = [f"## Ranking: {len(rows)} optimizers × {', '.join(mode_prose(label) for label, _ in modes)}", ""]
    question = next((lesson.get("question") for lesson in results["lessons"] if lesson.get("question")), "")
    if question:
        lines += [f"*{question}*", ""]
    seeds = max((len(run.get("seeds") or ()) for run in results["runs"]), default=0)
    lines += [summarize_ranking(modes, rows, target), "", *_ranking_table(modes, rows, target), "",
              _ranking_caption(modes, target, seeds), "",
              "### Hyperparameters", "", "| Optimizer | Hyperparameters |", "|---|---|"]
    lines += [f"| {_cell(optimizer)} | {_cell(_row_hyperparams(modes, runs))} |" for optimizer, runs in rows]
    lines += ["", f"![Validation loss per epoch of every optimizer, in ranking order]({RANKING_CURVES})", "",
              f"*Validation loss per epoch, one panel per optimizer in ranking order, one line per batch mode: "
              f"the mean over the seeds that did not diverge, the band spans the {BAND}; a run whose every "
              f"seed diverged is dotted. Dashed: the target. The shared y-axis is clipped, so a run far above "
              f"chance level leaves its panel.*"]
    return lines


def _to_target_head(target: float | None) -> str:
    return f"to {target:g}" if target is not None else "to target"


def _ranking_table(modes: list[tuple[str, list[Mapping]]], rows: list, target: float | None) -> list[str]:
    """One row per optimizer, its batch modes side by side as column groups `<mode>: ...`."""
    heads = ["#", "Optimizer"] + [f"{label}: {head}" for label, _ in modes
                                  for head in ("val loss ± 95% CI", "val acc %", _to_target_head(target),
                                               "compile s", "seed-ep/s", "status")]
    best = [next(iter(_mode_ranked(runs)), None) for _, runs in modes]
    lines = ["| " + " | ".join(heads) + " |", "|---:|---|" + "---:|---:|---:|---:|---:|---|" * len(modes)]
    for rank, (optimizer, runs) in enumerate(rows, 1):
        cells = [rank, optimizer]
        for run, mode_best in zip(runs, best):
            cells += _ranking_cells(run, is_best=run is not None and run is mode_best)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def _ranking_caption(modes: list[tuple[str, list[Mapping]]], target: float | None, seeds: int) -> str:
    first = mode_prose(modes[0][0]) if modes else "the first batch mode"
    return (f"*Ranked by the final validation loss at {first} (mean over those of the {seeds} seeds that did "
            f"not diverge; **bold**: lowest per batch mode); runs where a seed diverged rank after the others, "
            f"runs without a finite loss last. \"{_to_target_head(target).capitalize()}\": epochs / optimizer "
            f"steps / seconds until the validation loss first reaches "
            f"{f'{target:g}' if target is not None else 'the target'} (checked once per epoch), mean over the "
            f"seeds that reach it, with (k/S seeds) when not all do; {DASH}: no seed reaches it. "
            f"Seconds are the run time per epoch × epochs needed.*")


def _ranking_cells(run: Mapping | None, is_best: bool) -> list[str]:
    if run is None:
        return [DASH] * 5 + ["not run"]
    final, timing = run["final"], run.get("timing") or {}
    loss = _loss_text(run)
    return [f"**{loss}**" if is_best else loss, _fmt(final.get("val_acc_mean"), 2, scale=100), target_text(run),
            _fmt(timing.get("compile_s"), 2), _fmt(timing.get("seed_epochs_per_s"), 1), status_text(run)]


def _row_hyperparams(modes: list[tuple[str, list[Mapping]]], runs: list[Mapping | None]) -> str:
    """One optimizer's hyperparameters; per batch mode only where the modes differ (--set)."""
    texts = {label: hyperparams_text(run) or "(none)" for (label, _), run in zip(modes, runs) if run}
    if len(set(texts.values())) == 1:
        return next(iter(texts.values()))
    return "; ".join(f"{label}: {text}" for label, text in texts.items())


def summarize_ranking(modes: list[tuple[str, list[Mapping]]], rows: list, target: float | None) -> str:
    """2-4 sentences read off the numbers: the best per batch mode and whether its CI clears the
    runner-up's, the fastest to the target, the divergences, and how the batch modes compare."""
    sentences = [_winners_sentence(modes), _target_sentence(modes, target),
                 _ranking_diverged_sentence(modes, rows), _modes_sentence(modes, rows)]
    return " ".join(s for s in sentences if s)


def _loss_text(run: Mapping) -> str:
    return _mean_ci(run["final"].get("val_loss_mean"), run["final"].get("val_loss_ci95"), 4)


def _winners_sentence(modes: list[tuple[str, list[Mapping]]]) -> str:
    clauses = []
    for label, runs in modes:
        ranked = _mode_ranked(runs)
        if not ranked:
            clauses.append(f"at {mode_prose(label)} no run ends with a finite loss")
            continue
        best = ranked[0]
        clause = f"at {mode_prose(label)} **{best['optimizer']}** ({_loss_text(best)})"
        if len(ranked) > 1:
            runner_up = ranked[1]
            clause += (f", {_ci_relation(best, runner_up)} runner-up {runner_up['optimizer']}'s "
                       f"({_loss_text(runner_up)})")
        clauses.append(clause)
    text = "; ".join(clauses)
    return f"Lowest final validation loss: {text}." if clauses else ""


def _ci_relation(best: Mapping, runner_up: Mapping) -> str:
    cis = [run["final"].get("val_loss_ci95") for run in (best, runner_up)]
    if not all(_finite(ci) for ci in cis):
        return "no 95% CI (too few seeds) to compare with"
    gap = abs(runner_up["final"]["val_loss_mean"] - best["final"]["val_loss_mean"])
    return "its 95% CI overlapping" if gap <= sum(cis) else "its 95% CI clear of"


def _target_sentence(modes: list[tuple[str, list[Mapping]]], target: float | None) -> str:
    runs = [run for _, mode_runs in modes for run in mode_runs]
    if not any(run.get("target") for run in runs):
        return ""  # results from before time-to-target was recorded
    reached = [run for run in runs if target_text(run) != DASH and _finite(run["target"].get("seconds_mean"))]
    goal = f"val loss {target:g}" if target is not None else "the target"
    if not reached:
        return f"No run reaches {goal} on any seed."
    every_seed = [run for run in reached if run["target"]["reached_seeds"] >= len(run.get("seeds") or ())]
    pool = every_seed or reached  # a run that only some seeds carry there is a weaker claim
    fastest = min(pool, key=lambda run: run["target"]["seconds_mean"])
    fewest = min(pool, key=lambda run: run["target"]["epochs_mean"])
    text = f"Fastest to {goal}: {fastest['name']}, {target_text(fastest)}"
    if fewest["target"]["epochs_mean"] < fastest["target"]["epochs_mean"]:
        text += f" (fewest epochs: {fewest['name']}, {_count(fewest['target']['epochs_mean'])} ep)"
    if not every_seed:
        text += ", though no run gets there on every seed"
    never = len(runs) - len(reached)
    return text + (f"; {never} of {len(runs)} runs never reach it." if never else "; every run reaches it.")


def _ranking_diverged_sentence(modes: list[tuple[str, list[Mapping]]], rows: list) -> str:
    diverged = []
    for optimizer, runs in rows:
        seeds = [f"{label}: {run['diverged_seeds']}/{len(run.get('seeds') or ())}"
                 for (label, _), run in zip(modes, runs) if run and run.get("diverged_seeds")]
        if seeds:
            diverged.append(f"{optimizer} ({', '.join(seeds)} seeds)")
    if not diverged:
        return "No run diverged."
    return f"{len(diverged)} optimizer{'s' if len(diverged) > 1 else ''} diverged (NaN loss): {', '.join(diverged)}."


def _modes_sentence(modes: list[tuple[str, list[Mapping]]], rows: list) -> str:
    """Median final loss per batch mode, and per optimizer which mode ends lower."""
    if len(modes) < 2:
        return ""
    medians = []
    for label, runs in modes:
        losses = [run["final"]["val_loss_mean"] for run in runs if _finite(run["final"].get("val_loss_mean"))]
        medians.append(f"{float(np.median(losses)):.4f} at {mode_prose(label)}" if losses
                       else f"none at {mode_prose(label)}")
    complete = [runs for _, runs in rows if all(run and _finite(run["final"].get("val_loss_mean")) for run in runs)]
    wins = [0] * len(modes)
    for runs in complete:
        wins[min(range(len(runs)), key=lambda i: runs[i]["final"]["val_loss_mean"])] += 1
    text = f"Median final validation loss across optimizers: {', '.join(medians)}"
    if complete:
        counts = _names([f"{mode_prose(label)} for {count}" for (label, _), count in zip(modes, wins) if count])
        text += (f"; the lower loss comes from {counts} of the {len(complete)} optimizers "
                 f"with a finite loss in every mode")
    return text + "."


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


def _draw_run(ax, values: np.ndarray, color: str, solid: bool, markersize: float = 3,
              linewidth: float = 1.5) -> list[float]:
    """Mean line and min-max band over the seeds with an all-finite history; returns the band's
    extent. Without such a seed, the mean of what is finite, dotted (a diverged run)."""
    return draw_seeds(ax, values, None, color, "-" if solid else "--", linewidth=linewidth, markersize=markersize)


def plot_ranking_curves(results: Mapping, path: Path) -> None:
    """Small multiples: validation loss per epoch, one panel per optimizer in ranking order, one
    line per batch mode, the target dashed; ~55 panels stay legible on one page."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    modes = batch_modes(results)
    rows = ranking_rows(modes)
    target = target_value(results)
    ncols = max(1, min(8, math.ceil(math.sqrt(len(rows)))))
    nrows = max(1, math.ceil(len(rows) / ncols))
    width = max(1.9 * ncols + 0.4, 6.5)  # a few panels still leave room for the legend
    fig = Figure(figsize=(width, max(1.5 * nrows + 1.0, 3.0)), layout="constrained")
    # Not sharex/sharey: with ~55 shared axes every limit lookup walks all of them (seconds
    # per plot); the same limits are set on each panel below instead.
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    bounds, epochs = [], 1
    for rank, (ax, (optimizer, runs)) in enumerate(zip(axes, rows), 1):
        for index, run in enumerate(runs):
            values = seed_matrix((run or {}).get("history", {}).get("val_loss"))
            if values.size:
                bounds += _draw_run(ax, values, f"C{index % 10}", solid=True, markersize=2, linewidth=1.1)
                epochs = max(epochs, values.shape[1])
        if target is not None:
            ax.axhline(target, color="0.35", linestyle="--", linewidth=0.8)
        ax.set_title(f"{rank}. {optimizer}", fontsize=7.5, pad=2)
        ax.tick_params(labelsize=6, length=2, pad=1)
        ax.grid(alpha=0.3, linewidth=0.5)
    low, high = _ranking_ylim(bounds, target)
    for index, (ax, (_, runs)) in enumerate(zip(axes, rows)):
        ax.set_xlim(0.5, epochs + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=4, min_n_ticks=1))
        ax.set_ylim(low, high)
        # tick labels on the outer panels only: the left column, and the lowest panel of each column
        ax.tick_params(labelleft=index % ncols == 0, labelbottom=index + ncols >= len(rows))
        _panel_notes(ax, modes, runs, high)
    for ax in axes[len(rows):]:
        ax.remove()
    fig.supxlabel("epoch", fontsize=8)
    fig.supylabel("validation loss (binary cross-entropy)", fontsize=8)
    handles = [Line2D([], [], color=f"C{i % 10}", label=mode_prose(label)) for i, (label, _) in enumerate(modes)]
    handles += [Patch(color="0.3", alpha=0.2, label=BAND), Line2D([], [], color="0.3", linestyle=":",
                                                                 label="every seed diverged")]
    if target is not None:
        handles.append(Line2D([], [], color="0.35", linestyle="--", label=f"target {target:g}"))
    # The legend's title is the figure's: a suptitle and an outside legend overlap in constrained
    # layout, and at the bottom the legend would collide with the shared "epoch" label.
    fig.legend(handles=handles, loc="outside upper center", frameon=False, fontsize=8,
               ncols=len(handles) if width >= 9 else math.ceil(len(handles) / 2),
               title="Validation loss per epoch, optimizers in ranking order", title_fontsize=10)
    fig.savefig(path, format="png", dpi=100)


def _panel_notes(ax, modes: list[tuple[str, list[Mapping]]], runs: list[Mapping | None], top: float) -> None:
    """In words, in the mode's color, what the panel can't show: divergences, and a final loss
    above the clipped y-axis."""
    notes = []
    for index, ((label, _), run) in enumerate(zip(modes, runs)):
        if not run:
            continue
        loss = run["final"].get("val_loss_mean")
        if run.get("diverged_seeds"):
            notes.append((f"{label}: {run['diverged_seeds']}/{len(run.get('seeds') or ())} diverged", index))
        elif _finite(loss) and loss > top:
            notes.append((f"{label}: ends at {loss:.3g} ↑", index))
    for line, (text, index) in enumerate(notes):
        ax.text(0.97, 0.95 - 0.13 * line, text, transform=ax.transAxes, ha="right", va="top", fontsize=6,
                color=f"C{index % 10}", bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0, "pad": 0.5})


def _ranking_ylim(bounds: list[float], target: float | None) -> tuple[float, float]:
    """From the lowest kept value up to a bit above chance level (ln 2 ~ 0.69 for a balanced binary
    task), so that a few runs stuck far above it don't squash the others into a line."""
    if not bounds:
        return (0.0, 1.0)
    low, high = min(bounds), max(bounds)
    ceiling = max(CHANCE_CEILING, (target or 0) * 1.15)
    if low < ceiling:
        high = min(high, ceiling)
    pad = (high - low) * 0.04 or 0.05
    return (low - pad, high + pad)
