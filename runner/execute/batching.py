"""How many trials go into one Dask task, and how many tasks are out at once.

One trial per task until trials are known to be short; then enough to make
each task about ``TARGET_TASK_SECONDS`` of work (the per-task overhead of Dask
is then small against it), while leaving every worker slot something to do.
Each task costs its slot a dispatch gap (tens of milliseconds on a loaded
machine: the scheduler's round trip, unpickling the batch); with a second of
work per task that gap stays a few percent of a sweep of mixed short and
long trials, where a quarter of a second made it 15-30%.

No stragglers: the trials not yet given to a task are always spread over at
least ``TAIL_SPLIT`` tasks per worker slot, so batches shrink as the sweep
nears its end and its last trials go one per task; and once every trial left
fits in the tasks already out, at most one task per slot is out, so no trial
waits in a worker's queue behind a long one while another slot is idle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.plan import PlannedTrial

TARGET_TASK_SECONDS = 1.0
MAX_BATCH = 500
MIN_SAMPLES = 4
TAIL_SPLIT = 4  # unsubmitted trials are spread over at least this many tasks per slot


@dataclass
class Unit:
    """One Dask task: a trial, or a batch of short trials, each with its attempt number."""

    items: list[tuple[PlannedTrial, int]]
    fut: Any


class BatchSizer:
    """Trials per task from the durations seen so far (a moving mean)."""

    def __init__(self, fixed: int = 0, slots: int = 2) -> None:
        self.fixed = fixed  # trials per task set by the user; 0 = adaptive
        self.slots = slots  # worker threads in the cluster
        self._n = 0
        self._mean: float | None = None

    def note(self, result: dict[str, Any]) -> None:
        """Learn from a finished trial's ``start`` and ``end``."""
        start, end = result.get("start"), result.get("end")
        if isinstance(start, (int, float)) and isinstance(end, (int, float)):
            d = max(0.0, end - start)
            self._n += 1
            m = self._mean
            self._mean = d if m is None else m + (d - m) * 0.1

    def size(self, unsubmitted: int) -> int:
        """Trials for the next task, with ``unsubmitted`` trials not yet given to any task."""
        if self.fixed:
            return self.fixed
        if self._n < MIN_SAMPLES or self._mean is None:
            return 1
        size = int(TARGET_TASK_SECONDS / max(self._mean, 1e-5))
        spread = max(1, unsubmitted // max(1, TAIL_SPLIT * self.slots))
        return max(1, min(size, spread, MAX_BATCH))

    def in_flight(self, unsubmitted: int, limit: int) -> int:
        """Tasks to keep out at once: ``limit`` while trials remain to be given
        out, one per slot at the end (a queued task would wait behind a running
        one on its worker instead of going to the first slot that frees up)."""
        if self.fixed or unsubmitted > limit:
            return limit
        return max(1, min(limit, self.slots))
