"""Running trials: ``run_trial(task) -> dict`` never raises for a trial's own
failure: errors, timeouts, memory exhaustion and changed data come back as a
result with ``status`` and ``failure_class`` so the driver can record them and go on.
Results are scrubbed of the run's secrets before they leave the worker."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import socket
import time
import traceback
from pathlib import Path
from typing import Any

from . import fetch
from ._base import MAX_ARTIFACT_BYTES, DataChanged, TrialPruned, emit, flush
from .context import TrialContext, number
from .guard import Guard
from .probe import imported_distributions
from .sklearn_trial import sklearn_trial
from .stage import check_inputs, resolve_inputs

STOPPED: set[str] = set()  # runs whose driver asked that no further trial starts
STREAM_LIMIT = 64 * 1024  # bytes of log and artifacts above which a result is not streamed (only returned)


def stop(run: str) -> None:
    STOPPED.add(run)


def run_batch(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run trials one after another. Each result is streamed as the trial ends
    (see run_trial), in one message with the next trial's start: half the
    messages, and the result leaves at the same moment."""
    results: list[dict[str, Any]] = []
    carry: dict[str, Any] | None = None  # the finished trial's result, not sent yet
    sent_imported: Any = None  # the imported versions last streamed in this batch
    try:
        for task in tasks:
            result, carry = _run(task, carry)
            results.append(result)
            if carry is not None:
                imported = carry.get("imported")
                if imported is not None and imported == sent_imported:
                    # the driver takes it from the batch's previous result (most trials import the same)
                    carry = {**carry, "imported": None, "same_imported": True}
                elif imported is not None:
                    sent_imported = imported
        if carry is not None:
            emit({"result": carry}, handed_over=True)
    finally:
        flush()  # every result of the task is on its way before it returns
    return results


def run_trial(task: dict[str, Any]) -> dict[str, Any]:
    """Run one trial; always returns a result dict (streamed at once too)."""
    try:
        result, streamed = _run(task, None)
        if streamed is not None:
            emit({"result": streamed}, handed_over=True)
    finally:
        flush()
    return result


