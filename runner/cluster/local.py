"""``backend: local``: a Dask cluster of processes on this machine.

The scheduler is a ``dask scheduler`` process, and the workers run under one
``dask worker --nworkers N`` process holding a nanny for each (Dask imported
once for all of them), started from the environment's interpreter (the
driver's own when no environment is locked), so trials import the pinned
packages; on Linux each nanny forks its worker process (see ``FORK_ENV``).
All of them run in their own process groups: a Ctrl-C at the terminal reaches
the driver alone, which decides what stops. They die with the driver
(``PR_SET_PDEATHSIG`` on Linux, the nanny taking its worker along) even when
it is killed.

Worker loss at any moment is ordinary: a worker process that exits is started
again by its nanny, and the nannies' process, should it exit, while the cluster
starts or later, is started again (at most ``MAX_STARTS`` times); the run
proceeds as soon as one worker is ready. Only a cluster where no worker could
start at all, or whose scheduler died, is an error (:class:`InfraError`, with
the tail of the process's own log).
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runner import _proc
from runner.cluster import ClusterInfo, Launch
from runner.cluster._lifecycle import sigint_deferred
from runner.errors import InfraError

log = logging.getLogger(__name__)

MAX_STARTS = 4  # of the nannies' process: the first start and three restarts
RESTART_BACKOFF = 0.5  # seconds, times the number of starts so far
# Our schedulers let xrun decide what a lost worker means for a task: a task is
# never run again by Dask on another worker (a batch of trials is split, a
# trial is re-run by xrun, up to its own limit).
# A worker gets a task only when it has a free thread (worker-saturation 1.0):
# queued tasks wait at the scheduler for the first free slot, never on a worker
# behind a long trial (Dask's default, 1.1, gives each 1-thread worker 2 tasks).
SCHEDULER_CONFIG = {"distributed.scheduler.allowed-failures": 0, "distributed.scheduler.worker-saturation": 1.0}
SCHEDULER_ENV = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",
                 "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0"}  # fmt: skip
# A small sweep's scheduler (at most IN_DRIVER_MAX_TRIALS trials) runs in a
# thread of the driver's process, as Dask's own LocalCluster runs it: no
# interpreter of its own importing Dask (about 0.8 s of CPU, on a machine where
# the nannies' process and the driver import at the same time). It starts as the
# cluster is spawned, so it listens before the first nanny tries to connect. A
# larger sweep's scheduler is a process of its own: it forwards every batch's
# results and keeps Dask's event log of them, work and memory kept off the
# driver (in the driver, 100,000 no-op trials took ~58 MB more of its peak RSS
# and 10-20 us more of its CPU per trial; bench/RESULTS.md).
IN_DRIVER_MAX_TRIALS = 1_000
# On Linux the nanny forks its worker process instead of spawning a new
# interpreter: the worker starts with Dask imported (~0.5 s of CPU less per
# worker). The same interpreter either way: the nanny runs the environment's,
# so this holds for locked environments too. The nanny's memory kill,
# restarts and teardown are unchanged. Not on macOS, where forking a process
# that loaded system frameworks is unsafe (Dask's own default is spawn).
# A user's own DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD wins.
FORK_ENV = "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD"
# Every process of the cluster runs PRELOAD, a Dask preload xrun writes (with
# the preloads Dask is configured with for that kind of server: the option
# naming the file replaces them).
#
# It imports the trial's own modules (a scikit-learn estimator's, its dataset
# loader's: see warm_modules) before the driver sends anything. Where the
# nannies fork their workers, the nannies' process imports scikit-learn's
# modules among them once, before it forks the first worker: every worker (and
# every restarted one) starts with them imported, and scikit-learn is imported
# once instead of once per worker. Each worker imports the rest (all of them
# where workers are spawned) in a thread of its own as soon as it starts, while
# it registers with the scheduler and the driver installs xrun on it. The
# pre-flight check and the first trial then find them imported; a failing
# import is left to the check, which reports it. Only scikit-learn's own modules
# are imported before a fork: a library unknown to xrun may start threads as it
# is imported.
#
# The scheduler's and the nannies' processes freeze the garbage collector's
# objects as they exit: the interpreter's last collection, over Dask's (and
# scikit-learn's) objects, would take ~0.1-0.2 s of each, and the driver waits
# for them before it returns.
WARM_ENV = "XRUN_WARM_MODULES"
PRELOAD = """\
\"\"\"Written by xrun: the Dask preload of its local scheduler, nannies and workers
(see runner.cluster.local).\"\"\"
import atexit
import gc
import importlib
import os
import threading

