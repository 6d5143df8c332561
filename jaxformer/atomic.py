"""Atomic writes: a file or a directory appears complete, under its name, or not at all.

    with atomic_open(path, "w") as f: ...      a temporary file beside ``path``; fsync,
                                               rename onto ``path``, fsync the directory
    write_atomic(path, data)                   the same, for bytes in hand
    with atomic_dir(path) as tmp: ...          a temporary directory, renamed onto ``path``

A crash at any moment leaves the old file (or none) and at most a ``.name.*.tmp`` beside
it, never a part. What is written follows the umask, as ordinary tools' files do.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Open a temporary file beside ``path`` for writing; once the block ends without an
    error, make it durable and rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never a part."""
    with atomic_open(path, "wb") as f:
        f.write(data)


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary directory beside ``path`` to fill; once the block ends without an error
    it replaces ``path`` (an old directory is moved aside first, then removed)."""
    root = Path(path)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        yield tmp
        if root.exists():  # a rename cannot replace a full directory: move the old one aside
            old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old.", dir=root.parent))
            os.replace(root, old / root.name)
            os.replace(tmp, root)
            shutil.rmtree(old)
        else:
            os.replace(tmp, root)
        _fsync_dir(root.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
