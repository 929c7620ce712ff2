"""What every part of the worker package shares: limits, the exceptions that
stop a trial from outside, and the Dask worker the code runs in (if any).

Standard library only (see :mod:`runner.worker`)."""

from __future__ import annotations

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


def emit(msg: dict[str, Any]) -> None:
    worker = current_worker()
    if worker is not None:
        try:
            worker.log_event(EVENT_TOPIC, msg)
        except Exception:
            pass