CONFIGURED = "_xrun_configured_preloads"


def _warm(names):
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException:  # the pre-flight check imports it again and reports it
            pass


async def dask_setup(server):
    import dask
    from distributed import Nanny, Scheduler, preloading

    names = [n for n in os.environ.get("XRUN_WARM_MODULES", "").split(",") if n]
    if isinstance(server, Scheduler):
        kind = "scheduler"
        atexit.register(gc.freeze)  # run first: the others run as they would
    elif isinstance(server, Nanny):
        kind = "nanny"
        atexit.register(gc.freeze)
        if dask.config.get("distributed.worker.multiprocessing-method") == "fork":
            _warm([n for n in names if n.partition(".")[0] == "sklearn"])  # before this nanny forks its worker
    else:
        kind = "worker"
        if names:
            threading.Thread(target=_warm, args=(names,), name="xrun-warm", daemon=True).start()
    preload = dask.config.get(f"distributed.{kind}.preload", [])
    if preload:
        argv = dask.config.get(f"distributed.{kind}.preload-argv", [])
        configured = preloading.process_preloads(server, preload, argv, file_dir=getattr(server, "local_directory", None))
        setattr(server, CONFIGURED, configured)  # not a global: the nannies share one process, and this module
        await configured.start()


async def dask_teardown(server):
    configured = getattr(server, CONFIGURED, None)
    if configured is not None:
        await configured.teardown()
"""


def warm_modules(trial: Any) -> tuple[str, ...]:
    """The modules a spec's trial imports from its environment before any of
    the user's code: a scikit-learn trial's estimator and dataset modules and
    the model selection it calls. None for a function trial, whose module comes
    with the code the driver ships later."""
    sk = getattr(trial, "sklearn", None)
    return () if sk is None else _sklearn_modules(sk.estimator, sk.dataset)


def _sklearn_modules(estimator: str, dataset: str | None) -> tuple[str, ...]:
    names = [estimator.rpartition(".")[0]]
    if dataset:
        names.append(dataset.partition(":")[0])
    names.append("sklearn.model_selection")
    return tuple(dict.fromkeys(names))


def _dashboard_wanted() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_libc: Any = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover
        _libc = None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _libc is not None:
        _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Callers hold off Ctrl-C meanwhile (and keep the process): a KeyboardInterrupt
    inside fork's at-fork hooks leaves their locks held (logging's: the next
    thread that logs waits forever)."""
    with open(log_path, "ab") as fh:
        return subprocess.Popen(
            args, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_parent,
        )  # fmt: skip


def _kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _read_tail(path: Path) -> str:
    try:
        return _proc.tail(path.read_text(errors="replace")) or "(empty)"
    except OSError:
        return "(no log)"


