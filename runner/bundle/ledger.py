"""One pass over ``trials.jsonl`` for everything derived from a finished run's
trials: ``results.csv`` and ``points.csv``, ``bundle.json``'s best point, the
terminal's tables, and whatever else is fed each line (the report's scan).

The pass parses each line once and files each trial's last line (its point,
objective value, the cells of its results row, its metric values) in a private
temporary SQLite database on disk (deleted when closed): memory stays flat at
any number of trials. What each output needs is then read from that table,
sorted or grouped by SQLite; the few records shown in full are read back from
the journal at their offsets. Each output equals what the whole list of latest
records gives (``write.write_tables``, ``points.best_point_of`` and
``glance.glance`` are this class used for one output).
"""

from __future__ import annotations

import csv
import json
import marshal
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner._json import loads
from runner.bundle.journal import SLIM_FIELDS, iter_journal, records_at
from runner.bundle.points import Point, aggregate, best_point, point_key, rank
from runner.objective import Objective, is_number, is_real
from runner.sweep import canonical_json

OK, PRUNED, FAILED = 0, 1, 2
MAX_NAMES = 1000  # metric names collected for the terminal tables' columns
_MEMO = 256  # distinct metric-name lists whose JSON is remembered
# points.csv: up to this many trials in points with more than one trial are held
# while the others are written in id order; more, and SQLite groups them all
REPEATED_TRIALS_HELD = 20_000



@dataclass
class Glance:
    """What a terminal shows of a bundle's trials (:mod:`runner.bundle.glance`)."""

    rows: list[dict[str, Any]]  # the records shown (slim), in id order
    n_ok: int
    n_pruned: int
    n_failed: int
    points: list[Point] | None  # the first of the points' ranking; None: no point ran more than once
    n_points: int
    shown_metrics: set[str]  # of successful trials: names with a number or null (the trials table's columns)
    numeric_metrics: set[str]  # of successful trials: names with a number (the points table's columns)


RESULT_BASE = ["id", "key", "status", "failure_class", "seed", "repeat", "attempts", "cached", "worker", "start", "end",
               "duration", "error"]  # fmt: skip


