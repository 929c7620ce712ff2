"""Worker side of the ``prepare`` and ``final`` stages.

Pickled *by value* (like :mod:`runner._plugin`): workers run in the spec's
environment, where xrun is not installed. It imports only the standard
library at module level and uses the worker module the xrun plugin installed
(``_xrun_worker``: log capture, the watchdog, verified data copies, the
sklearn loaders and the holdout split), so a stage runs exactly as a trial does.

* :func:`run_stage` runs one stage and always returns a result dict: its
  files (prepare: what it wrote to ``ctx.output_dir``; final: what it wrote
  to ``ctx.artifact_dir``), its metrics, its log, and on failure the error and
  traceback.
* :class:`InputsPlugin` puts the prepare outputs on every worker, including
  workers that join or restart later, read-only, each file checked against its
  sha256; trials find them as ``ctx.inputs["prepare"]``.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import shutil
import tempfile
import threading
import time
import traceback
from pathlib import Path, PurePosixPath
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

WORKER_MODULE = "_xrun_worker"
INPUTS_PLUGIN = "xrun-inputs"
INPUTS_MODULE = "_xrun_inputs"  # its ``paths``: digest -> local directory, read by trials as ctx.inputs
MODEL_FILE = "model.skops"


def _w() -> Any:
    return importlib.import_module(WORKER_MODULE)


def input_paths() -> dict[str, str]:
    """This worker's installed stage outputs (a module in ``sys.modules``, so the
    worker module finds them whatever order plugins were set up in)."""
    import sys
    import types

    module = sys.modules.get(INPUTS_MODULE)
    if module is None:
        module = sys.modules.setdefault(INPUTS_MODULE, types.ModuleType(INPUTS_MODULE))
    if not hasattr(module, "paths"):
        module.paths = {}  # type: ignore[attr-defined]
    return module.paths  # type: ignore[no-any-return]


class StageContext:
    """What a stage function receives as ``ctx``.

    ``output_dir`` (prepare): files written here reach every trial as
    ``ctx.inputs["prepare"]``. ``artifact_dir``: files kept in the bundle.
    ``best`` (final): the best point (``params``, ``value``, ``n``, ``trials``,
    ``metric``, ``goal``). ``inputs``: stage outputs, name -> local directory.
    """

    def __init__(self, stage: str, seed: int, params: dict[str, Any], data: Any, inputs: dict[str, str],
                 output_dir: str, artifact_dir: str, best: dict[str, Any] | None) -> None:  # fmt: skip
        self.stage = stage
        self.trial_id = stage  # so code shared with trials can log with it
        self.seed = seed
        self.params = dict(params)
        self.data = data
        self.inputs = dict(inputs)
        self.output_dir = output_dir
        self.artifact_dir = artifact_dir
        self.best = best
        self.history: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}  # recorded with the stage (final.json)

    def log(self, **metrics: Any) -> None:
        self.history.append({"time": time.time(), **metrics})

    def __repr__(self) -> str:
        return f"StageContext(stage={self.stage!r}, seed={self.seed})"


# ------------------------------------------------------------------ inputs on workers


class InputsPlugin(WorkerPlugin):
    """Installs stage outputs (name -> (digest, files)) in each worker's local directory."""

    idempotent = False
    name = INPUTS_PLUGIN

    def __init__(self, inputs: dict[str, tuple[str, list[tuple[str, bytes]]]]) -> None:
        self.inputs = inputs

    def __repr__(self) -> str:
        return f"InputsPlugin({ {k: v[0][:12] for k, v in self.inputs.items()} })"

    def setup(self, worker: Any = None) -> None:
        base = Path(getattr(worker, "local_directory", None) or tempfile.gettempdir()) / "xrun" / "inputs"
        registry = input_paths()
        for _name, (digest, files) in self.inputs.items():
            registry[digest] = str(install_files(base, digest, files))


def _safe_rel(rel: str) -> PurePosixPath:
    path = PurePosixPath(rel)
    if not rel or path.is_absolute() or ".." in path.parts or "\\" in rel or rel.startswith("/"):
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


# ------------------------------------------------------------------ running a stage


def _files(root: Path, limit: int) -> tuple[list[tuple[str, bytes]], int]:
    """Regular files under ``root`` up to ``limit`` bytes in all; and the total size found."""
    files: list[tuple[str, bytes]] = []
    total = 0
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            size = path.stat().st_size
            total += size
            if total <= limit:
                files.append((path.relative_to(root).as_posix(), path.read_bytes()))
    return files, total


