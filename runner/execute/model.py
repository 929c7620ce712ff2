"""What the executor takes and gives: its options, the events the CLI's progress
display receives, and the outcome of a run's trials."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """Progress, for the CLI's display: one per trial that finishes or retries."""

    kind: str  # "cached" | "done" | "failed" | "retry"
    record: dict[str, Any]
    counts: dict[str, int]
    best: tuple[str, float] | None = None  # (trial id, objective value)


@dataclass
class Options:
    fail_fast: bool = False
    max_in_flight: int = 8
    slots: int = 2  # worker threads in the cluster
    batch_size: int = 0  # trials per Dask task; 0 = adaptive


@dataclass
class Outcome:
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0, "cached": 0})
    failures: dict[str, int] = field(default_factory=dict)  # failure class -> n
    best: tuple[str, float] | None = None
    interrupted: bool = False
    stopped_early: bool = False  # --fail-fast
    not_run: int = 0
    tasks: int = 0  # Dask tasks submitted (short trials are batched)
