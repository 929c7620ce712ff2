"""File and directory digests, read in chunks (data files and packages can be large).

The one home of these on the driver; ``runner/worker/context.py`` keeps a copy because
it runs where xrun is not installed (it imports only the standard library)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from runner.errors import VerifyError

CHUNK = 1 << 20


def file_digest(path: Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def dir_digest(root: Path) -> str:
    """sha256 over the relative paths and file digests of every file under ``root``."""
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(root).as_posix()}\0{file_digest(f)}\n".encode())
    return h.hexdigest()


def check_package(path: Path, sha256: str | None, md5: str | None, name: str, where: str) -> None:
    """A conda package file against the lock's digest (sha256, else md5), or :class:`VerifyError`.

    ``where`` names the file in the message (its path or URL)."""
    if sha256:
        algo, want = "sha256", sha256.lower()
    elif md5:
        algo, want = "md5", md5.lower()
    else:
        raise VerifyError(f"conda package {name} has no hash in the lock; relock it")
    actual = file_digest(path, algo)
    if actual != want:
        raise VerifyError(
            f"conda package {name} does not match the lock: {algo} {actual}, the lock says "
            f"{want} ({where}). The channel changed or the file was tampered with."
        )