def run_stage(task: dict[str, Any]) -> dict[str, Any]:
    """Run one stage; always returns a result dict."""
    W = _w()
    name = task["stage"]
    out_router, err_router = W._install_routers()
    worker = W._worker()
    address = getattr(worker, "address", None) or f"pid-{os.getpid()}"
    memory_limit = getattr(getattr(worker, "memory_manager", None), "memory_limit", None)
    buf = io.StringIO()
    work = Path(tempfile.mkdtemp(prefix=f"xrun-{name}-"))
    output_dir, artifact_dir = work / "outputs", work / "artifacts"
    output_dir.mkdir()
    artifact_dir.mkdir()
    registry = input_paths()
    inputs = {k: registry[d] for k, d in (task.get("inputs") or {}).items() if d in registry}
    missing = sorted(set(task.get("inputs") or {}) - set(inputs))
    ctx = StageContext(name, task["seed"], task.get("params") or {}, W.DataInputs(task.get("data", {}), task.get("data_sha256") or {}),
                       inputs, str(output_dir), str(artifact_dir), task.get("best"))  # fmt: skip
    result: dict[str, Any] = {"stage": name, "status": "ok", "error": None, "traceback": None, "metrics": {},
                              "worker": address, "extra": {}}  # fmt: skip
    dog = W._Watchdog(threading.get_ident(), task.get("timeout"), memory_limit, name)
    out_router.local.buffer = buf
    err_router.local.buffer = buf
    start = time.time()
    try:
        if missing:
            raise RuntimeError(f"stage outputs {missing} were not installed on worker {address}")
        dog.start()
        try:
            metrics = _dispatch(task, ctx)
        finally:
            dog.finish()
        if ctx.data.changed:
            raise W.DataChanged(ctx.data.changed)
        result["metrics"] = W._check_metrics(metrics if metrics is not None else {})
    except BaseException as exc:  # the stage's failure is a result
        if dog.fired == "timeout" or isinstance(exc, W.TrialTimeout):
            result["error"] = f"{name} exceeded its timeout of {task.get('timeout'):g}s"
        elif dog.fired == "oom" or isinstance(exc, (W.TrialOutOfMemory, MemoryError)):
            result["error"] = f"{name} ran out of memory"
        else:
            result["error"] = f"{type(exc).__name__}: {exc}"
        result["status"] = "error"
        result["traceback"] = traceback.format_exc(limit=-20)
        buf.write(result["traceback"])
    finally:
        W._raise_in(threading.get_ident(), None)
        out_router.local.buffer = None
        err_router.local.buffer = None
    result["start"], result["end"] = start, time.time()
    result["history"] = ctx.history
    result["extra"] = ctx.extra
    if result["status"] == "ok":
        limit = int(task["max_bytes"])
        files, total = _files(output_dir if name == "prepare" else artifact_dir, limit)
        if total > limit:
            where = "ctx.output_dir" if name == "prepare" else "ctx.artifact_dir"
            result.update(status="error", error=(
                f"{name} wrote {total / 2**20:.1f} MiB to {where}; at most {limit / 2**20:.0f} MiB "
                "travel to the workers through the scheduler: put large files in object storage and "
                "write their URLs (and sha256) to a small file instead"
            ))  # fmt: skip
            files = []
        result["files"] = files
    else:
        result["files"] = []
    result["log"] = buf.getvalue()
    shutil.rmtree(work, ignore_errors=True)
    return W.scrub(result, W.SECRETS)


def _dispatch(task: dict[str, Any], ctx: StageContext) -> Any:
    definition = task["definition"]
    if definition.get("builtin") == "sklearn-holdout":
        return _sklearn_final(definition["sklearn"], task, ctx)
    module_name, func_name = definition["function"].split(":")
    module = importlib.import_module(module_name)
    fn = getattr(module, func_name, None)
    if fn is None:
        raise AttributeError(f"module {module_name!r} has no function {func_name!r}")
    return fn(dict(definition.get("params") or {}), ctx)


# ------------------------------------------------------------------ the built-in sklearn final stage


def _sklearn_final(sk: dict[str, Any], task: dict[str, Any], ctx: StageContext) -> dict[str, float]:
    """Refit the best estimator on the training part, score it on the holdout
    with every scorer, save it with skops (and its sha256)."""
    from sklearn.metrics import get_scorer

    W = _w()
    best = ctx.best or {}
    estimator_cls = W._import(sk["estimator"])
    kwargs = {**sk.get("params", {}), **(best.get("params") or {})}
    if "random_state" in estimator_cls().get_params() and "random_state" not in kwargs:
        kwargs["random_state"] = ctx.seed
    estimator = estimator_cls(**kwargs)
    if sk.get("dataset"):
        X, y = W._load_dataset(sk["dataset"])
    else:
        X, y = W._load_table(ctx.data[sk["data"]], sk["target"])
    X_train, X_hold, y_train, y_hold, split = W.holdout_split(X, y, sk, estimator)
    estimator.fit(X_train, y_train)
    metrics = {name: float(get_scorer(name)(estimator, X_hold, y_hold)) for name in sk["scoring"]}
    try:
        import skops
        import skops.io as sio
    except ImportError:
        raise RuntimeError(
            "the built-in final stage saves the model with skops, which the trial environment lacks: "
            "add skops to it (for environment: current, install xrun[sklearn])"
        ) from None
    blob = sio.dumps(estimator)  # not byte-stable across processes (skops names arrays by id()): reproduce compares metrics
    (Path(ctx.artifact_dir) / MODEL_FILE).write_bytes(blob)
    ctx.extra.update(
        model={"file": MODEL_FILE, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob), "format": "skops",
               "skops_version": getattr(skops, "__version__", None), "estimator": repr(estimator),
               "untrusted_types": sorted(sio.get_untrusted_types(data=blob))},
        holdout=split,
        best_params=best.get("params") or {},
    )  # fmt: skip
    print(f"{estimator!r} on the holdout: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return metrics
