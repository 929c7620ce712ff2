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
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runner import _proc
from runner.cluster import ClusterInfo, Launch
from runner.env import create_env
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
        import warnings

        from distributed import LocalCluster

        # "Port 8787 is already in use": a dashboard on another port is fine.
        warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)

        memory = self.memory_limit if self.memory_limit is not None else "auto"
        # Compare without resolving symlinks: a venv python links to its base interpreter.
        if self.python is None or Path(self.python).absolute() == Path(sys.executable).absolute():
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
            n_workers=0, processes=True, host="127.0.0.1", scheduler_port=0,
            dashboard_address=_dashboard_address(), silence_logs=logging.ERROR,
        ) as cluster, tempfile.TemporaryDirectory(prefix="xrun-workers-") as logs:  # fmt: skip
            procs = [self._start_worker(cluster.scheduler_address, i, memory, Path(logs)) for i in range(self.workers)]
            try:
                self._wait(cluster, procs, Path(logs))
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

    def _wait(self, cluster: Any, procs: list[subprocess.Popen[bytes]], logs: Path) -> None:
        """Until every worker joined; a worker process that dies says why."""
        deadline = time.monotonic() + self.start_timeout
        while len(cluster.scheduler.workers) < self.workers:
            for i, p in enumerate(procs):
                if p.poll() is not None:
                    log_tail = _proc.tail((logs / f"worker-{i}.log").read_text(errors="replace"))
                    raise InfraError(f"worker {i} ({self.python}) exited with code {p.returncode}:\n{log_tail}")
            if time.monotonic() > deadline:
                raise InfraError(f"workers from {self.python} did not join within {self.start_timeout:.0f}s")
            time.sleep(0.1)

    def _start_worker(self, address: str, index: int, memory: int | str, logs: Path) -> subprocess.Popen[bytes]:
        args = [
            str(self.python), "-m", "distributed.cli.dask_worker", address,
            "--nthreads", str(self.threads), "--memory-limit", str(memory),
            "--name", f"xrun-local-{index}", "--nanny", "--death-timeout", "60",
        ]  # fmt: skip
        env = {**os.environ, **self.env}
        env.pop("PYTHONPATH", None)  # the worker sees its environment, not the driver's
        try:
            with open(logs / f"worker-{index}.log", "wb") as fh:
                return subprocess.Popen(args, env=env, stdout=fh, stderr=subprocess.STDOUT)
        except OSError as exc:
            raise InfraError(f"cannot start a worker with {self.python}: {exc}") from exc


def from_launch(launch: Launch) -> LocalBackend:
    c = launch.spec.cluster
    python = create_env(launch.env) if launch.env.kind != "current" else None
    return LocalBackend(workers=c.workers, threads_per_worker=c.threads_per_worker,
                        memory_limit=c.memory_limit, python=python)  # fmt: skip
