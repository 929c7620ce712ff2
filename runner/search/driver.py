"""Generations of an adaptive sweep as plans, and the generation loop of a run.

* :func:`plan_search` replays the search from the trial cache: it asks
  generation 0, looks its trials up, tells their cached results, asks
  generation 1, … and stops at the first generation with a trial not cached.
  What it decided is the plan (``xrun plan`` prints it); the rest of the budget
  is not decided yet, since it depends on results still to come.
* :meth:`AdaptiveSearch.run` executes that generation and the following ones,
  each as a normal batch of trials through the executor (caching, retries,
  lost workers and the journal work as for any sweep), telling each finished
  generation before asking the next.
* ``search.json`` in the bundle records every suggestion (trial id, generation,
  params, seed, key, early-stopping thresholds); it is rewritten as each
  generation is decided and told, so a killed run's bundle has it too.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from runner.bundle.write import BundleWriter
from runner.cache import TrialCache
from runner.execute import Event, Executor
from runner.objective import objective_of
from runner.plan import Plan, PlannedTrial, look_up, plan_trial
from runner.search.sampler import Search, batch_size, objectives_of, optuna_version
from runner.search.stopping import stop_objective, thresholds
from runner.sweep import TrialPoint, derive_seed

log = logging.getLogger(__name__)

SEARCH_FILE = "search.json"
SEARCH_VERSION = 1


class AdaptiveSearch:
    """The decided generations of an adaptive sweep and the sampler behind them."""

    def __init__(self, plan: Plan) -> None:
        sweep = plan.spec.sweep
        self.plan = plan
        self.method = sweep.method
        self.seed = sweep.seed
        self.budget = sweep.samples or 0
        self.batch = batch_size(sweep)
        objective = objective_of(plan.spec)
        self.objectives = objectives_of(sweep, objective)
        self.stop = sweep.early_stop
        self.stop_objective = stop_objective(self.stop, objective) if self.stop else None
        metric = self.stop_objective.metric if self.stop_objective else None
        self.search = Search(sweep, self.objectives, stop_metric=metric)
        self.generations: list[list[PlannedTrial]] = []
        self.told: list[dict[str, Any]] = []  # records of told generations, in trial order
        self.open = False  # the last generation is decided and not told yet

    # ------------------------------------------------------------ deciding

    @property
    def decided(self) -> int:
        return sum(len(g) for g in self.generations)

    @property
    def finished(self) -> bool:
        """Every trial of the budget decided and told."""
        return self.decided >= self.budget and not self.open

    def decide(self) -> list[PlannedTrial]:
        """Ask the next generation; its trials with keys (not looked up)."""
        if self.open:
            raise RuntimeError("the last generation was not told")
        n = min(self.batch, self.budget - self.decided)
        if n <= 0:
            return []
        table = thresholds(self.stop, self.stop_objective, self.told) if self.stop and self.stop_objective else None
        start = self.decided
        trials = [
            plan_trial(self.plan, TrialPoint(start + i, params, derive_seed(self.seed, params, 0), 0), table)
            for i, params in enumerate(self.search.ask(n))
        ]
        self.generations.append(trials)
        self.open = True
        return trials

    def tell(self, records: Mapping[str, Mapping[str, Any]]) -> None:
        """Results of the open generation, by trial id (any order: told in trial order)."""
        gen = self.generations[-1]
        # As JSON stores them: a live result and its cached copy tell the same numbers.
        ordered = [json.loads(json.dumps(dict(records[t.id]), default=str)) for t in gen]
        self.search.tell(ordered)
        self.told.extend(ordered)
        self.open = False

    def cached_records(self, trials: list[PlannedTrial]) -> dict[str, dict[str, Any]] | None:
        """The cached results of ``trials`` by id, or None when one is not cached."""
        out = {}
        for t in trials:
            entry = self.plan.cached.get(t.key)
            if entry is None:
                return None
            out[t.id] = entry
        return out

    # ------------------------------------------------------------ recording

    def summary(self) -> dict[str, Any]:
        """For ``search.json`` and ``xrun plan``."""
        return {
            "search_version": SEARCH_VERSION,
            "method": self.method,
            "seed": self.seed,
            "batch": self.batch,
            "budget": self.budget,
            "optuna": optuna_version(),
            "objectives": [{"metric": o.metric, "goal": o.goal} for o in self.objectives],
            "decided": self.decided,
            "told": len(self.told),
            "generations": [
                {
                    "generation": g,
                    "told": g < len(self.generations) - 1 or not self.open,
                    "early_stop": trials[0].early_stop if trials else None,
                    "trials": [
                        {"id": t.id, "params": t.point.params, "seed": t.point.seed, "key": t.key} for t in trials
                    ],
                }
                for g, trials in enumerate(self.generations)
            ],
        }

    def progress(self) -> dict[str, Any]:
        """How much of the search is known: for ``xrun plan``."""
        complete = len(self.generations) - (1 if self.open else 0)
        out: dict[str, Any] = {
            "method": self.method, "budget": self.budget, "batch": self.batch,
            "generations_known": complete, "trials_known": len(self.told),
            "open_generation": None, "undecided": self.budget - self.decided,
        }  # fmt: skip
        if self.open:
            gen = self.generations[-1]
            cached = sum(1 for t in gen if t.key in self.plan.cached)
            out["open_generation"] = {"generation": len(self.generations) - 1, "trials": len(gen), "cached": cached}
        return out

    def brief(self) -> dict[str, Any]:
        """For ``bundle.json``'s ``sweep``."""
        return {"batch": self.batch, "generations": len(self.generations), "decided": self.decided,
                "optuna": optuna_version()}  # fmt: skip

    def describe(self) -> str:
        """One line for ``xrun plan``."""
        p = self.progress()
        line = (f"{self.method}, {self.budget} trials in generations of {self.batch}: "
                f"{p['generations_known']} generation(s) cached ({p['trials_known']} trials)")  # fmt: skip
        gen = p["open_generation"]
        if gen:
            line += f"; generation {gen['generation']}: {gen['cached']} of {gen['trials']} cached, {gen['trials'] - gen['cached']} to run"
        if p["undecided"]:
            line += f"; {p['undecided']} trial(s) not decided yet (asked once earlier generations' results are in)"
        return line

    def write(self, writer: BundleWriter) -> None:
        writer.write_json(SEARCH_FILE, self.summary())

    # ------------------------------------------------------------ running

    def run(self, executor: Executor, client: Any, check: Callable[[], str | None] | None = None) -> None:
        """Run the open generation and the next ones until the budget is spent,
        the run is stopped, or a generation has trials that did not finish."""
        plan = self.plan
        results: dict[str, dict[str, Any]] = {}
        forward = executor.on_event

        def collect(event: Event) -> None:
            if event.kind != "retry":
                results[str(event.record.get("id"))] = event.record
            forward(event)

        executor.on_event = collect
        full = executor.plan
        try:
            first = True
            while self.open:
                gen = self.generations[-1]
                executor.plan = dataclasses.replace(full, trials=gen)
                if not first:  # the first one's cached trials were recorded with the whole plan's
                    executor.record_cached()
                first = False
                if executor.plan.pending:
                    executor.run(client, check=check)
                outcome = executor.outcome
                if outcome.interrupted or outcome.stopped_early or executor.stop.is_set():
                    break
                known = {t.id: results.get(t.id) or plan.cached.get(t.key) for t in gen}
                missing = [i for i, r in known.items() if r is None]
                if missing:  # not run (stopped): nothing more is decided
                    log.info("generation %d: %d trial(s) did not finish; stopping the search", len(self.generations) - 1, len(missing))
                    break
                self.tell({i: r for i, r in known.items() if r is not None})
                new = self.decide()
                if new:
                    if plan.use_cache:
                        look_up(plan, new, executor.cache)
                    assert isinstance(plan.trials, list)  # an adaptive sweep's trials are its generations
                    plan.trials.extend(new)
                self.write(executor.writer)
        finally:
            executor.on_event = forward
            executor.plan = full
            self.write(executor.writer)