class _Nannies:
    """The process holding the workers' nannies: the current one and how often it was started."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.exhausted = False
        self.last_exit: str = ""
        self.next_start = 0.0


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
        stop: threading.Event | None = None,
        warm: tuple[str, ...] = (),
        scheduler_in_driver: bool = False,
    ) -> None:
        self.workers = workers
        self.threads = threads_per_worker
        self.memory_limit = memory_limit
        self.python = python
        self.env = env or {}
        self.start_timeout = start_timeout
        self.stop = stop or threading.Event()
        self.warm = warm
        self.scheduler_in_driver = scheduler_in_driver
        self._nannies = _Nannies()
        self._scheduler: subprocess.Popen[bytes] | _DriverScheduler | None = None
        self._logs: Path | None = None
        self._address = ""
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._teardown_thread: threading.Thread | None = None
        self._closed = False
        self._background_teardown = False

    # ------------------------------------------------------------------ public

    def start(self) -> None:
        """Spawn the scheduler and the workers without waiting for them, so the
        driver can plan and hash while they import Dask; ``open()`` (which calls
        it when nobody did) waits for them. Callers that start and never open
        call :meth:`close`."""
        if self._logs is not None:
            return
        self._logs = Path(tempfile.mkdtemp(prefix="xrun-local-"))
        self._preload().write_text(PRELOAD, encoding="utf-8")
        self._address = f"tcp://127.0.0.1:{_free_port()}"
        with self._lock:  # first: the nannies' import is the longest (they connect once the scheduler listens)
            self._start_workers()
        self._start_scheduler()

    @contextmanager
    def open(self) -> Iterator[ClusterInfo]:
        supervisor = threading.Thread(target=self._supervise, name="xrun-local-supervisor", daemon=True)
        try:
            self.start()
            supervisor.start()
            dashboard = self._wait()
            yield ClusterInfo("local", self._address, dashboard, self.workers, check=self.problem)
        finally:
            with sigint_deferred():
                self._closing.set()
                if supervisor.is_alive():
                    supervisor.join(timeout=10)
                if self._background_teardown:
                    # The processes stop while the caller seals the bundle; it
                    # waits for them (wait_closed) before it returns.
                    self._teardown_thread = threading.Thread(target=self._close, name="xrun-local-teardown", daemon=True)
                    self._teardown_thread.start()
                else:
                    self._close()

    def teardown_in_background(self) -> Callable[[], None]:
        """Let ``open()`` return while its processes stop (they take seconds to
        exit); the returned function waits until every one of them is gone."""
        self._background_teardown = True
        return self.wait_closed

    def wait_closed(self) -> None:
        thread = self._teardown_thread
        if thread is not None:
            thread.join()

    def close(self) -> None:
        """Stop whatever :meth:`start` spawned (after ``open()``: wait for its teardown)."""
        with sigint_deferred():
            self._closing.set()
            self.wait_closed()
            self._close()

    def discard(self) -> None:
        """Kill what :meth:`start` spawned, at once: nothing ran on it yet
        (a cluster spawned ahead that the run does not adopt)."""
        with sigint_deferred():
            self._close(signal.SIGKILL)

    def shape(self) -> tuple[Any, ...]:
        """What decides the processes :meth:`start` spawns (two backends of one
        shape spawn the same processes)."""
        env = tuple(sorted(self.env.items()))
        return (self.workers, self.threads, self.memory_limit, self.python, env, self.warm, self.scheduler_in_driver)

    def _close(self, sig: int = signal.SIGTERM) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._teardown(sig)
        if self._logs is not None:
            shutil.rmtree(self._logs, ignore_errors=True)

    def problem(self) -> str | None:
        """Why the cluster cannot run trials any more, or None while it can."""
        sched = self._scheduler
        if sched is not None and sched.poll() is not None:
            how = (f"it ran in a thread of this process): {sched.error}" if isinstance(sched, _DriverScheduler)
                   else f"code {sched.returncode})")  # fmt: skip
            return f"the local Dask scheduler exited ({how}; its log:\n{_read_tail(self._log('scheduler'))}"
        if self._nannies.exhausted:
            return self._no_worker_message()
        return None

    def processes(self) -> dict[str, list[int]]:
        """Pids of the scheduler and of the process holding the workers' nannies."""
        with self._lock:
            return {
                "scheduler": [self._scheduler.pid] if isinstance(self._scheduler, subprocess.Popen) else [],
                "workers": [proc.pid] if (proc := self._nannies.proc) is not None and proc.poll() is None else [],
            }

    # ----------------------------------------------------------------- helpers

    def _log(self, name: str) -> Path:
        assert self._logs is not None
        return self._logs / f"{name}.log"

    def _preload(self) -> Path:
        assert self._logs is not None
        return self._logs / "xrun_preload.py"

    def _python(self) -> str:
        return str(self.python) if self.python is not None else sys.executable

    def _start_scheduler(self) -> None:
        port = int(self._address.rsplit(":", 1)[1])
        if self.scheduler_in_driver:
            self._scheduler = _DriverScheduler(port, dashboard=_dashboard_wanted(), log_path=self._log("scheduler"))
            self._scheduler.start()
            return
        dash = ["--dashboard-address", "127.0.0.1:0"] if _dashboard_wanted() else ["--no-dashboard"]
        args = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                "--port", str(port), *dash, "--preload", str(self._preload())]  # fmt: skip
        env = {**os.environ, **SCHEDULER_ENV}
        try:
            with sigint_deferred():  # see _spawn
                self._scheduler = _spawn(args, env, self._log("scheduler"))
        except OSError as exc:
            raise InfraError(f"cannot start the local Dask scheduler: {exc}") from exc

    def _memory(self) -> str:
        if self.memory_limit is not None:
            return str(self.memory_limit)
        # A share of the machine's memory limit, as LocalCluster's "auto": a
        # fraction (≤ 1) that each worker multiplies by its distributed.system.MEMORY_LIMIT,
        # so the driver spawns workers without importing Dask first.
        return repr(1 / max(1, self.workers))

    def _start_workers(self) -> None:
        nannies = self._nannies
        args = [
            self._python(), "-m", "distributed.cli.dask_worker", self._address,
            "--nworkers", str(self.workers), "--nthreads", str(self.threads), "--memory-limit", self._memory(),
            "--name", f"xrun-local-{nannies.starts}", "--nanny", "--death-timeout", "60",
        ]  # fmt: skip
        env = {**os.environ, **self.env}
        args += ["--preload", str(self._preload()), "--preload-nanny", str(self._preload())]
        if self.warm:
            env[WARM_ENV] = ",".join(self.warm)
        if self.python is not None:
            env.pop("PYTHONPATH", None)  # the worker sees its environment, not the driver's
        if sys.platform.startswith("linux"):
            env.setdefault(FORK_ENV, "fork")
        nannies.starts += 1
        try:
            with sigint_deferred():  # see _spawn
                nannies.proc = _spawn(args, env, self._log("workers"))
        except OSError as exc:
            nannies.proc = None
            nannies.exhausted = True
            nannies.last_exit = f"cannot start a worker with {self._python()}: {exc}"

    def _supervise(self) -> None:
        """Start again every worker process that exits, at most MAX_STARTS times each."""
        while not self._closing.wait(0.2):
            with self._lock:
                self._check_nannies()

    def _check_nannies(self) -> None:
        nannies = self._nannies
        proc = nannies.proc
        if nannies.exhausted or self._closing.is_set():
            return
        if proc is not None and proc.poll() is None:
            return
        now = time.monotonic()
        if proc is not None:
            _kill_group(proc)  # its worker process, if the nanny alone died
            nannies.last_exit = f"exited with code {proc.returncode}"
            nannies.proc = None
            log.warning("the local workers' process %s; its log:\n%s", nannies.last_exit, _read_tail(self._log("workers")))
            if nannies.starts >= MAX_STARTS:
                nannies.exhausted = True
                return
            nannies.next_start = now + RESTART_BACKOFF * nannies.starts
        if now >= nannies.next_start:
            self._start_workers()

    def _no_worker_message(self) -> str:
        nannies = self._nannies
        return (
            f"no local worker could start: the process of the {self.workers} worker(s) ({self._python()}) was "
            f"started {MAX_STARTS} times and exited ({nannies.last_exit}); its log:\n"
            f"{_read_tail(self._log('workers'))}"
        )

    def _wait(self) -> str | None:
        """Until one worker joined (the rest join while trials run); returns the dashboard link."""
        from distributed import Client  # deferred: imports Dask

        deadline = time.monotonic() + self.start_timeout
        client: Client | None = None
        scheduler_starts = 1
        try:
            while True:
                if self.stop.is_set():
                    raise KeyboardInterrupt
                sched = self._scheduler
                if sched is not None and sched.poll() is not None and scheduler_starts < MAX_STARTS:
                    # Died while starting (another process may have taken its
                    # port meanwhile): a new port, and the workers follow it.
                    why = sched.error if isinstance(sched, _DriverScheduler) else _read_tail(self._log("scheduler"))
                    log.info("the local scheduler exited while starting (code %s); starting it again:\n%s",
                             sched.returncode, why)  # fmt: skip
                    scheduler_starts += 1
                    if client is not None:
                        _quiet_close(client.close)
                        client = None
                    self._restart_all()
                    continue
                trouble = self.problem()
                if trouble:
                    raise InfraError(trouble)
                if client is None and self._scheduler_listening():
                    # A Ctrl-C inside a client's connect or close leaves it half
                    # made, and Dask logs about it at exit: it waits the few seconds.
                    try:
                        with sigint_deferred(), warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            client = Client(self._address, timeout=2, set_as_default=False)
                    except (OSError, TimeoutError):
                        client = None
                if client is not None:
                    info: dict[str, Any] = {}
                    try:
                        with sigint_deferred():
                            info = dict(client.scheduler_info())
                    except (OSError, TimeoutError):
                        pass
                    if info.get("workers"):
                        port = (info.get("services") or {}).get("dashboard")
                        return f"http://127.0.0.1:{port}/status" if port else None
                if time.monotonic() > deadline:
                    raise InfraError(
                        f"no local worker joined the scheduler within {self.start_timeout:.0f}s; the workers' log:\n"
                        f"{_read_tail(self._log('workers'))}"
                    )
                # Asking a connected scheduler costs a round trip: the run starts
                # within 20 ms of its first worker joining, not up to 100 ms later.
                time.sleep(0.02 if client is not None else 0.1)
        finally:
            if client is not None:
                with sigint_deferred():
                    _quiet_close(client.close)

    def _scheduler_listening(self) -> bool:
        """The scheduler process itself listens on its port (not another
        process that took the port first, which a client would hang on)."""
        import psutil  # deferred: only when memory or processes are watched

        sched = self._scheduler
        if isinstance(sched, _DriverScheduler):
            return sched.listening()
        port = int(self._address.rsplit(":", 1)[1])
        try:
            conns = psutil.Process(sched.pid).net_connections(kind="tcp") if sched is not None else []
        except psutil.Error:
            return False
        return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns)

    def _restart_all(self) -> None:
        with self._lock:
            nannies = self._nannies
            if nannies.proc is not None:
                _kill_group(nannies.proc)
                nannies.proc.wait()
                nannies.proc = None
            self._address = f"tcp://127.0.0.1:{_free_port()}"
            self._start_scheduler()
            if not nannies.exhausted:
                self._start_workers()

    def _teardown(self, sig: int = signal.SIGTERM) -> None:
        """Stop the processes with ``sig`` (SIGTERM: let them close; SIGKILL: at once), then the scheduler."""
        with self._lock:
            procs = [self._nannies.proc] if self._nannies.proc is not None else []
        for p in procs:
            _kill_group(p, sig)
        deadline = time.monotonic() + 15
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _kill_group(p)  # the nanny's worker process too
            p.wait()
        sched = self._scheduler
        if isinstance(sched, _DriverScheduler):
            sched.stop()
        elif sched is not None:
            _kill_group(sched, sig)
            try:
                sched.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _kill_group(sched)
                sched.wait()


