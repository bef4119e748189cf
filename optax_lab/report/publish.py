"""Files on disk: check the output folder early, read a saved results.json, and write a report.

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
from optax_lab.schema import FIX_RESULTS, check_results, to_jsonable

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
    """Load a saved results.json for re-reporting; bad files become one-line UsageErrors."""
    try:
        results = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise UsageError(f"cannot read {path} ({error.strerror or error}): {FIX_RESULTS}") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"{path} is not valid JSON ({error.msg}, line {error.lineno}): {FIX_RESULTS}") from None
    check_results(results, source=str(path))
    return results


def write_report(results: Mapping[str, Any], out_dir: str | Path,
                 extra_files: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
    """Write results.json, report.md, the PNGs of each lesson's section, and `extra_files`
    ({file name: JSON record}, e.g. a tuner's tuned.json) into out_dir.

    Returns the path of report.md. Raises UsageError if out_dir can't be written or the
    results are malformed; on any failure out_dir gains no file.
    """
    results = to_jsonable(results)  # one view for all outputs: every NaN/inf is now None
    check_results(results)
    out = check_writable(out_dir)
    files: dict[Path, bytes | str] = {out / name: png for name, png in render_plots(results).items()}
    files[out / "results.json"] = json.dumps(results, indent=1, allow_nan=False) + "\n"
    for name, record in (extra_files or {}).items():
        files[out / name] = json.dumps(to_jsonable(record), indent=1, allow_nan=False) + "\n"
    files[out / "report.md"] = render_markdown(results)  # last: it links to the others
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
