"""Watching the cluster while trials run, and what travels to it.

:class:`Monitor` restarts the worker of a trial stuck in C code past its
timeout and gives up when no worker is left; :func:`shipped` wraps a function
so Dask carries it by value to schedulers and workers without xrun.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runner.errors import InfraError

from .batching import Unit

if TYPE_CHECKING:  # for annotations only: the executor imports this module
    from .executor import Executor

log = logging.getLogger(__name__)

HARD_TIMEOUT_GRACE = 3.0  # seconds after the timeout before the worker itself is restarted


def silence_distributed() -> None:
    for name in ("distributed", "distributed.client", "distributed.core", "distributed.utils", "distributed.comm"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def shipped(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A closure Dask cannot import, so it travels with cloudpickle, by value.

    Schedulers and workers in containers or other environments have no xrun to
    import ``runner._plugin`` from; the task graph must carry the function.
    """

    def call(*args: Any) -> Any:
        return fn(*args)

    return call


WORKERLESS_TIMEOUT = 90.0  # seconds with trials in flight and no worker at all


class Monitor(threading.Thread):
    """Watches the cluster while trials run.

    * Restarts the worker of a trial stuck past ``timeout + grace``: the worker
      raises a timeout inside the trial's thread first; this catches trials
      stuck in C code, where that exception cannot land.
    * Gives up, with a clear error, when no worker has been connected for
      ``WORKERLESS_TIMEOUT`` seconds (workers that cannot start keep nothing
      running forever).
    """

    def __init__(self, executor: Executor, in_flight: dict[str, Unit]) -> None:
        super().__init__(daemon=True, name="xrun-monitor")
        self.executor = executor
        self.in_flight = in_flight
        self._halt = threading.Event()
        self._restarting: set[str] = set()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)

    def run(self) -> None:
        ex = self.executor
        limit = (ex.timeout or 0) + HARD_TIMEOUT_GRACE
        workerless_since: float | None = None
        last_check = 0.0
        workers: set[str] = set()
        n = -1
        while not self._halt.wait(0.25):
            now = time.monotonic()
            if now - last_check > 2.0:
                last_check = now
                try:
                    workers = set(ex._client.nthreads())
                    n = len(workers)
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
                    if n > 0 and worker and worker not in workers:
                        continue  # its worker is gone: the trial is lost, not stuck
                    log.warning("trial %s is stuck past its timeout; restarting worker %s", trial.id, worker)
                    ex._forced[dask_key] = trial.key
                    try:
                        ex._client.cancel([unit.fut], force=True)
                    except Exception:
                        log.debug("could not cancel %s", dask_key, exc_info=True)
                    if worker and worker not in self._restarting:
                        # In the background: a restart can take many seconds under
                        # load, and other stuck trials must not wait for it.
                        self._restarting.add(worker)
                        threading.Thread(target=self._restart, args=(worker,), daemon=True,
                                         name="xrun-restart").start()  # fmt: skip
                    break

    def _restart(self, worker: str) -> None:
        try:
            self.executor._client.restart_workers([worker], timeout=60, raise_for_error=False)
        except Exception:
            log.debug("could not restart %s", worker, exc_info=True)
