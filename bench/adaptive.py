"""Adaptive search benchmark: HistGradientBoostingClassifier on breast cancer
(experiments/boost.py, 4 hyper-parameters, 9 logged steps of 10 trees).

1. quality: ``tpe`` with N trials against ``random`` with N trials, and ``tpe``
   with successive halving against ``tpe`` without, median over seeds; total
   training steps counted from the trials' ``ctx.log(step=…)`` calls.
2. exactness of the above: the search is xrun's own (runner.search: the same
   sampler, the same generations, the same early-stopping tables, the trial
   run with xrun's real ``TrialContext``), executed in this process without
   Dask. The sequence of an adaptive sweep depends only on the spec and the
   results, so it is the one ``xrun run`` takes; ``--check`` runs one seed
   with ``xrun run`` on a local cluster and asserts the suggestions match.
3. wall time: ``xrun run`` (tpe, N trials, 2 workers, fresh cache, whole
   process) against Optuna's own ``study.optimize(n_jobs=2)`` on the same
   objective and budget (whole process), alternating runs.

    .venv/bin/python bench/adaptive.py                 # 5 seeds, 40 trials, check, wall time
    .venv/bin/python bench/adaptive.py --seeds 3 --no-wall

Results go to bench/adaptive.json; ``--render`` (re)writes the "Adaptive search"
section of bench/RESULTS.md from it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as on a Dask worker: one thread per trial

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiments import boost  # noqa: E402
from runner.objective import Objective  # noqa: E402
from runner.search.sampler import Search  # noqa: E402
from runner.search.stopping import stop_objective, thresholds  # noqa: E402
from runner.spec.models import Sweep  # noqa: E402
from runner.sweep import derive_seed, points  # noqa: E402
from runner.worker._base import TrialPruned  # noqa: E402
from runner.worker.context import TrialContext  # noqa: E402

OUT = REPO / "bench" / "adaptive.json"
RESULTS = REPO / "bench" / "RESULTS.md"
SECTION = "## Adaptive search"
PARAMETERS = {
    "learning_rate": {"loguniform": [0.01, 0.5]},
    "max_leaf_nodes": {"int": [4, 64]},
    "min_samples_leaf": {"int": [2, 64]},
    "l2_regularization": {"loguniform": [1.0e-6, 10.0]},
}
OBJECTIVE = {"metric": "val_loss", "goal": "minimize"}
EARLY_STOP = {"rule": "halving", "min_steps": 1, "max_steps": boost.STEPS, "reduction": 3}
BATCH = 8
TOLERANCE = 0.01  # val_loss: "the same best" within this (absolute)


def sweep(method: str, seed: int, trials: int, early_stop: bool) -> Sweep:
    extra: dict[str, Any] = {"batch": BATCH} if method != "random" else {}
    if early_stop:
        extra["early_stop"] = EARLY_STOP
    return Sweep(method=method, samples=trials, seed=seed, parameters=PARAMETERS, objective=OBJECTIVE, **extra)


def run_trial(params: dict[str, Any], seed: int, table: dict[str, Any] | None) -> dict[str, Any]:
    ctx = TrialContext("t", seed, params, {}, tempfile.gettempdir(), None, table)
    try:
        metrics = boost.train(params, ctx)
        status = "ok"
    except TrialPruned:
        status = "pruned"
        metrics = {k: v for k, v in ctx.history[-1].items() if k not in ("time", "step")}
    history = [{k: v for k, v in e.items() if k != "time"} for e in ctx.history]
    return {"status": status, "metrics": metrics, "history": history}


def simulate(method: str, seed: int, trials: int, early_stop: bool) -> dict[str, Any]:
    """The path ``xrun run`` takes for this sweep (see the module docstring)."""
    s = sweep(method, seed, trials, early_stop)
    objective = Objective("val_loss", "minimize")
    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    suggestions: list[dict[str, Any]] = []
    if method == "random":
        for p in points(s):
            rec = run_trial(p, derive_seed(seed, p, 0), None)
            records.append(rec)
            suggestions.append({"params": p, "seed": derive_seed(seed, p, 0)})
    else:
        stop = s.early_stop
        search = Search(s, [objective], stop_metric="val_loss" if stop else None)
        while len(records) < trials:
            n = min(BATCH, trials - len(records))
            table = thresholds(stop, stop_objective(stop, objective), records) if stop else None
            generation = []
            for p in search.ask(n):
                seed_p = derive_seed(seed, p, 0)
                generation.append(run_trial(p, seed_p, table))
                suggestions.append({"params": p, "seed": seed_p, "early_stop": table})
            search.tell(json.loads(json.dumps(generation)))
            records += generation
    finished = [r["metrics"]["val_loss"] for r in records if r["status"] == "ok"]
    return {
        "method": method, "seed": seed, "early_stop": early_stop,
        "best": min(finished) if finished else None,
        "steps": sum(len(r["history"]) for r in records),
        "pruned": sum(r["status"] == "pruned" for r in records),
        "seconds": round(time.perf_counter() - started, 2),
        "suggestions": suggestions,
    }  # fmt: skip


# ------------------------------------------------------------------ real runs


SPEC = """
xrun: 1
name: bench-adaptive
trial: {{function: experiments.boost:train}}
code: {{root: {root}, include: ["experiments/boost.py"]}}
sweep:
  method: tpe
  samples: {trials}
  batch: {batch}
  seed: {seed}
  parameters: {parameters}
  objective: {objective}
{early_stop}cluster: {{backend: local, workers: 2, threads_per_worker: 1}}
output: {out}
"""


def xrun_run(tmp: Path, seed: int, trials: int, early_stop: bool) -> tuple[float, Path]:
    spec = tmp / f"spec-{seed}-{int(early_stop)}.yaml"
    spec.write_text(SPEC.format(
        root=REPO, trials=trials, batch=BATCH, seed=seed, parameters=json.dumps(PARAMETERS), objective=json.dumps(OBJECTIVE),
        early_stop=f"  early_stop: {json.dumps(EARLY_STOP)}\n" if early_stop else "", out=tmp / "runs",
    ))  # fmt: skip
    cache = Path(tempfile.mkdtemp(prefix="cache-", dir=tmp))
    xrun = Path(sys.executable).with_name("xrun")
    started = time.perf_counter()
    proc = subprocess.run([str(xrun), "run", str(spec), "-q"], capture_output=True, text=True,
                          env={**os.environ, "XRUN_CACHE_DIR": str(cache), "XRUN_ALLOW_OUTSIDE_PATHS": "1"})  # fmt: skip
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"xrun run failed:\n{proc.stderr[-3000:]}")
    return elapsed, Path(proc.stdout.strip().splitlines()[-1])


OPTUNA = """
import os, sys, time
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, {repo!r})
import optuna
from experiments import boost
optuna.logging.set_verbosity(optuna.logging.ERROR)