def plan_search(plan: Plan, cache: TrialCache | None = None) -> AdaptiveSearch:
    """Decide the generations the trial cache already answers, and the first one it does not.

    ``plan.trials`` becomes their trials; ``plan.search`` the search."""
    search = AdaptiveSearch(plan)
    plan.search = search
    if plan.use_cache:
        cache = cache or TrialCache()
    while True:
        gen = search.decide()
        if not gen:
            break
        if plan.use_cache and cache is not None:
            look_up(plan, gen, cache)
        assert isinstance(plan.trials, list)  # an adaptive sweep's trials are its generations
        plan.trials.extend(gen)
        cached = search.cached_records(gen)
        if cached is None:
            break
        search.tell(cached)
    return search


def replay(plan: Plan, records: list[dict[str, Any]], recorded: Any) -> tuple[AdaptiveSearch, list[str]]:
    """Ask the search again, telling it a bundle's recorded results, and compare
    each generation with the bundle's ``search.json`` (``recorded``, untrusted).

    Returns the search (its trials carry the early-stopping tables the run gave
    them) and the differences found, one line each."""
    search = AdaptiveSearch(plan)
    plan.search = search
    by_id = {str(r.get("id")): r for r in records}
    gens = recorded.get("generations") if isinstance(recorded, dict) else None
    problems: list[str] = []
    if not isinstance(gens, list):
        problems.append(f"the bundle has no readable {SEARCH_FILE}: suggestions not compared")
        gens = []
    for g, old in enumerate(gens):
        trials = search.decide()
        if not trials:
            problems.append(f"the bundle records {len(gens)} generations, more than the budget of {search.budget} trials holds")
            break
        old = old if isinstance(old, dict) else {}
        old_trials = [r if isinstance(r, dict) else {} for r in old.get("trials") or []] if isinstance(old.get("trials"), list) else []
        if len(old_trials) != len(trials):
            problems.append(f"generation {g}: {len(trials)} trials replayed, {len(old_trials)} recorded")
        for t, rec in zip(trials, old_trials):
            if rec.get("id") != t.id or rec.get("params") != t.point.params or rec.get("seed") != t.point.seed:
                problems.append(
                    f"{t.id} (generation {g}): replayed {t.point.params} seed {t.point.seed}, "
                    f"recorded {rec.get('id')} {rec.get('params')} seed {rec.get('seed')}"
                )
        if old.get("early_stop") != trials[0].early_stop:
            problems.append(f"generation {g}: replayed early-stopping thresholds differ from the recorded ones")
        if problems:
            break  # later generations follow from different points: nothing more to compare
        results = {t.id: by_id[t.id] for t in trials if t.id in by_id}
        if len(results) < len(trials) or old.get("told") is not True:
            break  # the recorded run did not finish this generation
        search.tell(results)
    return search, problems
