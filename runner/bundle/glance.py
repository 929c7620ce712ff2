"""What a terminal shows of a bundle's trials (the summary after ``xrun run``,
``xrun show``), read from ``trials.jsonl`` in bounded memory at any number of trials.

One pass files each trial's last line (its id, offset, status, objective
value and point) in a private temporary SQLite database on disk; the few
records shown are read back. What is shown is exactly what the whole list of
latest records gives: the best successful trials as ``Objective.rank`` orders
them, the first stopped-early and failed trials by id, and the first points of
``rank(aggregate(records))`` (SQLite's means only choose which points are read
back; ``rank`` itself orders them).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.bundle.journal import SLIM_FIELDS, iter_journal, records_at
from runner.bundle.points import Point, aggregate, point_key, rank
from runner.objective import Objective, is_number

OK, PRUNED, FAILED = 0, 1, 2
MAX_NAMES = 1000  # metric names collected for the tables' columns


@dataclass
class Glance:
    rows: list[dict[str, Any]]  # the records shown (slim), in id order
    n_ok: int
    n_pruned: int
    n_failed: int
    points: list[Point] | None  # the first of the points' ranking; None: no point ran more than once
    n_points: int
    shown_metrics: set[str]  # of successful trials: names with a number or null (the trials table's columns)
    numeric_metrics: set[str]  # of successful trials: names with a number (the points table's columns)


def glance(journal: Path, metric: str | None, goal: str = "maximize", limit: int = 20) -> Glance:
    objective = Objective(metric, goal) if metric else None
    sign = objective.sign if objective else 1.0
    db = sqlite3.connect("")  # deleted when closed
    try:
        db.execute("CREATE TABLE last (id TEXT PRIMARY KEY, off INTEGER NOT NULL, kind INTEGER NOT NULL, "
                   "pk TEXT NOT NULL, v REAL, shown TEXT NOT NULL, numeric TEXT NOT NULL)")  # fmt: skip
        db.executemany("INSERT OR REPLACE INTO last VALUES (?, ?, ?, ?, ?, ?, ?)", _rows(journal, objective))
        shown_metrics: set[str] = set()
        numeric_metrics: set[str] = set()
        for names, into in (("shown", shown_metrics), ("numeric", numeric_metrics)):  # of the last lines only
            for (text,) in db.execute(f"SELECT DISTINCT {names} FROM last WHERE kind = 0"):
                into.update(json.loads(text))
                if len(into) >= MAX_NAMES:
                    break
        counts = dict(db.execute("SELECT kind, COUNT(*) FROM last GROUP BY kind").fetchall())
        shown = [o for (o,) in db.execute(
            "SELECT off FROM last WHERE kind = 0 ORDER BY v IS NULL, v * ?, id LIMIT ?", (sign, limit))]  # fmt: skip
        for kind in (PRUNED, FAILED):
            shown += [o for (o,) in db.execute("SELECT off FROM last WHERE kind = ? ORDER BY id LIMIT ?", (kind, limit))]
        rows = sorted((_slim(r) for _, r in records_at(journal, shown)), key=lambda r: str(r.get("id")))
        n_points = db.execute("SELECT COUNT(DISTINCT pk) FROM last").fetchone()[0]
        points = None
        if db.execute("SELECT 1 FROM last GROUP BY pk HAVING COUNT(*) > 1 LIMIT 1").fetchone():
            points = _top_points(db, journal, metric, goal, sign, limit)
    finally:
        db.close()
    return Glance(rows, counts.get(OK, 0), counts.get(PRUNED, 0), counts.get(FAILED, 0), points, n_points,
                  shown_metrics, numeric_metrics)  # fmt: skip


def _top_points(db: sqlite3.Connection, journal: Path, metric: str | None, goal: str, sign: float,
                limit: int) -> list[Point]:  # fmt: skip
    chosen: set[str] = set()
    scored = db.execute("SELECT pk, AVG(v) * ? AS s FROM last WHERE v IS NOT NULL GROUP BY pk ORDER BY s LIMIT ?",
                        (sign, limit)).fetchall() if metric else []  # fmt: skip
    if scored:
        cut = scored[-1][1]  # ties at the cut, and means a few ulps apart in SQLite's sum, are all read back
        chosen.update(pk for (pk,) in db.execute(
            "SELECT pk FROM last WHERE v IS NOT NULL GROUP BY pk HAVING AVG(v) * ? <= ?",
            (sign, cut + 1e-9 * max(1.0, abs(cut)))))  # fmt: skip
    if len(scored) < limit:  # then the points without a mean, by their first trial id
        chosen.update(pk for pk, _ in db.execute(
            "SELECT pk, MIN(id) AS first FROM last GROUP BY pk HAVING COUNT(v) = 0 ORDER BY first LIMIT ?",
            (limit - len(scored),)))  # fmt: skip
    db.execute("CREATE TEMP TABLE chosen (pk TEXT PRIMARY KEY)")
    db.executemany("INSERT INTO chosen VALUES (?)", ((pk,) for pk in chosen))
    offsets = [o for (o,) in db.execute("SELECT off FROM last JOIN chosen USING (pk)")]
    records = [_slim(r) for _, r in records_at(journal, offsets)]
    return rank(aggregate(records), metric, goal)[:limit]


def _rows(journal: Path, objective: Objective | None) -> Iterator[tuple[Any, ...]]:
    """Each line's row, with the metric names of a successful trial (JSON lists)."""
    for off, r in iter_journal(journal):
        status = r.get("status")
        kind = OK if status == "ok" else PRUNED if status == "pruned" else FAILED
        metrics = r.get("metrics")
        shown, numeric = "[]", "[]"
        if kind == OK and isinstance(metrics, dict) and metrics:
            names = [str(k) for k, m in metrics.items()
                     if m is None or (isinstance(m, (int, float)) and not isinstance(m, bool))]  # fmt: skip
            shown = json.dumps(sorted(names))
            numeric = json.dumps(sorted(str(k) for k, m in metrics.items() if is_number(m)))
        raw = r.get("params")
        v = objective.value(r) if objective is not None and kind == OK else None
        yield r["id"], off, kind, point_key(raw if isinstance(raw, dict) else {}), v, shown, numeric


def _slim(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: rec[k] for k in SLIM_FIELDS if k in rec}
