"""runner._gc: while a run lasts, the objects that existed when it began are
frozen and young collections are rarer; when the outermost run ends (however it
ends) the process's collector is as it was, and cycles made before or during
the run are collected again."""

import gc
import threading
import weakref

import pytest

from runner import _gc
from runner.run import run_plan


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def test_a_run_freezes_what_exists_and_restores_the_collector_after() -> None:
    before = gc.get_threshold(), gc.get_freeze_count()
    seen = []

    @_gc.tuned_for_a_run
    def run() -> str:
        seen.append((gc.get_threshold()[0], gc.get_freeze_count()))
        return "done"

    assert run() == "done"
    assert seen[0][0] >= _gc.YOUNG_THRESHOLD and seen[0][1] > 0
    assert (gc.get_threshold(), gc.get_freeze_count()) == before


def test_the_collector_is_restored_when_the_run_raises_and_when_runs_nest() -> None:
    before = gc.get_threshold(), gc.get_freeze_count()

    @_gc.tuned_for_a_run
    def inner() -> None:
        raise KeyboardInterrupt

    @_gc.tuned_for_a_run
    def outer() -> tuple[int, int]:
        with pytest.raises(KeyboardInterrupt):
            inner()
        return gc.get_threshold()[0], gc.get_freeze_count()  # still tuned: the outer run goes on

    young, frozen = outer()
    assert young >= _gc.YOUNG_THRESHOLD and frozen > 0
    assert (gc.get_threshold(), gc.get_freeze_count()) == before


def test_cycles_made_before_and_during_a_run_are_collected_after_it() -> None:
    before_run = _Node()
    ref_before = weakref.ref(before_run)
    refs = []

    @_gc.tuned_for_a_run
    def run() -> None:
        nonlocal before_run
        before_run = None  # garbage now, but frozen: not collected while the run lasts
        for _ in range(100):
            refs.append(weakref.ref(_Node()))
        gc.collect()
        assert ref_before() is not None

    run()
    gc.collect()
    assert ref_before() is None
    assert all(r() is None for r in refs)


def test_runs_in_threads_restore_the_collector_once_the_last_ends() -> None:
    before = gc.get_threshold(), gc.get_freeze_count()
    inside, release = threading.Barrier(3), threading.Event()

    @_gc.tuned_for_a_run
    def run() -> None:
        inside.wait(timeout=30)
        assert release.wait(timeout=30)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    inside.wait(timeout=30)
    assert gc.get_threshold()[0] >= _gc.YOUNG_THRESHOLD
    release.set()
    for t in threads:
        t.join(timeout=30)
    assert (gc.get_threshold(), gc.get_freeze_count()) == before


def test_collection_left_off_stays_off() -> None:
    saved = gc.get_threshold()
    gc.set_threshold(0)
    try:
        _gc.tuned_for_a_run(lambda: None)()
        assert gc.get_threshold()[0] == 0
        assert _gc.tuned_for_a_run(lambda: gc.get_threshold()[0])() == 0
    finally:
        gc.set_threshold(*saved)


def test_run_plan_is_tuned() -> None:
    assert getattr(run_plan, "__wrapped__", None) is not None
