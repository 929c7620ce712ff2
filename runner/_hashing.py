"""File and directory digests, read in chunks (data files and packages can be large).

The one home of these on the driver; ``runner/_worker.py`` keeps a copy because
it runs where xrun is not installed (it imports only the standard library)."""

from __future__ import annotations

import hashlib
from pathlib import Path

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
