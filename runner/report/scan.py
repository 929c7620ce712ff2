"""One streaming pass over ``trials.jsonl`` that keeps what the report's sections
show, in memory bounded by what is shown, not by the number of trials.

What is kept:

- a few records each: the first trials by id (the trials table, the search
  section), the first failed trials by id (the failures table, the failed marks
  of the plots), the best trials by the objective (the best trials table, the
  plots), a sample of the others (drawn by the plots: the trials whose id hashes
  lowest, so the sample is the same whatever the journal's order);
- counts, a few sets capped at a size (metric and parameter names, category
  labels, failure messages, workers), the timeline merged at the plot's resolution;
- per trial, a few fixed-size numbers in arrays (:class:`Columns`, 40 bytes a
  trial: no Python object per trial): the hash of its id and of its point, its
  objective, its byte offset, its duration. They find duplicate records
  (the last line of a trial wins), the points the points table and the learning
  curves show (grouped with numpy, then read back exactly), and the median duration.
"""

from __future__ import annotations

import heapq
import json
import math
import zlib
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from runner._safeio import open_regular
from runner.bundle.journal import SLIM_FIELDS, iter_journal, records_at
from runner.bundle.points import Point, _key, aggregate
from runner.bundle.points import top as top_points
from runner.objective import Objective, is_number
from runner.report.html import param_label

T = TypeVar("T")

FIRST_TRIALS = 5000  # the trials table's rows, by id
FIRST_FAILED = 5000  # failed trials drawn on the plots (the failures table shows the first 200)
BEST_TRIALS = 500  # the best trials: the best table (10) and the best tenth of a plot's sample
SAMPLE_TRIALS = 4500  # other successful trials drawn on the plots
MAX_NAMES = 200  # metric and parameter names
MAX_LABELS = 2000  # category labels of one parameter
MAX_CLASSES = 100  # failure classes
MAX_GROUPS = 1000  # distinct (class, message) failures counted one by one
GROUP_IDS = 8  # ids shown per failure message
MAX_WORKERS = 1000  # timeline rows
NOTE_IDS = 30  # ids named in a note
MERGE_ABOVE = 2000  # timeline bars; more are merged where they touch at the plot's resolution
PIXELS = 2000  # the merging's horizontal resolution
RESTARTED = "(restarted worker)"

OTHER_WORKERS = "(other workers)"


class Smallest(Generic[T]):
    """The ``k`` smallest items seen so far, holding at most ``2 k`` at any time.

    Items are tuples compared as they are: their first fields order them and a
    unique field (a journal offset, a trial id) comes before any record, so two
    records are never compared."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.items: list[T] = []
        self._above: T | None = None  # items not smaller than this cannot be kept

    def add(self, item: T) -> None:
        if self._above is not None and not item < self._above:  # type: ignore[operator]
            return
        self.items.append(item)
        if len(self.items) >= 2 * self.k + 64:
            self.items = heapq.nsmallest(self.k, self.items)  # type: ignore[type-var]
            self._above = self.items[-1]

    def wants(self, head: tuple[Any, ...]) -> bool:
        """Whether :meth:`add` would keep, now, an item that starts with ``head``
        (the fields that order it, unique to it)."""
        above: Any = self._above  # an item: a tuple
        return above is None or bool(head < above[: len(head)])

    def result(self) -> list[T]:
        """The ``k`` smallest, smallest first."""
        return heapq.nsmallest(self.k, self.items)  # type: ignore[type-var]


class Columns:
    """Fixed-size numbers per journal line (no Python object per trial)."""

    def __init__(self) -> None:
        self.id_hash = array("q")
        self.offset = array("q")
        self.point_hash = array("q")  # of the point's canonical key
        self.value = array("d")  # the objective of a successful trial, NaN otherwise
        self.ok = array("b")
        self.duration = array("d")  # trials that ran here with a start and an end (not per line)


def sample_rank(tid: str) -> tuple[int, str]:
    """Where a trial falls in the plots' sample: a hash of its id (then the id)."""
    return zlib.crc32(tid.encode("utf-8", "surrogatepass")), tid


