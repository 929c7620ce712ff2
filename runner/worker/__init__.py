"""Worker-side trial execution.

This module is shipped to workers as source by :mod:`runner._plugin` and imported
there as ``_xrun_worker``: workers run in the spec's environment, which has
Dask but not xrun. It therefore imports only the standard library at module
level (scikit-learn and psutil are imported when a trial needs them).

``run_trial(task) -> dict`` never raises for a trial's own failure: errors,
timeouts, memory exhaustion and changed data come back as a result with
``status`` and ``failure_class`` so the driver can record them and go on.

Data inputs: ``ctx.data[name]`` is a read-only copy private to the worker,
made on first use and verified against the sha256 the run recorded (and keyed
by it), so a trial sees exactly the bytes that were hashed into its key. A
file changed since it was hashed fails the trial as ``data-changed``.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib
import io
import math
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

MAX_LOG_BYTES = 5 * 1024 * 1024
MAX_ARTIFACT_BYTES = 200 * 1024 * 1024
MEMORY_FRACTION = 0.85  # of the worker's memory limit, where a trial is stopped as `oom`
EVENT_TOPIC = "xrun"


class TrialTimeout(BaseException):
    """Raised asynchronously inside a trial thread that ran past its timeout."""


class TrialOutOfMemory(BaseException):
    """Raised asynchronously inside a trial thread whose worker neared its memory limit."""


class DataChanged(BaseException):
    """A data input no longer has the sha256 the run recorded (a BaseException,
    so a trial's ``except Exception`` cannot turn it into a result)."""


# ------------------------------------------------------------------ log capture


class _Router(io.TextIOBase):
    """Sends writes from a thread running a trial to that trial's buffer."""

    def __init__(self, fallback: Any) -> None:
        self.fallback = fallback
        self.local = threading.local()

    def write(self, text: str) -> int:
        buf = getattr(self.local, "buffer", None)
        if buf is None:
            return self.fallback.write(text)
        if buf.tell() < MAX_LOG_BYTES:
            buf.write(text)
        return len(text)

    def flush(self) -> None:
        if getattr(self.local, "buffer", None) is None:
            self.fallback.flush()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.fallback, "encoding", "utf-8")

    def isatty(self) -> bool:
        return False


def _install_routers() -> tuple[_Router, _Router]:
    if not isinstance(sys.stdout, _Router) or not hasattr(sys.stdout, "local"):
        sys.stdout = _Router(sys.stdout)
    if not isinstance(sys.stderr, _Router) or not hasattr(sys.stderr, "local"):
        sys.stderr = _Router(sys.stderr)
    return sys.stdout, sys.stderr  # type: ignore[return-value]


# ------------------------------------------------------------------ context


class TrialContext:
    """What a function trial receives as ``ctx`` (DESIGN §2)."""

    def __init__(self, trial_id: str, seed: int, params: dict[str, Any], data: dict[str, str], artifact_dir: str,
                 data_sha256: dict[str, str] | None = None) -> None:  # fmt: skip
        self.trial_id = trial_id
        self.seed = seed
        self.params = dict(params)
        self.data = DataInputs(data, data_sha256 or {})
        self.artifact_dir = artifact_dir
        self.history: list[dict[str, Any]] = []

    def log(self, **metrics: Any) -> None:
        """Record intermediate values (e.g. per-epoch loss); kept in the bundle."""
        entry = {"time": time.time()}
        entry.update({k: _number(v) for k, v in metrics.items()})
        self.history.append(entry)

    def __repr__(self) -> str:
        return f"TrialContext(trial_id={self.trial_id!r}, seed={self.seed})"


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else None
    return value


# ------------------------------------------------------------------ data inputs


class DataInputs(Mapping[str, str]):
    """``ctx.data``: name → local path (a verified copy) or url, copied on first use."""

    def __init__(self, paths: dict[str, str], sha256: dict[str, str]) -> None:
        self._paths = dict(paths)
        self._sha256 = dict(sha256)
        self.changed: str | None = None  # set when a verification failed, whatever the trial did then

    def __getitem__(self, name: str) -> str:
        source = self._paths[name]
        expected = self._sha256.get(name)
        if expected is None:  # a url: the trial fetches it
            return source
        try:
            return verified_copy(source, expected)
        except DataChanged as exc:
            self.changed = f"data {name!r}: {exc}"
            raise DataChanged(self.changed) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __repr__(self) -> str:
        return f"DataInputs({sorted(self._paths)})"


