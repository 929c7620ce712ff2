"""Python's cyclic garbage collector, tuned while a run makes its many short-lived objects.

A run imports Dask, pydantic and the rest (a few hundred thousand objects that
live as long as the process), then makes several objects per trial (a task, a
result, a record, a journal line). The collector's full collections walk every
tracked object each time: about two dozen of them over a 100,000-trial run
cost more than a second of the driver's CPU. While a run lasts, the objects
that exist when it starts are frozen (``gc.freeze``: left out of collections,
still freed when nothing refers to them) and the youngest generation is
collected every :data:`YOUNG_THRESHOLD` allocations rather than 700: the
records, tasks and events a run holds for a moment (a flush's worth, half a
second of results) are walked by fewer collections, and at most that many
objects' worth of cyclic garbage waits for one. When the outermost run ends
both are undone, so a process running many runs (a test suite, a notebook)
still collects the cycles among those objects later.
"""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import Callable
from typing import Any, TypeVar

YOUNG_THRESHOLD = 50_000

F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.Lock()
_depth = 0  # runs in progress in this process (nested or in threads)
_saved: tuple[int, ...] = ()


def _enter() -> None:
    global _depth, _saved
    with _lock:
        _depth += 1
        if _depth == 1:
            gc.freeze()
            _saved = gc.get_threshold()
            if _saved[0]:  # 0: automatic collection is off, and stays off
                gc.set_threshold(max(YOUNG_THRESHOLD, _saved[0]), *_saved[1:])


def _exit() -> None:
    global _depth
    with _lock:
        _depth -= 1
        if _depth == 0:
            gc.set_threshold(*_saved)
            gc.unfreeze()


def tuned_for_a_run(fn: F) -> F:
    """``fn`` runs with the collector tuned as the module's docstring says."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _enter()
        try:
            return fn(*args, **kwargs)
        finally:
            _exit()

    return wrapper  # type: ignore[return-value]
