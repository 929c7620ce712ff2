"""Docker backend: a Dask scheduler and N workers in containers of the run's image.

Everything a run creates (one user network, one scheduler, N workers) carries
the labels ``xrun.managed=1``, ``xrun.run-id=<run id>`` and ``xrun.driver``
(host, pid and start time of the driver process), and is removed when
:meth:`DockerBackend.open` exits: on success, on an exception, on Ctrl-C. What a
killed driver leaves behind is removed by :func:`clean` (``xrun clean``, and
the start of every docker run), which only touches runs whose driver is gone.

Only the scheduler is published, on 127.0.0.1 at a port Docker picks; the
driver's Client talks to it alone (results are gathered through the scheduler).
Secrets reach workers through the container environment, never argv or logs.
Data files are bind-mounted read-only at the same absolute path.

A worker container that exits, while the cluster starts or later, is started
again (at most ``MAX_STARTS`` times each); the run proceeds once one worker has
joined. Only a scheduler that exits, or no worker able to start at all, is an
:class:`InfraError` (with the container's own log).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.cluster import DASHBOARD_PORT, SCHEDULER_PORT, ClusterInfo, Launch
from runner.cluster._lifecycle import driver_alive, driver_id, sigint_deferred
from runner.errors import InfraError, UsageError
from runner.image.docker import (
    LABEL_DRIVER,
    LABEL_MANAGED,
    LABEL_ROLE,
    LABEL_RUN_ID,
    docker_client,
)

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

    from runner.image import ImageInfo

log = logging.getLogger(__name__)

SCHEDULER_ALIAS = "scheduler"  # DNS name of the scheduler on the run's network
NANNY_HEADROOM = 256 * 2**20  # container memory on top of the worker's memory_limit
START_TIMEOUT = 90.0  # seconds for the scheduler and every worker to come up
LOG_TAIL = 30
MAX_STARTS = 4  # per worker container: the first start and three restarts
# The workers of every run on one Docker host share this named volume as their
# cache of fetched data (XRUN_DATA_CACHE): an object is downloaded once per host.
DATA_CACHE_VOLUME = "xrun-data-cache"
DATA_CACHE_TARGET = "/var/cache/xrun-data"

__all__ = ["DockerBackend", "clean", "docker_client"]


class DockerBackend:
    """A Dask cluster in containers for one run (``cluster.backend: docker``)."""

    name = "docker"

    def __init__(
        self,
        *,
        run_id: str,
        image: ImageInfo,
        workers: int,
        threads_per_worker: int,
        memory_limit_bytes: int | None,
        secrets: Mapping[str, str],
        data_paths: Sequence[Path],
        code_dir: Path | None = None,
        volumes: Sequence[tuple[Path, str, bool]] = (),
        named_volumes: Sequence[tuple[str, str, bool]] = (),
        start_timeout: float = START_TIMEOUT,
        stop: threading.Event | None = None,
    ) -> None:
        if workers < 1 or threads_per_worker < 1:
            raise UsageError("cluster: workers and threads_per_worker must be at least 1")
        self.run_id = run_id
        self.image = image
        self.workers = workers
        self.threads_per_worker = threads_per_worker
        self.memory_limit_bytes = memory_limit_bytes
        self._secrets = dict(secrets)
        self.data_paths = [Path(p) for p in data_paths]
        self.code_dir = code_dir
        self.volumes = list(volumes)  # (host directory, path in workers, read-only): cluster.docker.volumes
        self.named_volumes = list(named_volumes)  # (Docker volume name, path in workers, read-only)
        self.start_timeout = start_timeout
        self.stop = stop or threading.Event()  # set by a first Ctrl-C: stop waiting for workers
        self.network_name = f"xrun-{run_id}"
        self._client: docker.DockerClient | None = None
        self._scheduler: Container | None = None
        self._workers: list[Container] = []
        self._starts: list[int] = []
        self._last_exit: list[str] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()

    # ------------------------------------------------------------------ public

    @contextmanager
    def open(self) -> Iterator[ClusterInfo]:
        """Start the cluster, yield how to reach it, and remove it whatever happens."""
        client = docker_client()
        self._client = client
        removed = clean(client=client)
        if removed:
            log.info("removed %d objects left by killed runs: %s", len(removed), ", ".join(removed))
        mounts = self._mounts()  # fail on a missing data path before creating anything
        supervisor = threading.Thread(target=self._supervise, name="xrun-docker-supervisor", daemon=True)
        try:
            info = self._start(client, mounts, supervisor)
            yield info
        finally:
            with sigint_deferred():
                self._closing.set()
                if supervisor.is_alive():
                    supervisor.join(timeout=15)
                self._teardown(client)

    def containers(self, role: str | None = None) -> list[Container]:
        """This run's containers (``role``: "scheduler" or "worker"), e.g. to kill one in a test."""
        client = self._client or docker_client()
        labels = [f"{LABEL_RUN_ID}={self.run_id}"] + ([f"{LABEL_ROLE}={role}"] if role else [])
        return list(client.containers.list(all=True, filters={"label": labels}))

    # ----------------------------------------------------------------- helpers

    def _start(self, client: docker.DockerClient, mounts: list[Any], supervisor: threading.Thread) -> ClusterInfo:
        from docker.errors import (  # deferred: docker-py, only with a Docker daemon
            DockerException,
            ImageNotFound,
        )

        started = time.monotonic()
        try:
            network = client.networks.create(
                self.network_name, driver="bridge", labels=self._labels(), check_duplicate=True
            )
            scheduler = self._run_scheduler(client, network.name)
            self._scheduler = scheduler
            address, dashboard = self._published(scheduler)
            with self._lock:
                self._workers = [self._run_worker(client, network.name, i, mounts) for i in range(self.workers)]
                self._starts = [1] * self.workers
                self._last_exit = [""] * self.workers
            supervisor.start()
            self._wait_ready(address, scheduler)
        except ImageNotFound as exc:
            raise InfraError(
                f"the image {self.image.image} ({self.image.image_id}) is not on this Docker "
                "daemon any more; build it again with `xrun build SPEC`"
            ) from exc
        except DockerException as exc:
            raise InfraError(
                f"starting the docker cluster of run {self.run_id} failed: {exc}"
            ) from exc
        log.info(
            "docker cluster %s: first of %d workers ready at %s in %.1fs",
            self.run_id, self.workers, address, time.monotonic() - started,
        )  # fmt: skip
        return ClusterInfo(
            backend="docker", address=address, dashboard=dashboard, workers=self.workers, check=self.problem
        )

    def problem(self) -> str | None:
        """Why the cluster cannot run trials any more, or None while it can."""
        from docker.errors import DockerException  # deferred: docker-py, only with a Docker daemon

        scheduler = self._scheduler
        if scheduler is not None:
            try:
                scheduler.reload()
            except DockerException as exc:
                return f"the scheduler container of run {self.run_id} is gone ({exc})"
            if scheduler.status in ("exited", "dead"):
                code = scheduler.attrs.get("State", {}).get("ExitCode")
                return (f"the scheduler container of run {self.run_id} exited (code {code}); "
                        f"its log:\n{_logs_tail(scheduler)}")  # fmt: skip
        with self._lock:
            if self._starts and all(n > MAX_STARTS for n in self._starts):
                return (
                    f"no worker container of run {self.run_id} could start: each was started {MAX_STARTS} "
                    f"times and exited ({self._last_exit[-1]}); its log:\n{_logs_tail(self._workers[-1])}"
                )
        return None

    def _supervise(self) -> None:
        """Start again every worker container that exits, at most MAX_STARTS times each."""
        from docker.errors import DockerException  # deferred: docker-py, only with a Docker daemon

        while not self._closing.wait(0.5):
            with self._lock:
                for i, container in enumerate(self._workers):
                    if self._closing.is_set() or self._starts[i] > MAX_STARTS:
                        continue
                    try:
                        container.reload()
                        if container.status not in ("exited", "dead"):
                            continue
                        code = container.attrs.get("State", {}).get("ExitCode")
                        self._last_exit[i] = f"code {code}"
                        log.warning("worker container %s exited (code %s); its log:\n%s",
                                    container.name, code, _logs_tail(container, 10))  # fmt: skip
                        if self._starts[i] >= MAX_STARTS:
                            self._starts[i] = MAX_STARTS + 1
                            continue
                        self._starts[i] += 1
                        container.restart(timeout=5)  # same name, network and mounts
                    except DockerException as exc:
                        if self._closing.is_set():
                            return
                        log.warning("could not restart worker container %s: %s", container.name, exc)

    def _labels(self, role: str | None = None) -> dict[str, str]:
        labels = {LABEL_MANAGED: "1", LABEL_RUN_ID: self.run_id, LABEL_DRIVER: driver_id()}
        if role:
            labels[LABEL_ROLE] = role
        return labels

    def _common(self) -> dict[str, Any]:
        return {
            "image": self.image.image_id,
            "detach": True,
            "init": True,  # signals reach Dask; zombies are reaped
            "user": f"{os.getuid()}:{os.getgid()}",  # files are read (and made) as the driver's user
            "working_dir": "/tmp",
        }

    def _run_scheduler(self, client: docker.DockerClient, network: str) -> Container:
        command = [
            self.image.python, "-m", "distributed.cli.dask_scheduler",
            "--host", "0.0.0.0", "--port", str(SCHEDULER_PORT),
            "--dashboard-address", f":{DASHBOARD_PORT}",
        ]  # fmt: skip
        container = client.containers.create(
            command=command,
            name=f"{self.network_name}-scheduler",
            hostname=SCHEDULER_ALIAS,
            labels=self._labels("scheduler"),
            # xrun, not Dask, decides what a lost worker means for a task (see local.py)
            environment={"HOME": "/tmp", "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",
                         "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0"},  # as the local backend's
            # Docker picks a free host port on loopback only.
            ports={
                f"{SCHEDULER_PORT}/tcp": ("127.0.0.1",),
                f"{DASHBOARD_PORT}/tcp": ("127.0.0.1",),
            },
            network=network,
            networking_config={
                network: client.api.create_endpoint_config(aliases=[SCHEDULER_ALIAS])
            },
            **self._common(),
        )
        container.start()
        return container

    def _run_worker(
        self, client: docker.DockerClient, network: str, index: int, mounts: list[Any]
    ) -> Container:
        name = f"worker-{index}"
        memory = self.memory_limit_bytes
        command = [
            self.image.python, "-m", "distributed.cli.dask_worker",
            f"tcp://{SCHEDULER_ALIAS}:{SCHEDULER_PORT}",
            "--name", name,
            "--nthreads", str(self.threads_per_worker),
            "--memory-limit", str(memory) if memory else "auto",
            "--nanny", "--death-timeout", "60",
            "--local-directory", "/tmp/dask-worker-space",
        ]  # fmt: skip
        limits: dict[str, Any] = {"nano_cpus": int(self._cpus(client) * 1e9)}
        if memory:
            # Dask enforces memory_limit on the worker (spill, pause, restart at 95%);
            # the container adds room for the nanny so the kernel's OOM killer is
            # only a backstop. No swap, so the limit is real.
            hard = memory + NANNY_HEADROOM
            limits.update(mem_limit=hard, memswap_limit=hard)
        # Secrets go in the environment only: never in argv, labels or logs.
        environment = {**self._secrets, "HOME": "/tmp", "XRUN_DATA_CACHE": DATA_CACHE_TARGET}
        if os.environ.get("XRUN_DATA_CACHE_MAX"):  # the driver's bound for the host's cache
            environment["XRUN_DATA_CACHE_MAX"] = os.environ["XRUN_DATA_CACHE_MAX"]
        container = client.containers.create(
            command=command,
            name=f"{self.network_name}-{name}",
            hostname=name,
            labels=self._labels("worker"),
            environment=environment,
            network=network,
            mounts=mounts,
            **limits,
            **self._common(),
        )
        container.start()
        return container

    def _cpus(self, client: docker.DockerClient) -> float:
        """threads_per_worker CPUs, at most what the daemon's machine has."""
        try:
            available = float(client.info().get("NCPU") or os.cpu_count() or 1)
        except Exception:  # info is only a bound; never fail a run for it
            available = float(os.cpu_count() or 1)
        return min(float(self.threads_per_worker), available)

    def _mounts(self) -> list[Any]:
        from docker.types import Mount  # deferred: docker-py, only with a Docker daemon

        paths: list[Path] = []
        for path in [*self.data_paths, *([self.code_dir] if self.code_dir else [])]:
            resolved = Path(path).resolve()
            if not resolved.exists():
                raise UsageError(
                    f"data: {path} does not exist, so it cannot be mounted into workers"
                )
            paths.append(resolved)
        # A path inside another mounted directory is already visible.
        kept = [
            p for p in sorted(set(paths)) if not any(p != q and p.is_relative_to(q) for q in paths)
        ]
        mounts = [Mount(target=str(p), source=str(p), type="bind", read_only=True) for p in kept]
        for source, target, read_only in self.volumes:
            if not Path(source).is_dir():
                raise UsageError(f"cluster.docker.volumes: {source} is not a directory on this machine")
            mounts.append(Mount(target=target, source=str(Path(source).resolve()), type="bind", read_only=read_only))
        for name, target, read_only in self.named_volumes:
            mounts.append(Mount(target=target, source=name, type="volume", read_only=read_only))
        mounts.append(Mount(target=DATA_CACHE_TARGET, source=DATA_CACHE_VOLUME, type="volume", read_only=False))
        return mounts

    def _published(self, scheduler: Container) -> tuple[str, str | None]:
        scheduler.reload()
        ports = scheduler.attrs["NetworkSettings"]["Ports"] or {}

        def host_port(port: int) -> str | None:
            bindings = ports.get(f"{port}/tcp") or []
            return bindings[0]["HostPort"] if bindings else None

        sched = host_port(SCHEDULER_PORT)
        if sched is None:
            # An exited container has no ports: say that it exited (and its code) when it did.
            raise InfraError(
                self.problem()
                or f"the scheduler container of run {self.run_id} has no published port; its log:\n{_logs_tail(scheduler)}"
            )
        dash = host_port(DASHBOARD_PORT)
        return f"tcp://127.0.0.1:{sched}", (f"http://127.0.0.1:{dash}/status" if dash else None)

    def _wait_ready(self, address: str, scheduler: Container) -> None:
        """Wait until the scheduler answers and one worker has joined it (the
        others join while trials run)."""
        from distributed import Client  # deferred: imports Dask

        deadline = time.monotonic() + self.start_timeout
        client: Client | None = None
        try:
            while True:
                if self.stop.is_set():
                    raise KeyboardInterrupt
                trouble = self.problem()
                if trouble:
                    raise InfraError(trouble)
                if client is None:
                    try:
                        with warnings.catch_warnings():  # the executor's Client reports versions
                            warnings.simplefilter("ignore")
                            client = Client(address, timeout=2, set_as_default=False)
                    except (OSError, TimeoutError):
                        client = None
                if client is not None and len(client.nthreads()) >= 1:
                    return
                if time.monotonic() > deadline:
                    with self._lock:
                        workers = list(self._workers)
                    logs = "\n".join(
                        f"--- {c.name}:\n{_logs_tail(c, 10)}" for c in [scheduler, *workers]
                    )
                    raise InfraError(
                        f"the docker cluster of run {self.run_id} did not start within "
                        f"{self.start_timeout:g}s; container logs:\n{logs}"
                    )
                time.sleep(0.2)
        finally:
            if client is not None:
                client.close()

    def _teardown(self, client: docker.DockerClient) -> None:
        from docker.errors import DockerException  # deferred: docker-py, only with a Docker daemon

        try:
            removed = _remove_run(client, self.run_id)
        except (DockerException, OSError) as exc:  # don't hide the error that got us here
            log.warning(
                "could not remove the containers of run %s (%s); `xrun clean` will",
                self.run_id,
                exc,
            )
            return
        log.info("docker cluster %s removed (%d objects)", self.run_id, len(removed))