def _quiet_close(close: Callable[[], Any]) -> None:
    try:
        close()
    except Exception:  # closing a probe client never fails a run
        log.debug("closing a client failed", exc_info=True)


def from_launch(launch: Launch) -> LocalBackend:
    from runner.env import create_env  # deferred: imported before the spec (see start_ahead)

    python = create_env(launch.env) if launch.env.kind != "current" else None
    return for_spec(launch.spec, python=python, stop=launch.stop)


def for_spec(spec: Any, *, python: Path | None = None, stop: threading.Event | None = None) -> LocalBackend:
    """The backend of a validated spec (``python``: the environment's
    interpreter, None for the driver's own); also what ``run`` starts before planning."""
    from runner.spec.check import count  # deferred: imported before the spec (see start_ahead)

    c = spec.cluster
    return LocalBackend(workers=c.workers, threads_per_worker=c.threads_per_worker, memory_limit=c.memory_limit,
                        python=python, stop=stop, warm=warm_modules(spec.trial),
                        scheduler_in_driver=count(spec.sweep) <= IN_DRIVER_MAX_TRIALS)  # fmt: skip


class _DriverScheduler:
    """A small sweep's scheduler (see IN_DRIVER_MAX_TRIALS): Dask's Scheduler
    on an event loop of its own, in a thread of the driver's process. ``poll()``
    and ``returncode`` as the scheduler's process would have them; ``error``
    says why it ended by itself."""

    def __init__(self, port: int, *, dashboard: bool, log_path: Path) -> None:
        self.port = port
        self.dashboard = dashboard
        self.log_path = log_path
        self.returncode: int | None = None
        self.error = ""
        self._listening = threading.Event()
        self._stop = threading.Event()
        self._loop: Any = None
        self._stopping: Any = None  # an asyncio.Event of its loop
        self._thread = threading.Thread(target=self._main, name="xrun-scheduler", daemon=True)

    def start(self) -> None:
        """Import Dask in the caller's thread, then serve in a thread of its own:
        never two threads importing at once (a Ctrl-C inside an import can
        leave the import system's locks held, and the other thread waiting)."""
        import distributed  # noqa: F401  # deferred: only a scheduler in the driver needs Dask this early

        self._thread.start()

    def poll(self) -> int | None:
        return self.returncode

    def listening(self) -> bool:
        return self._listening.is_set() and self.returncode is None

    def stop(self, timeout: float = 10) -> None:
        """Close the scheduler (its workers are gone first: see _teardown) and wait for its thread."""
        self._stop.set()
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:  # its loop has ended
                pass
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _main(self) -> None:
        import asyncio  # deferred: in the scheduler's thread, after the cluster is spawned

        filed = _ThreadToFile(self.log_path, self._thread.name)
        handlers: list[logging.Handler] = []
        try:
            from distributed import Scheduler  # deferred: imported by start()

            handlers = list(logging.getLogger("distributed").handlers)  # Dask's own, set up as it was imported
            for handler in handlers:
                handler.addFilter(filed)
            asyncio.run(self._serve(lambda: Scheduler(
                host="127.0.0.1", port=self.port, dashboard=self.dashboard,
                dashboard_address="127.0.0.1:0" if self.dashboard else None)))  # fmt: skip
        except BaseException as exc:  # e.g. its port taken meanwhile: open() starts it again
            self.error = f"{type(exc).__name__}: {exc}"
            log.debug("the local scheduler's thread ended", exc_info=True)
        finally:
            for handler in handlers:
                handler.removeFilter(filed)
            filed.close()
        if not self._stop.is_set():
            self.error = self.error or "it closed"
            self.returncode = 1
        else:
            self.returncode = 0

    async def _serve(self, make: Callable[[], Any]) -> None:
        import asyncio  # deferred: in the scheduler's thread, after the cluster is spawned

        import dask  # deferred: imported with distributed by start()

        self._stopping = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self._stop.is_set():
            return
        with dask.config.set(SCHEDULER_CONFIG):  # read as the scheduler is made, on this loop
            scheduler = make()
        await scheduler  # listens
        try:
            self._listening.set()
            stopping = asyncio.ensure_future(self._stopping.wait())
            finished = asyncio.ensure_future(scheduler.finished())
            await asyncio.wait([stopping, finished], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
        finally:
            await scheduler.close()


class _ThreadToFile(logging.Filter):
    """On the handlers of Dask's loggers: what one thread (the scheduler's)
    logs goes to a file, as a scheduler process's log does, not to the terminal."""

    def __init__(self, path: Path, thread: str) -> None:
        super().__init__()
        self.thread = thread
        self.file = logging.FileHandler(path, encoding="utf-8", delay=True)
        self.file.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))

    def filter(self, record: logging.LogRecord) -> bool:
        if record.threadName != self.thread:
            return True
        self.file.handle(record)
        return False

    def close(self) -> None:
        self.file.close()


