"""Atomic writes: a file or a directory appears complete, under its name, or not at all.

    with atomic_open(path, "w") as f: ...      a temporary file beside ``path``; fsync,
                                               rename onto ``path``, fsync the directory
    write_atomic(path, data)                   the same, for bytes in hand
    with atomic_dir(path) as tmp: ...          a temporary directory, renamed onto ``path``
    write_manifest(dir); verify_manifest(dir)  dir/SHA256SUMS, the sha256 of each file,
                                               written last and checked when read

A crash at any moment leaves the old file (or none) and at most a ``.name.*.tmp`` beside
it, never a part. What is written follows the umask, as ordinary tools' files do. A
manifest catches what atomicity cannot: bytes damaged after the write (a disk, a copy,
a hand), named by file when the directory is read.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
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


# -- manifests: what was written, verified when read ---------------------------------------
MANIFEST = "SHA256SUMS"  # ``sha256sum``'s format: ``sha256sum -c SHA256SUMS`` checks it too


class Damaged(ValueError):
    """A file differs from the checksum its manifest recorded, is missing, or has no
    manifest; ``path`` is the file, and the message names it."""

    def __init__(self, path: str | os.PathLike, why: str):
        super().__init__(f"{path}: {why}")
        self.path = Path(path)


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def write_manifest(
    root: str | os.PathLike, files: Iterable[str] | None = None, exclude: Iterable[str] = ()
) -> None:
    """Write ``root/SHA256SUMS``: the sha256 of each of ``files`` (paths relative to
    ``root``; default every file below it but the ``exclude``d ones). Written last, so a
    manifest means every file it lists was complete."""
    root, skip = Path(root), {MANIFEST, *exclude}
    if files is None:
        every = (f.relative_to(root).as_posix() for f in root.rglob("*") if f.is_file())
        files = [rel for rel in every if rel not in skip and not rel.endswith(".tmp")]
    lines = [f"{sha256_file(root / rel)}  {rel}\n" for rel in sorted(files)]
    write_atomic(root / MANIFEST, "".join(lines).encode())


def read_manifest(root: str | os.PathLike) -> dict[str, str]:
    """{relative path: sha256} of ``root/SHA256SUMS``; ``Damaged`` if missing or unreadable."""
    path = Path(root) / MANIFEST
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise Damaged(
            path, "missing: the files were never completely written (or not by this jaxformer)"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise Damaged(path, f"unreadable ({e})") from None
    sums = {}
    for n, line in enumerate(text.splitlines(), 1):
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64 or not rel or rel.startswith("/") or ".." in rel:
            raise Damaged(path, f"line {n} is not '<sha256>  <file>'")
        sums[rel] = digest
    return sums


def verify_manifest(root: str | os.PathLike, names: Iterable[str] | None = None) -> None:
    """Check the files ``root/SHA256SUMS`` lists (or only ``names``, each of which it must
    list) against their recorded sha256; ``Damaged`` names the first that differs."""
    root = Path(root)
    sums = read_manifest(root)
    for rel in sums if names is None else names:
        f = root / rel
        if rel not in sums:
            raise Damaged(root / MANIFEST, f"does not list {rel}")
        try:
            digest = sha256_file(f)
        except FileNotFoundError:
            raise Damaged(f, f"missing, though {MANIFEST} lists it") from None
        if digest != sums[rel]:
            raise Damaged(f, f"damaged: its sha256 differs from the one in {MANIFEST}")
