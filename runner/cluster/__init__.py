"""Where trials run. Each backend sits behind :class:`Backend`.

A backend starts (or connects to) a Dask scheduler with workers and tears down
everything it started, on success, failure and interruption alike.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol


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