# ---------------------------------------------------------------------- ahead
#
# ``xrun run SPEC`` spawns the local cluster as the process starts, from the
# spec's parsed YAML before it is validated (runner._entry): its processes
# import Dask while the driver imports the command line, validates, hashes and
# plans. The run adopts it only where the validated spec asks for a cluster of
# the same shape; otherwise, and when the command ends without a run (a spec
# error, nothing to run), it is killed.

_ahead: list[LocalBackend] = []  # at most one


def start_ahead(raw: Any) -> bool:
    """Spawn the cluster a spec's parsed YAML (``raw``, not validated) asks
    for, when it surely is a local cluster of the driver's own interpreter and
    every value that shapes it reads as validation will read it; whether one
    was spawned. Killed at exit unless a run adopts it (:func:`adopt`)."""
    backend = _from_raw(raw)
    if backend is None or _ahead:
        return False
    _ahead.append(backend)
    if len(_ahead) == 1:
        atexit.register(discard_ahead)
    try:
        backend.start()
    except Exception:  # the run starts its cluster again in its usual place, which reports the failure
        log.debug("spawning the local cluster ahead failed", exc_info=True)
        discard_ahead()
        return False
    return True


def adopt(backend: LocalBackend) -> LocalBackend:
    """The cluster spawned ahead when it has ``backend``'s shape (it is then
    ``backend``'s, already starting), else ``backend``; one spawned ahead and
    not adopted is killed."""
    if not _ahead:
        return backend
    ahead = _ahead.pop()
    if ahead.shape() == backend.shape() and not ahead._closed:
        ahead.stop = backend.stop
        log.debug("the local cluster spawned ahead is the spec's")
        return ahead
    log.debug("the local cluster spawned ahead is not the spec's: %s, not %s", ahead.shape(), backend.shape())
    ahead.discard()
    return backend


