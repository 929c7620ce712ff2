"""Running a ``prepare`` or ``final`` stage on a worker, as a trial runs.

``run_stage(task) -> dict`` never raises for the stage's own failure: it returns
the stage's files (prepare: what it wrote to ``ctx.output_dir``; final: what it
wrote to ``ctx.artifact_dir``), its metrics, its log, and on failure the error
and traceback. The built-in final stage of ``trial.sklearn.holdout`` refits the
best estimator on the training part, scores it on the holdout with every
scorer and saves it with skops.

Stage outputs installed on this worker (by the driver's inputs plugin) are
found through :func:`input_paths`; trials get them as ``ctx.inputs``."""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
import types
import zipfile
from pathlib import Path
from typing import Any

from ._base import DataChanged, current_worker
from .context import DataInputs
from .guard import Guard
from .sklearn_trial import _import, _load_dataset, _load_table, holdout_split

INPUTS_MODULE = "_xrun_inputs"  # its ``paths``: outputs digest -> local directory (set by the inputs plugin)
MODEL_FILE = "model.skops"


def input_paths() -> dict[str, str]:
    """This worker's installed stage outputs, digest -> directory (a module in
    ``sys.modules``, shared with the inputs plugin whatever order plugins ran in)."""
    module = sys.modules.get(INPUTS_MODULE)
    if module is None:
        module = sys.modules.setdefault(INPUTS_MODULE, types.ModuleType(INPUTS_MODULE))
    if not hasattr(module, "paths"):
        module.paths = {}  # type: ignore[attr-defined]
    return module.paths  # type: ignore[no-any-return]


def signature(root: Path) -> list[tuple[str, int, int]]:
    """As runner._inputs_plugin.signature: (path, size, mtime) of every entry under ``root``."""
    out = []
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out.append((p.relative_to(root).as_posix(), st.st_size if p.is_file() else -1, st.st_mtime_ns))
    return out


def check_inputs(wanted: dict[str, str] | None) -> str | None:
    """After a trial: the stage outputs it was given are as installed, else they are
    put back and the trial fails (it changed what every other trial reads)."""
    module = sys.modules.get(INPUTS_MODULE)
    if module is None or not wanted:
        return None
    for name, digest in wanted.items():
        path = module.paths.get(digest)
        if path is None or signature(Path(path)) == module.signatures.get(digest):
            continue
        module.reinstall[digest]()
        return f"the trial changed ctx.inputs[{name!r}] ({path}); stage outputs are read-only (they were restored)"
    return None


def resolve_inputs(wanted: dict[str, str] | None) -> dict[str, str]:
    """name -> local directory of each stage output a task names by digest."""
    paths = input_paths()
    out = {}
    for name, digest in (wanted or {}).items():
        if digest not in paths:
            worker = getattr(current_worker(), "address", None) or f"pid {os.getpid()}"
            raise RuntimeError(f"the {name} stage's outputs ({str(digest)[:12]}…) are not installed on worker {worker}")
        out[name] = paths[digest]
    return out


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
    from .trial import SECRETS, _check_metrics, scrub  # deferred: .trial imports this module

    name = task["stage"]
    guard = Guard(name, task.get("timeout"))
    buf = guard.log
    work = Path(tempfile.mkdtemp(prefix=f"xrun-{name}-"))
    output_dir, artifact_dir = work / "outputs", work / "artifacts"
    output_dir.mkdir()
    artifact_dir.mkdir()
    data = DataInputs(task.get("data", {}), task.get("data_sha256") or {})
    ctx = StageContext(name, task["seed"], task.get("params") or {}, data, {}, str(output_dir), str(artifact_dir),
                       task.get("best"))  # fmt: skip
    result: dict[str, Any] = {"stage": name, "status": "ok", "error": None, "traceback": None, "metrics": {},
                              "worker": guard.address, "extra": {}}  # fmt: skip
    start = time.time()
    with guard:
        try:
            ctx.inputs = resolve_inputs(task.get("inputs"))
            with guard.watched():
                metrics = _dispatch(task, ctx)
            if ctx.data.changed:
                raise DataChanged(ctx.data.changed)
            result["metrics"] = _check_metrics(metrics if metrics is not None else {})
        except BaseException as exc:  # the stage's failure is a result
            stopped = guard.stopped_by(exc)
            if stopped == "timeout":
                result["error"] = f"{name} exceeded its timeout of {task.get('timeout'):g}s"
            elif stopped == "oom":
                result["error"] = f"{name} ran out of memory"
            else:
                result["error"] = f"{type(exc).__name__}: {exc}"
            result["status"] = "error"
            result["traceback"] = traceback.format_exc(limit=-20)
            buf.write(result["traceback"])
        finally:
            ctx.data.release()  # the data cache may evict what the stage used
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
    return scrub(result, SECRETS)  # type: ignore[no-any-return]


