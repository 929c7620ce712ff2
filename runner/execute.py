"""Submitting trials to Dask and recording what comes back.

* Streaming: at most ``max_in_flight`` trials are submitted at once, so a sweep
  of 100,000 trials never holds 100,000 futures.
* Failure classes: ``error`` (the trial raised; retried up to ``trial.retries``),
  ``timeout`` (stopped in its thread by the worker, or by restarting the worker
  when stuck in C code), ``oom`` (neared the worker's memory limit, or its worker
  was killed after warning so), ``worker-lost`` (its worker died repeatedly;
  Dask already re-ran it on others). Only ``error`` is retried by xrun: the
  other classes are properties of the trial, not accidents.
* Every finished trial goes to the cache first, then to the bundle journal, and
  only then counts as done: a killed driver loses nothing it reported.
* ``stop`` (first Ctrl-C) stops submitting and lets running trials finish;
  a ``KeyboardInterrupt`` (second Ctrl-C) cancels the rest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runner.bundle.write import BundleWriter
from runner.cache import TrialCache
from runner.plan import Plan, PlannedTrial

log = logging.getLogger(__name__)

HARD_TIMEOUT_GRACE = 3.0  # seconds after the timeout before the worker itself is restarted
TRIAL_PREFIX = "xrun-trial"


@dataclass(frozen=True)
class Event:
    """Progress, for the CLI's display: one per trial that finishes or retries."""

    kind: str  # "cached" | "done" | "failed" | "retry"
    record: dict[str, Any]
    counts: dict[str, int]
    best: tuple[str, float] | None = None  # (trial id, objective value)


@dataclass
class Options:
    fail_fast: bool = False
    max_in_flight: int = 8
    batch_size: int = 1


@dataclass
class Outcome:
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0, "cached": 0})
    failures: dict[str, int] = field(default_factory=dict)  # failure class -> n
    best: tuple[str, float] | None = None
    interrupted: bool = False
    stopped_early: bool = False  # --fail-fast
    not_run: int = 0


