"""Shipping code to workers, for every backend alike.

:class:`XrunPlugin` is a Dask worker plugin pickled *by value* (workers run in
the spec's environment, where xrun itself is not installed). Its ``setup``
runs on every worker, including workers that join or restart later:

* writes the source of :mod:`runner._worker` as ``_xrun_worker.py`` and imports it;
* extracts the run's code snapshot (the same deterministic tar.gz that goes into
  the bundle) into the worker's local directory, safely, keyed by its hash, and
  puts it first on ``sys.path`` (dropping modules of an older snapshot);
* sets the spec's secrets as environment variables (values never touch disk).

Tasks call :func:`call_trial` / :func:`call_batch`, also pickled by value.
"""

from __future__ import annotations

import importlib
import io
import os
import sys
import tarfile
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

WORKER_MODULE = "_xrun_worker"
PLUGIN_NAME = "xrun"


class XrunPlugin(WorkerPlugin):
    """Ships the worker module, the code snapshot and the secrets to each worker."""

    idempotent = False
    name = PLUGIN_NAME

    def __init__(self, worker_source: str, code_tar: bytes, code_hash: str, secrets: dict[str, str]) -> None:
        self.worker_source = worker_source
        self.code_tar = code_tar
        self.code_hash = code_hash
        self.secrets = secrets

    def __repr__(self) -> str:  # never show secret values
        return f"XrunPlugin(code={self.code_hash[:12]}, secrets={sorted(self.secrets)})"

    def setup(self, worker: Any = None) -> None:
        base = Path(getattr(worker, "local_directory", None) or os.getcwd()) / "xrun"
        base.mkdir(parents=True, exist_ok=True)
        _install_worker_module(base, self.worker_source)
        _install_code(base, self.code_tar, self.code_hash)
        os.environ.update(self.secrets)

    def teardown(self, worker: Any = None) -> None:
        pass


def _install_worker_module(base: Path, source: str) -> None:
    target = base / f"{WORKER_MODULE}.py"
    if not target.exists() or target.read_text(encoding="utf-8") != source:
        tmp = target.with_suffix(".tmp")
        tmp.write_text(source, encoding="utf-8")
        os.replace(tmp, target)
    if str(base) not in sys.path:
        sys.path.insert(0, str(base))
    module = sys.modules.get(WORKER_MODULE)
    if module is not None and getattr(module, "__file__", None) == str(target):
        if getattr(module, "_xrun_source", None) != source:
            module = importlib.reload(module)
    else:
        importlib.invalidate_caches()
        module = importlib.import_module(WORKER_MODULE)
    module._xrun_source = source  # type: ignore[attr-defined]


def _install_code(base: Path, code_tar: bytes, code_hash: str) -> None:
    root = base / "code"
    target = root / code_hash[:16]
    if not target.exists():
        tmp = root / f".{code_hash[:16]}.{os.getpid()}"
        tmp.mkdir(parents=True, exist_ok=True)
        safe_extract(code_tar, tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another thread or process got there first
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    # Drop older snapshots from sys.path and their modules from sys.modules.
    prefix = str(root) + os.sep
    stale = [p for p in sys.path if p.startswith(prefix) and p != str(target)]
    for p in stale:
        sys.path.remove(p)
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        if file.startswith(prefix) and not file.startswith(str(target) + os.sep):
            del sys.modules[name]
    if str(target) not in sys.path:
        sys.path.insert(0, str(target))
        importlib.invalidate_caches()


class UnsafeArchive(Exception):
    pass


def safe_extract(data: bytes | Path, dest: Path) -> None:
    """Extract a tar(.gz) (bytes, or a file) refusing absolute paths, ``..``,
    links, devices and anything else that would land outside ``dest``."""
    dest = Path(dest).resolve()
    opened = (
        tarfile.open(name=str(data), mode="r:*")
        if isinstance(data, Path)
        else tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    )
    with opened as tar:
        members = tar.getmembers()
        for m in members:
            check_member(m, dest)
        for m in members:
            target = dest / m.name
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            assert src is not None
            with open(target, "wb") as fh:
                fh.write(src.read())
            os.chmod(target, 0o755 if m.mode & 0o100 else 0o644)


def check_member(member: tarfile.TarInfo, dest: Path) -> None:
    name = member.name
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchive(f"refusing {name!r}: links and special files are not allowed")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"refusing {name!r}: absolute path")
    if ".." in Path(name).parts:
        raise UnsafeArchive(f"refusing {name!r}: path escapes the destination")
    if not (dest / name).resolve().is_relative_to(dest):
        raise UnsafeArchive(f"refusing {name!r}: path escapes the destination")


def call_trial(task: dict[str, Any]) -> dict[str, Any]:
    return importlib.import_module(WORKER_MODULE).run_trial(task)


def call_batch(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return importlib.import_module(WORKER_MODULE).run_batch(tasks)


def call_stop(run: str) -> None:
    importlib.import_module(WORKER_MODULE).stop(run)


def call_info() -> dict[str, Any]:
    return importlib.import_module(WORKER_MODULE).worker_info()