def stable_skops(blob: bytes) -> bytes:
    """A skops file whose bytes depend only on the model: skops names objects and
    array files by ``id()`` (different in every process); they are renumbered in
    order of first appearance, and the zip written with sorted members and a
    fixed time. Then ``xrun reproduce`` can compare a refitted model by sha256."""
    with zipfile.ZipFile(io.BytesIO(blob)) as src:
        members = {info.filename: src.read(info.filename) for info in src.infolist()}
    schema = members.pop("schema.json").decode("utf-8")
    numbers: dict[str, str] = {}

    def renumber(match: re.Match[str]) -> str:
        old = match.group(2)
        new = numbers.setdefault(old, str(len(numbers) + 1))
        return match.group(0).replace(old, new)

    schema = re.sub(r'("__id__": |"file": ")(\d+)', renumber, schema)
    renamed = {"schema.json": schema.encode("utf-8")}
    for name, data in members.items():
        stem, dot, ext = name.partition(".")
        if stem not in numbers:
            return blob  # a member this does not understand: leave the file as skops wrote it
        renamed[numbers[stem] + dot + ext] = data
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in sorted(renamed):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            dst.writestr(info, renamed[name])
    return out.getvalue()


def _same_predictions(sio: Any, blob: bytes, estimator: Any, X: Any) -> bool:
    """The rewritten file loads into a model that predicts as the fitted one."""
    try:
        import numpy as np  # deferred: only where a model is saved

        loaded = sio.loads(blob, trusted=sio.get_untrusted_types(data=blob))  # our own file, just written
        return bool(np.array_equal(np.asarray(loaded.predict(X)), np.asarray(estimator.predict(X))))
    except Exception:
        return False


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
    from sklearn.metrics import get_scorer  # deferred: scikit-learn only where a stage needs it

    best = ctx.best or {}
    estimator_cls = _import(sk["estimator"])
    kwargs = {**sk.get("params", {}), **(best.get("params") or {})}
    if "random_state" in estimator_cls().get_params() and "random_state" not in kwargs:
        kwargs["random_state"] = ctx.seed
    estimator = estimator_cls(**kwargs)
    if sk.get("dataset"):
        X, y = _load_dataset(sk["dataset"])
    else:
        X, y = _load_table(ctx.data[sk["data"]], sk["target"])
    X_train, X_hold, y_train, y_hold, split = holdout_split(X, y, sk, estimator)
    estimator.fit(X_train, y_train)
    metrics = {name: float(get_scorer(name)(estimator, X_hold, y_hold)) for name in sk["scoring"]}
    try:
        # deferred: the trial environment's skops, only for the built-in final stage
        import skops
        import skops.io as sio
    except ImportError:
        raise RuntimeError(
            "the built-in final stage saves the model with skops, which the trial environment lacks: "
            "add skops to it (for environment: current, install xrun[sklearn])"
        ) from None
    blob = stable_skops(sio.dumps(estimator))
    if not _same_predictions(sio, blob, estimator, X_hold):
        blob = sio.dumps(estimator)  # (never seen) keep skops' own bytes rather than a file that loads differently
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
