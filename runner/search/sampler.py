"""Optuna's seeded samplers, asked in generations and told results in trial order.

Exact replay rests on three rules:

* Points are asked in generations of ``sweep.batch`` (default 8) trials, whatever
  the cluster: generation *g* is asked only after every trial of generation
  *g − 1* is told.
* Results are told in trial order, from the recorded trial records (metrics as
  JSON stores them), never in the order they arrived.
* The sampler is never pickled: a run builds a fresh in-memory study with the
  seeded sampler and replays the whole ask/tell sequence from recorded results
  (asking generation 0, telling its results, asking generation 1, …). Every
  sampler state (random generators, CMA-ES's optimizer, NSGA-II's generations,
  QMC's sample counter) is rebuilt exactly as a run that never stopped has it.

A choice list is given to Optuna as the indices of its choices (its values may
be lists or mappings, which Optuna's categorical distribution does not take).
"""

from __future__ import annotations

import importlib.metadata
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, cast

from runner.errors import UsageError
from runner.objective import Objective, is_number
from runner.spec.models import IntRange, LogUniform, Sweep, Uniform
from runner.sweep import normalize

DEFAULT_BATCH = 8
SEED_MASK = 0xFFFFFFFF  # numpy's seeds are 32-bit


def optuna_module() -> Any:
    """``optuna``, quiet (it logs each trial on its own stderr handler, which would
    break the progress display), or a clear error."""
    try:
        import optuna  # deferred: an optional extra, slow to import
    except ImportError:
        raise UsageError("adaptive sweeps need Optuna, which is not installed: pip install 'xrun[adaptive]'") from None
    optuna.logging.set_verbosity(logging.ERROR)
    return optuna


def optuna_version() -> str | None:
    try:
        return importlib.metadata.version("optuna")
    except importlib.metadata.PackageNotFoundError:
        return None


def batch_size(sweep: Sweep) -> int:
    return sweep.batch or DEFAULT_BATCH


def objectives_of(sweep: Sweep, fallback: Objective | None) -> list[Objective]:
    """The objectives the sampler optimizes: ``objectives`` (nsga2), else the one objective."""
    if sweep.objectives:
        return [Objective(o.metric, o.goal) for o in sweep.objectives]
    return [fallback] if fallback is not None else []


def distributions(sweep: Sweep) -> dict[str, Any]:
    """Optuna distributions of the sweep's parameters, by name in sorted order."""
    optuna = optuna_module()
    d = optuna.distributions
    out: dict[str, Any] = {}
    for name in sorted(sweep.parameters):
        p = sweep.parameters[name]
        if isinstance(p, list):
            out[name] = d.CategoricalDistribution(tuple(range(len(p))))
        elif isinstance(p, Uniform):
            lo, hi = sorted(p.uniform)
            out[name] = d.FloatDistribution(lo, hi)
        elif isinstance(p, LogUniform):
            lo, hi = sorted(p.loguniform)
            out[name] = d.FloatDistribution(lo, hi, log=True)
        elif isinstance(p, IntRange):
            lo, hi = sorted(p.int)
            out[name] = d.IntDistribution(lo, hi)
        else:  # pragma: no cover - the spec model allows nothing else
            raise TypeError(f"unknown distribution {p!r}")
    return out


def make_sampler(sweep: Sweep, n_objectives: int) -> Any:
    optuna = optuna_module()
    seed = sweep.seed & SEED_MASK
    batch = batch_size(sweep)
    s = optuna.samplers
    if sweep.method == "tpe":
        # One generation of random points, then TPE; running trials of a
        # generation count as bad ones (constant liar) so a batch spreads out.
        return s.TPESampler(seed=seed, n_startup_trials=batch, constant_liar=True)
    if sweep.method == "cmaes":
        # Its first generation is sampled independently (no history yet to adapt to).
        return s.CmaEsSampler(seed=seed, popsize=batch, n_startup_trials=0, warn_independent_sampling=False)
    if sweep.method == "nsga2":
        return s.NSGAIISampler(seed=seed, population_size=batch)
    if sweep.method == "qmc":
        return s.QMCSampler(seed=seed, qmc_type="sobol", scramble=True)
    raise ValueError(f"not an adaptive method: {sweep.method!r}")


class Search:
    """One study, asked and told in generations. Deterministic given the told results."""

    def __init__(self, sweep: Sweep, objectives: Sequence[Objective], stop_metric: str | None = None) -> None:
        if not objectives:
            raise UsageError(f"method: {sweep.method} needs an objective (sweep.objective)")
        optuna = optuna_module()
        self.sweep = sweep
        self.objectives = list(objectives)
        self.stop_metric = stop_metric
        self.dists = distributions(sweep)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental-feature and sampler warnings
            self.study = optuna.create_study(
                sampler=make_sampler(sweep, len(self.objectives)),
                directions=[o.goal for o in self.objectives],
            )
        self._asked: list[Any] = []  # Optuna trials of the generation asked last, not told yet

    def ask(self, n: int) -> list[dict[str, Any]]:
        """The next generation's ``n`` points (parameter name → value)."""
        if self._asked:
            raise RuntimeError("the previous generation was not told")
        points = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(n):
                trial = self.study.ask(self.dists)
                self._asked.append(trial)
                points.append(self.to_params(trial.params))
        return points

    def to_params(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in sorted(self.dists):
            p = self.sweep.parameters[name]
            v = raw[name]
            if isinstance(p, list):
                out[name] = p[int(v)]
            elif isinstance(p, IntRange):
                out[name] = int(v)
            else:
                out[name] = float(v)
        return normalize(out)

    def tell(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Results of the generation asked last, one record per asked point, in trial order."""
        optuna = optuna_module()
        if len(records) != len(self._asked):
            raise RuntimeError(f"told {len(records)} results for {len(self._asked)} asked points")
        state = optuna.trial.TrialState
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for trial, record in zip(self._asked, records):
                for step, value in intermediate_values(record, self.stop_metric):
                    trial.report(value, step)
                values = self.values(record)
                status = record.get("status")
                if status == "pruned":
                    self.study.tell(trial, state=state.PRUNED)
                elif status == "ok" and values is not None:
                    self.study.tell(trial, values if len(values) > 1 else values[0])
                else:
                    self.study.tell(trial, state=state.FAIL)
        self._asked = []

    def values(self, record: Mapping[str, Any]) -> list[float] | None:
        out = []
        for obj in self.objectives:
            v = obj.value(record)
            if v is None:
                return None
            out.append(v)
        return out


def intermediate_values(record: Mapping[str, Any], metric: str | None) -> list[tuple[int, float]]:
    """``(step, value)`` of ``metric`` from a trial's ``ctx.log`` history (first value per step)."""
    if metric is None:
        return []
    history = record.get("history")
    seen: dict[int, float] = {}
    for entry in history if isinstance(history, list) else []:
        if not isinstance(entry, Mapping):
            continue
        step, value = entry.get("step"), entry.get(metric)
        if isinstance(step, int) and not isinstance(step, bool) and is_number(value) and step not in seen:
            seen[step] = float(cast(float, value))
    return sorted(seen.items())