class Executor:
    def __init__(
        self,
        plan: Plan,
        writer: BundleWriter,
        cache: TrialCache,
        run_id: str,
        *,
        options: Options | None = None,
        on_event: Callable[[Event], None] | None = None,
        stop: threading.Event | None = None,
        redact: list[str] | None = None,
    ) -> None:
        self.plan = plan
        self.redact = [v for v in (redact or []) if v]
        self.writer = writer
        self.cache = cache
        self.run_id = run_id
        self.options = options or Options()
        self.on_event = on_event or (lambda e: None)
        self.stop = stop or threading.Event()
        self.outcome = Outcome()
        self.objective = plan.objective
        spec = plan.spec
        self.timeout = spec.trial.timeout
        self.retries = spec.trial.retries
        self.data_paths = {k: v.get("path") or v.get("url") for k, v in plan.data.items()}
        # trial key -> (worker address, start time), from the workers' start events
        self._started: dict[str, tuple[str, float]] = {}
        self._oom_warned: set[str] = set()
        self._forced: dict[str, str] = {}  # dask key -> failure class forced by the driver
        self.fatal: Exception | None = None  # set by the monitor when the cluster is gone

    # ------------------------------------------------------------------ cached

    def record_cached(self) -> None:
        for t in self.plan.trials:
            entry = self.plan.cached.get(t.key)
            if entry is None:
                continue
            record = self._record(t, entry, attempts=entry.get("attempts", 1), cached=True)
            record["cached_from"] = entry.get("run_id")
            self.writer.record_trial(record, entry.get("log", ""), artifacts_from=self.cache.artifacts_dir(t.key))
            self.outcome.counts["cached"] += 1
            self._update_best(record)
            self.on_event(Event("cached", record, dict(self.outcome.counts), self.outcome.best))

    # ------------------------------------------------------------------ live

    def run(self, client: Any) -> Outcome:
        from distributed import as_completed

        from runner import _plugin

        self._client = client
        client.subscribe_topic("xrun", self._on_worker_event)
        queue: deque[tuple[PlannedTrial, int]] = deque()
        todo = iter(self.plan.pending)
        in_flight: dict[str, tuple[PlannedTrial, int, Any]] = {}
        ac = as_completed(with_results=False, loop=client.loop)

        trial_fn = _shipped(_plugin.call_trial)

        def submit_more() -> None:
            while len(in_flight) < self.options.max_in_flight and not self.stop.is_set():
                if queue:
                    item = queue.popleft()
                else:
                    item = next(todo, None)  # type: ignore[assignment]
                    if item is None:
                        return
                    item = (item, 1)  # type: ignore[assignment]
                trial, attempt = item
                fut = client.submit(
                    trial_fn,
                    self._task(trial),
                    key=f"{TRIAL_PREFIX}-{trial.id}-{attempt}-{self.run_id[-6:]}",
                    pure=False,
                )
                in_flight[fut.key] = (trial, attempt, fut)
                ac.add(fut)

        watchdog = _Monitor(self, in_flight)
        watchdog.start()
        try:
            submit_more()
            while in_flight:
                for fut in ac.next_batch(block=True):
                    trial, attempt, _ = in_flight.pop(fut.key)
                    self._handle(fut, trial, attempt, queue)
                    if self.options.fail_fast and self.outcome.counts["failed"]:
                        self.stop.set()
                        self.outcome.stopped_early = True
                        self._cancel(in_flight)
                        in_flight.clear()
                        break
                if self.fatal is not None:
                    self._cancel(in_flight)
                    raise self.fatal
                submit_more()
        except KeyboardInterrupt:
            self.outcome.interrupted = True
            self._cancel(in_flight)
            in_flight.clear()
        finally:
            watchdog.stop()
            try:
                client.unsubscribe_topic("xrun")
            except Exception:
                pass
        if self.stop.is_set() and not self.outcome.stopped_early:
            self.outcome.interrupted = True
        done = self.outcome.counts["ok"] + self.outcome.counts["failed"] + self.outcome.counts["cached"]
        self.outcome.not_run = len(self.plan.trials) - done
        return self.outcome

    def _cancel(self, in_flight: dict[str, tuple[PlannedTrial, int, Any]]) -> None:
        futures = [f for (_, _, f) in in_flight.values()]
        if futures:
            try:
                self._client.cancel(futures, force=True)
            except Exception:
                log.debug("cancel failed", exc_info=True)

    def _on_worker_event(self, event: tuple[float, dict[str, Any]]) -> None:
        msg = event[1]
        if "start" in msg:
            self._started[msg["start"]] = (msg.get("worker", ""), time.monotonic())
        elif "oom" in msg:
            self._oom_warned.add(msg["oom"])

    def _task(self, trial: PlannedTrial) -> dict[str, Any]:
        return {
            "trial_id": trial.id,
            "key": trial.key,
            "params": trial.point.params,
            "seed": trial.point.seed,
            "definition": self.plan.definition,
            "timeout": self.timeout,
            "data": self.data_paths,
        }

    def _scrub(self, result: dict[str, Any]) -> dict[str, Any]:
        """Secret values never reach the bundle, the cache or the terminal."""
        for field_name in ("log", "error", "traceback"):
            text = result.get(field_name)
            if isinstance(text, str):
                for value in self.redact:
                    text = text.replace(value, "[secret]")
                result[field_name] = text
        if result.get("artifacts"):
            encoded = [v.encode() for v in self.redact]
            cleaned = []
            for rel, blob in result["artifacts"]:
                for secret in encoded:
                    blob = blob.replace(secret, b"[secret]")
                cleaned.append((rel, blob))
            result["artifacts"] = cleaned
        return result

    def _handle(self, fut: Any, trial: PlannedTrial, attempt: int, queue: deque[tuple[PlannedTrial, int]]) -> None:
        self._started.pop(trial.key, None)
        forced = self._forced.pop(fut.key, None)
        if fut.status == "finished":
            result = fut.result()
        else:
            result = self._lost_result(fut, trial, forced)
        fut.release()
        if self.redact:
            result = self._scrub(result)
        if result["status"] == "error" and attempt <= self.retries and not self.stop.is_set():
            record = self._record(trial, result, attempts=attempt, cached=False)
            self.on_event(Event("retry", record, dict(self.outcome.counts), self.outcome.best))
            queue.append((trial, attempt + 1))
            return
        record = self._record(trial, result, attempts=attempt, cached=False)
        if result["status"] == "ok":
            entry = {**record, "run_id": self.run_id, "log": result.get("log", "")}
            entry.pop("cached", None)
            self.cache.put(entry, result.get("artifacts") or [])
            self.outcome.counts["ok"] += 1
            self._update_best(record)
        else:
            self.outcome.counts["failed"] += 1
            cls = result["failure_class"]
            self.outcome.failures[cls] = self.outcome.failures.get(cls, 0) + 1
        self.writer.record_trial(record, result.get("log", ""), result.get("artifacts") or [])
        self.on_event(Event("done" if result["status"] == "ok" else "failed", record, dict(self.outcome.counts), self.outcome.best))

    def _lost_result(self, fut: Any, trial: PlannedTrial, forced: str | None) -> dict[str, Any]:
        now = time.time()
        base: dict[str, Any] = {"trial_id": trial.id, "key": trial.key, "metrics": {}, "start": None, "end": now,
                "log": "", "worker": None, "traceback": None}  # fmt: skip
        if forced == "timeout":
            return {**base, "status": "timeout", "failure_class": "timeout",
                    "error": f"trial exceeded its timeout of {self.timeout:g}s and did not stop; its worker was restarted"}  # fmt: skip
        if fut.status == "cancelled":
            return {**base, "status": "error", "failure_class": "cancelled", "error": "cancelled"}
        exc = fut.exception()
        name = type(exc).__name__
        if name == "KilledWorker":
            if trial.key in self._oom_warned:
                return {**base, "status": "oom", "failure_class": "oom",
                        "error": "trial exceeded its worker's memory limit; the worker was killed each time it ran"}  # fmt: skip
            return {**base, "status": "worker-lost", "failure_class": "worker-lost",
                    "error": f"the trial's worker died each time it ran it ({exc})"}  # fmt: skip
        return {**base, "status": "error", "failure_class": "error", "error": f"{name}: {exc}"}

    def _record(self, trial: PlannedTrial, result: dict[str, Any], *, attempts: int, cached: bool) -> dict[str, Any]:
        return {
            "id": trial.id,
            "key": trial.key,
            "params": trial.point.params,
            "seed": trial.point.seed,
            "repeat": trial.point.repeat,
            "status": result["status"],
            "metrics": result.get("metrics") or {},
            "error": result.get("error"),
            "traceback": result.get("traceback"),
            "failure_class": result.get("failure_class"),
            "worker": result.get("worker"),
            "start": result.get("start"),
            "end": result.get("end"),
            "attempts": attempts,
            "cached": cached,
            "history": result.get("history") or [],
        }

    def _update_best(self, record: dict[str, Any]) -> None:
        if self.objective is None or record["status"] != "ok":
            return
        metric, goal = self.objective
        value = record["metrics"].get(metric)
        if not isinstance(value, (int, float)):
            return
        best = self.outcome.best
        better = best is None or (value > best[1] if goal == "maximize" else value < best[1])
        better = better or (best is not None and value == best[1] and record["id"] < best[0])
        if better:
            self.outcome.best = (record["id"], float(value))