def trial_duration(t: dict[str, Any]) -> float | None:
    s: Any = t.get("start")
    e: Any = t.get("end")
    return float(e - s) if is_number(s) and is_number(e) and e >= s else None


@dataclass
class Timeline:
    """The timeline's bars (merged at the plot's resolution when many), and what its notes say."""

    bars: list[tuple[str, float, float, str]] = field(default_factory=list)  # absolute times
    merged: bool = False
    count: int = 0  # trials drawn
    busy: float = 0.0  # seconds of bars on real workers
    t0: float = math.inf
    t1: float = -math.inf
    workers: dict[str, None] = field(default_factory=dict)
    guessed: Smallest[str] = field(default_factory=lambda: Smallest(NOTE_IDS))
    n_guessed: int = 0
    untimed: Smallest[str] = field(default_factory=lambda: Smallest(NOTE_IDS))
    n_untimed: int = 0

    def add(self, worker: str, start: float, end: float, status: str) -> None:
        self.count += 1
        self.t0, self.t1 = min(self.t0, start), max(self.t1, end)
        if worker != RESTARTED:
            self.busy += end - start
        self.bars.append((worker, start, end, status))
        if len(self.bars) > 4 * MERGE_ABOVE + 4 * PIXELS * (len(self.workers) + 1):
            self._merge()

    def _merge(self) -> None:
        """Merge with the resolution the plot has so far: merging again later
        with the final (coarser) one gives what merging every bar at once gives."""
        from runner.report.timeplots import merge_bars  # deferred: plots import matplotlib lazily

        self.bars = merge_bars(self.bars, (self.t1 - self.t0) / PIXELS)
        self.merged = True

    def final(self) -> list[tuple[str, float, float, str]]:
        """The bars, times since the first start; merged when there are many."""
        if self.merged or len(self.bars) > MERGE_ABOVE:
            self._merge()
        return [(w, s - self.t0, e - self.t0, st) for w, s, e, st in self.bars]