_data_lock = threading.Lock()
_data_root: list[Path] = []  # this process's directory of verified copies, made once


def _copies_dir() -> Path:
    if not _data_root:
        worker = _worker()
        local = getattr(worker, "local_directory", None)
        if local:  # removed by Dask with the worker
            root = Path(local) / "xrun-data"
            root.mkdir(parents=True, exist_ok=True)
        else:
            root = Path(tempfile.mkdtemp(prefix="xrun-data-"))
        _data_root.append(root)
    return _data_root[0]


def verified_copy(source: str, expected: str) -> str:
    """A read-only copy of ``source`` whose sha256 (as :func:`runner.data.hash_inputs`
    computes it) is ``expected``; raises :class:`DataChanged` otherwise."""
    with _data_lock:  # trials in other threads of this worker wait for the one copy
        root = _copies_dir()
        name = Path(source).name or "data"
        final = root / expected / name
        if final.exists():
            return str(final)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".copy-"))
        try:
            src = Path(source)
            if src.is_dir():
                shutil.copytree(src, tmp / name)
                digest = _dir_digest(tmp / name)
            else:
                shutil.copyfile(src, tmp / name)
                digest = _file_digest(tmp / name)
            if digest != expected:
                raise DataChanged(
                    f"{source} changed since the run hashed it (sha256 {expected[:12]}…, now {digest[:12]}…); "
                    "restore it, or run again to use the new data"
                )
            _read_only(tmp / name)
            final.parent.mkdir(exist_ok=True)  # one content may come under several names
            os.rename(tmp / name, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return str(final)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _dir_digest(root: Path) -> str:
    """Must equal the driver's digest of a data directory (runner._hashing.dir_digest;
    this module cannot import it: workers do not have xrun installed)."""
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(root).as_posix()}\0{_file_digest(f)}\n".encode())
    return h.hexdigest()


def _read_only(path: Path) -> None:
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in reversed(paths):  # children before their directory
        p.chmod(0o555 if p.is_dir() else 0o444)


