"""The one place xrun opens a Docker client (used by images and the docker backend).

Kept apart from :mod:`runner.image` and :mod:`runner.cluster.docker` so both can
use it without importing each other. docker-py is an optional dependency
(``xrun[docker]``): it is imported here, lazily, and a missing install or an
unreachable daemon becomes an :class:`InfraError` that says how to fix it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from runner.errors import InfraError

if TYPE_CHECKING:
    import docker

# Label keys shared by images, containers and networks xrun creates.
LABEL_MANAGED = "xrun.managed"  # "1" on every container and network (what `xrun clean` looks at)
LABEL_RUN_ID = "xrun.run-id"
LABEL_DRIVER = "xrun.driver"  # "<host>|<pid>|<process start ticks>" of the driver that owns it
LABEL_ROLE = "xrun.role"  # scheduler | worker

# Builds can be silent for minutes (pip installing scipy, compileall); the API
# client's read timeout must outlast the longest silent step.
BUILD_TIMEOUT = 1800
API_TIMEOUT = 120


def docker_client(timeout: int = API_TIMEOUT) -> docker.DockerClient:
    """A client for the daemon named by ``DOCKER_HOST`` (or the local socket).

    Raises :class:`InfraError` (exit 3) when docker-py is missing or no daemon answers.
    """
    try:
        import docker  # deferred: docker-py, only with a Docker daemon
        from docker.errors import DockerException
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise InfraError(
            "the Python Docker client is not installed; install it with `pip install 'xrun[docker]'`"
        ) from exc
    where = os.environ.get("DOCKER_HOST") or "the local Docker socket"
    try:
        # version="auto" negotiates down to old daemons (docker.io 20.10 speaks API 1.41).
        client = docker.from_env(timeout=timeout, version="auto")
        client.ping()
    except (DockerException, OSError) as exc:
        raise InfraError(
            f"cannot reach a Docker daemon at {where}: {_first_line(exc)}. "
            "Start Docker (e.g. `sudo systemctl start docker`, or `sudo dockerd &`), "
            "or point DOCKER_HOST at a running daemon, then try again"
        ) from exc
    return client


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
