"""Where trials run. Each backend sits behind :class:`Backend`.

A backend starts (or connects to) a Dask scheduler with workers and tears down
everything it started, on success, failure and interruption alike. Each backend
module (``local``, ``docker``, ``kubernetes``, ``address``) imports no other one
and offers one constructor shape, ``from_launch(Launch)``; :mod:`runner.cluster.factory`
picks the module by ``cluster.backend``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from runner.env import LockedEnv
    from runner.image import ImageInfo
    from runner.spec import Spec


# Dask's ports inside the containers and pods xrun starts (docker and kubernetes alike).
SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787


@dataclass(frozen=True)
class ClusterInfo:
    """What the executor needs to connect, and what the bundle records."""

    backend: str
    address: str  # scheduler address the driver's Client connects to
    dashboard: str | None = None
    workers: int = 0
    # Why the cluster cannot run trials any more (its scheduler died, no worker
    # can start), or None; polled while trials run.
    check: Callable[[], str | None] | None = field(default=None, compare=False, repr=False)


class Backend(Protocol):
    """Start a cluster for one run; the context manager owns its lifetime."""

    def open(self) -> AbstractContextManager[ClusterInfo]: ...


@dataclass(frozen=True)
class Launch:
    """Everything a backend may need to start the cluster of one run."""

    spec: Spec
    run_id: str
    env: LockedEnv
    secrets: Mapping[str, str] = field(default_factory=dict)
    data_paths: tuple[Path, ...] = ()  # local data inputs the workers read
    image: ImageInfo | None = None  # the worker image (docker, kubernetes), from the image step
    stop: threading.Event | None = None  # set on Ctrl-C: a backend still starting gives up