# ----------------------------------------------------------------------- clean


def clean(run_id: str | None = None, *, client: docker.DockerClient | None = None) -> list[str]:
    """Remove containers and networks xrun left behind; return their names.

    With ``run_id``, remove that run's objects whatever state its driver is in.
    Without, remove every ``xrun.managed`` object whose driver process is gone
    (objects of drivers on other hosts, or still alive, are left alone).
    """
    client = client or docker_client()
    if run_id is not None:
        return _remove_run(client, run_id)
    runs: dict[str, str] = {}
    for obj in [*_managed_containers(client), *_managed_networks(client)]:
        labels = obj.attrs.get("Config", {}).get("Labels") or obj.attrs.get("Labels") or {}
        if LABEL_RUN_ID in labels:
            runs.setdefault(labels[LABEL_RUN_ID], labels.get(LABEL_DRIVER, ""))
    removed: list[str] = []
    for rid, driver in sorted(runs.items()):
        if not driver_alive(driver):
            removed += _remove_run(client, rid)
    return removed


def _managed_containers(client: docker.DockerClient, run_id: str | None = None) -> list[Container]:
    labels = [f"{LABEL_MANAGED}=1"] + ([f"{LABEL_RUN_ID}={run_id}"] if run_id else [])
    return list(client.containers.list(all=True, filters={"label": labels}))


