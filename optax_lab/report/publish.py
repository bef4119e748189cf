"""Files on disk: check the output folder early, read a saved results.json, and write a report
(complete, or an interrupted run's, marked INCOMPLETE).

Nothing half-written: the PNGs and report.md are rendered in memory first, then `files.write_files`
stages every file beside its destination and renames them into place, report.md last, so that
once report.md exists everything it links to exists too.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from optax_lab.errors import UsageError
from optax_lab.files import write_files
from optax_lab.report.render import render_markdown, render_plots
from optax_lab.schema import FIX_RESULTS, check_results, to_jsonable, upgrade

FIX_OUT = "choose a writable directory with --out DIR"


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
    """Load a saved results.json for re-reporting; bad files become one-line UsageErrors. The file
    as it is, of whatever version: `write_report` writes it back unchanged and renders it upgraded."""
    try:
        results = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise UsageError(f"cannot read {path} ({error.strerror or error}): {FIX_RESULTS}") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"{path} is not valid JSON ({error.msg}, line {error.lineno}): {FIX_RESULTS}") from None
    check_results(results, source=str(path))
    return results


def write_report(
    results: Mapping[str, Any], out_dir: str | Path, extra_files: Mapping[str, Mapping[str, Any]] | None = None
) -> Path:
    """Write results.json, report.md, the PNGs of each lesson's section, and `extra_files`
    ({file name: JSON record}, e.g. a tuner's tuned.json) into out_dir.

    results.json holds `results` as given (of whatever version); report.md and the PNGs are
    rendered from them `schema.upgrade`d, as this version would write them.

    Returns the path of report.md. Raises UsageError if out_dir can't be written or the
    results are malformed; on any failure out_dir gains no file.
    """
    results = to_jsonable(results)  # every NaN/inf is now None, in the file and the report alike
    check_results(results)
    view = upgrade(results)
    out = check_writable(out_dir)
    files: dict[Path, bytes | str] = {out / name: png for name, png in _plots(view).items()}
    files[out / "results.json"] = json.dumps(results, indent=1, allow_nan=False) + "\n"
    for name, record in (extra_files or {}).items():
        files[out / name] = json.dumps(to_jsonable(record), indent=1, allow_nan=False) + "\n"
    markdown = _incomplete_markdown(view) if view.get("incomplete") else render_markdown(view)
    files[out / "report.md"] = markdown  # last: it links to the others
    created = not out.exists()
    try:
        write_files(files, fix=FIX_OUT)
    except BaseException:
        if created:
            _remove_if_empty(out)
        raise
    return out / "report.md"


def _remove_if_empty(out: Path) -> None:
    try:
        out.rmdir()
    except OSError:
        pass  # not empty (or gone): it is not ours to clean further


def _plots(results: Mapping[str, Any]) -> dict[str, bytes]:
    if not results.get("incomplete"):
        return render_plots(results)
    try:  # the sections expect whole lessons: an interrupted run's may not draw, and that must not lose it
        return render_plots(results)
    except Exception:
        return {}


def incomplete_banner(results: Mapping[str, Any]) -> str:
    """One paragraph: what finished, what is missing, and the command that resumes."""
    incomplete = results["incomplete"]
    missing = incomplete.get("missing_runs") or []
    shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
    parts = [f"**INCOMPLETE**: the run stopped after {incomplete.get('finished_runs', '?')} runs had finished"]
    if missing:
        parts.append(f"{len(missing)} planned run{' is' if len(missing) == 1 else 's are'} missing: {shown}")
    if incomplete.get("not_started"):
        parts.append(f"not started: {incomplete['not_started']}")
    return "> " + "; ".join(parts) + f". Resume with `{incomplete.get('resume', '--resume')}`."


def _incomplete_markdown(results: Mapping[str, Any]) -> str:
    """The report of the finished runs under an INCOMPLETE title and banner; when the sections
    cannot render partial lessons, a table of the finished runs instead."""
    try:
        title, _, rest = render_markdown(results).partition("\n")
    except Exception:
        rows = [
            f"| {run['name']} | {_number(run['final'].get('val_loss_mean'))} | {run.get('status', '?')} |"
            for run in results["runs"]
        ]
        title = f"# optax-lab report: preset `{results.get('preset', '?')}`"
        rest = "\n".join(["", "| run | final val loss (mean over seeds) | status |", "|---|---|---|", *rows, ""])
    return "\n".join([title.replace("# ", "# INCOMPLETE: ", 1), "", incomplete_banner(results), rest])


def _number(value: Any) -> str:
    return "—" if value is None else f"{value:.4f}"
