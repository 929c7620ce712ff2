"""Putting stage outputs (the prepare stage's files) on every worker.

:class:`InputsPlugin` is a Dask worker plugin pickled *by value*, like
:mod:`runner._plugin`: its ``setup`` runs on every worker, including workers
that join or restart later, and writes the files into the worker's local
directory, read-only, checking them against the outputs' digest (as
:func:`runner.stages.files_digest` computes it). The files travel through the
scheduler with the plugin, so their size is bounded
(:data:`runner.stages.MAX_INPUT_BYTES`). Trials find the directory through the
module ``_xrun_inputs`` (see :func:`runner.worker.stage.input_paths`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path, PurePosixPath
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

INPUTS_PLUGIN = "xrun-inputs"
INPUTS_MODULE = "_xrun_inputs"  # as runner.worker.stage.INPUTS_MODULE


class InputsPlugin(WorkerPlugin):
    """Installs stage outputs (name -> (digest, files)) on each worker."""

    idempotent = False
    name = INPUTS_PLUGIN

    def __init__(self, inputs: dict[str, tuple[str, list[tuple[str, bytes]]]]) -> None:
        self.inputs = inputs

    def __repr__(self) -> str:
        return f"InputsPlugin({ {k: v[0][:12] for k, v in self.inputs.items()} })"

    def setup(self, worker: Any = None) -> None:
        base = Path(getattr(worker, "local_directory", None) or tempfile.gettempdir()) / "xrun" / "inputs"
        module = sys.modules.get(INPUTS_MODULE)
        if module is None:
            module = sys.modules.setdefault(INPUTS_MODULE, types.ModuleType(INPUTS_MODULE))
        for attr in ("paths", "signatures", "reinstall"):
            if not hasattr(module, attr):
                setattr(module, attr, {})
        for _name, (digest, files) in self.inputs.items():
            install(module, base, digest, files)


def install(module: Any, base: Path, digest: str, files: list[tuple[str, bytes]]) -> None:
    """Install (again) and register the outputs ``digest``: its directory, the
    signature trials are checked against, and how to put it back."""
    root = install_files(base, digest, files)
    module.paths[digest] = str(root)
    module.signatures[digest] = signature(root)
    module.reinstall[digest] = lambda: _reinstall(module, base, digest, files)


def _reinstall(module: Any, base: Path, digest: str, files: list[tuple[str, bytes]]) -> None:
    root = base / digest
    if root.exists():
        for p in [root, *root.rglob("*")]:
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)
    install(module, base, digest, files)


def signature(root: Path) -> list[tuple[str, int, int]]:
    """(path, size, mtime) of every entry under ``root``: what a trial must leave as it found.
    Read-only modes do not stop a worker running as root; this notices the change.
    (As runner.worker.stage.signature.)"""
    out = []
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out.append((p.relative_to(root).as_posix(), st.st_size if p.is_file() else -1, st.st_mtime_ns))
    return out


def _safe_rel(rel: str) -> PurePosixPath:
    path = PurePosixPath(rel)
    if not rel or path.is_absolute() or ".." in path.parts or "\\" in rel:
        raise ValueError(f"refusing the stage output path {rel!r}")
    return path


def install_files(base: Path, digest: str, files: list[tuple[str, bytes]]) -> Path:
    """``base/<digest>``: the files, read-only; made once per worker, atomically."""
    final = base / digest
    if final.is_dir():
        return final
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=f".{digest[:12]}-"))
    try:
        listing = []
        for rel, blob in files:
            target = tmp / _safe_rel(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob)
            listing.append((rel, hashlib.sha256(blob).hexdigest()))
        h = hashlib.sha256()
        for rel, sha in sorted(listing, key=lambda item: item[0].split("/")):  # as runner.stages.files_digest
            h.update(f"{rel}\0{sha}\n".encode())
        if h.hexdigest() != digest:
            raise ValueError(f"stage outputs do not match their digest {digest[:12]}…")
        for p in sorted(tmp.rglob("*"), reverse=True):  # children before their directory
            p.chmod(0o555 if p.is_dir() else 0o444)
        tmp.chmod(0o555)
        try:
            os.rename(tmp, final)
        except OSError:  # another thread got there first
            pass
    finally:
        if tmp.exists():
            for p in [tmp, *tmp.rglob("*")]:
                if p.is_dir():
                    p.chmod(0o755)
            shutil.rmtree(tmp, ignore_errors=True)
    return final
