"""Repeats of one parameter point, aggregated.

A sweep with ``repeats: 3`` runs each point three times with different seeds;
ranking single trials would pick the luckiest seed and bias "best" upward. A
*point* is one distinct set of params; its statistics are over its successful
trials: ``n``, and per numeric metric the mean and the sample standard
deviation (``None`` when ``n < 2``). The best point is chosen by the mean of
the objective; ties go to the point whose first trial id is lowest.
"""

from __future__ import annotations

import heapq
import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner._json import encoder
from runner.objective import Objective
from runner.objective import is_number as _number

# json.dumps with these options builds an encoder on every call: this one is made once (runner._json).
_POINT_KEY = encoder(sort_keys=True, separators=(",", ":"), default=str)


def point_key(params: dict[str, Any]) -> str:
    """Canonical JSON of a point's params: equal points, equal keys."""
    return _POINT_KEY(params or {})


def _key(params: dict[str, Any]) -> Any:
    """What :func:`point_key` tells apart, cheaper: for flat points of strings,
    booleans, integers and floats, their sorted items with each value's type
    (JSON tells 1, 1.0 and true apart too; a float by its repr, as -0.0 and nan
    are); the JSON key otherwise."""
    items = []
    for k, v in params.items():
        t = type(v)
        if t is float:
            items.append((k, t, repr(v)))
        elif t is str or t is int or t is bool or v is None:
            items.append((k, t, v))
        else:  # nested
            return point_key(params)
    items.sort(key=_first)  # keys are unique: only they are compared
    return tuple(items)


def _first(item: tuple[str, Any, Any]) -> str:
    return item[0]


class Point:
    """A parameter point: its params, the ids of its trials, and metric values over its successful ones."""

    __slots__ = ("ok", "params", "trials", "values")

    def __init__(self, params: dict[str, Any], trials: list[str] | None = None, ok: list[str] | None = None,
                 values: dict[str, list[float]] | None = None) -> None:  # fmt: skip
        self.params = params
        self.trials = trials if trials is not None else []  # ids of every trial of the point, in id order
        self.ok = ok if ok is not None else []  # ids of its successful trials
        self.values = values if values is not None else {}  # metric -> values over ok trials

    def __repr__(self) -> str:
        return f"Point(params={self.params!r}, trials={self.trials!r}, ok={self.ok!r}, values={self.values!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.params, self.trials, self.ok, self.values) == (
            other.params, other.trials, other.ok, other.values)  # fmt: skip

    @property
    def n(self) -> int:
        return len(self.ok)

    def mean(self, metric: str) -> float | None:
        vs = self.values.get(metric)
        return math.fsum(vs) / len(vs) if vs else None  # what statistics.fmean computes, without its overhead

    def std(self, metric: str) -> float | None:
        vs = self.values.get(metric) or []
        return statistics.stdev(vs) if len(vs) >= 2 else None


def aggregate(records: list[dict[str, Any]]) -> list[Point]:
    """One :class:`Point` per distinct params, in order of their first trial id."""
    points: dict[Any, Point] = {}
    for r in sorted(records, key=_id):
        raw = r.get("params")
        params: dict[str, Any] = raw if isinstance(raw, dict) else {}
        p = points.get(key := _key(params))
        if p is None:
            p = points[key] = Point(dict(params))
        tid = str(r.get("id"))
        p.trials.append(tid)
        if r.get("status") != "ok":
            continue
        p.ok.append(tid)
        raw_m = r.get("metrics")
        metrics: dict[str, Any] = raw_m if isinstance(raw_m, dict) else {}
        for name, v in metrics.items():
            if _number(v):
                p.values.setdefault(str(name), []).append(float(v))
    return list(points.values())


def successful(points: list[Point]) -> list[Point]:
    """What :func:`aggregate` gives for the successful trials alone, from the
    points of all trials (no second grouping)."""
    out = [Point(p.params, list(p.ok), list(p.ok), p.values) for p in points if p.ok]
    out.sort(key=lambda p: p.ok[0])
    return out


def _id(r: dict[str, Any]) -> str:
    return str(r.get("id"))


def rank(points: list[Point], metric: str | None, goal: str = "maximize") -> list[Point]:
    """Points with a mean objective, best first; then the rest, by first trial id."""
    if not metric:
        return list(points)
    means = [(p, p.mean(metric)) for p in points]
    scored = [(m, p) for p, m in means if m is not None]
    rest = [p for p, m in means if m is None]
    sign = Objective(metric, goal).sign
    scored.sort(key=lambda mp: (sign * mp[0], mp[1].trials[0]))
    return [p for _, p in scored] + rest


def top(points: list[Point], metric: str | None, goal: str = "maximize", k: int = 10, *,
        successful: bool = False) -> list[Point]:  # fmt: skip
    """``rank(points, …)[:k]`` without ranking them all; ``successful``: of the
    points of the successful trials alone (``rank(successful(points), …)[:k]``),
    without making them all."""
    if successful:
        points = [p for p in points if p.ok]
    first: Callable[[Point], str] = (lambda p: p.ok[0]) if successful else (lambda p: p.trials[0])
    if not metric:
        chosen = sorted(points, key=first)[:k] if successful else points[:k]
    else:
        sign = Objective(metric, goal).sign
        scored = [(sign * m, first(p), i) for i, p in enumerate(points) if (m := p.mean(metric)) is not None]
        chosen = [points[i] for *_, i in heapq.nsmallest(k, scored)]
        if len(chosen) < k:
            have = {id(p) for p in chosen}
            rest = [p for p in points if id(p) not in have and p.mean(metric) is None]
            chosen += sorted(rest, key=first)[: k - len(chosen)] if successful else rest[: k - len(chosen)]
    return [Point(p.params, list(p.ok), list(p.ok), p.values) for p in chosen] if successful else chosen


def best_point(records: list[dict[str, Any]], metric: str | None, goal: str = "maximize") -> dict[str, Any] | None:
    """``bundle.json``'s ``best``: the point with the best mean objective.

    ``trial`` is the point's best single trial (what ``reproduce --trials best``
    re-runs); ``value`` is the mean over the point's ``n`` successful trials.
    """
    if not metric:
        return None
    ranked = rank(aggregate(records), metric, goal)
    if not ranked or ranked[0].mean(metric) is None:
        return None
    p = ranked[0]
    by_id = {str(r.get("id")): r for r in records}
    sign = Objective(metric, goal).sign
    trial = min(
        (t for t in p.ok if _number((by_id[t].get("metrics") or {}).get(metric))),
        key=lambda t: (sign * float(by_id[t]["metrics"][metric]), t),
    )
    return {
        "trial": trial,
        "trials": list(p.ok),
        "params": p.params,
        "metric": metric,
        "goal": goal,
        "value": p.mean(metric),
        "std": p.std(metric),
        "n": p.n,
    }


def best_point_of(journal: Path, metric: str | None, goal: str = "maximize", *, candidates: int = 50) -> dict[str, Any] | None:
    """``best_point(latest_records(read_journal(journal)), metric, goal)`` in
    bounded memory, at any number of trials (:meth:`runner.bundle.ledger.Ledger.best`)."""
    if not metric:
        return None
    from runner.bundle.ledger import Ledger  # it ranks with this module's functions

    with Ledger(journal, Objective(metric, goal)) as ledger:
        return ledger.best(candidates)
