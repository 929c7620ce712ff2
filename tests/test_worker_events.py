"""A worker's messages to the driver (runner.worker._base.emit), on a real Dask
worker: in order, handed over before the next trial starts, and those of
trials shorter than a few milliseconds in few events."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")
msgpack = pytest.importorskip("msgpack")

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


def _collect(client: Any) -> tuple[list[dict[str, Any]], list[int], threading.Event]:
    """The messages the driver hears, in order, and the size of each event."""
    seen: list[dict[str, Any]] = []
    sizes: list[int] = []
    done = threading.Event()

    def on_event(event: tuple[float, Any]) -> None:
        msg = event[1]
        if "packed" in msg:  # several messages: one msgpack blob the scheduler forwards as it is
            batch = msgpack.unpackb(msg["packed"])
        else:
            batch = msg["batch"] if "batch" in msg else [msg]
        sizes.append(len(batch))
        seen.extend(batch)
        if any(m.get("last") for m in batch):
            done.set()

    client.subscribe_topic(_base.EVENT_TOPIC, on_event)
    return seen, sizes, done


def _many_short(n: int) -> int:
    for i in range(n):
        _base.emit({"i": i}, handed_over=True)
    _base.emit({"last": True}, handed_over=True)
    _base.flush()
    return len(_base._outbox(_base.current_worker()).messages)


def test_messages_of_short_trials_arrive_all_in_order_in_few_events(client) -> None:
    seen, sizes, done = _collect(client)
    try:
        assert client.submit(_many_short, 3000, pure=False).result(timeout=60) == 0  # none waits when the task ends
        assert done.wait(30)
        assert [m["i"] for m in seen if "i" in m] == list(range(3000))
        assert len(sizes) < 3000 / 10, f"{len(sizes)} events for 3,001 messages"
    finally:
        client.unsubscribe_topic(_base.EVENT_TOPIC)


def _spaced(n: int) -> list[int]:
    box = _base._outbox(_base.current_worker())
    waiting = []
    for i in range(n):
        time.sleep(_base.COALESCE_SECONDS * 2)  # a trial longer than the window
        _base.emit({"i": i}, handed_over=True)
        waiting.append(len(box.messages))
    _base.emit({"last": True}, handed_over=True)
    _base.flush()
    return waiting


def test_the_result_of_a_trial_longer_than_the_window_is_handed_over_before_the_next_starts(client) -> None:
    seen, sizes, done = _collect(client)
    try:
        assert client.submit(_spaced, 20, pure=False).result(timeout=60) == [0] * 20
        assert done.wait(30)
        assert [m["i"] for m in seen if "i" in m] == list(range(20))
        assert sizes.count(1) >= 20  # one event each, as before coalescing existed
    finally:
        client.unsubscribe_topic(_base.EVENT_TOPIC)


def _from_threads(n: int) -> None:
    box = _base._outbox(_base.current_worker())  # threads_per_worker > 1: several trial threads post

    def post(tag: str) -> None:
        for i in range(n):
            box.post({"tag": tag, "i": i})

    threads = [threading.Thread(target=post, args=(t,)) for t in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _base.emit({"last": True}, handed_over=True)
    _base.flush()


def test_messages_of_several_threads_each_stay_in_order(client) -> None:
    seen, _, done = _collect(client)
    try:
        client.submit(_from_threads, 1000, pure=False).result(timeout=60)
        assert done.wait(30)
        for tag in "abc":
            assert [m["i"] for m in seen if m.get("tag") == tag] == list(range(1000))
    finally:
        client.unsubscribe_topic(_base.EVENT_TOPIC)


def test_several_messages_travel_as_one_packed_blob_and_the_driver_reads_them_over_tcp() -> None:
    """Over TCP (worker and scheduler processes), the scheduler forwards a packed
    event as one bytes object; the executor's reading of worker events gets
    every message back, in order, with bytes and floats intact."""
    from runner.execute.executor import Executor

    heard: list[dict[str, Any]] = []
    done = threading.Event()

    class Listener:  # the executor's reading of worker events, fed what a real TCP cluster delivers
        _on_worker_event = Executor._on_worker_event

        def _on_worker_message(self, msg: dict[str, Any]) -> None:
            heard.append(msg)
            if msg.get("last"):
                done.set()

    listener = Listener()
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  worker_dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            packed_events: list[bool] = []

            def on_event(event: tuple[float, Any]) -> None:
                packed_events.append(isinstance(event[1], dict) and isinstance(event[1].get("packed"), bytes))
                listener._on_worker_event(event)

            c.subscribe_topic(_base.EVENT_TOPIC, on_event)
            assert c.submit(_many_blobs, 2000, pure=False).result(timeout=120) == 0
            assert done.wait(60)
    got = [m for m in heard if "i" in m]
    assert [m["i"] for m in got] == list(range(2000))
    assert all(m["blob"] == bytes([m["i"] % 256]) * 3 and m["t"] == m["i"] / 3 for m in got)
    assert any(packed_events), "no event was packed"


def _many_blobs(n: int) -> int:
    for i in range(n):
        _base.emit({"i": i, "blob": bytes([i % 256]) * 3, "t": i / 3}, handed_over=True)
    _base.emit({"last": True}, handed_over=True)
    _base.flush()
    return len(_base._outbox(_base.current_worker()).messages)


def test_messages_msgpack_cannot_encode_go_as_a_plain_batch() -> None:
    big = {"i": 2**70}  # beyond 64 bits: msgpack refuses it
    assert _base.packed([big, {"i": 1}]) == {"batch": [big, {"i": 1}]}
    blob = _base.packed([{"i": 1}, {"x": b"\x00", "f": 0.1}])
    assert msgpack.unpackb(blob["packed"]) == [{"i": 1}, {"x": b"\x00", "f": 0.1}]