class Ctx:
    def __init__(self, seed):
        self.seed = seed
    def log(self, **values):
        pass

def objective(trial):
    params = {{
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.5, log=True),
        "max_leaf_nodes": trial.suggest_int("max_leaf_nodes", 4, 64),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", 2, 64),
        "l2_regularization": trial.suggest_float("l2_regularization", 1e-6, 10.0, log=True),
    }}
    return boost.train(params, Ctx(trial.number))["val_loss"]

study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed={seed}))
study.optimize(objective, n_trials={trials}, n_jobs=2)
print(study.best_value)
"""


def optuna_run(seed: int, trials: int) -> float:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", OPTUNA.format(repo=str(REPO), seed=seed, trials=trials)],
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"optuna run failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started


def check(tmp: Path, seed: int, trials: int, simulated: dict[str, Any]) -> dict[str, Any]:
    """``xrun run`` on a local cluster takes the simulated path, suggestion for suggestion."""
    elapsed, bundle = xrun_run(tmp, seed, trials, early_stop=True)
    recorded = json.loads((bundle / "search.json").read_text())
    got = [{"params": t["params"], "seed": t["seed"], "early_stop": g["early_stop"]}
           for g in recorded["generations"] for t in g["trials"]]  # fmt: skip
    same = got == json.loads(json.dumps(simulated["suggestions"]))
    return {"seed": seed, "identical": same, "suggestions": len(got), "seconds": round(elapsed, 1)}


def load() -> tuple[float, float, float]:
    return os.getloadavg()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--no-check", action="store_true", help="skip the xrun run that checks the simulated path")
    ap.add_argument("--no-wall", action="store_true", help="skip the wall-time comparison with Optuna")
    ap.add_argument("--wall-repeats", type=int, default=2)
    ap.add_argument("--parts", default="quality,check,wall", help="which of quality, check, wall to run")
    ap.add_argument("--out", type=Path, default=OUT, help="where the raw numbers go (default bench/adaptive.json)")
    ap.add_argument("--render", nargs="*", type=Path, metavar="JSON",
                    help="only rewrite the RESULTS.md section from adaptive.json (and the check/wall of these files)")  # fmt: skip
    args = ap.parse_args()
    if args.render is not None:
        result = json.loads(OUT.read_text())
        for extra in args.render:  # a check or wall-time run made apart
            more = json.loads(extra.read_text())
            result.update({k: more[k] for k in ("check", "wall_load") if k in more})
            for side, times in (more.get("wall") or {}).items():  # more alternating pairs
                result.setdefault("wall", {}).setdefault(side, []).extend(times)
        render(result)
        return
    parts = set(args.parts.split(","))
    started = time.time()
    result: dict[str, Any] = {"created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "trials": args.trials,
                              "seeds": args.seeds, "batch": BATCH, "early_stop": EARLY_STOP, "tolerance": TOLERANCE,
                              "load_start": load(), "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                              "runs": []}  # fmt: skip
    for seed in range(args.seeds if "quality" in parts else 0):
        for method, es in (("random", False), ("tpe", False), ("tpe", True)):
            r = simulate(method, seed, args.trials, es)
            print(f"seed {seed} {method}{' +halving' if es else ''}: best {r['best']:.4f}, {r['steps']} steps, "
                  f"{r['pruned']} pruned, {r['seconds']} s", flush=True)  # fmt: skip
            result["runs"].append(r)
            args.out.write_text(json.dumps(result, indent=1))
    with tempfile.TemporaryDirectory(prefix="xrun-bench-adaptive-") as tmp_name:
        tmp = Path(tmp_name)
        if not args.no_check and "check" in parts:
            sim = next((r for r in result["runs"] if r["method"] == "tpe" and r["early_stop"] and r["seed"] == 0), None)
            sim = sim or simulate("tpe", 0, args.trials, True)
            result["check"] = check(tmp, 0, args.trials, sim)
            print("check:", result["check"], flush=True)
            args.out.write_text(json.dumps(result, indent=1))
        if not args.no_wall and "wall" in parts:
            walls: dict[str, list[float]] = {"xrun": [], "optuna": []}
            for i in range(args.wall_repeats):  # alternating, to share the machine's load fairly
                walls["xrun"].append(round(xrun_run(tmp, 100 + i, args.trials, early_stop=False)[0], 1))
                walls["optuna"].append(round(optuna_run(100 + i, args.trials), 1))
                print("wall:", walls, flush=True)
                result["wall"] = walls
                result["wall_load"] = load()
                args.out.write_text(json.dumps(result, indent=1))
    result["load_end"] = load()
    result["minutes"] = round((time.time() - started) / 60, 1)
    args.out.write_text(json.dumps(result, indent=1))
    if result["runs"]:
        render(result)


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def render(result: dict[str, Any]) -> None:
    runs = result["runs"]

    def pick(method: str, es: bool, key: str) -> list[float]:
        return [r[key] for r in runs if r["method"] == method and r["early_stop"] == es and r[key] is not None]

    rnd, tpe, es = pick("random", False, "best"), pick("tpe", False, "best"), pick("tpe", True, "best")
    steps_tpe, steps_es = pick("tpe", False, "steps"), pick("tpe", True, "steps")
    seeds = sorted({r["seed"] for r in runs})
    n = result["trials"]
    saved = 1 - _median(steps_es) / _median(steps_tpe) if steps_tpe else float("nan")
    lines = [
        SECTION,
        "",
        f"Generated by `bench/adaptive.py` on {result['created']} ({result.get('minutes', '?')} min); raw numbers in "
        "`bench/adaptive.json`. HistGradientBoostingClassifier on scikit-learn's breast-cancer data "
        f"(`experiments/boost.py`: 4 hyper-parameters, {boost.STEPS} steps of {boost.TREES_PER_STEP} trees, "
        "validation log-loss, lower is better), one thread per trial. "
        f"Load average (1/5/15 min) at start {_load(result.get('load_start'))}, at end {_load(result.get('load_end'))}"
        " (the machine was shared).",
        "",
        f"Quality: median over {len(seeds)} seeds ({', '.join(map(str, seeds))}) of the best validation log-loss "
        f"among {n} trials; `tpe` asks generations of {result['batch']}. The searches are xrun's own "
        "(`runner.search`, trials run through xrun's `TrialContext`) executed in-process; "
        "their suggestions are those `xrun run` makes (checked below).",
        "",
        "| search | median best val_loss | per seed | median training steps | trials pruned (median) |",
        "|---|---|---|---|---|",
        _row(f"random, {n} trials", rnd, pick("random", False, "steps"), []),
        _row(f"tpe, {n} trials", tpe, steps_tpe, []),
        _row(f"tpe + halving ({_es(result['early_stop'])})", es, steps_es, pick("tpe", True, "pruned")),
        "",
        f"- tpe vs random: median best {_median(tpe):.4f} vs {_median(rnd):.4f} "
        f"({'tpe better' if _median(tpe) < _median(rnd) else 'tpe NOT better'}; better on "
        f"{sum(a < b for a, b in zip(tpe, rnd))} of {len(tpe)} seeds).",
        f"- early stopping: median best {_median(es):.4f} vs {_median(tpe):.4f} without "
        f"(difference {_median(es) - _median(tpe):+.4f}; stated tolerance ±{result['tolerance']}: "
        f"{'within' if abs(_median(es) - _median(tpe)) <= result['tolerance'] else 'NOT within'}), "
        f"with {saved:.0%} fewer training steps (median {_median(steps_es):.0f} vs {_median(steps_tpe):.0f}).",
    ]
    if "check" in result:
        c = result["check"]
        lines.append(f"- check: `xrun run` of the tpe + halving sweep (seed {c['seed']}, 2 local workers) made "
                     f"{c['suggestions']} suggestions, {'identical to' if c['identical'] else 'DIFFERENT from'} "
                     "the in-process search above.")  # fmt: skip
    if "wall" in result:
        w = result["wall"]
        x, o = _median(w["xrun"]), _median(w["optuna"])
        lines += [
            "",
            f"Wall time, tpe with {n} trials and no early stopping, whole process (imports, for xrun also the local "
            "cluster's start and the bundle), fresh cache, alternating runs:",
            "",
            "| | runs (s) | median (s) |",
            "|---|---|---|",
            f"| `xrun run` (2 local workers, generations of {result['batch']}) | {', '.join(map(str, w['xrun']))} | {x:.1f} |",
            f"| Optuna `study.optimize(n_jobs=2)` | {', '.join(map(str, w['optuna']))} | {o:.1f} |",
            "",
            f"Ratio xrun / Optuna: {x / o:.2f}× (target ≤ 1.1×: {'met' if x / o <= 1.1 else 'NOT met'}); "
            f"load average after the last pair: {_load(result.get('wall_load'))}.",
        ]
    for note in result.get("notes") or []:  # what the numbers alone do not say (added by hand to the json)
        lines += ["", note]
    lines.append("")
    _write_section("\n".join(lines))


def _row(label: str, best: list[float], steps: list[float], pruned: list[float]) -> str:
    per = ", ".join(f"{v:.4f}" for v in best)
    return (f"| {label} | {_median(best):.4f} | {per} | {_median(steps):.0f} | "
            f"{_median(pruned):.0f} |" if pruned else f"| {label} | {_median(best):.4f} | {per} | {_median(steps):.0f} | 0 |")  # fmt: skip


def _es(es: dict[str, Any]) -> str:
    return f"rungs from step {es['min_steps']}, ×{es['reduction']}, full length {es['max_steps']}"


def _load(values: Any) -> str:
    return " / ".join(f"{v:.1f}" for v in values) if values else "?"


def _write_section(text: str) -> None:
    """Replace (or append) this benchmark's own section of RESULTS.md, leaving the others as they are."""
    current = RESULTS.read_text() if RESULTS.exists() else "# xrun benchmarks\n"
    start = current.find(SECTION)
    if start == -1:
        new = current.rstrip("\n") + "\n\n" + text
    else:
        nxt = current.find("\n## ", start + len(SECTION))
        new = current[:start] + text + ("" if nxt == -1 else current[nxt:])
    RESULTS.write_text(textwrap.dedent(new).rstrip("\n") + "\n")
    print(f"wrote the {SECTION!r} section of {RESULTS}")


if __name__ == "__main__":
    main()