def _shipped(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A closure Dask cannot import, so it travels with cloudpickle, by value.

    Schedulers and workers in containers or other environments have no xrun to
    import ``runner._plugin`` from; the task graph must carry the function.
    """

    def call(*args: Any) -> Any:
        return fn(*args)

    return call


WORKERLESS_TIMEOUT = 90.0  # seconds with trials in flight and no worker at all


class _Monitor(threading.Thread):
    """Watches the cluster while trials run.

    * Restarts the worker of a trial stuck past ``timeout + grace``: the worker
      raises a timeout inside the trial's thread first; this catches trials
      stuck in C code, where that exception cannot land.
    * Gives up, with a clear error, when no worker has been connected for
      ``WORKERLESS_TIMEOUT`` seconds (workers that cannot start keep nothing
      running forever).
    """

    def __init__(self, executor: Executor, in_flight: dict[str, tuple[PlannedTrial, int, Any]]) -> None:
        super().__init__(daemon=True, name="xrun-monitor")
        self.executor = executor
        self.in_flight = in_flight
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=120)  # lets a worker restart in progress finish

    def run(self) -> None:
        ex = self.executor
        limit = (ex.timeout or 0) + HARD_TIMEOUT_GRACE
        workerless_since: float | None = None
        last_check = 0.0
        while not self._halt.wait(0.25):
            now = time.monotonic()
            if now - last_check > 2.0:
                last_check = now
                try:
                    n = len(ex._client.nthreads())
                except Exception:
                    n = -1
                if n == 0 and self.in_flight:
                    workerless_since = workerless_since or now
                    if now - workerless_since > WORKERLESS_TIMEOUT:
                        from runner.errors import InfraError

                        ex.fatal = InfraError(
                            f"no Dask worker has been connected for {WORKERLESS_TIMEOUT:.0f}s; workers are "
                            "crashing or cannot reach the scheduler (run with -vv to see their logs)"
                        )
                        ex._cancel(self.in_flight)
                        return
                else:
                    workerless_since = None
            if not ex.timeout:
                continue
            for dask_key, (trial, _attempt, fut) in list(self.in_flight.items()):
                started = ex._started.get(trial.key)
                if started is None or now - started[1] < limit or dask_key in ex._forced:
                    continue
                worker = started[0]
                log.warning("trial %s is stuck past its timeout; restarting worker %s", trial.id, worker)
                ex._forced[dask_key] = "timeout"
                try:
                    ex._client.cancel([fut], force=True)
                    if worker:
                        ex._client.restart_workers([worker], raise_for_error=False)
                except Exception:
                    log.debug("could not restart %s", worker, exc_info=True)