def discard_ahead() -> None:
    """Kill a cluster spawned ahead that no run adopted."""
    while _ahead:
        _ahead.pop().discard()


def _from_raw(raw: Any) -> LocalBackend | None:
    """The backend of a spec's parsed YAML, or None where validation could
    read it otherwise (the defaults are the spec models')."""
    if not isinstance(raw, dict):
        return None
    cluster, environment = raw.get("cluster", {}), raw.get("environment", {"current": True})
    if not isinstance(cluster, dict) or cluster.get("backend", "local") != "local" or environment != {"current": True}:
        return None
    workers, threads = cluster.get("workers", 2), cluster.get("threads_per_worker", 1)
    if not (type(workers) is int and 1 <= workers <= 10_000 and type(threads) is int and 1 <= threads <= 1024):
        return None
    memory = cluster.get("memory_limit")
    if memory is not None:
        memory = byte_size(memory)
        if memory is None:
            return None
    trial = raw.get("trial")
    sk = trial.get("sklearn") if isinstance(trial, dict) else None
    warm: tuple[str, ...] = ()
    if sk is not None:
        estimator, dataset = (sk.get("estimator"), sk.get("dataset")) if isinstance(sk, dict) else (None, None)
        if not isinstance(estimator, str) or not isinstance(dataset, (str, type(None))):
            return None
        warm = _sklearn_modules(estimator, dataset)
    trials = _count(raw.get("sweep"))
    if trials is None:
        return None
    return LocalBackend(workers=workers, threads_per_worker=threads, memory_limit=memory, warm=warm,
                        scheduler_in_driver=trials <= IN_DRIVER_MAX_TRIALS)  # fmt: skip


