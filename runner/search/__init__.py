"""Adaptive sweeps (``sweep.method: tpe | cmaes | nsga2 | qmc``) that replay exactly.

* :mod:`runner.search.sampler`: Optuna's seeded samplers, asked in fixed-size
  generations and told results in trial order.
* :mod:`runner.search.stopping`: early-stopping thresholds, computed from earlier
  generations only, so a trial's fate never depends on its peers' speed.
* :mod:`runner.search.driver`: generations as plans (keys, cache look-ups, the
  replay of cached generations) and the generation loop a run executes.

The sequence of trials (id, params, seed, early-stopping thresholds) is a
function of the spec and of the results of earlier trials only: never of the
number of workers, their speed, or the order trials finish in.
"""

from runner.search.driver import SEARCH_FILE, AdaptiveSearch, plan_search

__all__ = ["SEARCH_FILE", "AdaptiveSearch", "plan_search"]
