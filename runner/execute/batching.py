"""How many trials go into one Dask task.

One trial per task until trials are known to be short; then enough to make
each task about ``TARGET_TASK_SECONDS`` of work (the per-task overhead of Dask
is then small against it), while leaving every worker slot something to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.plan import PlannedTrial

TARGET_TASK_SECONDS = 0.25
MAX_BATCH = 500
MIN_SAMPLES = 4


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
        spread = max(1, unsubmitted // max(1, 2 * self.slots))
        return max(1, min(size, spread, MAX_BATCH))