def _count(sweep: Any) -> int | None:
    """A sweep's number of trials as runner.spec.check.count gives it, or None."""
    if not isinstance(sweep, dict):
        return None
    method, repeats = sweep.get("method"), sweep.get("repeats", 1)
    if type(repeats) is not int or repeats < 1:
        return None
    if method == "list":
        points = sweep.get("points")
        n = len(points) if isinstance(points, list) else None
    elif method == "grid":
        parameters = sweep.get("parameters")
        values = list(parameters.values()) if isinstance(parameters, dict) else None
        n = math.prod(len(v) for v in values) if values and all(isinstance(v, list) for v in values) else None
    else:
        samples = sweep.get("samples")
        n = samples if type(samples) is int and samples > 0 else None
    return None if n is None else n * repeats


_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip
_BYTES = re.compile(r"([0-9]{1,12})([a-z]{1,3})?", re.IGNORECASE)


def byte_size(value: Any) -> int | None:
    """A ``memory_limit`` in bytes as the spec's ByteSize reads it, for the
    plain forms (``2147483648``, ``2GiB``, ``512MB``); None for any other."""
    if type(value) is int:
        return value if value >= 0 else None
    if not isinstance(value, str) or not (m := _BYTES.fullmatch(value)):
        return None
    unit = _UNITS.get((m[2] or "b").lower())
    return None if unit is None else int(m[1]) * unit