def _run(task: dict[str, Any], carry: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Run one trial: its result, and what of it to stream (None when too large
    to stream). ``carry``, an earlier trial's result not sent yet, goes with
    this trial's start message."""
    if task.get("run") in STOPPED:  # the driver was interrupted: start nothing new
        if carry is not None:
            emit({"result": carry}, handed_over=True)
        return {"trial_id": task["trial_id"], "key": task["key"], "status": "skipped"}, None
    guard = Guard(task["trial_id"], task.get("timeout"))
    buf = guard.log
    ctx = TrialContext(task["trial_id"], task["seed"], task["params"], task.get("data", {}), None,
                       task.get("data_sha256"), task.get("early_stop"))  # fmt: skip
    result: dict[str, Any] = {
        "trial_id": task["trial_id"],
        "key": task["key"],
        "worker": guard.address,
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
    emit({"start": task["key"], "worker": guard.address, "time": time.time(), **({"result": carry} if carry else {})},
         handed_over=carry is not None)
    start = time.time()
    with guard:
        try:
            ctx.inputs = resolve_inputs(task.get("inputs"))
            ctx.data.prefetch()  # remote data is verified before the trial starts (not on its clock)
            with guard.watched():
                metrics = _dispatch(task, ctx)
            if ctx.data.changed:  # the trial caught it and went on: its result is still not to be trusted
                raise DataChanged(ctx.data.changed)
            result["metrics"] = _check_metrics(metrics)
        except TrialPruned as exc:  # not a failure: stopped by the sweep's early stopping
            if ctx.data.changed:
                result.update(status="data-changed", failure_class="data-changed", error=ctx.data.changed)
            else:
                result.update(status="pruned", metrics=last_values(ctx.history))
                buf.write(f"xrun: {exc}\n")
        except BaseException as exc:  # a trial's failure, whatever it raised, is a result
            stopped = guard.stopped_by(exc)
            if isinstance(exc, DataChanged) or ctx.data.changed:
                result.update(status="data-changed", failure_class="data-changed",
                              error=ctx.data.changed or str(exc))  # fmt: skip
            elif stopped == "timeout":
                result.update(status="timeout", failure_class="timeout",
                              error=f"trial exceeded its timeout of {task.get('timeout'):g}s")  # fmt: skip
            elif stopped == "oom":
                limit = f" of {guard.memory_limit / 2**20:.0f} MiB" if guard.memory_limit else ""
                result.update(status="oom", failure_class="oom", error=f"trial ran out of memory (worker memory limit{limit})")
            else:
                result.update(status="error", failure_class="error", error=f"{type(exc).__name__}: {exc}")
            result["traceback"] = traceback.format_exc(limit=-20)
            buf.write(result["traceback"])
        finally:
            ctx.data.release()
    changed = check_inputs(task.get("inputs"))  # put back whatever the trial did to them
    if changed and result["status"] == "ok":
        result.update(status="error", failure_class="error", error=changed)
    result["start"] = start
    result["end"] = time.time()
    result["history"] = ctx.history
    if result["status"] in ("ok", "pruned"):
        result["imported"] = imported_distributions()
    result["log"] = buf.getvalue()
    try:
        artifact_dir = ctx.made_artifact_dir  # None when the trial never asked for it
        result["artifacts"] = _collect(artifact_dir, task.get("artifacts")) if artifact_dir else []
    except fetch.FetchError as exc:  # the store refused: the trial's outputs are not kept, so it failed
        result.update(status="error", failure_class="error", error=f"storing the trial's artifacts failed: {exc}",
                      metrics={}, artifacts=[])  # fmt: skip
    if ctx.made_artifact_dir:
        shutil.rmtree(ctx.made_artifact_dir, ignore_errors=True)
    # Sent to the driver at once too: a worker lost before the driver gathered
    # the task's result (or in the middle of a batch) loses no finished trial.
    # Scrubbed here, before it leaves the worker: a streamed result is kept in
    # the scheduler's event log, which may be shared (address backend).
    result = scrub(result, SECRETS)
    size = len(result["log"]) + sum(len(b) for _, b in result["artifacts"])
    return result, (result if size <= STREAM_LIMIT else None)


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


def last_values(history: list[dict[str, Any]]) -> dict[str, float]:
    """A pruned trial's metrics: the last number logged for each name (not ``time``/``step``)."""
    out: dict[str, float] = {}
    for entry in history:
        for k, v in entry.items():
            if k not in ("time", "step") and isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = v
    return out


def _dispatch(task: dict[str, Any], ctx: TrialContext) -> Any:
    definition = task["definition"]
    if "function" in definition:
        module_name, func_name = definition["function"].split(":")
        module = importlib.import_module(module_name)
        fn = getattr(module, func_name, None)
        if fn is None:
            raise AttributeError(f"module {module_name!r} has no function {func_name!r}")
        return fn(dict(task["params"]), ctx)
    return sklearn_trial(definition["sklearn"], task, ctx)


def _check_metrics(metrics: Any) -> dict[str, Any]:
    if not isinstance(metrics, dict):
        raise TypeError(
            f"a trial must return a dict of metric name -> number, got {type(metrics).__name__}"
        )
    out: dict[str, Any] = {}
    for name, value in metrics.items():
        value = number(value)
        if not isinstance(value, (int, float)) and value is not None:
            raise TypeError(f"metric {name!r} is {type(value).__name__}, expected a number")
        out[str(name)] = value
    return out


def _collect(directory: str, store: dict[str, Any] | None = None) -> list[tuple[str, bytes]]:
    """The files a trial wrote, as (relative path, bytes). With an artifact store,
    a file above its ``inline_max`` is uploaded from here, and only a small
    record of it (``<path>.xrun-remote.json``: url, sha256, size) travels on."""
    files: list[tuple[str, bytes]] = []
    total = 0
    root = Path(directory)
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            size = path.stat().st_size
            if store and store.get("store") and size > int(store.get("inline_max", 0)):
                rel = path.relative_to(root).as_posix()
                pointer = fetch.store_artifact(path, store["store"])
                files.append((rel + fetch.REMOTE_SUFFIX, json.dumps(pointer, sort_keys=True).encode()))
                continue
            if total + size > MAX_ARTIFACT_BYTES:
                break
            total += size
            files.append((path.relative_to(root).as_posix(), path.read_bytes()))
    return files


# ------------------------------------------------------------------ sklearn

