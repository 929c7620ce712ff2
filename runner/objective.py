"""The objective of a sweep, and ranking by it.

One definition, used by the plan (what the executor tracks as the running
best), the bundle's best point, the report, the CLI tables, ``xrun diff`` and
``xrun reproduce --trials best``:

- the objective is ``sweep.objective`` when declared, else the first of
  ``sweep.objectives`` (nsga2: tables rank by it, the report also draws the
  Pareto front), else the first scorer of an sklearn trial (maximized), else none;
- a trial's value is its metric when that is a finite number (not a boolean);
- best first means highest for ``maximize`` and lowest for ``minimize``; ties
  and trials without a value are ordered by trial id, valueless ones last.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from runner.spec import Spec


def is_real(v: Any) -> bool:
    """An int or a float, finite or not (a boolean is not)."""
    t = type(v)
    if t is float or t is int:  # the common cases first: called for every metric of every trial
        return True
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """A metric value that can be ranked and averaged: finite, not a boolean."""
    t = type(v)
    if t is float or t is int:  # the common cases first: called for every metric of every trial
        return math.isfinite(v)
    return is_real(v) and math.isfinite(v)


class Objective(NamedTuple):
    """``(metric, goal)``; unpacks like the pair it replaces."""

    metric: str
    goal: str = "maximize"  # maximize | minimize

    @property
    def sign(self) -> float:
        """Multiplies a value so that smaller is better (for sort keys)."""
        return -1.0 if self.goal == "maximize" else 1.0

    def value(self, record: Mapping[str, Any]) -> float | None:
        metrics = record.get("metrics")
        return self.value_in(metrics) if isinstance(metrics, Mapping) else None

    def value_in(self, metrics: Mapping[str, Any]) -> float | None:
        """The objective's value among a record's ``metrics`` (a mapping)."""
        v: Any = metrics.get(self.metric)
        return float(v) if is_number(v) else None

    def better(self, value: float, than: float) -> bool:
        return value > than if self.goal == "maximize" else value < than

    def rank(self, records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """Trial records best first (ties by id), then those without a value, by id."""
        sign = self.sign
        scored: list[tuple[float, str, Mapping[str, Any]]] = []
        rest: list[tuple[str, Mapping[str, Any]]] = []
        for r in records:  # one value per record
            v = self.value(r)
            if v is None:
                rest.append((str(r.get("id")), r))
            else:
                scored.append((sign * v, str(r.get("id")), r))
        scored.sort(key=_two)
        rest.sort(key=_one)
        return [r for *_, r in scored] + [r for _, r in rest]


def _two(item: tuple[float, str, Any]) -> tuple[float, str]:
    return item[0], item[1]


def _one(item: tuple[str, Any]) -> str:
    return item[0]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _goal(goal: Any) -> str:
    return "minimize" if goal == "minimize" else "maximize"


def objective_of(spec: Spec) -> Objective | None:
    """The objective of a spec: declared, else an sklearn trial's first scorer."""
    obj = spec.sweep.objective or (spec.sweep.objectives[0] if spec.sweep.objectives else None)
    if obj is not None:
        return Objective(obj.metric, obj.goal)
    sklearn = getattr(spec.trial, "sklearn", None)  # an sklearn trial
    if sklearn is not None:
        return Objective(sklearn.scoring[0], "maximize")
    return None


def recorded_objective(best: Any, resolved: Any) -> Objective | None:
    """The objective of a bundle, from its files (which may come from anyone):
    ``bundle.json``'s ``best``, else the resolved spec's declared objective,
    else its sklearn trial's first scorer."""
    best = _mapping(best)
    resolved = _mapping(resolved)
    sweep = _mapping(resolved.get("sweep"))
    several = sweep.get("objectives")
    declared = _mapping(sweep.get("objective") or (several[0] if isinstance(several, list) and several else None))
    metric = best.get("metric") or declared.get("metric")
    if not metric:
        scoring = _mapping(_mapping(resolved.get("trial")).get("sklearn")).get("scoring")
        if isinstance(scoring, list) and scoring and isinstance(scoring[0], str):
            return Objective(scoring[0], "maximize")
        return None
    return Objective(str(metric), _goal(best.get("goal") or declared.get("goal")))
