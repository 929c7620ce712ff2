"""The executor: streams a plan's pending trials to Dask and records what comes back
(see :mod:`runner.execute` for the semantics)."""

from __future__ import annotations

import functools
import logging
import pickle
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from runner._redact import scrub
from runner.bundle.journal import encode as _encode
from runner.bundle.write import BundleWriter
from runner.cache import TrialCache
from runner.env.imported import remember
from runner.errors import InfraError
from runner.plan import Plan, PlannedTrial, cached_trials

from .batching import BatchSizer, Unit
from .model import Event, Options, Outcome
from .monitor import Monitor, shipped, silence_distributed

log = logging.getLogger(__name__)

LOST_LIMIT = 3  # times a trial's worker may die under it before it is `worker-lost`
MEMORY_TOPIC = "worker-restart-memory"  # a nanny's event when it kills its worker for memory
TRIAL_PREFIX = "xrun-trial"


# Finished results are stored in the cache in one transaction every FLUSH_SECONDS
# (or sooner, when the results staged reach FLUSH_MAX_TRIALS or FLUSH_MAX_BYTES
# of logs and artifacts, and when the loop ends however it ends), then journaled.
FLUSH_SECONDS = 0.5
FLUSH_MAX_TRIALS = 10_000
FLUSH_MAX_BYTES = 64 * 1024 * 1024
# Cached trials' journal lines are flushed (and shown) this many at a time.
CACHED_LINES = 256

_TAIL = ("cached", "history")


def encode_record(record: dict[str, Any], run_id: str, log_text: str) -> tuple[str, str]:
    """The journal line of a live trial's record and its cache entry's JSON
    (the record without "cached", with "run_id" and "log"), from one encoding
    of the record: ``json.dumps`` of each, compact, keys in record order."""
    history = _encode(record["history"]) if record["history"] else "[]"
    cached = "false" if record["cached"] is False else "true" if record["cached"] is True else _encode(record["cached"])
    tail = f',"cached":{cached},"history":{history}}}'
    line = _encode(record)
    if line.endswith(tail):  # "cached" and "history" last, as Executor._record makes them: the line is the record's JSON
        encoded = line[: -len(tail)]
    else:
        encoded = _encode({k: v for k, v in record.items() if k not in _TAIL})[:-1]
        line = f"{encoded}{tail}"
    log_json = _encode(log_text) if log_text else '""'
    body = f'{encoded},"history":{history},"run_id":{_run_json(run_id)},"log":{log_json}}}'
    return line, body


_run_json = functools.lru_cache(maxsize=4)(_encode)  # a run encodes its one id for every record