class Ledger:
    """Each trial's last journal line, filed once (see the module's docstring).

    ``objective``: the metric whose values are filed (the best point and the
    tables rank by it); ``each``: called with every line's ``(offset, record)``
    in journal order (the records are not to be changed)."""

    def __init__(self, journal: Path, objective: Objective | None,
                 each: Callable[[int, dict[str, Any]], None] | None = None) -> None:  # fmt: skip
        self.journal = journal
        self.objective = objective
        self.lines = 0
        self.params: set[str] = set()  # parameter names of every line (results.csv's columns)
        self.metrics: set[str] = set()  # metric names of every line
        self._ok_numeric: set[str] = set()  # numeric metric names of successful lines
        self._names: dict[Any, tuple[str, str]] = {}
        self._n_points: int | None = None  # distinct points, once counted
        self.db = sqlite3.connect("")  # deleted when closed
        try:
            self.db.execute("PRAGMA page_size = 65536")  # rows of a few hundred bytes: fewer pages to walk, split and spill
            self.db.execute("PRAGMA journal_mode = OFF")  # a private scratch database: nothing to roll back
            self.db.execute("PRAGMA cache_size = -4096")  # KiB: the pages being filled (and a sort's run) stay in memory
            self.db.execute("CREATE TABLE last (id BLOB PRIMARY KEY, off INTEGER NOT NULL, kind INTEGER NOT NULL, "
                            "pk TEXT NOT NULL, v REAL, shown TEXT NOT NULL, numeric TEXT NOT NULL, "
                            "row BLOB NOT NULL, vals BLOB) WITHOUT ROWID")  # fmt: skip
            self.db.executemany("INSERT OR REPLACE INTO last VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", self._rows(each))
            self.trials: int = self.db.execute("SELECT COUNT(*) FROM last").fetchone()[0]
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the pass

    def _rows(self, each: Callable[[int, dict[str, Any]], None] | None) -> Iterator[tuple[Any, ...]]:
        metric = self.objective.metric if self.objective is not None else None
        params_seen, metrics_seen, ok_numeric = self.params, self.metrics, self._ok_numeric
        for off, r in iter_journal(self.journal):
            self.lines += 1
            if each is not None:
                each(off, r)
            status = r.get("status")
            raw = r.get("params")
            params: dict[str, Any] | None = raw if isinstance(raw, dict) else None
            raw_m = r.get("metrics")
            metrics: dict[str, Any] | None = raw_m if isinstance(raw_m, dict) else None
            if params is not None:
                params_seen.update(params)
            if metrics is not None:
                metrics_seen.update(metrics)
            kind = OK if status == "ok" else PRUNED if status == "pruned" else FAILED
            v = None
            vals = None
            shown = numeric = "[]"
            if kind == OK:
                values = {str(k): float(m) for k, m in (metrics.items() if metrics is not None else ()) if is_number(m)}
                ok_numeric.update(values)
                vals = marshal.dumps(values)  # read back by this class only: cheaper than JSON
                if metric is not None:
                    v = values.get(metric)
                if metrics:
                    shown, numeric = self._metric_names(metrics)
            row = marshal.dumps((_base_row(r), params, raw_m))
            yield (_sortable(r["id"]), off, kind, point_key(params if params is not None else {}), v, shown, numeric,
                   row, vals)  # fmt: skip

    def _metric_names(self, metrics: dict[str, Any]) -> tuple[str, str]:
        """The JSON lists of a successful trial's metric names with a number or
        null, and with a number (the same few lists for most trials: remembered)."""
        sig = tuple((k, 0 if m is None else 1 if is_number(m) else 2 if is_real(m) else 3) for k, m in metrics.items())
        names = self._names.get(sig)
        if names is None:
            shown = json.dumps(sorted(str(k) for k, t in sig if t < 3))
            numeric = json.dumps(sorted(str(k) for k, t in sig if t == 1))
            names = (shown, numeric)
            if len(self._names) < _MEMO:
                self._names[sig] = names
        return names

    @property
    def superseded(self) -> bool:
        """Whether a trial has more than one line (its earlier ones replaced)."""
        return self.lines != self.trials

    # ------------------------------------------------------------------ results.csv and points.csv

    def write_tables(self, results: Path | None, points: Path | None) -> None:
        """``results.csv`` (one row per trial, its last line, in id order) and
        ``points.csv`` (one row per parameter point, in order of its first trial id)."""
        p_cols, m_cols = sorted(self.params), sorted(self.metrics)
        if results is not None:
            with open(results, "w", newline="", encoding="utf-8", errors="replace") as fh:
                w = csv.writer(fh)
                w.writerow(RESULT_BASE + [f"param.{p}" for p in p_cols] + [f"metric.{m}" for m in m_cols])
                for (blob,) in self.db.execute("SELECT row FROM last ORDER BY id"):
                    base, params, metrics = marshal.loads(blob)
                    pp = params if params is not None else {}
                    mm = metrics if isinstance(metrics, dict) else {}
                    w.writerow(base + [_cell(pp.get(p)) for p in p_cols] + [_cell(mm.get(m)) for m in m_cols])
        if points is not None:
            point_params, point_metrics = set(self.params), set(self._ok_numeric)
            if self.superseded:  # the names of the last lines only
                point_params, point_metrics = set(), set()
                for blob, vals in self.db.execute("SELECT row, vals FROM last"):
                    _, params, _ = marshal.loads(blob)
                    point_params.update(params or ())
                    if vals is not None:
                        point_metrics.update(marshal.loads(vals))
            self._write_points(points, sorted(point_params), sorted(point_metrics))

    def _write_points(self, path: Path, p_cols: list[str], m_cols: list[str]) -> None:
        with open(path, "w", newline="", encoding="utf-8", errors="replace") as fh:  # a lone surrogate from JSON: "?"
            w = csv.writer(fh)
            w.writerow([f"param.{p}" for p in p_cols] + ["n", "trials"]
                       + [f"{m}.{stat}" for m in m_cols for stat in ("mean", "std")])  # fmt: skip

            def flush(p: Point) -> None:
                row = [_cell(p.params.get(c)) for c in p_cols] + [p.n, " ".join(p.trials)]
                for m in m_cols:
                    row += [_cell(p.mean(m)), _cell(p.std(m))]
                w.writerow(row)

            repeated = self._repeated_points()
            if repeated is None:  # many trials share points: grouped and ordered by SQLite
                self._grouped_points(flush)
                return
            # Most points have one trial: read in id order, each point is written at its
            # first trial; the few points with more are gathered beforehand.
            done: set[str] = set()
            no_metrics = ["", ""] * len(m_cols)
            for pk, tid, values in self.db.execute("SELECT pk, id, vals FROM last ORDER BY id"):
                point = repeated.get(pk)
                if point is None:  # a point of one trial: the row flush writes for it, made directly
                    params = loads(pk)
                    row = [_cell(params.get(c)) for c in p_cols]
                    text = tid.decode("utf-8", "surrogatepass")
                    if values is None:  # not successful: no values
                        row += [0, text, *no_metrics]
                    else:  # one value each: their mean (math.fsum of -0.0 is 0.0), and no std
                        vals = marshal.loads(values)
                        row += [1, text]
                        for m in m_cols:
                            v = vals.get(m)
                            row += ("" if v is None else v + 0.0, "")
                    w.writerow(row)
                    continue
                if pk not in done:  # a point of several trials: written at its first
                    done.add(pk)
                    flush(point)

    def _repeated_points(self) -> dict[str, Point] | None:
        """The points with more than one trial, each whole (None: too many trials
        in them to hold), and the number of points (for :meth:`glance`)."""
        db = self.db
        db.execute("DROP TABLE IF EXISTS repeated")
        db.execute("CREATE TEMP TABLE repeated AS SELECT pk, COUNT(*) AS n FROM last GROUP BY pk HAVING n > 1")
        try:
            dups, in_dups = db.execute("SELECT COUNT(*), COALESCE(SUM(n), 0) FROM repeated").fetchone()
            self._n_points = self.trials - in_dups + dups
            if in_dups > REPEATED_TRIALS_HELD:
                return None
            points: dict[str, Point] = {}
            if dups:
                for pk, tid, values in db.execute("SELECT pk, id, vals FROM last WHERE pk IN (SELECT pk FROM repeated) "
                                                  "ORDER BY id"):  # fmt: skip
                    point = points.get(pk)
                    if point is None:
                        point = points[pk] = Point(loads(pk))
                    _file(point, tid, values)
            return points
        finally:
            db.execute("DROP TABLE repeated")

    def _grouped_points(self, flush: Callable[[Point], None]) -> None:
        db = self.db
        db.execute("DROP TABLE IF EXISTS firsts")
        db.execute("CREATE TEMP TABLE firsts (pk TEXT PRIMARY KEY, first BLOB NOT NULL)")
        db.execute("INSERT INTO firsts SELECT pk, MIN(id) FROM last GROUP BY pk")
        grouped = db.execute("SELECT last.pk, id, vals FROM last JOIN firsts ON firsts.pk = last.pk ORDER BY first, id")
        point: Point | None = None
        current = None
        for pk, tid, values in grouped:
            if pk != current:
                if point is not None:
                    flush(point)
                current, point = pk, Point(loads(pk))
            assert point is not None
            _file(point, tid, values)
        if point is not None:
            flush(point)
        db.execute("DROP TABLE firsts")

    # ------------------------------------------------------------------ what a final stage knows

    def ok_results(self) -> Iterator[tuple[str, str]]:
        """``str(key)`` and the canonical JSON of ``metrics or {}`` of each
        successful trial, sorted (``runner.stages.results_digest``'s rows; equal
        keys by their metrics' JSON), from a second private table sorted on disk."""
        db = self.db
        db.execute("DROP TABLE IF EXISTS results")
        db.execute("CREATE TEMP TABLE results (k BLOB NOT NULL, m TEXT NOT NULL)")
        db.executemany("INSERT INTO results VALUES (?, ?)", (
            (_sortable(str(base[1])), canonical_json(metrics or {}))
            for base, _, metrics in (marshal.loads(blob) for (blob,) in db.execute("SELECT row FROM last WHERE kind = 0"))))
        for k, m in db.execute("SELECT k, m FROM results ORDER BY k, m"):
            yield k.decode("utf-8", "surrogatepass"), m
        db.execute("DROP TABLE results")

    # ------------------------------------------------------------------ the best point

    def best(self, candidates: int = 50) -> dict[str, Any] | None:
        """``points.best_point(latest records, *objective)``: the points whose mean
        here is among the best ``candidates``, or ties the best, are read back and
        ranked by :func:`best_point` itself (SQLite's mean only chooses which
        points are looked at, never which one wins)."""
        if self.objective is None:
            return None
        sign = self.objective.sign
        scored = self._scored("v", sign, max(1, candidates))
        if not scored:
            return None
        offsets = self._offsets_of({pk for pk, _ in scored} | self._within("v", sign, scored[0][1]))
        return best_point([rec for _, rec in records_at(self.journal, offsets)], *self.objective)

    def _scored(self, v: str, sign: float, limit: int) -> list[tuple[str, float]]:
        """The ``limit`` points with the best mean of column ``v`` (times ``sign``: lower is better)."""
        return self.db.execute(f"SELECT pk, AVG({v}) * ? AS s FROM last WHERE {v} IS NOT NULL GROUP BY pk "
                               "ORDER BY s LIMIT ?", (sign, limit)).fetchall()  # fmt: skip

    def _within(self, v: str, sign: float, cut: float) -> set[str]:
        """The points whose mean of ``v`` times ``sign`` is at most ``cut``: means a few
        ulps apart in SQLite's sum may be equal in math.fsum's, so every near-tie is included."""
        return {pk for (pk,) in self.db.execute(
            f"SELECT pk FROM last WHERE {v} IS NOT NULL GROUP BY pk HAVING AVG({v}) * ? <= ?",
            (sign, cut + 1e-9 * max(1.0, abs(cut))))}  # fmt: skip

    def _offsets_of(self, points: set[str]) -> list[int]:
        self.db.execute("DROP TABLE IF EXISTS chosen")
        self.db.execute("CREATE TEMP TABLE chosen (pk TEXT PRIMARY KEY)")
        self.db.executemany("INSERT INTO chosen VALUES (?)", ((pk,) for pk in points))
        offsets = [off for (off,) in self.db.execute("SELECT off FROM last JOIN chosen USING (pk) ORDER BY off")]
        self.db.execute("DROP TABLE chosen")
        return offsets

    # ------------------------------------------------------------------ the terminal's tables

    def glance(self, metric: str | None, goal: str = "maximize", limit: int = 20) -> Glance:
        """What ``glance.glance(journal, metric, goal, limit)`` gives; ``metric``
        is this ledger's objective's or None."""
        if metric is not None and (self.objective is None or Objective(metric, goal) != self.objective):
            raise ValueError(f"this ledger ranks by {self.objective}, not {metric!r} ({goal})")
        sign = Objective(metric, goal).sign if metric else 1.0
        v = "v" if metric else "NULL"
        db = self.db
        shown_metrics: set[str] = set()
        numeric_metrics: set[str] = set()
        for names, into in (("shown", shown_metrics), ("numeric", numeric_metrics)):  # of the last lines only
            for (text,) in db.execute(f"SELECT DISTINCT {names} FROM last WHERE kind = 0"):
                into.update(json.loads(text))
                if len(into) >= MAX_NAMES:
                    break
        counts = dict(db.execute("SELECT kind, COUNT(*) FROM last GROUP BY kind").fetchall())
        shown = [o for (o,) in db.execute(
            f"SELECT off FROM last WHERE kind = 0 ORDER BY {v} IS NULL, {v} * ?, id LIMIT ?", (sign, limit))]  # fmt: skip
        for kind in (PRUNED, FAILED):
            shown += [o for (o,) in db.execute("SELECT off FROM last WHERE kind = ? ORDER BY id LIMIT ?", (kind, limit))]
        rows = sorted((_slim(r) for _, r in records_at(self.journal, shown)), key=lambda r: str(r.get("id")))
        n_points = self._n_points
        if n_points is None:
            n_points = db.execute("SELECT COUNT(DISTINCT pk) FROM last").fetchone()[0]
        points = None
        if n_points < self.trials:  # a point with more than one trial
            points = self._top_points(metric, goal, sign, limit, v)
        return Glance(rows, counts.get(OK, 0), counts.get(PRUNED, 0), counts.get(FAILED, 0), points, n_points,
                      shown_metrics, numeric_metrics)  # fmt: skip

    def _top_points(self, metric: str | None, goal: str, sign: float, limit: int, v: str) -> list[Point]:
        db = self.db
        chosen: set[str] = set()
        scored = self._scored(v, sign, limit) if metric else []
        if scored:
            chosen.update(self._within(v, sign, scored[-1][1]))  # ties at the cut are all read back
        if len(scored) < limit:  # then the points without a mean, by their first trial id
            chosen.update(pk for pk, _ in db.execute(
                f"SELECT pk, MIN(id) AS first FROM last GROUP BY pk HAVING COUNT({v}) = 0 ORDER BY first LIMIT ?",
                (limit - len(scored),)))  # fmt: skip
        records = [_slim(r) for _, r in records_at(self.journal, self._offsets_of(chosen))]
        return rank(aggregate(records), metric, goal)[:limit]


def _file(point: Point, tid: bytes, values: bytes | None) -> None:
    """One trial's row of ``last`` (its id and its metric values, marshalled) added to its point."""
    text = tid.decode("utf-8", "surrogatepass")
    point.trials.append(text)
    if values is not None:
        point.ok.append(text)
        for name, v in marshal.loads(values).items():
            point.values.setdefault(name, []).append(v)


def _base_row(r: dict[str, Any]) -> list[Any]:
    """A results row's cells before its params and metrics."""
    duration = (r["end"] - r["start"]) if r.get("end") and r.get("start") else ""
    return [r.get("id"), r.get("key"), r.get("status"), r.get("failure_class") or "", r.get("seed"),
            _cell(r.get("repeat")), r.get("attempts"), r.get("cached"), r.get("worker") or "", r.get("start") or "",
            r.get("end") or "", duration, (r.get("error") or "").splitlines()[0] if r.get("error") else ""]  # fmt: skip


def _sortable(text: str) -> bytes:
    """``text`` as bytes that sort as Python sorts strings (by code point; JSON may hold lone surrogates)."""
    return text.encode("utf-8", "surrogatepass")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return value


def _slim(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: rec[k] for k in SLIM_FIELDS if k in rec}