# ------------------------------------------------------------------ watchdog


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` in another thread at its next bytecode; ``None`` clears a pending one."""
    arg = ctypes.py_object(exc) if exc is not None else None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), arg)


class _Watchdog(threading.Thread):
    """Stops a trial that passes its timeout or nears the worker's memory limit.

    It raises an exception inside the trial's thread; code stuck in C (a long
    ``time.sleep``, a blocking call) is stopped by the driver restarting the
    worker instead, after a grace period.
    """

    def __init__(self, thread_id: int, timeout: float | None, memory_limit: int | None, trial_id: str) -> None:
        super().__init__(daemon=True, name=f"xrun-watchdog-{trial_id}")
        self.thread_id = thread_id
        self.timeout = timeout
        self.memory_limit = memory_limit
        self.trial_id = trial_id
        self.done = threading.Event()
        self.lock = threading.Lock()  # the trial finishing and the dog firing exclude each other
        self.fired: str | None = None

    def finish(self) -> None:
        with self.lock:
            self.done.set()

    def _fire(self, why: str, exc: type[BaseException]) -> None:
        with self.lock:
            if not self.done.is_set():
                self.fired = why
                _raise_in(self.thread_id, exc)

    def run(self) -> None:
        start = time.monotonic()
        proc = None
        if self.memory_limit:
            try:
                import psutil

                proc = psutil.Process()
            except ImportError:
                proc = None
        while not self.done.wait(0.05):
            if self.timeout is not None and time.monotonic() - start > self.timeout:
                self._fire("timeout", TrialTimeout)
                return
            if proc is not None and self.memory_limit:
                rss = proc.memory_info().rss
                if rss > MEMORY_FRACTION * self.memory_limit:
                    _emit({"oom": self.trial_id, "rss": rss})
                    self._fire("oom", TrialOutOfMemory)
                    return


def _worker() -> Any:
    try:
        from distributed import get_worker

        return get_worker()
    except Exception:
        return None


def _emit(msg: dict[str, Any]) -> None:
    worker = _worker()
    if worker is not None:
        try:
            worker.log_event(EVENT_TOPIC, msg)
        except Exception:
            pass


# ------------------------------------------------------------------ trials


STOPPED: set[str] = set()  # runs whose driver asked that no further trial starts
STREAM_LIMIT = 64 * 1024  # bytes of log and artifacts above which a result is not streamed (only returned)


def stop(run: str) -> None:
    STOPPED.add(run)


def run_batch(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run trials one after another (each result is streamed, see run_trial)."""
    return [run_trial(task) for task in tasks]


def run_trial(task: dict[str, Any]) -> dict[str, Any]:
    """Run one trial; always returns a result dict."""
    if task.get("run") in STOPPED:  # the driver was interrupted: start nothing new
        return {"trial_id": task["trial_id"], "key": task["key"], "status": "skipped"}
    out_router, err_router = _install_routers()
    worker = _worker()
    address = getattr(worker, "address", None) or f"pid-{os.getpid()}"
    memory_limit = getattr(getattr(worker, "memory_manager", None), "memory_limit", None)
    buf = io.StringIO()
    artifact_dir = tempfile.mkdtemp(prefix=f"xrun-{task['trial_id']}-")
    ctx = TrialContext(task["trial_id"], task["seed"], task["params"], task.get("data", {}), artifact_dir,
                       task.get("data_sha256"))  # fmt: skip
    result: dict[str, Any] = {
        "trial_id": task["trial_id"],
        "key": task["key"],
        "worker": address,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "status": "ok",
        "failure_class": None,
        "error": None,
        "traceback": None,
        "metrics": {},
        "unit": task.get("unit"),
    }
    # The driver restarts a worker whose trial is stuck past its timeout, and
    # tells which trial a lost worker was running.
    _emit({"start": task["key"], "worker": address, "time": time.time()})
    dog = _Watchdog(threading.get_ident(), task.get("timeout"), memory_limit, task["trial_id"])
    out_router.local.buffer = buf
    err_router.local.buffer = buf
    start = time.time()
    try:
        dog.start()
        try:
            metrics = _dispatch(task, ctx)
        finally:
            dog.finish()
        if ctx.data.changed:  # the trial caught it and went on: its result is still not to be trusted
            raise DataChanged(ctx.data.changed)
        result["metrics"] = _check_metrics(metrics)
    except BaseException as exc:  # a trial's failure, whatever it raised, is a result
        if isinstance(exc, DataChanged) or ctx.data.changed:
            result.update(status="data-changed", failure_class="data-changed",
                          error=ctx.data.changed or str(exc))  # fmt: skip
        elif isinstance(exc, TrialTimeout) or (dog.fired == "timeout" and not isinstance(exc, MemoryError)):
            result.update(status="timeout", failure_class="timeout", error=f"trial exceeded its timeout of {task.get('timeout'):g}s")
        elif isinstance(exc, (TrialOutOfMemory, MemoryError)) or dog.fired == "oom":
            limit = f" of {memory_limit / 2**20:.0f} MiB" if memory_limit else ""
            result.update(status="oom", failure_class="oom", error=f"trial ran out of memory (worker memory limit{limit})")
        else:
            result.update(status="error", failure_class="error", error=f"{type(exc).__name__}: {exc}")
        result["traceback"] = traceback.format_exc(limit=-20)
        buf.write(result["traceback"])
    finally:
        # A late async exception may still be pending if the trial ended just as
        # the watchdog fired; clear it so it cannot hit the worker itself.
        _raise_in(threading.get_ident(), None)
        out_router.local.buffer = None
        err_router.local.buffer = None
    result["start"] = start
    result["end"] = time.time()
    result["history"] = ctx.history
    if result["status"] == "ok":
        result["imported"] = imported_distributions()
    result["log"] = buf.getvalue()
    result["artifacts"] = _collect(artifact_dir)
    shutil.rmtree(artifact_dir, ignore_errors=True)
    # Sent to the driver at once too: a worker lost before the driver gathered
    # the task's result (or in the middle of a batch) loses no finished trial.
    # Scrubbed here, before it leaves the worker: a streamed result is kept in
    # the scheduler's event log, which may be shared (address backend).
    result = scrub(result, SECRETS)
    size = len(result["log"]) + sum(len(b) for _, b in result["artifacts"])
    if size <= STREAM_LIMIT:
        _emit({"result": result})
    return result


# ------------------------------------------------------------------ secrets

SECRETS: list[str] = []  # this run's secret values, set by the xrun plugin on each worker
MASK = "[secret]"


def scrub(value: Any, secrets: list[str]) -> Any:
    """``value`` with each secret replaced by ``[secret]`` in every string and
    bytes inside it (dict keys included)."""
    secrets = [s for s in secrets if s]
    if not secrets:
        return value
    encoded = [(s.encode(), MASK.encode()) for s in secrets]
    return _walk_scrub(value, secrets, encoded)


def _walk_scrub(value: Any, secrets: list[str], encoded: list[tuple[bytes, bytes]]) -> Any:
    if isinstance(value, str):
        for s in secrets:
            value = value.replace(s, MASK)
        return value
    if isinstance(value, bytes):
        for secret, mask in encoded:
            value = value.replace(secret, mask)
        return value
    if isinstance(value, dict):
        return {_walk_scrub(k, secrets, encoded): _walk_scrub(v, secrets, encoded) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_walk_scrub(v, secrets, encoded) for v in value)
    return value


def _dispatch(task: dict[str, Any], ctx: TrialContext) -> Any:
    definition = task["definition"]
    if "function" in definition:
        module_name, func_name = definition["function"].split(":")
        module = importlib.import_module(module_name)
        fn = getattr(module, func_name, None)
        if fn is None:
            raise AttributeError(f"module {module_name!r} has no function {func_name!r}")
        return fn(dict(task["params"]), ctx)
    return _sklearn_trial(definition["sklearn"], task, ctx)


def _check_metrics(metrics: Any) -> dict[str, Any]:
    if not isinstance(metrics, dict):
        raise TypeError(
            f"a trial must return a dict of metric name -> number, got {type(metrics).__name__}"
        )
    out: dict[str, Any] = {}
    for name, value in metrics.items():
        value = _number(value)
        if not isinstance(value, (int, float)) and value is not None:
            raise TypeError(f"metric {name!r} is {type(value).__name__}, expected a number")
        out[str(name)] = value
    return out


def _collect(directory: str) -> list[tuple[str, bytes]]:
    files: list[tuple[str, bytes]] = []
    total = 0
    root = Path(directory)
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            size = path.stat().st_size
            if total + size > MAX_ARTIFACT_BYTES:
                break
            total += size
            files.append((path.relative_to(root).as_posix(), path.read_bytes()))
    return files


# ------------------------------------------------------------------ sklearn


def _import(path: str) -> Any:
    if ":" in path:
        module, name = path.split(":")
    else:
        module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _sklearn_trial(sk: dict[str, Any], task: dict[str, Any], ctx: TrialContext) -> dict[str, float]:
    import numpy as np
    from sklearn.model_selection import cross_validate

    estimator_cls = _import(sk["estimator"])
    kwargs = {**sk.get("params", {}), **task["params"]}
    if "random_state" in estimator_cls().get_params() and "random_state" not in kwargs:
        kwargs["random_state"] = task["seed"]
    estimator = estimator_cls(**kwargs)
    if sk.get("dataset"):
        X, y = _load_dataset(sk["dataset"])
    else:
        X, y = _load_table(ctx.data[sk["data"]], sk["target"])
    scores = cross_validate(estimator, X, y, cv=sk.get("cv", 5), scoring=list(sk["scoring"]), error_score="raise")
    metrics: dict[str, float] = {}
    for name in sk["scoring"]:
        values = np.asarray(scores[f"test_{name}"], dtype=float)
        metrics[name] = float(values.mean())
        metrics[f"{name}_std"] = float(values.std())
    print(f"{estimator!r}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return metrics


def _load_dataset(path: str) -> tuple[Any, Any]:
    loader = _import(path)
    try:
        loaded = loader(return_X_y=True)
    except TypeError:
        loaded = loader()
    if isinstance(loaded, tuple):
        return loaded[0], loaded[1]
    return loaded.data, loaded.target


def _load_table(path: str, target: str) -> tuple[Any, Any]:
    import csv

    import numpy as np

    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise ValueError(f"{path} is empty")
    header, body = rows[0], rows[1:]
    if target not in header:
        raise ValueError(f"{path} has no column {target!r} (columns: {', '.join(header)})")
    t = header.index(target)
    features = [i for i in range(len(header)) if i != t]
    try:
        X = np.array([[float(r[i]) for i in features] for r in body], dtype=float)
    except ValueError as exc:
        raise ValueError(f"{path}: feature columns must be numeric ({exc})") from None
    y = np.array([r[t] for r in body])
    return X, y


# ------------------------------------------------------------------ worker facts


def worker_info() -> dict[str, Any]:
    """Versions a worker reports for host.json and lock checks."""
    import platform
    from importlib import metadata

    packages: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            packages[_normalize(name)] = dist.version
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "cpus": os.cpu_count(),
        "packages": dict(sorted(packages.items())),
    }


_IMPORTED: dict[str, Any] = {"modules": -1, "result": {}, "owners": None}


def imported_distributions() -> dict[str, str]:
    """name -> version of every installed distribution that provides a module
    loaded in this process now: what a trial that just ran could have used (a
    superset: the worker's own modules are in it too). A ``current``
    environment reuses a cached result while these versions are unchanged.

    Recomputed only when modules were loaded since the last call, so batches of
    short trials pay for it once."""
    from importlib import metadata

    loaded = len(sys.modules)
    if loaded == _IMPORTED["modules"]:
        return dict(_IMPORTED["result"])
    if _IMPORTED["owners"] is None:
        _IMPORTED["owners"] = metadata.packages_distributions()
    owners: Any = _IMPORTED["owners"]
    stdlib: frozenset[str] = getattr(sys, "stdlib_module_names", frozenset())
    tops = {name.partition(".")[0] for name in list(sys.modules)}
    found: dict[str, str] = {}
    for top in sorted(tops - set(stdlib) - set(sys.builtin_module_names)):
        for dist in owners.get(top, ()):
            key = _normalize(dist)
            if key in found:
                continue
            try:
                found[key] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
    _IMPORTED.update(modules=loaded, result=dict(sorted(found.items())))
    return dict(_IMPORTED["result"])


def _normalize(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


# ------------------------------------------------------------------ pre-flight


def check_trial(definition: dict[str, Any]) -> dict[str, Any] | None:
    """Import what the trial calls, as a trial would, before any trial runs.

    Returns None when the trial function (or the estimator class and dataset
    loader) can be found, else ``{"path": [...], "message": ...}`` naming the
    spec key and saying what is wrong, with a "did you mean" when a public
    name of the module is close.
    """
    try:
        if "function" in definition:
            return _check_target(definition["function"], ("trial", "function"), "function")
        sk = definition.get("sklearn") or {}
        problem = _check_target(sk.get("estimator", ""), ("trial", "sklearn", "estimator"), "estimator class")
        if problem is None and sk.get("dataset"):
            problem = _check_target(sk["dataset"], ("trial", "sklearn", "dataset"), "dataset loader")
        return problem
    except Exception as exc:  # the check must report, never fail the run itself
        return {"path": ["trial"], "message": f"checking the trial failed: {type(exc).__name__}: {exc}"}


def _check_target(target: str, path: tuple[str, ...], what: str) -> dict[str, Any] | None:
    import difflib

    if ":" in target:
        module_name, name = target.split(":", 1)
    else:
        module_name, _, name = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        parent, _, leaf = missing.rpartition(".")
        hint = ""
        if parent and missing != module_name.split(".")[0]:
            import pkgutil

            try:
                siblings = [m.name for m in pkgutil.iter_modules(importlib.import_module(parent).__path__)]
            except Exception:
                siblings = []
            close = difflib.get_close_matches(leaf, [s for s in siblings if not s.startswith("_")], n=1, cutoff=0.6)
            hint = f"; did you mean '{parent}.{close[0]}'?" if close else ""
        return {"path": list(path), "message": f"cannot import {module_name!r}: no module named {missing!r}{hint}"}
    except BaseException as exc:
        return {"path": list(path), "message": f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"}
    obj = getattr(module, name, None)
    if obj is None:
        public = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
        close = difflib.get_close_matches(name, [str(n) for n in public], n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return {"path": list(path), "message": f"module {module_name!r} has no {what} {name!r}{hint}"}
    if not callable(obj):
        return {"path": list(path), "message": f"{target} is a {type(obj).__name__}, not a {what}"}
    return None
