"""What every part of the worker package shares: limits, the exceptions that
stop a trial from outside, and the Dask worker the code runs in (if any).

Standard library only (see :mod:`runner.worker`)."""

from __future__ import annotations

import threading
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


def emit(msg: dict[str, Any], *, handed_over: bool = False, worker: Any = None) -> None:
    """Send ``msg`` to the driver (through the scheduler's event log).

    ``handed_over``: return only once the worker's event loop has queued it
    for the scheduler (at most :data:`SENT_WAIT_SECONDS`): a trial's result
    is then on its way before the next trial starts, so a worker the next trial
    kills loses at most the last few milliseconds' results, not every result
    its busy loop had not picked up yet. ``worker``: the Dask worker, from a
    thread that is not running one of its tasks (Dask knows the current
    worker only in those)."""
    worker = worker or current_worker()
    if worker is None:
        return
    try:
        if not handed_over or getattr(worker, "thread_id", None) == threading.get_ident():
            worker.log_event(EVENT_TOPIC, msg)
            return
        queued = threading.Event()

        def send() -> None:
            try:
                worker.log_event(EVENT_TOPIC, msg)  # in the loop's thread: straight into its batched stream
            finally:
                queued.set()

        worker.loop.add_callback(send)
        queued.wait(SENT_WAIT_SECONDS)
    except Exception:
        pass
