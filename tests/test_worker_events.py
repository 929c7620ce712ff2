"""A worker's messages to the driver (runner.worker._base.emit), on a real Dask worker."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")

from runner.worker import _base  # noqa: E402
from runner.worker.guard import Watchdog  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            yield c


def _watchdog_fires_oom() -> str:
    caught: list[str] = []

    def victim() -> None:
        try:
            for _ in range(200):
                time.sleep(0.01)
        except _base.TrialOutOfMemory:
            caught.append("oom")

    t = threading.Thread(target=victim)
    t.start()
    dog = Watchdog(t.ident or 0, None, 1000, "t00007", worker=_base.current_worker())
    # The dog is checked in a thread of its own (runner.worker.guard._Guard), not in the task's.
    checker = threading.Thread(target=dog.check, args=(time.monotonic(), 10_000))
    checker.start()
    checker.join()
    t.join()
    _base.emit({"last": True}, handed_over=True)
    return caught[0] if caught else ""


def test_the_watchdogs_oom_warning_reaches_the_driver(client) -> None:
    """Once sent from the watchdog's thread, where Dask knows no current worker:
    it never left, and a trial whose worker was then killed for its memory was
    classified by the nanny's event alone."""
    seen: list[dict[str, Any]] = []
    done = threading.Event()

    def on_event(event: tuple[float, Any]) -> None:
        seen.append(event[1])
        if event[1].get("last"):
            done.set()

    client.subscribe_topic(_base.EVENT_TOPIC, on_event)
    try:
        assert client.submit(_watchdog_fires_oom, pure=False).result(timeout=60) == "oom"
        assert done.wait(30)
        assert any(m.get("oom") == "t00007" and m.get("rss") == 10_000 for m in seen), seen
    finally:
        client.unsubscribe_topic(_base.EVENT_TOPIC)


def test_outside_a_worker_emit_does_nothing() -> None:
    _base.emit({"i": 1}, handed_over=True)
