"""What every part of the worker package shares: limits, the exceptions that
stop a trial from outside, and the Dask worker the code runs in (if any).

Standard library only (see :mod:`runner.worker`)."""

from __future__ import annotations

import threading
import time
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


class TrialPruned(BaseException):
    """Raised by ``ctx.log`` when an adaptive sweep's early stopping stops the
    trial (a BaseException, so a trial's ``except Exception`` cannot swallow it)."""


def current_worker() -> Any:
    try:
        from distributed import get_worker  # deferred: imports Dask

        return get_worker()
    except Exception:
        return None


SENT_WAIT_SECONDS = 0.1
# A trial's start and the previous trial's result leave as one message, handed
# over before the trial starts. Messages of trials that end faster than one in
# COALESCE_SECONDS after the last hand-over go together, at most that much later:
# one Dask event costs the worker, the scheduler and the driver about as much
# as a no-op trial (see _Outbox).
COALESCE_SECONDS = 0.003


class _Outbox:
    """A worker's trial messages to the driver, in order. A message posted when
    the last hand-over is older than ``COALESCE_SECONDS`` is handed over at
    once: :meth:`post` returns once the worker's event loop has queued it for
    the scheduler (at most ``SENT_WAIT_SECONDS``), with any message waiting.
    One posted sooner waits for a flush at most ``COALESCE_SECONDS`` after the
    last, and :meth:`post` returns at once. Only the event loop takes messages
    out, so they leave in the order they were posted."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.lock = threading.Lock()
        self.messages: list[dict[str, Any]] = []
        self.sent_at = 0.0  # time.monotonic() of the last hand-over
        self.armed = False  # a flush is scheduled

    def post(self, msg: dict[str, Any]) -> None:
        with self.lock:
            self.messages.append(msg)
            if time.monotonic() - self.sent_at < COALESCE_SECONDS:
                if not self.armed:
                    self.armed = True
                    self.worker.loop.add_callback(self._arm)
                return
        self.flush()

    def flush(self) -> None:
        """Hand every waiting message over; return once the event loop has them."""
        with self.lock:
            if not self.messages:
                return
        if getattr(self.worker, "thread_id", None) == threading.get_ident():
            self._send()
            return
        queued = threading.Event()

        def send() -> None:
            try:
                self._send()
            finally:
                queued.set()

        self.worker.loop.add_callback(send)
        queued.wait(SENT_WAIT_SECONDS)

    def _arm(self) -> None:  # in the event loop
        self.worker.loop.call_later(max(0.0, self.sent_at + COALESCE_SECONDS - time.monotonic()), self._send)

    def _send(self) -> None:  # in the event loop: straight into its batched stream
        with self.lock:
            messages, self.messages = self.messages, []
            self.armed = False
            self.sent_at = time.monotonic()
        if messages:
            self.worker.log_event(EVENT_TOPIC, messages[0] if len(messages) == 1 else packed(messages))


def packed(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Several messages as one event: ``{"packed": <msgpack of the list>}``, which
    the scheduler keeps and forwards as one bytes object instead of decoding and
    encoding every message of it again (Dask calls a Python hook for each map it
    decodes); ``{"batch": [...]}`` when msgpack cannot encode one of them."""
    try:
        import msgpack  # deferred: a dependency of Dask, on every worker

        return {"packed": msgpack.packb(messages, use_bin_type=True)}
    except Exception:
        return {"batch": messages}


_OUTBOX_LOCK = threading.Lock()


def _outbox(worker: Any) -> _Outbox:
    box = getattr(worker, "_xrun_outbox", None)
    if box is None:
        with _OUTBOX_LOCK:
            box = getattr(worker, "_xrun_outbox", None)
            if box is None:
                box = worker._xrun_outbox = _Outbox(worker)
    return box


def emit(msg: dict[str, Any], *, handed_over: bool = False, worker: Any = None) -> None:
    """Send ``msg`` to the driver (through the scheduler's event log).

    ``handed_over`` (a trial's start and the previous trial's result): return
    only once the worker's event loop has queued it for the scheduler (at most
    :data:`SENT_WAIT_SECONDS`), so a worker the next trial kills loses at most
    the last few milliseconds' results, not every result its busy loop had not
    picked up yet; within ``COALESCE_SECONDS`` of the last hand-over it goes
    with the next (see :class:`_Outbox`). :func:`flush` hands over what waits.
    ``worker``: the Dask worker, from a thread that is not running one of its
    tasks (Dask knows the current worker only in those)."""
    worker = worker or current_worker()
    if worker is None:
        return
    try:
        if handed_over:
            _outbox(worker).post(msg)
        else:
            worker.log_event(EVENT_TOPIC, msg)  # from another thread: queued by the event loop
    except Exception:
        pass


def flush() -> None:
    """Hand over every message of this worker's trials still waiting (the end of a Dask task)."""
    worker = current_worker()
    box = getattr(worker, "_xrun_outbox", None) if worker is not None else None
    if box is not None:
        try:
            box.flush()
        except Exception:
            pass
