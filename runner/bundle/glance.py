"""What a terminal shows of a bundle's trials (the summary after ``xrun run``,
``xrun show``), read from ``trials.jsonl`` in bounded memory at any number of trials.

One pass files each trial's last line (its id, offset, status, objective
value and point) in a private temporary SQLite database on disk
(:class:`runner.bundle.ledger.Ledger`); the few
records shown are read back. What is shown is exactly what the whole list of
latest records gives: the best successful trials as ``Objective.rank`` orders
them, the first stopped-early and failed trials by id, and the first points of
``rank(aggregate(records))`` (SQLite's means only choose which points are read
back; ``rank`` itself orders them).
"""

from __future__ import annotations

from pathlib import Path

from runner.bundle.ledger import MAX_NAMES as MAX_NAMES
from runner.bundle.ledger import Glance as Glance
from runner.bundle.ledger import Ledger
from runner.objective import Objective

GLANCE_ROWS = 10  # rows of each table shown after a run


def glance(journal: Path, metric: str | None, goal: str = "maximize", limit: int = 20) -> Glance:
    """The terminal's tables of ``journal`` (:meth:`runner.bundle.ledger.Ledger.glance`)."""
    with Ledger(journal, Objective(metric, goal) if metric else None) as ledger:
        return ledger.glance(metric, goal, limit)
