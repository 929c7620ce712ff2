"""Data sets loaded once per worker process, handed to each trial as its own copy.

A sweep's trials on one worker all cross-validate on the same data: loading it
again for every trial (a loader that parses a file, a CSV table) costs more
than the fit for small data sets. The first trial loads it; the others get a
copy of what it loaded (a trial may modify its arrays in place), keyed by what
the data is: the loader's import path, or the table's path with its sha256 and
target column. At most ``MAX_SETS`` data sets of at most ``MAX_BYTES`` each are
kept; larger ones are loaded by each trial as before.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

MAX_SETS = 4
MAX_BYTES = 256 * 1024 * 1024

_kept: OrderedDict[Hashable, tuple[Any, ...]] = OrderedDict()
_lock = threading.Lock()
_loading: dict[Hashable, threading.Lock] = {}


def load_once(key: Hashable, load: Callable[[], tuple[Any, ...]]) -> tuple[Any, ...]:
    """``load()``'s result for ``key``, loaded at most once while kept; each call gets a copy."""
    with _lock:
        gate = _loading.setdefault(key, threading.Lock())
    with gate:  # two threads of a worker wanting the same data load it once
        with _lock:
            kept = _kept.get(key)
            if kept is not None:
                _kept.move_to_end(key)
        if kept is None:
            kept = load()
            if _size(kept) > MAX_BYTES:
                return kept  # too large to keep a second copy of: this trial's own
            with _lock:
                _kept[key] = kept
                while len(_kept) > MAX_SETS:
                    _kept.popitem(last=False)
    return tuple(copy.deepcopy(part) for part in kept)


def _size(parts: tuple[Any, ...]) -> int:
    total = 0
    for part in parts:
        nbytes = getattr(part, "nbytes", None)
        if nbytes is None:  # a pandas object, a list: as large as it says, or assume the worst
            memory = getattr(part, "memory_usage", None)
            try:
                nbytes = int(memory(deep=True).sum()) if callable(memory) else MAX_BYTES + 1
            except Exception:
                nbytes = MAX_BYTES + 1
        total += int(nbytes)
    return total
