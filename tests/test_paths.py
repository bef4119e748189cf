"""No machine paths in what a run writes: reports name their inputs by file name and checksum, so
that a committed or shared results.json / report.md says nothing about the folders of the machine
that made it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from optax_lab.cli import main

TINY = [
    "--optimizers",
    "sgd",
    "--batch",
    "full",
    "--dataset",
    "imdb",
    "--num-words",
    "10",
    "--seeds",
    "1",
    "--epochs",
    "1",
    "--no-compile-cache",
]
# An absolute POSIX path inside a text: a slash after a space, quote, bracket or line start, then a
# folder name and another slash (URLs have "//" or a host before their slashes and do not match).
ABSOLUTE = re.compile(r"(?:^|[\s\"'(`=])(/(?:tmp|home|root|work|Users|var|private|mnt|opt|srv|data)/)", re.MULTILINE)


def _texts(folder: Path) -> dict[str, str]:
    return {
        path.name: path.read_text(errors="replace")
        for path in folder.rglob("*")
        if path.is_file() and path.suffix in (".json", ".md", ".jsonl", ".txt")
    }


def _assert_no_machine_path(folder: Path, *paths: Path) -> None:
    texts = _texts(folder)
    assert "results.json" in texts and "report.md" in texts
    for name, text in texts.items():
        for path in paths:
            assert str(path) not in text, f"{name} names the machine path {path}"
        assert not ABSOLUTE.search(text), f"{name}: {ABSOLUTE.search(text).group(0)!r}"


@pytest.mark.parametrize("given", ["option", "env"])
def test_a_run_from_an_archive_under_tmp_path_writes_no_machine_path(
    given, tiny_archive, tmp_path, monkeypatch, isolated_cache, capsys
):
    out = tmp_path / "out"
    archive = ["--imdb-archive", str(tiny_archive)] if given == "option" else []
    if given == "env":
        monkeypatch.setenv("OPTAX_LAB_IMDB_ARCHIVE", str(tiny_archive))
    assert main(["run", *TINY, *archive, "--out", str(out)]) == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["source"].startswith(f"{tiny_archive.name} (sha256 ")  # a name and a checksum
    _assert_no_machine_path(out, tmp_path, isolated_cache, Path.home(), Path.cwd())

    rerendered = tmp_path / "again"  # `optax-lab report` keeps it so
    assert main(["report", str(out / "results.json"), "--out", str(rerendered)]) == 0
    _assert_no_machine_path(rerendered, tmp_path, isolated_cache, Path.home(), Path.cwd())


def test_committed_reports_name_no_machine_path():
    root = Path(__file__).resolve().parents[1]
    try:
        listed = subprocess.run(
            ["git", "ls-files", "reports"], cwd=root, capture_output=True, text=True, check=True, timeout=60
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    texts = {
        name: (root / name).read_text(errors="replace")
        for name in listed
        if name.endswith((".md", ".json")) and (root / name).is_file()
    }
    assert texts, "no committed report found"
    for name, text in texts.items():
        assert not ABSOLUTE.search(text), f"{name}: {ABSOLUTE.search(text).group(0)!r}"
