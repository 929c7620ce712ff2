"""A worker loads each data set once and hands every trial its own copy."""

from __future__ import annotations

import threading

import numpy as np

from runner.worker import datasets


def test_loaded_once_and_each_trial_gets_its_own_copy() -> None:
    calls = []

    def load():
        calls.append(1)
        return np.arange(6.0).reshape(3, 2), np.array([0, 1, 0])

    X, y = datasets.load_once(("t", "a"), load)
    X[:] = -1  # a trial that scales its data in place
    X2, y2 = datasets.load_once(("t", "a"), load)
    assert len(calls) == 1
    assert X2.tolist() == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]] and y2.tolist() == [0, 1, 0]


def test_threads_of_a_worker_load_a_data_set_once() -> None:
    calls = []
    gate = threading.Event()

    def load():
        calls.append(1)
        gate.wait(5)
        return (np.zeros(3),)

    threads = [threading.Thread(target=datasets.load_once, args=(("t", "b"), load)) for _ in range(4)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(10)
    assert len(calls) == 1


def test_large_or_many_data_sets_are_not_all_kept(monkeypatch) -> None:
    monkeypatch.setattr(datasets, "MAX_BYTES", 100)
    calls = []

    def big():
        calls.append(1)
        return (np.zeros(1000),)

    datasets.load_once(("t", "big"), big)
    datasets.load_once(("t", "big"), big)
    assert len(calls) == 2
    for i in range(datasets.MAX_SETS + 3):
        datasets.load_once(("t", "many", i), lambda: (np.zeros(2),))
    assert len(datasets._kept) <= datasets.MAX_SETS
