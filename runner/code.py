"""Code snapshots: the files a run ships to workers and keeps in its bundle.

The archive is deterministic (sorted names, zeroed times and owners, fixed
modes, gzip without a timestamp), so the same files always give the same bytes.
The code hash is over (path, sha256) pairs, independent of the archive format.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import json
import logging
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import _proc
from runner.errors import SpecError
from runner.spec.values import pattern_problem

log = logging.getLogger(__name__)

ALWAYS_EXCLUDED_DIRS = {
    ".git", ".hg", ".svn", "__pycache__", ".venv", "venv", ".tox", ".nox", "node_modules",
    ".mypy_cache", ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints",
}  # fmt: skip
MAX_FILES = 20_000
MAX_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class CodeSnapshot:
    root: Path
    files: dict[str, str]  # posix relative path -> sha256
    archive: bytes = field(repr=False)
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {"root": str(self.root), "hash": self.hash, "files": self.files}


def select(root: Path, include: list[str], exclude: list[str], skip: list[Path] = ()) -> list[Path]:  # type: ignore[assignment]
    """Files under ``root`` matching ``include`` and not ``exclude``, sorted.

    Nothing outside ``root`` is ever taken: globs that leave it are refused, and
    a symlink (to a file, or on the way through a linked directory) whose
    target is outside ``root`` is skipped with a warning. Links inside ``root``
    are packed as the file they point to.
    """
    for pattern in include:
        problem = pattern_problem(pattern)
        if problem:
            raise SpecError(f"code.include: {problem}")
    real_root = root.resolve()
    skip_resolved = [p.resolve() for p in skip]
    chosen: set[Path] = set()
    outside: list[str] = []
    for pattern in include:
        for path in root.glob(pattern):
            if not path.resolve().is_relative_to(real_root):
                if path.is_file() or path.is_symlink():
                    outside.append(path.relative_to(root).as_posix())
                continue
            if path.is_file():
                chosen.add(path)
    if outside:
        log.warning("skipped %d link(s) leading outside code.root (%s): %s", len(outside), root,
                    ", ".join(sorted(set(outside))[:5]) + (" …" if len(set(outside)) > 5 else ""))  # fmt: skip
    out = []
    for path in sorted(chosen):
        rel = path.relative_to(root)
        if any(part in ALWAYS_EXCLUDED_DIRS for part in rel.parts[:-1]) or path.suffix in (".pyc", ".pyo"):
            continue
        if any(rel.match(p) or _glob_match(rel, p) for p in exclude):
            continue
        resolved = path.resolve()
        if any(resolved.is_relative_to(s) for s in skip_resolved):
            continue
        out.append(path)
    return out


def _glob_match(rel: Path, pattern: str) -> bool:
    return fnmatch.fnmatch(rel.as_posix(), pattern)


def snapshot(root: Path, include: list[str], exclude: list[str], skip: list[Path] = ()) -> CodeSnapshot:  # type: ignore[assignment]
    files = select(root, include, exclude, skip)
    if len(files) > MAX_FILES:
        raise SpecError(
            f"code.include matches {len(files):,} files (limit {MAX_FILES:,}); narrow code.include"
        )
    hashes: dict[str, str] = {}
    raw = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in files:
            rel = path.relative_to(root).as_posix()
            data = path.read_bytes()
            total += len(data)
            if total > MAX_BYTES:
                raise SpecError(
                    f"code.include matches more than {MAX_BYTES // 2**20} MiB of files; "
                    "keep data out of code (use the data section)"
                )
            hashes[rel] = hashlib.sha256(data).hexdigest()
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o755 if path.stat().st_mode & 0o100 else 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, mtime=0, compresslevel=6) as fh:
        fh.write(raw.getvalue())
    digest = hashlib.sha256(json.dumps(sorted(hashes.items())).encode()).hexdigest()
    return CodeSnapshot(root=root, files=hashes, archive=gz.getvalue(), hash=digest)


def git_info(root: Path) -> dict[str, Any]:
    """Commit, branch, dirty flag and diff of the repository holding ``root``."""
    try:
        top = _proc.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"], check=False, timeout=10)
    except Exception:  # git missing: still a valid snapshot
        return {"repository": False, "reason": "git is not installed"}
    if top.returncode != 0:
        return {"repository": False}

    def git(*args: str) -> str:
        res = _proc.run(["git", "-C", str(root), *args], check=False, timeout=30)
        return res.stdout.strip() if res.returncode == 0 else ""

    status = git("status", "--porcelain", "--untracked-files=no")
    diff = git("diff", "HEAD")
    return {
        "repository": True,
        "toplevel": top.stdout.strip(),
        "commit": git("rev-parse", "HEAD") or None,
        "branch": git("rev-parse", "--abbrev-ref", "HEAD") or None,
        "dirty": bool(status),
        "diff": diff[: 5 * 1024 * 1024],
    }
