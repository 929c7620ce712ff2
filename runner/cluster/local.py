"""``backend: local``: a Dask cluster of worker processes on this machine.

With ``python`` unset, workers run in the current interpreter (a
``distributed.LocalCluster``). With the interpreter of a locked environment,
the scheduler runs here and each worker is a ``dask worker`` process (with its
nanny) started from that interpreter, so trials import the pinned packages.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runner.cluster import ClusterInfo
from runner.errors import InfraError

log = logging.getLogger(__name__)


def _dashboard_address() -> str | None:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return None
    return "127.0.0.1:0"


class LocalBackend:
    def __init__(
        self,
        *,
        workers: int,
        threads_per_worker: int,
        memory_limit: int | None,
        python: Path | None = None,
        env: dict[str, str] | None = None,
        start_timeout: float = 120,
    ) -> None:
        self.workers = workers
        self.threads = threads_per_worker
        self.memory_limit = memory_limit
        self.python = python
        self.env = env or {}
        self.start_timeout = start_timeout

    @contextmanager
    def open(self) -> Iterator[ClusterInfo]:
        from distributed import LocalCluster

        memory = self.memory_limit if self.memory_limit is not None else "auto"
        if self.python is None or Path(self.python).resolve() == Path(sys.executable).resolve():
            with LocalCluster(
                n_workers=self.workers,
                threads_per_worker=self.threads,
                memory_limit=memory,
                processes=True,
                dashboard_address=_dashboard_address(),
                worker_dashboard_address=None,
                silence_logs=logging.ERROR,
            ) as cluster:
                yield ClusterInfo("local", cluster.scheduler_address, cluster.dashboard_link if _dashboard_address() else None, self.workers)
            return
        with LocalCluster(
            n_workers=0, processes=False, dashboard_address=_dashboard_address(), silence_logs=logging.ERROR
        ) as cluster:
            procs = [self._start_worker(cluster.scheduler_address, i, memory) for i in range(self.workers)]
            try:
                yield ClusterInfo("local", cluster.scheduler_address, cluster.dashboard_link if _dashboard_address() else None, self.workers)
            finally:
                for p in procs:
                    p.terminate()
                for p in procs:
                    try:
                        p.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()

    def _start_worker(self, address: str, index: int, memory: int | str) -> subprocess.Popen[bytes]:
        args = [
            str(self.python), "-m", "distributed.cli.dask_worker", address,
            "--nthreads", str(self.threads), "--memory-limit", str(memory),
            "--name", f"xrun-local-{index}", "--nanny", "--death-timeout", "60",
        ]  # fmt: skip
        env = {**os.environ, **self.env}
        env.pop("PYTHONPATH", None)  # the worker sees its environment, not the driver's
        try:
            return subprocess.Popen(
                args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=False
            )
        except OSError as exc:
            raise InfraError(f"cannot start a worker with {self.python}: {exc}") from exc
