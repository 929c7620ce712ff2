"""Shipping code to workers, for every backend alike.

:class:`XrunPlugin` is a Dask worker plugin pickled *by value* (workers run in
the spec's environment, where xrun itself is not installed). Its ``setup``
runs on every worker, including workers that join or restart later:

* writes the sources of the package :mod:`runner.worker` as the package
  ``_xrun_worker`` and imports it (again, fresh, when the sources changed);
* extracts the run's code snapshot (the same deterministic tar.gz that goes into
  the bundle) into the worker's local directory, safely, keyed by its hash, and
  puts it first on ``sys.path`` (dropping modules of an older snapshot);
* sets the spec's secrets as environment variables (values never touch disk)
  and redacts them from what the worker process writes to its stdout and stderr;
  ``teardown`` (when the run unregisters the plugin) takes them out again.

Tasks call :func:`call_trial` / :func:`call_batch`, also pickled by value.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
import select
import shutil
import sys
import tarfile
import threading
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

WORKER_MODULE = "_xrun_worker"
PLUGIN_NAME = "xrun"


class XrunPlugin(WorkerPlugin):
    """Ships the worker module, the code snapshot and the secrets to each worker."""

    idempotent = False
    name = PLUGIN_NAME

    def __init__(self, worker_sources: dict[str, str], code_tar: bytes, code_hash: str, secrets: dict[str, str]) -> None:
        self.worker_sources = worker_sources  # file name -> source of each module of runner.worker
        self.code_tar = code_tar
        self.code_hash = code_hash
        self.secrets = secrets

    def __repr__(self) -> str:  # never show secret values
        return f"XrunPlugin(code={self.code_hash[:12]}, secrets={sorted(self.secrets)})"

    def setup(self, worker: Any = None) -> None:
        base = Path(getattr(worker, "local_directory", None) or os.getcwd()) / "xrun"
        base.mkdir(parents=True, exist_ok=True)
        _install_worker_package(base, self.worker_sources)
        _install_code(base, self.code_tar, self.code_hash)
        if self.secrets:
            self._saved_env = {k: os.environ.get(k) for k in self.secrets}
            os.environ.update(self.secrets)
            sys.modules[WORKER_MODULE].SECRETS[:] = list(self.secrets.values())  # results are scrubbed on the worker
            self._redactors = [_FdRedactor(fd, list(self.secrets.values())) for fd in (1, 2)]

    def teardown(self, worker: Any = None) -> None:
        """At the end of the run: a shared worker keeps no secret in its environment."""
        module = sys.modules.get(WORKER_MODULE)
        if module is not None:
            module.SECRETS[:] = []
        for name, value in getattr(self, "_saved_env", {}).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for redactor in getattr(self, "_redactors", []):
            redactor.close()


class _FdRedactor:
    """Routes a worker's file descriptor (1 or 2) through a pipe that replaces
    secret values with ``[secret]``: what a trial's subprocess prints
    (``os.system("echo $TOKEN")``) reaches the worker's output redacted.

    Redacts whole lines; a partial line is written after a short pause.
    """

    def __init__(self, fd: int, secrets: list[str]) -> None:
        self.fd = fd
        self.secrets = [s.encode() for s in secrets if s]
        self.saved = os.dup(fd)
        read_end, write_end = os.pipe()
        os.dup2(write_end, fd)
        os.close(write_end)
        self.read_end = read_end
        self.thread = threading.Thread(target=self._pump, name=f"xrun-redact-{fd}", daemon=True)
        self.thread.start()

    def _redact(self, data: bytes) -> bytes:
        for s in self.secrets:
            data = data.replace(s, b"[secret]")
        return data

    def _pump(self) -> None:
        pending = b""
        while True:
            ready, _, _ = select.select([self.read_end], [], [], 0.2)
            if not ready:
                if pending:
                    os.write(self.saved, self._redact(pending))
                    pending = b""
                continue
            chunk = os.read(self.read_end, 1 << 16)
            if not chunk:
                break
            pending += chunk
            head, sep, pending = pending.rpartition(b"\n")
            if sep:
                os.write(self.saved, self._redact(head + sep))
        if pending:
            os.write(self.saved, self._redact(pending))
        os.close(self.read_end)

    def close(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os.dup2(self.saved, self.fd)  # the pipe's last writer is gone (unless a subprocess lives on)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            os.close(self.saved)


def worker_sources() -> dict[str, str]:
    """file name -> source of each module of :mod:`runner.worker`, to ship (on the driver)."""
    from runner import worker  # deferred: the plugin is shipped by value to workers without xrun

    package = Path(worker.__file__).parent
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(package.glob("*.py"))}


def _install_worker_package(base: Path, sources: dict[str, str]) -> None:
    target = base / WORKER_MODULE
    target.mkdir(exist_ok=True)
    for name, source in sources.items():
        path = target / name
        if not path.exists() or path.read_text(encoding="utf-8") != source:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(source, encoding="utf-8")
            os.replace(tmp, path)
    for stale in target.glob("*.py"):  # a module an older xrun shipped
        if stale.name not in sources:
            stale.unlink()
    (base / f"{WORKER_MODULE}.py").unlink(missing_ok=True)  # the single module of older releases
    if str(base) not in sys.path:
        sys.path.insert(0, str(base))
    module = sys.modules.get(WORKER_MODULE)
    fresh = (module is not None and getattr(module, "__file__", None) == str(target / "__init__.py")
             and getattr(module, "_xrun_sources", None) == sources)  # fmt: skip
    if not fresh:
        for name in [n for n in list(sys.modules) if n == WORKER_MODULE or n.startswith(WORKER_MODULE + ".")]:
            del sys.modules[name]
        importlib.invalidate_caches()
        module = importlib.import_module(WORKER_MODULE)
        module._xrun_sources = dict(sources)  # type: ignore[attr-defined]


def _install_code(base: Path, code_tar: bytes, code_hash: str) -> None:
    root = base / "code"
    target = root / code_hash[:16]
    if not target.exists():
        tmp = root / f".{code_hash[:16]}.{os.getpid()}"
        tmp.mkdir(parents=True, exist_ok=True)
        try:
            safe_extract(code_tar, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            os.replace(tmp, target)
        except OSError:  # another thread or process got there first
            shutil.rmtree(tmp, ignore_errors=True)
    # Drop older snapshots from sys.path and their modules from sys.modules.
    prefix = str(root) + os.sep
    stale = [p for p in sys.path if p.startswith(prefix) and p != str(target)]
    for p in stale:
        sys.path.remove(p)
    for name, module in sys.modules.copy().items():  # one C-level copy: a thread importing meanwhile cannot break it
        file = getattr(module, "__file__", None) or ""
        if file.startswith(prefix) and not file.startswith(str(target) + os.sep):
            del sys.modules[name]
    if str(target) not in sys.path:
        sys.path.insert(0, str(target))
        importlib.invalidate_caches()


class UnsafeArchive(Exception):
    pass


# An archive from someone else must not fill the disk: refuse one that expands
# past this many times its own size (beyond a floor), or past a total.
MAX_RATIO = 100
RATIO_FLOOR = 256 * 1024 * 1024
MAX_TOTAL = 32 * 1024**3
MAX_MEMBERS = 1_000_000


def safe_extract(data: bytes | Path, dest: Path) -> None:
    """Extract a tar(.gz) (bytes, or a file) refusing absolute paths, ``..``,
    links, devices and anything else that would land outside ``dest``.

    Two streamed passes: the first checks every member's header and the
    expanded total (see :data:`MAX_RATIO`) before a byte is written, the
    second copies members in chunks. Memory stays small whatever the archive
    declares, and a small archive cannot expand into a huge one.
    """
    dest = Path(dest).resolve()
    for write in (False, True):
        if isinstance(data, Path):
            with open(data, "rb") as fh:
                _extract_stream(fh, os.fstat(fh.fileno()).st_size, dest, write=write)
        else:
            _extract_stream(io.BytesIO(data), len(data), dest, write=write)


def _extract_stream(fileobj: Any, compressed: int, dest: Path, *, write: bool) -> None:
    budget = min(MAX_TOTAL, max(RATIO_FLOOR, MAX_RATIO * compressed))
    total = 0
    with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
        for count, m in enumerate(tar, 1):
            check_member(m, dest)  # in both passes: a file may change between them
            if count > MAX_MEMBERS:
                raise UnsafeArchive(f"more than {MAX_MEMBERS:,} members")
            total += m.size
            if total > budget:
                raise UnsafeArchive(f"expands to more than {budget:,} bytes from {compressed:,} (an archive bomb?)")
            if not write:
                continue
            target = dest / m.name
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            assert src is not None
            with open(target, "wb") as fh:
                shutil.copyfileobj(src, fh, 1 << 20)
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


def call_batch(tasks: list[dict[str, Any]] | bytes) -> list[dict[str, Any]]:
    if isinstance(tasks, bytes):  # pickled by the driver: Dask need not walk 500 task dicts
        tasks = pickle.loads(tasks)
    return importlib.import_module(WORKER_MODULE).run_batch(tasks)


def call_stage(task: dict[str, Any]) -> dict[str, Any]:
    return importlib.import_module(WORKER_MODULE).run_stage(task)


def call_stop(run: str) -> None:
    importlib.import_module(WORKER_MODULE).stop(run)


def call_info() -> dict[str, Any]:
    return importlib.import_module(WORKER_MODULE).worker_info()


def call_check(definition: dict[str, Any]) -> dict[str, Any] | None:
    return importlib.import_module(WORKER_MODULE).check_trial(definition)


def call_check_data(urls: dict[str, str]) -> dict[str, Any] | None:
    return importlib.import_module(f"{WORKER_MODULE}.fetch").check_readable(urls)


def call_hash_paths(paths: dict[str, str]) -> dict[str, dict[str, Any]]:
    return importlib.import_module(f"{WORKER_MODULE}.fetch").hash_paths(paths)
