"""Files: the user cache folder and the one atomic-write helper every stage uses.

Atomic means a reader sees the old file or the whole new one, never a torn one: each file is
written to a temporary file beside its destination (same filesystem) and renamed into place with
`os.replace`. `tempfile` creates files 0600, and a rename keeps that mode, so a staged file first
gets the mode a plain `open` would have given it (0666 minus the umask).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from optax_lab.errors import UsageError

__all__ = ["ENV_CACHE", "atomic_file", "cache_dir", "shareable_args", "shareable_command", "write_files"]

ENV_CACHE = "OPTAX_LAB_CACHE"


def cache_dir() -> Path:
    """The user cache: env OPTAX_LAB_CACHE, else the platform's (`pooch.os_cache("optax_lab")`)."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    import pooch  # slow to import; only needed without the env setting

    return Path(pooch.os_cache("optax_lab"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish_mode(path: str | os.PathLike) -> None:
    os.chmod(path, 0o666 & ~_umask())


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """`with atomic_file(path) as f: f.write(...)`: `path` appears, whole, only when the block
    ends without an exception (flushed and fsynced first); otherwise nothing changes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        _publish_mode(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_files(files: Mapping[str | os.PathLike, bytes | str], fix: str = "choose a writable --out path") -> None:
    """Write every file beside its destination first, then rename them into place in the given
    order (put the one that links to the others last). A failure before the renames leaves no
    file changed; an OSError becomes a one-line UsageError ending in `fix`."""
    staged: list[tuple[str, Path]] = []
    path = None
    try:
        for path, content in files.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            staged.append((temporary, path))
            with os.fdopen(fd, "wb") as handle:
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
            _publish_mode(temporary)
        for temporary, path in staged:
            os.replace(temporary, path)
    except OSError as error:
        raise UsageError(f"cannot write {path} ({error.strerror or error}): {fix}") from None
    finally:
        for temporary, _ in staged:
            if os.path.exists(temporary):
                os.unlink(temporary)


def shareable_args(argv: Sequence[str]) -> list[str]:
    """Arguments as reports keep them: absolute paths by file name only, so nothing committed or
    shared names a machine's folders."""

    def one(arg: str) -> str:
        flag, equals, value = arg.partition("=")
        if equals and Path(value).is_absolute():
            return f"{flag}={Path(value).name}"
        return Path(arg).name if Path(arg).is_absolute() else arg

    return [one(arg) for arg in argv]


def shareable_command(program: str, argv: Sequence[str]) -> str:
    """`program` and its arguments as reports show them (`shareable_args`)."""
    return " ".join([program, shlex.join(shareable_args(argv))]).strip()
