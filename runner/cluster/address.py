"""``backend: address``: a scheduler someone already started (``dask scheduler``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from runner.cluster import ClusterInfo, Launch


class AddressBackend:
    def __init__(self, *, address: str, workers: int = 1) -> None:
        self.address = address
        self.workers = workers

    @contextmanager
    def open(self) -> Iterator[ClusterInfo]:
        yield ClusterInfo("address", self.address, None, self.workers)


def from_launch(launch: Launch) -> AddressBackend:
    c = launch.spec.cluster
    return AddressBackend(address=c.address, workers=c.workers)  # type: ignore[union-attr]