def _managed_networks(client: docker.DockerClient, run_id: str | None = None) -> list[Any]:
    labels = [f"{LABEL_MANAGED}=1"] + ([f"{LABEL_RUN_ID}={run_id}"] if run_id else [])
    return list(client.networks.list(filters={"label": labels}))


def _remove_run(client: docker.DockerClient, run_id: str) -> list[str]:
    """Remove one run's containers, then its network; tolerate objects already gone."""
    from docker.errors import APIError, NotFound  # deferred: docker-py, only with a Docker daemon

    removed: list[str] = []
    for container in _managed_containers(client, run_id):
        try:
            container.remove(force=True)  # SIGKILL: there is nothing to flush
            removed.append(container.name)
        except NotFound:
            pass
        except APIError as exc:
            if "already in progress" not in str(exc):
                log.warning("could not remove container %s: %s", container.name, exc)
    for network in _managed_networks(client, run_id):
        try:
            network.remove()
            removed.append(network.name)
        except NotFound:
            pass
        except APIError as exc:
            log.warning("could not remove network %s: %s", network.name, exc)
    return removed


# ----------------------------------------------------------------------- misc


def _logs_tail(container: Container, lines: int = LOG_TAIL) -> str:
    try:
        return container.logs(tail=lines).decode(errors="replace").rstrip()
    except Exception as exc:  # the log is a courtesy in an error message
        return f"(log unavailable: {exc})"


def from_launch(launch: Launch) -> DockerBackend:
    if launch.image is None:
        raise UsageError("cluster.backend docker: no worker image was built")
    c = launch.spec.cluster
    options = getattr(c, "docker", None)
    given = options.volumes if options is not None else []
    volumes = [(v.source, v.target, v.read_only) for v in given if v.source is not None]
    named = [(v.volume, v.target, v.read_only) for v in given if v.volume is not None]
    return DockerBackend(run_id=launch.run_id, image=launch.image, workers=c.workers,
                         threads_per_worker=c.threads_per_worker, memory_limit_bytes=c.memory_limit,
                         secrets=launch.secrets, data_paths=list(launch.data_paths), stop=launch.stop,
                         volumes=volumes, named_volumes=named)  # fmt: skip
