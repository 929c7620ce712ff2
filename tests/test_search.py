"""Adaptive sweeps without a cluster: the sampler's replay, early-stopping
thresholds and the spec's rules. The runs on real Dask workers are in
tests/test_search_runs.py."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.objective import Objective
from runner.search.sampler import Search
from runner.search.stopping import thresholds
from runner.spec.models import EarlyStop, Sweep

PARAMS = {"x": {"uniform": [-3.0, 3.0]}, "depth": {"int": [1, 12]}, "lr": {"loguniform": [1e-4, 1.0]}}
CHOICE = {"kind": ["a", [1, 2], {"k": None}]}  # values Optuna's categoricals cannot hold themselves


def sweep(method: str, **extra) -> Sweep:
    params = {**PARAMS, **(CHOICE if method != "cmaes" else {})}
    if method == "nsga2" and "objective" not in extra:
        extra.setdefault("objectives", [{"metric": "y", "goal": "minimize"}, {"metric": "z", "goal": "minimize"}])
    else:
        extra.setdefault("objective", {"metric": "y", "goal": "minimize"})
    return Sweep(method=method, samples=24, parameters=params, seed=11, **extra)


def objectives(s: Sweep) -> list[Objective]:
    if s.objectives:
        return [Objective(o.metric, o.goal) for o in s.objectives]
    assert s.objective is not None
    return [Objective(s.objective.metric, s.objective.goal)]


def f(p: dict) -> dict:
    return {"y": (p["x"] - 1) ** 2 + 0.1 * p["depth"] + math.log10(p["lr"]) ** 2, "z": abs(p["x"] + 1)}


def sequence(s: Sweep, generations: int, order=None) -> list[dict]:
    search = Search(s, objectives(s))
    out: list[dict] = []
    for _ in range(generations):
        points = search.ask(8)
        out += points
        records = [{"status": "ok", "metrics": f(p)} for p in points]
        search.tell(records)
    return out


@pytest.mark.parametrize("method", ["tpe", "cmaes", "nsga2", "qmc"])
def test_a_fresh_search_told_the_same_results_asks_the_same_points(method: str) -> None:
    s = sweep(method)
    a, b = sequence(s, 3), sequence(s, 3)
    assert a == b
    assert len({repr(sorted(p.items())) for p in a}) > 8  # and it moves: not one point asked again and again
    for p in a:
        assert set(p) == set(s.parameters)
        assert -3.0 <= p["x"] <= 3.0 and 1 <= p["depth"] <= 12 and isinstance(p["depth"], int)
        if "kind" in p:
            assert p["kind"] in CHOICE["kind"]


def test_the_seed_changes_the_sequence() -> None:
    assert sequence(sweep("tpe"), 2) != sequence(Sweep(**{**sweep("tpe").model_dump(), "seed": 12}), 2)


def test_results_change_the_next_generation_but_not_the_first() -> None:
    s = sweep("tpe")
    search_a, search_b = Search(s, objectives(s)), Search(s, objectives(s))
    first_a, first_b = search_a.ask(8), search_b.ask(8)
    assert first_a == first_b
    search_a.tell([{"status": "ok", "metrics": f(p)} for p in first_a])
    search_b.tell([{"status": "ok", "metrics": {"y": -f(p)["y"]}} for p in first_b])
    assert search_a.ask(8) != search_b.ask(8)


@given(st.permutations(list(range(8))), st.permutations(list(range(8))))
def test_the_order_results_arrive_in_does_not_change_the_suggestions(order_a: list[int], order_b: list[int]) -> None:
    """The driver collects a generation's results by trial id, in whatever
    order workers finish, and tells them in trial order."""
    from runner.search.driver import AdaptiveSearch

    s = sweep("tpe")
    nexts = []
    for order in (order_a, order_b):
        search = Search(s, objectives(s))
        points = search.ask(8)
        ids = [f"t{i:05d}" for i in range(8)]
        arrived = {ids[i]: {"status": "ok", "metrics": f(points[i])} for i in order}
        told = [arrived[i] for i in ids]  # what AdaptiveSearch.tell does with a dict by id
        search.tell(told)
        nexts.append(search.ask(8))
    assert nexts[0] == nexts[1]
    assert AdaptiveSearch.tell.__doc__ and "trial order" in AdaptiveSearch.tell.__doc__


def test_failed_and_pruned_trials_are_told_without_breaking_the_sequence() -> None:
    s = sweep("tpe")
    runs = []
    for _ in range(2):
        search = Search(s, objectives(s), stop_metric="y")
        points = search.ask(8)
        records = []
        for i, p in enumerate(points):
            if i % 3 == 0:
                records.append({"status": "error", "metrics": {}})
            elif i % 3 == 1:
                records.append({"status": "pruned", "metrics": f(p), "history": [{"step": 1, "y": f(p)["y"]}]})
            else:
                records.append({"status": "ok", "metrics": {"y": "not a number"}})  # told as failed
        search.tell(records)
        runs.append(search.ask(8))
    assert runs[0] == runs[1]


def history(values: list[float]) -> list[dict]:
    return [{"time": 0.0, "step": i + 1, "loss": v} for i, v in enumerate(values)]


def test_halving_thresholds_keep_the_best_third_at_each_rung() -> None:
    stop = EarlyStop(rule="halving", metric="loss", goal="minimize", min_steps=1, max_steps=9, reduction=3)
    earlier = [{"status": "ok", "history": history([float(i)] * 9)} for i in range(9)]
    table = thresholds(stop, Objective("loss", "minimize"), earlier)
    assert table is not None
    assert table["rungs"] == [[1, 2.0], [3, 2.0]]  # rungs at 1 and 3 (9 is the full length): keep 3 of 9
    assert thresholds(stop, Objective("loss", "minimize"), earlier[:2]) is None  # too few to judge


def test_median_thresholds_use_finished_trials_only() -> None:
    stop = EarlyStop(rule="median", metric="acc", min_steps=2, max_steps=4)
    earlier = [{"status": "ok", "history": [{"step": s, "acc": v * s} for s in range(1, 6)]} for v in (1.0, 2.0, 3.0)]
    earlier.append({"status": "pruned", "history": [{"step": 2, "acc": 100.0}]})
    table = thresholds(stop, Objective("acc", "maximize"), earlier)
    assert table == {"rule": "median", "metric": "acc", "goal": "maximize", "rungs": [[2, 4.0], [3, 6.0]]}


@given(st.lists(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=12), min_size=0, max_size=12), st.randoms())
def test_thresholds_do_not_depend_on_the_order_of_earlier_trials(values: list[list[float]], rnd) -> None:
    stop = EarlyStop(rule="halving", metric="loss", goal="minimize", min_steps=1, max_steps=10, reduction=2)
    earlier = [{"status": "ok", "history": history(v)} for v in values]
    shuffled = list(earlier)
    rnd.shuffle(shuffled)
    obj = Objective("loss", "minimize")
    assert thresholds(stop, obj, earlier) == thresholds(stop, obj, shuffled)


# ------------------------------------------------------------------ the spec


SPEC = """
xrun: 1
name: tune
trial: {{function: "experiments.t:train"}}
code: {{include: ["experiments/*.py"]}}
sweep:
{sweep}
"""


@pytest.mark.parametrize(
    ("sweep_text", "message"),
    [
        ("  method: tpe\n  parameters: {x: {uniform: [0, 1]}}\n  objective: {metric: y}",
         "sweep.samples: required when method is tpe (the trial budget)"),
        ("  method: tpe\n  samples: 8\n  parameters: {x: {uniform: [0, 1]}}\n  objectives: [{metric: y}, {metric: z}]",
         "sweep.objectives: several objectives need method: nsga2 (method is tpe)"),
        ("  method: cmaes\n  samples: 8\n  parameters: {x: {uniform: [0, 1]}, k: [a, b]}\n  objective: {metric: y}",
         "sweep.parameters.k: cmaes samples numbers only"),
        ("  method: tpe\n  samples: 8\n  parameters: {x: {uniform: [0, 1]}}",
         "sweep.objective: method: tpe needs an objective"),
        ("  method: grid\n  parameters: {x: [1, 2]}\n  batch: 4",
         "sweep.batch: only used with an adaptive method"),
        ("  method: tpe\n  samples: 8\n  repeats: 2\n  parameters: {x: {uniform: [0, 1]}}\n  objective: {metric: y}",
         "sweep.repeats: method: tpe suggests one trial per point"),
        ("  method: tpe\n  samples: 8\n  parameters: {x: {uniform: [0, 1]}}\n  objective: {metric: y}\n"
         "  early_stop: {rule: halving, min_steps: 2}",
         "sweep.early_stop.max_steps: required with rule: halving"),
        ("  method: tpe\n  samples: 8\n  parameters: {x: {uniform: [0, 1]}}\n  objective: {metric: y}\n"
         "  early_stop: {rule: median, min_steps: 5, max_steps: 5}",
         "sweep.early_stop.max_steps: must be more than min_steps (5)"),
        ("  method: tpe\n  samples: 8\n  parameters: {x: {uniform: [0, 1]}}\n  objective: {metric: y}\n"
         "  early_stop: {rule: halvng, max_steps: 5}",
         "sweep.early_stop.rule"),
        ("  metod: tpe\n  samples: 8\n  parameters: {x: {uniform: [0, 1]}}", "sweep.metod"),
    ],
)
def test_inconsistent_adaptive_specs_are_exit_2_with_the_key(project, run_xrun, sweep_text: str, message: str) -> None:
    project.file("experiments/t.py", "def train(params, ctx):\n    return {'y': 1.0}\n")
    spec = project.spec(SPEC.format(sweep=sweep_text))
    r = run_xrun("validate", spec.name, cwd=project.root)
    assert r.code == 2, r
    assert message in r.err + r.out
    assert "Traceback" not in r.err


def test_without_optuna_an_adaptive_spec_says_how_to_install_it(project, tmp_path: Path) -> None:
    """A real interpreter where ``import optuna`` fails, as in an install without the extra."""
    project.file("experiments/t.py", "def train(params, ctx):\n    return {'y': 1.0}\n")
    spec = project.spec(SPEC.format(sweep="  method: tpe\n  samples: 8\n  parameters: {x: {uniform: [0, 1]}}\n  objective: {metric: y}"))
    blocker = tmp_path / "block" / "sitecustomize.py"
    blocker.parent.mkdir()
    blocker.write_text(
        "import sys\n"
        "class _NoOptuna:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'optuna' or name.startswith('optuna.'):\n"
        "            raise ModuleNotFoundError(\"No module named 'optuna'\")\n"
        "        return None\n"
        "sys.meta_path.insert(0, _NoOptuna())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(blocker.parent), "COLUMNS": "200"}
    for cmd in ("validate", "plan"):
        proc = subprocess.run([sys.executable, "-m", "runner.cli", cmd, spec.name], cwd=project.root, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 2, (proc.stdout, proc.stderr)
        assert "pip install 'xrun[adaptive]'" in proc.stderr + proc.stdout
        assert "Traceback" not in proc.stderr


@given(st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)), min_size=1, max_size=40),
       st.sampled_from(["minimize", "maximize"]), st.sampled_from(["minimize", "maximize"]))
def test_the_pareto_front_is_exactly_the_undominated_points(points, goal_a, goal_b) -> None:
    from runner.report.search import pareto_front

    objectives = [Objective("a", goal_a), Objective("b", goal_b)]
    front = set(pareto_front(points, objectives))
    assert front  # a finite set always has an undominated point

    def dominates(p, q) -> bool:
        better = [(-1 if o.goal == "maximize" else 1) * (x - y) for o, x, y in zip(objectives, p, q)]
        return all(b <= 0 for b in better) and any(b < 0 for b in better)

    for i, p in enumerate(points):
        dominated = any(dominates(q, p) for q in points)
        assert (i in front) == (not dominated)


@given(
    st.lists(st.lists(st.floats(0, 10), min_size=9, max_size=9), min_size=3, max_size=10),
    st.lists(st.floats(0, 10), min_size=1, max_size=9),
    st.sampled_from(["halving", "median"]),
    st.sampled_from(["minimize", "maximize"]),
)
def test_the_worker_stops_a_trial_exactly_where_the_table_says(earlier, mine, rule, goal) -> None:
    """runner.search.stopping (driver) computes the table; runner.worker.context
    (worker) applies it inside ctx.log: the two must agree on every step."""
    import tempfile

    from runner.search.stopping import value_at
    from runner.worker._base import TrialPruned
    from runner.worker.context import TrialContext

    stop = EarlyStop(rule=rule, metric="m", goal=goal, min_steps=1, max_steps=9, reduction=2)
    obj = Objective("m", goal)
    table = thresholds(stop, obj, [{"status": "ok", "history": [{"step": i + 1, "m": v} for i, v in enumerate(h)]}
                                   for h in earlier])  # fmt: skip
    assert table is not None
    ctx = TrialContext("t00000", 1, {}, {}, tempfile.gettempdir(), None, table)
    stopped_at = None
    try:
        for i, v in enumerate(mine):
            ctx.log(step=i + 1, m=v)
    except TrialPruned:
        stopped_at = len(ctx.history)
    values = [(i + 1, v) for i, v in enumerate(mine)]
    expected = None
    for rung, threshold in table["rungs"]:  # the first rung the trial reaches and fails
        seen = values
        at = value_at(seen, rung)
        if at is None:
            break
        step = next(s for s, _ in seen if s >= rung)
        judged = at if rule == "halving" else (max if goal == "maximize" else min)(v for s, v in seen if s <= step)
        if judged < threshold if goal == "maximize" else judged > threshold:
            expected = step
            break
    assert stopped_at == expected
