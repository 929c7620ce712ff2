"""Submitting trials to Dask and recording what comes back.

* Streaming: at most ``max_in_flight`` Dask tasks (a trial, or a batch of short
  trials) are submitted at once, so a sweep of 100,000 trials never holds
  100,000 futures.
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

from runner._redact import scrub
from runner.bundle.write import BundleWriter
from runner.cache import TrialCache
from runner.env.imported import remember
from runner.errors import InfraError
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
    slots: int = 2  # worker threads in the cluster
    batch_size: int = 0  # trials per Dask task; 0 = adaptive


@dataclass
class _Unit:
    """One Dask task: a trial, or a batch of short trials."""

    items: list[tuple[PlannedTrial, int]]
    fut: Any


TARGET_TASK_SECONDS = 0.25
MAX_BATCH = 500
MIN_SAMPLES = 4


@dataclass
class Outcome:
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0, "cached": 0})
    failures: dict[str, int] = field(default_factory=dict)  # failure class -> n
    best: tuple[str, float] | None = None
    interrupted: bool = False
    stopped_early: bool = False  # --fail-fast
    not_run: int = 0
    tasks: int = 0  # Dask tasks submitted (short trials are batched)


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
        # What workers verify their copy of each data file against (urls are the trial's to fetch).
        self.data_sha256 = {k: v["sha256"] for k, v in plan.data.items() if v.get("path")}
        # trial key -> (worker address, start time), from the workers' start events
        self._started: dict[str, tuple[str, float]] = {}
        self._oom_warned: set[str] = set()
        self._forced: dict[str, str] = {}  # dask key -> failure class forced by the driver
        self.fatal: Exception | None = None  # set by the monitor when the cluster is gone
        self._n_durations = 0
        self._mean_duration: float | None = None
        self._unsubmitted = 0

    # ------------------------------------------------------------------ cached

    def record_cached(self) -> None:
        for t in self.plan.trials:
            entry = self.plan.cached.get(t.key)
            if entry is None:
                continue
            record = self._record(t, entry, attempts=entry.get("attempts", 1), cached=True)
            record["cached_from"] = entry.get("run_id")
            if t.key in self.plan.reused:  # environment: current, nothing it imported changed
                record["cached_key"] = self.plan.reused[t.key]
            stored = self.plan.reused.get(t.key, t.key)
            self.writer.record_trial(record, entry.get("log", ""), artifacts_from=self.cache.artifacts_dir(stored))
            self.outcome.counts["cached"] += 1
            self._update_best(record)
            self.on_event(Event("cached", record, dict(self.outcome.counts), self.outcome.best))

    # ------------------------------------------------------------------ live

    def run(self, client: Any) -> Outcome:
        from distributed import as_completed

        from runner import _plugin  # deferred: imports Dask

        self._client = client
        client.subscribe_topic("xrun", self._on_worker_event)
        queue: deque[tuple[PlannedTrial, int, bool]] = deque()  # (trial, attempt, run alone)
        pending = self.plan.pending
        todo = iter(pending)
        self._unsubmitted = len(pending)
        in_flight: dict[str, _Unit] = {}
        ac = as_completed(with_results=False, loop=client.loop)
        trial_fn = _shipped(_plugin.call_trial)
        batch_fn = _shipped(_plugin.call_batch)
        counter = 0

        def next_items() -> list[tuple[PlannedTrial, int]]:
            if queue and queue[0][2]:
                trial, attempt, _ = queue.popleft()
                return [(trial, attempt)]
            size = self._batch_size()
            items: list[tuple[PlannedTrial, int]] = []
            while len(items) < size:
                if queue and not queue[0][2]:
                    trial, attempt, _ = queue.popleft()
                    items.append((trial, attempt))
                    continue
                nxt = next(todo, None)
                if nxt is None:
                    break
                self._unsubmitted -= 1
                items.append((nxt, 1))
            return items

        def submit_more() -> None:
            nonlocal counter
            while len(in_flight) < self.options.max_in_flight and not self.stop.is_set():
                items = next_items()
                if not items:
                    return
                counter += 1
                first, attempt = items[0]
                key = f"{TRIAL_PREFIX}-{first.id}-{attempt}-{counter}-{self.run_id[-6:]}"
                if len(items) == 1:
                    fut = client.submit(trial_fn, self._task(first), key=key, pure=False)
                else:
                    fut = client.submit(batch_fn, [self._task(t) for t, _ in items], key=key, pure=False)
                in_flight[key] = _Unit(items, fut)
                self.outcome.tasks += 1
                ac.add(fut)

        watchdog = _Monitor(self, in_flight)
        watchdog.start()
        try:
            submit_more()
            while in_flight:
                for fut in ac.next_batch(block=True):
                    unit = in_flight.pop(fut.key, None)
                    if unit is None:  # cancelled by --fail-fast or the monitor
                        continue
                    self._handle_unit(unit, queue)
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

    def _batch_size(self) -> int:
        """Trials per Dask task: 1 until trials are known to be short, then
        enough to make each task ~TARGET_TASK_SECONDS of work, while leaving
        every worker slot something to do."""
        if self.options.batch_size:
            return self.options.batch_size
        if self._n_durations < MIN_SAMPLES or self._mean_duration is None:
            return 1
        size = int(TARGET_TASK_SECONDS / max(self._mean_duration, 1e-5))
        spread = max(1, self._unsubmitted // max(1, 2 * self.options.slots))
        return max(1, min(size, spread, MAX_BATCH))

    def _note_duration(self, result: dict[str, Any]) -> None:
        start, end = result.get("start"), result.get("end")
        if isinstance(start, (int, float)) and isinstance(end, (int, float)):
            d = max(0.0, end - start)
            self._n_durations += 1
            m = self._mean_duration
            self._mean_duration = d if m is None else m + (d - m) * 0.1

    def _handle_unit(self, unit: _Unit, queue: deque[tuple[PlannedTrial, int, bool]]) -> None:
        fut = unit.fut
        forced = self._forced.pop(fut.key, None)  # key of the trial the monitor timed out
        if fut.status == "finished":
            results = fut.result()
            if len(unit.items) == 1:
                results = [results]
            for (trial, attempt), result in zip(unit.items, results):
                self._note_duration(result)
                self._handle(trial, attempt, result, queue)
        elif len(unit.items) == 1:
            trial, attempt = unit.items[0]
            self._handle(trial, attempt, self._lost_result(fut, trial, forced == trial.key), queue)
        else:
            # A batch died (lost worker, timeout restart): which trial did it is
            # unknown, so each runs again alone, without counting an attempt.
            for trial, attempt in unit.items:
                if forced == trial.key:
                    self._handle(trial, attempt, self._lost_result(fut, trial, True), queue)
                else:
                    self._started.pop(trial.key, None)
                    queue.append((trial, attempt, True))
        fut.release()

    def _cancel(self, in_flight: dict[str, _Unit]) -> None:
        futures = [u.fut for u in list(in_flight.values())]
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
            "data_sha256": self.data_sha256,
        }

    def _scrub(self, result: dict[str, Any]) -> dict[str, Any]:
        """Secret values never reach the bundle, the cache or the terminal."""
        ids = {k: result[k] for k in ("trial_id", "key") if k in result}  # identifiers, not trial output
        return {**scrub(result, self.redact), **ids}

    def _handle(self, trial: PlannedTrial, attempt: int, result: dict[str, Any], queue: deque[tuple[PlannedTrial, int, bool]]) -> None:
        self._started.pop(trial.key, None)
        if self.redact:
            result = self._scrub(result)
        if result["status"] == "error" and attempt <= self.retries and not self.stop.is_set():
            record = self._record(trial, result, attempts=attempt, cached=False)
            self.on_event(Event("retry", record, dict(self.outcome.counts), self.outcome.best))
            queue.append((trial, attempt + 1, False))
            return
        record = self._record(trial, result, attempts=attempt, cached=False)
        if result["status"] == "ok":
            entry = {**record, "run_id": self.run_id, "log": result.get("log", "")}
            entry.pop("cached", None)
            self.cache.put(entry, result.get("artifacts") or [])
            if trial.key in self.plan.scopes:  # environment: current (runner.env.imported)

                remember(self.cache, self.plan.scopes[trial.key], trial.key, result.get("imported"))
            self.outcome.counts["ok"] += 1
            self._update_best(record)
        else:
            self.outcome.counts["failed"] += 1
            cls = result["failure_class"]
            self.outcome.failures[cls] = self.outcome.failures.get(cls, 0) + 1
        self.writer.record_trial(record, result.get("log", ""), result.get("artifacts") or [])
        self.on_event(Event("done" if result["status"] == "ok" else "failed", record, dict(self.outcome.counts), self.outcome.best))

    def _lost_result(self, fut: Any, trial: PlannedTrial, timed_out: bool) -> dict[str, Any]:
        now = time.time()
        base: dict[str, Any] = {"trial_id": trial.id, "key": trial.key, "metrics": {}, "start": None, "end": now,
                "log": "", "worker": None, "traceback": None}  # fmt: skip
        if timed_out:
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
        value = self.objective.value(record)
        if value is None:
            return
        best = self.outcome.best
        better = best is None or self.objective.better(value, best[1])
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

    def __init__(self, executor: Executor, in_flight: dict[str, _Unit]) -> None:
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
            for dask_key, unit in list(self.in_flight.items()):
                if dask_key in ex._forced:
                    continue
                for trial, _attempt in unit.items:
                    started = ex._started.get(trial.key)
                    if started is None or now - started[1] < limit:
                        continue
                    worker = started[0]
                    log.warning("trial %s is stuck past its timeout; restarting worker %s", trial.id, worker)
                    ex._forced[dask_key] = trial.key
                    try:
                        ex._client.cancel([unit.fut], force=True)
                        if worker:
                            ex._client.restart_workers([worker], raise_for_error=False)
                    except Exception:
                        log.debug("could not restart %s", worker, exc_info=True)
                    break
