"""Log capture and the watchdog of a running trial or stage.

A trial's prints go to its own buffer (per thread, bounded); a watchdog thread
stops a trial that passes its timeout or nears the worker's memory limit.
:class:`Guard` puts the two together for one piece of user code: trials
(``trial.run_trial``) and stages (``stage.run_stage``) both run inside one."""

from __future__ import annotations

import ctypes
import io
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._base import (
    MAX_LOG_BYTES,
    MEMORY_FRACTION,
    TrialOutOfMemory,
    TrialTimeout,
    current_worker,
    emit,
)

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


def install_routers() -> tuple[_Router, _Router]:
    if not isinstance(sys.stdout, _Router) or not hasattr(sys.stdout, "local"):
        sys.stdout = _Router(sys.stdout)
    if not isinstance(sys.stderr, _Router) or not hasattr(sys.stderr, "local"):
        sys.stderr = _Router(sys.stderr)
    return sys.stdout, sys.stderr  # type: ignore[return-value]


# ------------------------------------------------------------------ watchdog


def raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` in another thread at its next bytecode; ``None`` clears a pending one."""
    arg = ctypes.py_object(exc) if exc is not None else None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), arg)


class Watchdog:
    """Stops a trial that passes its timeout or nears the worker's memory limit.

    It raises an exception inside the trial's thread; code stuck in C (a long
    ``time.sleep``, a blocking call) is stopped by the driver restarting the
    worker instead, after a grace period. One thread per worker process
    (:class:`_Guard`) checks every running trial every ``CHECK_SECONDS``:
    a thread started per trial cost more than a short trial itself.
    """

    def __init__(self, thread_id: int, timeout: float | None, memory_limit: int | None, trial_id: str,
                 worker: Any = None) -> None:  # fmt: skip
        self.thread_id = thread_id
        self.worker = worker  # the Dask worker the trial runs in: the watchdog's thread tells the driver
        self.timeout = timeout
        self.memory_limit = memory_limit
        self.trial_id = trial_id
        self.done = threading.Event()
        self.lock = threading.Lock()  # the trial finishing and the dog firing exclude each other
        self.fired: str | None = None
        self.started = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        _Guard.watch(self)

    def finish(self) -> None:
        with self.lock:
            self.done.set()
        _Guard.forget(self)

    def _fire(self, why: str, exc: type[BaseException]) -> None:
        with self.lock:
            if not self.done.is_set():
                self.fired = why
                raise_in(self.thread_id, exc)

    def check(self, now: float, rss: int | None) -> bool:
        """Fire if the trial is over its limits; True once there is nothing more to watch."""
        if self.done.is_set():
            return True
        if self.timeout is not None and now - self.started > self.timeout:
            self._fire("timeout", TrialTimeout)
            return True
        if rss is not None and self.memory_limit and rss > MEMORY_FRACTION * self.memory_limit:
            emit({"oom": self.trial_id, "rss": rss}, worker=self.worker)
            self._fire("oom", TrialOutOfMemory)
            return True
        return False


CHECK_SECONDS = 0.05


class _Guard:
    """The thread of a worker process that checks its running trials' watchdogs."""

    lock = threading.Lock()
    dogs: set[Watchdog] = set()
    thread: threading.Thread | None = None
    pid = 0

    @classmethod
    def watch(cls, dog: Watchdog) -> None:
        with cls.lock:
            cls.dogs.add(dog)
            if cls.thread is None or cls.pid != os.getpid() or not cls.thread.is_alive():
                cls.pid = os.getpid()
                cls.thread = threading.Thread(target=cls._run, daemon=True, name="xrun-watchdog")
                cls.thread.start()

    @classmethod
    def forget(cls, dog: Watchdog) -> None:
        with cls.lock:
            cls.dogs.discard(dog)

    @classmethod
    def _run(cls) -> None:
        proc: Any = None
        try:
            import psutil  # deferred: only when memory is watched

            proc = psutil.Process()
        except Exception:
            proc = None
        while True:
            time.sleep(CHECK_SECONDS)
            with cls.lock:
                dogs = list(cls.dogs)
            if not dogs:
                continue
            rss = None
            if proc is not None and any(d.memory_limit for d in dogs):
                try:
                    rss = proc.memory_info().rss
                except Exception:
                    rss = None
            now = time.monotonic()
            for dog in dogs:
                if dog.check(now, rss):
                    cls.forget(dog)


# ------------------------------------------------------------------ the two together


class Guard:
    """One trial's or stage's code on this worker, in the calling thread.

    Inside ``with Guard(name, timeout) as guard:`` the thread's prints go to
    ``guard.log``; ``with guard.watched():`` runs the user's code under the
    watchdog. Leaving the block clears an async exception the watchdog may have
    raised just as the code ended (it must not hit the worker itself) and gives
    the thread's output back to the worker's streams.
    """

    def __init__(self, name: str, timeout: float | None) -> None:
        self.out, self.err = install_routers()
        worker = current_worker()
        self.address: str = getattr(worker, "address", None) or f"pid-{os.getpid()}"
        self.memory_limit: int | None = getattr(getattr(worker, "memory_manager", None), "memory_limit", None)
        self.log = io.StringIO()
        self.dog = Watchdog(threading.get_ident(), timeout, self.memory_limit, name, worker)

    def __enter__(self) -> Guard:
        self.out.local.buffer = self.log
        self.err.local.buffer = self.log
        return self

    def __exit__(self, *exc_info: object) -> None:
        raise_in(self.dog.thread_id, None)
        self.out.local.buffer = None
        self.err.local.buffer = None

    @contextmanager
    def watched(self) -> Iterator[None]:
        self.dog.start()
        try:
            yield
        finally:
            self.dog.finish()

    def stopped_by(self, exc: BaseException) -> str | None:
        """``"timeout"`` or ``"oom"`` when that is why the code ended with
        ``exc`` (the watchdog fired, or the code raised it itself), else None."""
        if isinstance(exc, TrialTimeout) or (self.dog.fired == "timeout" and not isinstance(exc, MemoryError)):
            return "timeout"
        if isinstance(exc, (TrialOutOfMemory, MemoryError)) or self.dog.fired == "oom":
            return "oom"
        return None