def _unpack(data: bytes) -> Any:
    """The messages of a packed event (plain msgpack: maps, arrays, strings,
    bytes, numbers; None when it is not that)."""
    import msgpack  # deferred: a dependency of Dask

    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception:
        return None


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
        # What workers verify their copy of each data file (or fetched URL) against.
        self.data_sha256 = {k: v["sha256"] for k, v in plan.data.items() if v.get("sha256")}
        store = spec.artifacts.store
        # Large artifacts go from the worker to the store (not through the scheduler).
        self._artifact_store = {"artifacts": {"store": store, "inline_max": spec.artifacts.inline_max}} if store else {}
        # trial key -> (worker address, start time), from the workers' start events
        self._started: dict[str, tuple[str, float]] = {}
        self._oom_warned: set[str] = set()
        self._oom_workers: set[str] = set()  # workers their nanny killed for memory
        self._died_on: dict[str, set[str]] = {}  # trial key -> workers that died running it
        self._lost: dict[str, int] = {}  # trial key -> times its worker died under it
        # (Dask key of its task, trial id) -> result a worker sent as an event when the
        # trial ended. Not the trial's key: two trials of a random sweep may draw the
        # same point, and be in flight in two tasks at once.
        self._streamed: dict[tuple[str, str], dict[str, Any]] = {}
        # Dask keys of the tasks submitted and not yet handled, and the ids of their
        # trials whose results have not been streamed yet: a result streamed by any
        # other (late, of a task already handled) is dropped. Bounded by the tasks in
        # flight, not by the trials recorded.
        self._live_units: dict[str, set[str]] = {}
        # Their futures: a task whose every result has been streamed is released at
        # once, from the client's event loop (see _on_worker_message).
        self._unit_futures: dict[str, Any] = {}
        self._events = threading.Lock()
        self._stop_sent = False
        self._check: Callable[[], str | None] | None = None  # the backend's health check
        self._forced: dict[str, str] = {}  # dask key -> failure class forced by the driver
        self.fatal: Exception | None = None  # set by the monitor when the cluster is gone
        self._sizer = BatchSizer(self.options.batch_size, self.options.slots)
        # finished trials staged in the cache: (event, log, artifacts, journal line) to journal after its commit
        self._journal_later: list[tuple[Event, str, list[tuple[str, bytes]], str]] = []
        self._later_bytes = 0  # of their logs and artifacts
        self._flushed_at = time.monotonic()
        self._imports_of: dict[Any, Any] = {}  # Dask task -> imported versions of its last streamed result
        self._unsubmitted = 0
        self._common: dict[str, Any] | None = None  # of every task (see _common_task)

    # ------------------------------------------------------------------ cached

    def record_cached(self) -> None:
        # a streamed sweep's entries are read (and journaled) a chunk at a time, never all held;
        # their lines are flushed CACHED_LINES at a time, each flush before the display hears of them
        told: list[Event] = []
        try:
            self._record_cached(told)
        finally:
            self._tell_cached(told)

    def _tell_cached(self, told: list[Event]) -> None:
        self.writer.journal.flush()
        for event in told:
            self.on_event(event)
        told.clear()

    def _record_cached(self, told: list[Event]) -> None:
        # the census found these entries stored, with their artifacts written before them:
        # without trials/ now, none has any (a stat per cached trial saved)
        artifacts = self.cache.holds_artifacts()
        for t, entry, reused in cached_trials(self.plan, self.cache):
            record = self._record(t, entry, attempts=entry.get("attempts", 1), cached=True)
            record["cached_from"] = entry.get("run_id")
            if reused is not None:  # environment: current, nothing it imported changed
                record["cached_key"] = reused
            stored = reused or t.key
            self.writer.record_trial(record, entry.get("log", ""), flush=False,
                                     artifacts_from=self.cache.artifacts_dir(stored) if artifacts else None)  # fmt: skip
            self.outcome.counts["cached"] += 1
            self._update_best(record)
            told.append(Event("cached", record, dict(self.outcome.counts), self.outcome.best))
            if len(told) >= CACHED_LINES:
                self._tell_cached(told)

    # ------------------------------------------------------------------ live

    def run(self, client: Any, check: Callable[[], str | None] | None = None) -> Outcome:
        from distributed import as_completed  # deferred: imports Dask

        from runner import _plugin  # deferred: imports Dask

        self._client = client
        self._check = check
        self._common = None  # the stage outputs as they are now
        client.subscribe_topic("xrun", self._on_worker_event)
        client.subscribe_topic(MEMORY_TOPIC, self._on_memory_event)
        queue: deque[tuple[PlannedTrial, int, bool]] = deque()  # (trial, attempt, run alone)
        pending = self.plan.pending  # of a streamed sweep: counted, and keyed as they are submitted
        scopes = self.plan.scopes  # environment: current: of the trials in flight only

        def scoped(trials: Any) -> Any:
            for t in trials:
                if t.scope is not None:
                    scopes[t.key] = t.scope
                yield t

        todo = scoped(pending)
        self._unsubmitted = len(pending)
        in_flight: dict[str, Unit] = {}
        ac = as_completed(with_results=False, loop=client.loop)
        trial_fn = shipped(_plugin.call_trial)
        batch_fn = shipped(_plugin.call_batch)
        counter = 0

        def next_items() -> list[tuple[PlannedTrial, int]]:
            if queue and queue[0][2]:
                trial, attempt, _ = queue.popleft()
                return [(trial, attempt)]
            size = self._sizer.size(self._unsubmitted)
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
            while len(in_flight) < self._sizer.in_flight(self._unsubmitted + len(queue), self.options.max_in_flight) \
                    and not self.stop.is_set():
                items = next_items()
                if not items:
                    return
                counter += 1
                first, attempt = items[0]
                key = f"{TRIAL_PREFIX}-{first.id}-{attempt}-{counter}-{self.run_id[-6:]}"
                with self._events:
                    self._live_units[key] = {t.id for t, _ in items}  # before a worker can stream anything for it
                if len(items) == 1:
                    fut = client.submit(trial_fn, self._task(first, key), key=key, pure=False)
                else:
                    # One bytes argument: Dask would otherwise walk every task dict looking for keys.
                    payload = pickle.dumps([self._task(t, key) for t, _ in items], protocol=pickle.HIGHEST_PROTOCOL)
                    fut = client.submit(batch_fn, payload, key=key, pure=False)
                with self._events:
                    self._unit_futures[key] = fut
                    streamed_all = not self._live_units[key]  # (a worker quicker than this thread)
                if streamed_all:
                    self._release(fut)
                in_flight[key] = Unit(items, fut)
                self.outcome.tasks += 1
                ac.add(fut)

        def next_batch() -> list[Any]:
            """Finished futures; wakes up to notice Ctrl-C and a dead cluster."""
            last_check = time.monotonic()
            while True:
                if self.stop.is_set():
                    self._tell_stop()
                batch = ac.next_batch(block=False)
                if batch or self.fatal is not None:
                    return batch
                self._flush_if_due()  # while waiting too
                if self._check is not None and time.monotonic() - last_check > 1.0:
                    last_check = time.monotonic()
                    trouble = self._check()
                    if trouble:
                        self.fatal = InfraError(trouble)
                        return []
                with ac.thread_condition:
                    ac.thread_condition.wait(timeout=0.2)

        watchdog = Monitor(self, in_flight)
        watchdog.start()
        try:
            submit_more()
            while in_flight:
                for fut in next_batch():
                    unit = in_flight.pop(fut.key, None)
                    if unit is None:  # cancelled by --fail-fast or the monitor
                        continue
                    self._handle_unit(unit, queue)
                    if scopes:  # the scope of a trial that is done is not needed again
                        again = {t.key for t, _, _ in queue}
                        for t, _ in unit.items:
                            if t.key not in again:
                                scopes.pop(t.key, None)
                    if self.options.fail_fast and self.outcome.counts["failed"]:
                        self.stop.set()
                        self.outcome.stopped_early = True
                        self._cancel(in_flight)
                        in_flight.clear()
                        break
                if self.fatal is not None:
                    # The cluster is gone: Dask's own reconnect tracebacks say nothing more.
                    silence_distributed()
                    self._cancel(in_flight)
                    raise self.fatal
                submit_more()
                self._flush_if_due()
        except KeyboardInterrupt:
            self.outcome.interrupted = True
            self._cancel(in_flight)
            in_flight.clear()
        finally:
            watchdog.stop()
            self._flush()  # whatever finished is kept, however the loop ended
            for topic in ("xrun", MEMORY_TOPIC):
                try:
                    client.unsubscribe_topic(topic)
                except Exception:
                    pass
        if self.stop.is_set() and not self.outcome.stopped_early:
            self.outcome.interrupted = True
        done = sum(self.outcome.counts.values())
        self.outcome.not_run = len(self.plan.trials) - done
        return self.outcome

    def _tell_stop(self) -> None:
        """First Ctrl-C: workers skip this run's tasks that have not started."""
        if self._stop_sent:
            return
        self._stop_sent = True
        from runner import _plugin  # deferred: imports Dask

        try:
            self._client.run(shipped(_plugin.call_stop), self.run_id, on_error="ignore")
        except Exception:
            log.debug("telling workers to stop failed", exc_info=True)

    def _handle_unit(self, unit: Unit, queue: deque[tuple[PlannedTrial, int, bool]]) -> None:
        fut = unit.fut
        forced = self._forced.pop(fut.key, None)  # key of the trial the monitor timed out
        with self._events:
            # only results of this task: a late event of an earlier attempt is not this one's
            streamed = {t.id: r for t, _ in unit.items if (r := self._streamed.pop((fut.key, t.id), None)) is not None}
        status = fut.status
        if len(streamed) == len(unit.items):
            # Every result already came as an event, and the task was released
            # then (whatever its state now: finished, cancelled by that release, or
            # lost with its worker): nothing to gather from a worker that may be gone.
            results = [streamed[t.id] for t, _ in unit.items]
            status = "finished"
        elif status == "finished":
            results = fut.result()
            if len(unit.items) == 1:
                results = [results]
        if status == "finished":
            # The results are staged in the cache; a later _flush commits them
            # (with other units') before any of them is journaled.
            for (trial, attempt), result in zip(unit.items, results):
                if result.get("status") == "skipped":  # stopped before it started
                    self._started.pop(trial.key, None)
                    continue
                self._sizer.note(result)
                self._handle(trial, attempt, result, queue)
        elif status == "cancelled" and forced is None:
            # Not cancelled by xrun (those are dropped before): the scheduler
            # lost the run's tasks. Nothing is re-run; finished trials are kept.

            trouble = None
            for _ in range(20):  # the connection may close just before the process is seen gone
                trouble = self._check() if self._check else None
                if trouble or self._check is None:
                    break
                time.sleep(0.1)
            self.fatal = self.fatal or InfraError(
                trouble or "the Dask scheduler dropped the run's tasks (it restarted or became unreachable)"
            )
        elif status != "error" and forced is None:
            # Finished, but its result was lost with its worker before it was
            # gathered (Dask would compute it again): results that came as
            # events are kept, the others run again, without counting an attempt.
            try:
                self._client.cancel([fut], force=True)
            except Exception:
                log.debug("cancel failed", exc_info=True)
            for trial, attempt in unit.items:
                if trial.id in streamed:
                    self._handle(trial, attempt, streamed[trial.id], queue)
                else:
                    self._started.pop(trial.key, None)
                    queue.append((trial, attempt, True))
        else:
            # The task was lost (its worker died, or was restarted for a stuck
            # trial). Finished trials of a batch were streamed and are kept;
            # the trial that was running is judged; the rest run again alone,
            # without counting an attempt.
            for trial, attempt in unit.items:
                if trial.id in streamed:
                    self._handle(trial, attempt, streamed[trial.id], queue)
                elif forced == trial.key or (forced is None and (len(unit.items) == 1 or trial.key in self._started)):
                    judged = self._lost_result(fut, trial, forced == trial.key)
                    if judged is None:
                        queue.append((trial, attempt, True))
                    else:
                        self._handle(trial, attempt, judged, queue)
                else:
                    self._started.pop(trial.key, None)
                    queue.append((trial, attempt, True))
        with self._events:
            self._live_units.pop(fut.key, None)
            self._unit_futures.pop(fut.key, None)
            self._imports_of.pop(fut.key, None)
            for t, _ in unit.items:  # one that came while this ran
                self._streamed.pop((fut.key, t.id), None)
        fut.release()

    def _release(self, fut: Any) -> None:
        """Tell the scheduler this task's output is not wanted: every result of it
        came as an event. Dask keeps a finished task's output on its worker while
        the driver holds the future, and computes it again should that worker die
        before the driver has handled it (under load, the driver's loop can be
        seconds behind): its trials would run twice. Called from any thread; the
        executor's loop sees the task as cancelled and takes the streamed results."""
        client = self._client
        try:
            client.loop.add_callback(client._cancel, [fut])
        except Exception:  # the client is closing: nothing will run it again either
            log.debug("releasing a streamed task failed", exc_info=True)

    def _flush_if_due(self) -> None:
        if self._journal_later and (time.monotonic() - self._flushed_at >= FLUSH_SECONDS
                                    or len(self._journal_later) >= FLUSH_MAX_TRIALS
                                    or self._later_bytes >= FLUSH_MAX_BYTES):  # fmt: skip
            self._flush()

    def _flush(self) -> None:
        """Commit the staged results to the cache in one transaction, then
        journal them (cache first, then the bundle), then tell the display.
        Interrupted in the commit, nothing is journaled and all stay staged."""
        self._flushed_at = time.monotonic()
        if not self._journal_later:
            return
        self.cache.commit()
        later, self._journal_later, self._later_bytes = self._journal_later, [], 0
        # Every line written and flushed before the display hears of any.
        for event, log_text, artifacts, line in later:
            self.writer.record_trial(event.record, log_text, artifacts, line=line, flush=False)
        self.writer.journal.flush()
        for event, *_ in later:
            self.on_event(event)

    def _cancel(self, in_flight: dict[str, Unit]) -> None:
        futures = [u.fut for u in list(in_flight.values())]
        if futures:
            try:
                self._client.cancel(futures, force=True)
            except Exception:
                log.debug("cancel failed", exc_info=True)

    def _on_worker_event(self, event: tuple[float, dict[str, Any]]) -> None:
        msg = event[1]
        if not isinstance(msg, dict):
            return
        batch = msg.get("batch")
        if isinstance(msg.get("packed"), bytes):  # runner.worker._base.packed
            batch = _unpack(msg["packed"])
        # the messages of a worker's trials shorter than a few milliseconds, in order
        # (a tuple when it came over TCP: Dask's msgpack decodes arrays as tuples)
        if isinstance(batch, (list, tuple)):
            for one in batch:
                if isinstance(one, dict) and "batch" not in one:
                    self._on_worker_message(one)
        else:
            self._on_worker_message(msg)

    def _on_worker_message(self, msg: dict[str, Any]) -> None:
        # A batch streams a trial's result with the next trial's start: the result first.
        if "result" in msg and isinstance(msg["result"], dict):
            result = msg["result"]
            unit = result.get("unit")
            release = None
            with self._events:
                if unit in self._live_units:  # else late: its task was handled already
                    if result.pop("same_imported", False):  # as the batch's previous streamed result
                        result["imported"] = self._imports_of.get(unit)
                    elif result.get("imported") is not None:
                        self._imports_of[unit] = result["imported"]
                    trial_id = str(result.get("trial_id", ""))
                    waiting = self._live_units[unit]
                    if trial_id in waiting:  # one of this task's trials, not streamed before
                        waiting.discard(trial_id)
                        if not waiting:
                            release = self._unit_futures.get(unit)  # None: submit_more releases it
                        self._streamed[(unit, trial_id)] = result
                    elif (unit, trial_id) in self._streamed:  # streamed again: the last one counts
                        self._streamed[(unit, trial_id)] = result
            if release is not None:
                self._release(release)
        if "start" in msg:
            self._started[msg["start"]] = (msg.get("worker", ""), time.monotonic())
        elif "oom" in msg:
            self._oom_warned.add(msg["oom"])

    def _on_memory_event(self, event: tuple[float, dict[str, Any]]) -> None:
        worker = event[1].get("worker") if isinstance(event[1], dict) else None
        if worker:
            self._oom_workers.add(worker)

    def _killed_for_memory(self, trial: PlannedTrial, exc: BaseException) -> bool:
        """Whether a nanny killed a worker running this trial for its memory, in
        this attempt or an earlier one.

        The worker is the one the trial said it started on, else the one the
        scheduler names (a trial that holds the GIL from its first line may die
        before its start message leaves). The nanny's event races the worker's
        death to the scheduler, so a first death may look like any other; the
        trial then runs again, and is judged with every worker it died on."""
        if trial.key in self._oom_warned:
            return True
        died_on = self._died_on.setdefault(trial.key, set())
        started = (self._started.get(trial.key) or ("", 0.0))[0]
        last = getattr(getattr(exc, "last_worker", None), "address", None)
        died_on.update(w for w in (started, last) if isinstance(w, str) and w)
        if died_on and not died_on & self._oom_workers:  # the nanny's event may still be on its way
            try:
                for _, msg in self._client.get_events(MEMORY_TOPIC):
                    self._on_memory_event((0.0, msg))
            except Exception:
                log.debug("reading memory events failed", exc_info=True)
        return bool(died_on & self._oom_workers)

    def _task(self, trial: PlannedTrial, unit: str = "") -> dict[str, Any]:
        point = trial.point
        task = {
            "trial_id": point.id,
            "key": trial.key,
            "params": point.params,
            "seed": point.seed,
            **self._common_task(),
            "unit": unit,  # the Dask task, echoed in the result a worker streams
            **self._artifact_store,
        }
        if trial.early_stop:
            task["early_stop"] = trial.early_stop  # adaptive sweeps (runner.search)
        return task

    def _common_task(self) -> dict[str, Any]:
        """What every trial's task holds alike, made once per run (its inputs as they are when the run starts)."""
        common = self._common
        if common is None:
            common = self._common = {
                "definition": self.plan.definition,
                "timeout": self.timeout,
                "data": self.data_paths,
                "data_sha256": self.data_sha256,
                "inputs": self.plan.inputs,  # stage outputs (prepare) the trial gets as ctx.inputs
                "run": self.run_id,
            }
        return common

    def _scrub(self, result: dict[str, Any]) -> dict[str, Any]:
        """Secret values never reach the bundle, the cache or the terminal."""
        ids = {k: result[k] for k in ("trial_id", "key") if k in result}  # identifiers, not trial output
        return {**scrub(result, self.redact), **ids}

    def _handle(self, trial: PlannedTrial, attempt: int, result: dict[str, Any], queue: deque[tuple[PlannedTrial, int, bool]]) -> None:
        self._started.pop(trial.key, None)
        if result.get("artifacts"):  # lists when they came as an event
            result["artifacts"] = [(rel, blob) for rel, blob in result["artifacts"]]
        if self.redact:
            result = self._scrub(result)
        if result["status"] == "error" and attempt <= self.retries and not self.stop.is_set():
            record = self._record(trial, result, attempts=attempt, cached=False)
            self.on_event(Event("retry", record, dict(self.outcome.counts), self.outcome.best))
            queue.append((trial, attempt + 1, False))
            return
        record = self._record(trial, result, attempts=attempt, cached=False)
        log_text = result.get("log") or ""
        artifacts = result.get("artifacts") or []
        line, body = encode_record(record, self.run_id, log_text)
        if result["status"] in ("ok", "pruned"):  # pruned: stopped early by the sweep, a result too
            self.cache.stage(trial.key, body.encode(), artifacts)
            scope = self.plan.scopes.get(trial.key)
            if scope is not None:  # environment: current (runner.env.imported)
                remember(self.cache, scope, trial.key, result.get("imported"), staged=True)
            if result["status"] == "pruned":
                self.outcome.counts["pruned"] = self.outcome.counts.get("pruned", 0) + 1
            else:
                self.outcome.counts["ok"] += 1
            self._update_best(record)
        else:
            self.outcome.counts["failed"] += 1
            cls = result["failure_class"]
            self.outcome.failures[cls] = self.outcome.failures.get(cls, 0) + 1
        kind = "done" if result["status"] in ("ok", "pruned") else "failed"
        event = Event(kind, record, dict(self.outcome.counts), self.outcome.best)
        self._journal_later.append((event, log_text, artifacts, line))
        if log_text or artifacts:
            self._later_bytes += len(log_text) + sum(len(b) for _, b in artifacts)

    def _lost_result(self, fut: Any, trial: PlannedTrial, timed_out: bool) -> dict[str, Any] | None:
        """What a lost task means for the trial that was running in it; None: run it again."""
        now = time.time()
        base: dict[str, Any] = {"trial_id": trial.id, "key": trial.key, "metrics": {}, "start": None, "end": now,
                "log": "", "worker": None, "traceback": None}  # fmt: skip
        if timed_out:
            return {**base, "status": "timeout", "failure_class": "timeout",
                    "error": f"trial exceeded its timeout of {self.timeout:g}s and did not stop; its worker was restarted"}  # fmt: skip
        exc = fut.exception()
        name = type(exc).__name__
        if name == "KilledWorker":
            if self._killed_for_memory(trial, exc):
                self._died_on.pop(trial.key, None)
                return {**base, "status": "oom", "failure_class": "oom",
                        "error": "trial exceeded its worker's memory limit; the worker was killed for it"}  # fmt: skip
            # Dask itself may have run it on other workers already (a scheduler
            # we did not start keeps its default of 3 retries).
            lost = self._lost.get(trial.key, 0) + 1 + int(getattr(exc, "allowed_failures", 0) or 0)
            self._lost[trial.key] = lost
            self._started.pop(trial.key, None)
            if lost <= LOST_LIMIT:
                log.info("trial %s: its worker was lost; running it again", trial.id)
                return None
            self._died_on.pop(trial.key, None)
            return {**base, "status": "worker-lost", "failure_class": "worker-lost",
                    "error": f"the trial's worker died each of the {lost} times it ran it"}  # fmt: skip
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
