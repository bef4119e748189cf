"""Atomic writes' one subtlety: `tempfile` creates files 0600 and folders 0700, and a rename
keeps that mode, so what we publish gets the mode a plain `open`/`mkdir` would have given it."""

from __future__ import annotations

import os


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish_mode(path: str | os.PathLike, folder: bool = False) -> None:
    """chmod a staged temp file (or folder) to 0666 (0777) minus the umask before renaming it in."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())