@dataclass
class Scan:
    """What one pass over the journal keeps (see the module's docstring)."""

    objective: Objective | None
    best_id: str | None = None
    timeout: Any = None
    total: int = 0
    n_ok: int = 0
    n_failed: int = 0
    n_pruned: int = 0
    n_cached: int = 0
    n_scored: int = 0
    columns: Columns = field(default_factory=Columns)
    first: Smallest[tuple[str, int, dict[str, Any]]] = field(default_factory=lambda: Smallest(FIRST_TRIALS))
    failed: Smallest[tuple[str, int, dict[str, Any]]] = field(default_factory=lambda: Smallest(FIRST_FAILED))
    best: Smallest[tuple[float, str, int, dict[str, Any]]] = field(default_factory=lambda: Smallest(BEST_TRIALS))
    unscored: Smallest[tuple[str, int, dict[str, Any]]] = field(default_factory=lambda: Smallest(10))
    sample: Smallest[tuple[tuple[int, str], int, dict[str, Any]]] = field(
        default_factory=lambda: Smallest(SAMPLE_TRIALS))  # fmt: skip
    best_record: tuple[int, dict[str, Any]] | None = None
    scored: list[dict[str, Any]] | None = field(default_factory=list)  # all of them, while they are few
    metrics_all: set[str] = field(default_factory=set)
    metrics_ok: set[str] = field(default_factory=set)
    numeric_ok: set[str] = field(default_factory=set)  # numeric metrics of successful trials
    param_numeric: dict[str, bool] = field(default_factory=dict)
    param_values: dict[str, dict[tuple[type, Any], Any]] = field(default_factory=dict)  # a few distinct values each
    classes: Counter[str] = field(default_factory=Counter)
    other_classes: int = 0
    groups: dict[tuple[str, str], tuple[int, Smallest[str]]] = field(default_factory=dict)
    other_groups: int = 0  # failures whose message was not counted one by one
    timeline: Timeline = field(default_factory=Timeline)
    cached_ids: Smallest[str] = field(default_factory=lambda: Smallest(NOTE_IDS + 1))
    cached_from: set[str] = field(default_factory=set)
    infer: bool = False  # no objective given: rank by the first numeric metric name (see :meth:`_infer`)
    ok_first: Smallest[tuple[str, int, dict[str, Any]]] = field(default_factory=lambda: Smallest(10))

    def add(self, offset: int, rec: dict[str, Any]) -> None:
        # Fields are read from the record itself (its slim copy holds the same values); the slim
        # copy, what the kept lists hold, is made once a list keeps the record (past the first
        # few thousand lines, most lines are kept by none).
        slim: dict[str, Any] | None = None
        tid: str = rec["id"]
        status = rec.get("status")
        cols = self.columns
        cols.id_hash.append(hash(tid))
        cols.offset.append(offset)
        raw = rec.get("params")
        params = raw if isinstance(raw, dict) else {}
        cols.point_hash.append(hash(_key(params)))
        self.total += 1
        if self.first.wants((tid, offset)):
            slim = _slim(rec)
            self.first.add((tid, offset, slim))
        if tid == self.best_id:
            if slim is None:
                slim = _slim(rec)
            self.best_record = (offset, slim)
        raw_m = rec.get("metrics")
        metrics: dict[str, Any] = raw_m if isinstance(raw_m, dict) else {}
        if len(self.metrics_all) < MAX_NAMES:
            self.metrics_all.update(metrics)
        for name, v in params.items():
            numeric = self.param_numeric.get(name)
            if numeric is None:
                if len(self.param_numeric) >= MAX_NAMES:
                    continue
                self.param_numeric[name] = numeric = True
                self.param_values[name] = {}
            values = self.param_values[name]
            if len(values) < MAX_LABELS:  # labels are made at the end, once per distinct value
                t = type(v)
                if t is float:
                    values[(t, repr(v))] = v  # -0.0 and 0.0 have labels of their own
                elif t is str or t is int or t is bool or v is None:
                    values[(t, v)] = v
                else:  # a list or a dict
                    label = param_label(v)
                    values[(str, label)] = label
            if numeric and not is_number(v):
                self.param_numeric[name] = False
        value = math.nan
        if status == "ok":
            self.n_ok += 1
            if len(self.metrics_ok) < MAX_NAMES:
                self.metrics_ok.update(metrics)
                if self.objective is None or self.infer:
                    names = [m for m, v in metrics.items() if is_number(v)]
                    if self.infer and names:
                        self._infer(min(names))
                    self.numeric_ok.update(names)
            if self.infer and self.ok_first.wants((tid, offset)):
                if slim is None:
                    slim = _slim(rec)
                self.ok_first.add((tid, offset, slim))
            objective = self.objective
            if objective is None:
                v = None
            elif raw_m is metrics:  # a dict: Objective.value without its Mapping check
                v = objective.value_in(metrics)
            else:
                v = objective.value(rec)
            if v is None:
                if self.unscored.wants((tid, offset)):
                    if slim is None:
                        slim = _slim(rec)
                    self.unscored.add((tid, offset, slim))
            else:
                value = v
                self.n_scored += 1
                assert objective is not None
                signed = objective.sign * v
                if self.best.wants((signed, tid, offset)):
                    if slim is None:
                        slim = _slim(rec)
                    self.best.add((signed, tid, offset, slim))
                rank = sample_rank(tid)
                if self.sample.wants((rank, offset)):
                    if slim is None:
                        slim = _slim(rec)
                    self.sample.add((rank, offset, slim))
                if self.scored is not None:
                    if slim is None:
                        slim = _slim(rec)
                    self.scored.append(slim)
                    if len(self.scored) > BEST_TRIALS + SAMPLE_TRIALS:
                        self.scored = None
        elif status == "pruned":
            self.n_pruned += 1
        else:
            self.n_failed += 1
            self._failure(tid, offset, slim if slim is not None else _slim(rec))
        cols.value.append(value)
        cols.ok.append(status == "ok")
        if rec.get("cached"):
            self.n_cached += 1
            self.cached_ids.add(tid)
            if rec.get("cached_from") and len(self.cached_from) < NOTE_IDS:
                self.cached_from.add(str(rec["cached_from"]))
        else:
            self._ran(tid, rec)

    def _infer(self, name: str) -> None:
        """``name`` is a numeric metric of a successful trial: when it comes
        before every such name seen so far, it is the objective from now on
        (maximized), as a second pass with ``Objective(sorted(numeric_ok)[0])``
        would rank. No earlier successful trial has it as a number (else it
        would have been seen), so all of them are valueless under it."""
        if self.objective is not None and self.objective.metric <= name:
            return
        self.objective = Objective(name)
        self.n_scored = 0
        self.best = Smallest(BEST_TRIALS)
        self.sample = Smallest(SAMPLE_TRIALS)
        self.scored = []
        self.unscored = Smallest(10)
        for item in self.ok_first.items:
            self.unscored.add(item)
        self.columns.value = array("d", [math.nan]) * len(self.columns.value)

    def _failure(self, tid: str, offset: int, slim: dict[str, Any]) -> None:
        self.failed.add((tid, offset, slim))
        cls = str(slim.get("failure_class") or slim.get("status") or "error")
        if cls in self.classes or len(self.classes) < MAX_CLASSES:
            self.classes[cls] += 1
        else:
            self.other_classes += 1
        key = (cls, str(slim.get("error") or "").partition("\n")[0][:1000])
        group = self.groups.get(key)
        if group is None:
            if len(self.groups) >= MAX_GROUPS:
                self.other_groups += 1
                return
            group = (0, Smallest(GROUP_IDS + 1))
        group[1].add(tid)
        self.groups[key] = (group[0] + 1, group[1])

    def _ran(self, tid: str, t: dict[str, Any]) -> None:
        tl = self.timeline
        s: Any = t.get("start")
        e: Any = t.get("end")
        if is_number(s) and is_number(e) and e >= s:  # trial_duration(t) is not None
            self.columns.duration.append(float(e - s))
            worker = worker_label(t.get("worker"))
            if worker not in tl.workers and len(tl.workers) >= MAX_WORKERS:
                worker = OTHER_WORKERS
            tl.workers[worker] = None
            tl.add(worker, float(s), float(e), _status(t))
            return
        end: Any = t.get("end")
        if t.get("status") == "timeout" and is_number(end) and is_number(self.timeout):
            tl.n_guessed += 1
            tl.guessed.add(tid)
            tl.add(RESTARTED, float(end) - float(self.timeout), float(end), _status(t))
        else:
            tl.n_untimed += 1
            tl.untimed.add(tid)

    # ------------------------------------------------------------------ after the pass

    def param_labels(self, name: str) -> set[str]:
        """The labels of the values seen of a parameter (at most :data:`MAX_LABELS` values)."""
        return {param_label(v) for v in self.param_values.get(name, {}).values()}

    def plot_trials(self) -> list[dict[str, Any]]:
        """The successful trials the plots draw, in id order: the best tenth of
        the plots' budget, a sample of the rest, and the best trial."""
        keep: dict[str, dict[str, Any]] = {}
        if self.scored is not None:  # all of them
            keep = {str(rec["id"]): rec for rec in self.scored}
        else:
            for _, tid, _, rec in self.best.result()[: (BEST_TRIALS + SAMPLE_TRIALS) // 10]:
                keep[tid] = rec
            for (_, tid), _, rec in self.sample.result():
                keep[tid] = rec
        if self.best_record is not None and self.objective and self.objective.value(self.best_record[1]) is not None \
                and self.best_record[1].get("status") == "ok":  # fmt: skip
            keep[str(self.best_record[1]["id"])] = self.best_record[1]
        return [keep[k] for k in sorted(keep)]

    def ranked(self, k: int) -> list[dict[str, Any]]:
        """The first ``k`` of ``Objective.rank`` over the successful trials."""
        if self.objective is None:
            return [rec for _, _, rec in self.unscored.result()[:k]]
        out = [rec for *_, rec in self.best.result()[:k]]
        return out + [rec for _, _, rec in self.unscored.result()[: k - len(out)]]

    def median_duration(self) -> tuple[int, float, float, float] | None:
        """(count, total, median, longest) of the trials that ran here."""
        d = self.columns.duration
        if not d:
            return None
        import numpy as np  # deferred: only for a report

        a = np.frombuffer(d, dtype=np.float64)
        # the upper median, as sorted(durations)[len // 2] gives
        mid = float(np.partition(a, len(a) // 2)[len(a) // 2])
        return len(a), math.fsum(d), mid, float(a.max())

    def offsets(self) -> dict[str, int]:
        """Journal offsets of the records kept, to read their history back."""
        out: dict[str, int] = {}
        for tid, off, _ in [*self.first.items, *self.failed.items, *self.unscored.items]:
            out[tid] = off
        for _, tid, off, _ in self.best.items:
            out[tid] = off
        for (_, tid), off, _ in self.sample.items:
            out[tid] = off
        return out


def _slim(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: rec[k] for k in SLIM_FIELDS if k in rec}


def _status(t: dict[str, Any]) -> str:
    return str(t.get("failure_class") or t.get("status") or "error")


def worker_label(address: Any) -> str:
    """A worker address without its ``tcp://``."""
    if address is None:
        return "(no worker)"
    s = str(address)
    return s.split("://", 1)[1] if "://" in s else s


def scan(path: Path, objective: Objective | None, best_id: str | None, timeout: Any,
         skip: set[int] | None = None) -> Scan:  # fmt: skip
    """One pass over the journal at ``path`` (lines at the offsets in ``skip`` left out)."""
    s = Scan(objective=objective, best_id=best_id, timeout=timeout, infer=objective is None)
    for offset, rec in iter_journal(path):
        if skip and offset in skip:
            continue
        s.add(offset, rec)
    return s


def last_line(path: Path, s: Scan, tid: str | None) -> tuple[int, dict[str, Any]] | None:
    """(offset, slim record) of the last line of trial ``tid`` among those ``s``
    was fed (what ``Scan.best_record`` holds for its ``best_id``)."""
    if tid is None or not s.columns.id_hash:
        return None
    import numpy as np  # deferred: only for a report

    hashes = np.frombuffer(s.columns.id_hash, dtype=np.int64)
    offsets = np.frombuffer(s.columns.offset, dtype=np.int64)[hashes == hash(tid)]
    found = None
    for offset, rec in records_at(path, [int(o) for o in offsets]):  # in file order: the last one wins
        if rec["id"] == tid:
            found = (offset, {k: rec[k] for k in SLIM_FIELDS if k in rec})
    return found


def superseded(path: Path, s: Scan) -> set[int]:
    """Offsets of lines a later line of the same trial replaces (none in most bundles)."""
    import numpy as np  # deferred: only for a report

    hashes = np.frombuffer(s.columns.id_hash, dtype=np.int64)
    if len(hashes) < 2:
        return set()
    _, first, counts = np.unique(hashes, return_index=True, return_counts=True)
    if counts.max() < 2:
        return set()
    dup = np.isin(hashes, np.unique(hashes[first[counts > 1]]))
    offsets = np.frombuffer(s.columns.offset, dtype=np.int64)[dup]
    last: dict[str, int] = {}
    older: set[int] = set()
    for offset, rec in records_at(path, [int(o) for o in offsets]):  # the same hash: compare the ids themselves
        tid = rec["id"]
        if tid in last:
            older.add(last[tid])
        last[tid] = offset
    return older


def top_points_of(path: Path, s: Scan, k: int, *, successful: bool = False,
                  offsets: dict[str, int] | None = None) -> tuple[list[Point], int, int]:  # fmt: skip
    """``(points.top(aggregate(records), …, k), number of points, most trials of one point)``
    (``offsets``: filled with the journal offsets of the trials of the points read)
    without holding every point: the points are grouped by the hash of their key
    with numpy, ranked by their mean objective, and only the candidates for the
    first ``k`` (ties included) are read back and aggregated exactly."""
    import numpy as np  # deferred: only for a report

    cols = s.columns
    if not cols.point_hash:
        return [], 0, 0
    ph = np.frombuffer(cols.point_hash, dtype=np.int64)
    val = np.frombuffer(cols.value, dtype=np.float64)
    ok = np.frombuffer(cols.ok, dtype=np.int8).astype(bool)
    off = np.frombuffer(cols.offset, dtype=np.int64)
    uniq, inverse, sizes = np.unique(ph, return_inverse=True, return_counts=True)
    n_points, repeats = len(uniq), int(sizes.max())
    rows = ok if successful else np.ones(len(ph), dtype=bool)
    groups = np.unique(inverse[rows])  # the points considered
    scored = ~np.isnan(val) & rows
    sums = np.bincount(inverse[scored], weights=val[scored], minlength=len(uniq))
    counts = np.bincount(inverse[scored], minlength=len(uniq))
    candidates: set[int]
    if s.objective is None:
        candidates = set()
    else:
        has = groups[counts[groups] > 0]
        key = s.objective.sign * (sums[has] / counts[has])
        if len(has) > k:
            cut = np.partition(key, k - 1)[k - 1]
            has = has[key <= cut]  # ties at the cut stay: the exact ranking breaks them
        candidates = {int(g) for g in has}
    if len(candidates) < k:
        # Points without a mean come next, by their first trial id: in the order
        # the first trials by id meet them, when those are every trial considered;
        # else (a few points hold all of them) from one more pass over the others.
        wanted = [o for _, o, r in s.first.result() if not successful or r.get("status") == "ok"]
        extra = 0
        if len(wanted) >= int(rows.sum()):
            for i in _line_indices(off, wanted):
                g = int(inverse[i])
                if g not in candidates and (s.objective is None or counts[g] == 0):
                    candidates.add(g)
                    extra += 1
                    if extra >= k:
                        break
        else:
            eligible = rows & ~np.isin(inverse, np.fromiter(candidates, dtype=np.int64, count=len(candidates)))
            if s.objective is not None:
                eligible &= counts[inverse] == 0
            candidates.update(_first_groups_by_id(path, off, inverse, eligible, k))
    lines = np.isin(inverse, np.fromiter(candidates, dtype=np.int64, count=len(candidates)))
    slim = []
    for o, r in records_at(path, [int(o) for o in off[lines]]):
        slim.append({k2: r[k2] for k2 in SLIM_FIELDS if k2 in r})
        if offsets is not None:
            offsets[r["id"]] = o  # the history of the points' trials can be read back
    metric = s.objective.metric if s.objective else None
    goal = s.objective.goal if s.objective else "maximize"
    points = aggregate(slim)
    return top_points(points, metric, goal, k, successful=successful), n_points, repeats


def _first_groups_by_id(path: Path, off: Any, inverse: Any, eligible: Any, n: int) -> list[int]:
    """The ``n`` groups of the ``eligible`` lines whose smallest trial id is
    smallest: ids read back from the journal into a private temporary SQLite
    database on disk (memory stays flat; UTF-8 byte order is code point order)."""
    import sqlite3

    import numpy as np  # deferred: only for a report

    idx = np.flatnonzero(eligible)
    idx = idx[np.argsort(off[idx], kind="stable")]  # read in file order
    db = sqlite3.connect("")  # deleted when closed
    try:
        db.execute("CREATE TABLE t (g INTEGER NOT NULL, id TEXT NOT NULL)")

        def rows() -> Iterator[tuple[int, str]]:
            with open_regular(path) as fh:
                for i in idx:
                    fh.seek(int(off[i]))
                    try:
                        rec = json.loads(fh.readline())
                    except ValueError:
                        continue
                    if isinstance(rec, dict) and isinstance(rec.get("id"), str):
                        yield int(inverse[i]), rec["id"]

        db.executemany("INSERT INTO t VALUES (?, ?)", rows())
        return [g for g, _ in db.execute("SELECT g, MIN(id) AS m FROM t GROUP BY g ORDER BY m LIMIT ?", (n,))]
    finally:
        db.close()


def _line_indices(offsets: Any, wanted: list[int]) -> list[int]:
    import numpy as np  # deferred: only for a report

    order = np.argsort(offsets, kind="stable")
    pos = np.searchsorted(offsets[order], np.asarray(wanted, dtype=np.int64))
    idx = order[np.minimum(pos, len(order) - 1)]
    # in the order of ``wanted`` (trial id order)
    return [int(i) for i, w in zip(idx, wanted) if offsets[i] == w]
