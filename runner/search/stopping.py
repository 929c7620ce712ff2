"""Early stopping that replays: thresholds frozen at generation boundaries.

A trial of generation *g* is given, before it starts, a table of rungs
``[[step, threshold], …]`` computed only from the recorded histories of the
trials of generations ``< g``. The worker stops the trial (status ``pruned``)
the first time it logs the metric at or after a rung's step with a value worse
than the rung's threshold. Its fate therefore depends on its own values and on
earlier generations' results, never on which of its peers finish first; the
table is part of the trial's key, so a pruned result is cached like any other.

* ``halving`` (successive halving, as Optuna's ``SuccessiveHalvingPruner``):
  rungs at ``min_steps · reduction^k`` below ``max_steps``; a trial continues
  past a rung when its value there is among the best ``1/reduction`` of the
  values earlier trials (finished or pruned) had at that rung.
* ``median`` (as Optuna's ``MedianPruner``): at each step earlier finished
  trials logged, from ``min_steps`` on, a trial continues while its best value
  so far is at least as good as the median of theirs at that step.

A rung needs values of at least ``reduction`` (halving) or 2 (median) earlier
trials; generation 0 therefore runs every trial to the end.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from runner.objective import Objective
from runner.search.sampler import intermediate_values
from runner.spec.models import EarlyStop

MAX_RUNGS = 1000  # median: at most this many steps are judged (evenly spaced)


def stop_objective(stop: EarlyStop, objective: Objective | None) -> Objective:
    metric = stop.metric or (objective.metric if objective else None)
    goal = stop.goal or (objective.goal if objective else "maximize")
    if metric is None:  # the spec check requires one
        raise ValueError("early_stop needs a metric")
    return Objective(metric, goal)


def halving_steps(stop: EarlyStop) -> list[int]:
    steps, step = [], stop.min_steps
    limit = stop.max_steps or 0
    while step < limit:
        steps.append(step)
        step *= stop.reduction
    return steps


def value_at(values: Sequence[tuple[int, float]], step: int) -> float | None:
    """The first value logged at or after ``step`` (what the worker judges there)."""
    return next((v for s, v in values if s >= step), None)


def best_until(values: Sequence[tuple[int, float]], step: int, objective: Objective) -> float | None:
    seen = [v for s, v in values if s <= step]
    if not seen:
        return None
    return max(seen) if objective.goal == "maximize" else min(seen)


def thresholds(stop: EarlyStop, objective: Objective, earlier: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The table given to the next generation's trials; None when no rung has enough earlier values."""
    histories = [(r.get("status"), intermediate_values(r, objective.metric)) for r in earlier]
    rungs: list[list[float]] = []
    if stop.rule == "halving":
        for step in halving_steps(stop):
            values = [v for status, h in histories if status in ("ok", "pruned")
                      if (v := value_at(h, step)) is not None]  # fmt: skip
            if len(values) < stop.reduction:
                continue
            values.sort(reverse=objective.goal == "maximize")
            keep = max(1, len(values) // stop.reduction)
            rungs.append([step, values[keep - 1]])
    else:
        finished = [h for status, h in histories if status == "ok"]
        steps = sorted({s for h in finished for s, _ in h if s >= stop.min_steps
                        and (stop.max_steps is None or s < stop.max_steps)})  # fmt: skip
        if len(steps) > MAX_RUNGS:
            steps = [steps[i * len(steps) // MAX_RUNGS] for i in range(MAX_RUNGS)]
        for step in steps:
            values = [v for h in finished if (v := dict(h).get(step)) is not None]
            if len(values) >= 2:
                rungs.append([step, statistics.median(values)])
    if not rungs:
        return None
    return {"rule": stop.rule, "metric": objective.metric, "goal": objective.goal, "rungs": rungs}
