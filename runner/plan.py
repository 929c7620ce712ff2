"""Plan, then apply: everything a run will do, computed without running it.

``make_plan`` feeds both ``xrun plan`` (printed) and ``xrun run`` (executed).
"""

from __future__ import annotations

import secrets as _secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runner import code as code_mod
from runner import sweep as sweep_mod
from runner.cache import TrialCache
from runner.data import hash_inputs, on_workers, pin_hashed
from runner.env import LockedEnv
from runner.env.imported import Reuse, lookup, scope_env
from runner.errors import SpecError
from runner.objective import Objective, objective_of
from runner.spec import FunctionTrial, LoadedSpec
from runner.stages import PENDING, StagePlan, plan_stages
from runner.stages import explain as explain_stages


@dataclass(frozen=True, slots=True)  # one per trial: a million of them in a large sweep
class PlannedTrial:
    point: sweep_mod.TrialPoint
    key: str
    # adaptive sweeps with early stopping: the thresholds the worker stops the trial at
    early_stop: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def id(self) -> str:
        return self.point.id


@dataclass
class Plan:
    loaded: LoadedSpec
    env: LockedEnv
    code: code_mod.CodeSnapshot
    data: dict[str, dict[str, Any]]
    definition: dict[str, Any]
    trials: list[PlannedTrial]
    cached: dict[str, dict[str, Any]] = field(default_factory=dict)
    use_cache: bool = True
    sweep_version: int = sweep_mod.SWEEP_VERSION
    # environment: current only (runner.env.imported): trial key -> scope key;
    # trial key -> the key of a result reused because nothing it imported changed;
    # trial key -> imported distributions that changed since a result was stored.
    scopes: dict[str, str] = field(default_factory=dict)
    reused: dict[str, str] = field(default_factory=dict)
    blocked: dict[str, list[str]] = field(default_factory=dict)
    stages: StagePlan = field(default_factory=StagePlan)  # prepare / final (runner.stages)
    # adaptive sweeps: the runner.search.AdaptiveSearch that decides trials generation by generation
    search: Any = None

    @property
    def inputs(self) -> dict[str, str]:
        """Stage outputs trials depend on (name -> sha256, or ``pending`` before prepare ran)."""
        return self.stages.inputs()

    @property
    def spec(self):  # type: ignore[no-untyped-def]
        return self.loaded.spec

    @property
    def pending(self) -> list[PlannedTrial]:
        return [t for t in self.trials if t.key not in self.cached]

    @property
    def objective(self) -> Objective | None:
        return objective_of(self.spec)

    def components(self) -> dict[str, Any]:
        """What trial keys are made of, for explaining cache misses later."""
        return {
            "env_hash": self.env.lock_hash,
            "packages": self.env.packages,
            "code_hash": self.code.hash,
            "code_files": self.code.files,
            "data": {k: v["sha256"] for k, v in self.data.items()},
            "definition": self.definition,
            "seed": self.spec.sweep.seed,
            "sweep_version": self.sweep_version,
            "stages": self.stages.components(),
        }


def make_plan(
    loaded: LoadedSpec,
    env: LockedEnv,
    *,
    use_cache: bool = True,
    cache: TrialCache | None = None,
    sweep_version: int = sweep_mod.SWEEP_VERSION,
) -> Plan:
    """``sweep_version`` other than the current one only to reproduce older bundles."""
    spec = loaded.spec
    snapshot = code_mod.snapshot(
        spec.code.root, spec.code.include, spec.code.exclude, skip=_output_inside(spec.output, spec.code.root)
    )
    functions = [(("trial", "function"), spec.trial.function)] if isinstance(spec.trial, FunctionTrial) else []
    functions += [((name, "function"), getattr(spec, name).function) for name in ("prepare", "final")
                  if getattr(spec, name) is not None]  # fmt: skip
    for where, function in functions:
        module = function.split(":")[0]
        rel = module.replace(".", "/")
        if f"{rel}.py" not in snapshot.files and f"{rel}/__init__.py" not in snapshot.files:
            raise SpecError(
                f"module {module!r} ({rel}.py) is not in the code snapshot: "
                f"add it to code.include (now {spec.code.include})",
                file=loaded.display,
                line=loaded.lines.get(where),
                path=".".join(where),
            )
    data = dict(sorted(hash_inputs(spec).items()))  # trials see ctx.data in one order, however written
    definition = sweep_mod.trial_definition(spec)
    data_hashes = {k: v["sha256"] for k, v in data.items()}
    plan = Plan(loaded, env, snapshot, data, definition, [], use_cache=use_cache, sweep_version=sweep_version)
    plan.stages = plan_stages(spec, code_hash=snapshot.hash, env_hash=env.lock_hash, data_hashes=data_hashes,
                              cache=cache or TrialCache(), use_cache=use_cache)  # fmt: skip
    key_trials(plan, cache)
    return plan


def key_trials(plan: Plan, cache: TrialCache | None = None) -> None:
    """Compute the trials' keys (with the stage outputs they depend on) and look them up.

    Called again once a prepare stage has run: its outputs' hash is part of every key.
    Before that (``pending``), nothing is looked up: every trial waits for prepare.
    Adaptive sweeps (runner.search) add their trials generation by generation."""
    keep = {t.id for t in plan.trials} if plan.trials else None  # a selection (reproduce) stays one
    plan.cached, plan.scopes, plan.reused, plan.blocked = {}, {}, {}, {}
    points = () if plan.spec.sweep.adaptive else sweep_mod.expand(plan.spec.sweep, plan.sweep_version)
    plan.trials = [plan_trial(plan, point) for point in points if keep is None or point.id in keep]
    if PENDING in plan.inputs.values() or on_workers(plan.data):
        return
    if plan.use_cache:
        look_up(plan, plan.trials, cache or TrialCache())


def pin_worker_data(plan: Plan, hashed: dict[str, dict[str, Any]], cache: TrialCache | None = None) -> None:
    """Once a worker hashed the data only it sees: pin the digests in ``plan.data``,
    then key the prepare stage and the trials with them and look them up."""
    pin_hashed(plan.data, hashed)
    spec = plan.spec
    plan.stages = plan_stages(spec, code_hash=plan.code.hash, env_hash=plan.env.lock_hash,
                              data_hashes={k: v["sha256"] for k, v in plan.data.items()},
                              cache=cache or TrialCache(), use_cache=plan.use_cache)  # fmt: skip
    key_trials(plan, cache)


def plan_trial(plan: Plan, point: sweep_mod.TrialPoint, early_stop: dict[str, Any] | None = None) -> PlannedTrial:
    """A trial's key (and scope key, for ``environment: current``); ``early_stop``,
    the stopping thresholds a trial of an adaptive sweep is given, is part of what it computes."""
    definition = plan.definition if early_stop is None else {**plan.definition, "early_stop": early_stop}
    data_hashes = {k: v["sha256"] for k, v in plan.data.items()}
    inputs = plan.inputs
    try:
        key = sweep_mod.trial_key(
            params=point.params,
            seed=point.seed,
            definition=definition,
            code_hash=plan.code.hash,
            env_hash=plan.env.lock_hash,
            data_hashes=data_hashes,
            version=plan.sweep_version,
            inputs=inputs,
        )
    except (TypeError, ValueError) as exc:
        raise SpecError(
            f"parameter values must be strings, numbers, booleans or null ({exc})",
            file=plan.loaded.display,
            line=plan.loaded.lines.get(("sweep",)),
            path="sweep",
        ) from None
    if plan.env.kind == "current":
        plan.scopes[key] = sweep_mod.trial_key(
            params=point.params, seed=point.seed, definition=definition, code_hash=plan.code.hash,
            env_hash=scope_env(plan.env.python_version or ""), data_hashes=data_hashes, version=plan.sweep_version,
            inputs=inputs,
        )  # fmt: skip
    return PlannedTrial(point, key, early_stop)


def look_up(plan: Plan, trials: list[PlannedTrial], cache: TrialCache) -> None:
    """Fill ``plan.cached`` (and ``reused``/``blocked``) for ``trials``."""
    found = cache.get_many([t.key for t in trials])  # a query per few hundred trials, not one each
    missed = [plan.scopes[t.key] for t in trials if t.key not in found and t.key in plan.scopes]
    # environment: current: only scopes with imported versions recorded can reuse anything
    known = cache.scopes_with_imports(missed) if missed else set()
    legacy = missed and (cache.root / "imports").is_dir()  # files of earlier releases
    for t in trials:
        entry = found.get(t.key)
        if entry is not None:
            plan.cached[t.key] = entry
        elif t.key in plan.scopes and (legacy or plan.scopes[t.key] in known):
            _reuse_by_imports(plan, cache, t.key)


def _reuse_by_imports(plan: Plan, cache: TrialCache, key: str) -> None:
    """``environment: current``: reuse a result whose imported versions are all unchanged."""
    found = lookup(cache, plan.scopes[key], plan.env.packages)
    if isinstance(found, Reuse):
        plan.cached[key] = found.entry
        plan.reused[key] = found.key
    elif found is not None:
        plan.blocked[key] = found.changed


def _output_inside(output: Path, root: Path) -> list[Path]:
    """The output directory, when bundles land inside the code tree (so earlier
    bundles are not snapshotted as code). An output that *holds* the code root,
    as when reproducing from inside ``runs/``, must not hide the code itself."""
    out, top = output.resolve(), root.resolve()
    return [output] if out != top and out.is_relative_to(top) else []


def explain_misses(plan: Plan, cache: TrialCache | None = None) -> list[str]:
    """Why trials are not cached, against the nearest earlier run of this spec."""
    if not plan.use_cache:
        return ["--no-cache: every trial runs"]
    if on_workers(plan.data):  # trial keys include the digest of data only the workers see
        names = ", ".join(sorted(on_workers(plan.data)))
        return [f"{len(plan.trials)} trial(s) wait for a worker to hash data on the workers' volume ({names}): "
                "their keys include its sha256"]
    if PENDING in plan.inputs.values():  # prepare must run first: trial keys include its outputs' hash
        cache = cache or TrialCache()
        why = explain_stages(plan.stages, plan.components(), cache.run_records(plan.spec.name), plan.spec.name, _differences)
        return [*why, f"{len(plan.pending)} trial(s) wait for the prepare stage: their keys include its outputs' hash"]
    if not plan.pending:
        return []
    blocked = [plan.blocked[t.key] for t in plan.pending if t.key in plan.blocked]
    if blocked:  # environment: current, and distributions the trials imported changed
        changes = sorted({c for cs in blocked for c in cs})
        line = (f"{len(blocked)} trial(s): distributions they imported changed: " + ", ".join(changes[:8])
                + (f" (+{len(changes) - 8} more)" if len(changes) > 8 else ""))  # fmt: skip
        if len(blocked) == len(plan.pending):
            return [line]
        return [line, f"{len(plan.pending) - len(blocked)} other trial(s): " + "; ".join(_explain_by_runs(plan, cache))]
    return _explain_by_runs(plan, cache)


def _explain_by_runs(plan: Plan, cache: TrialCache | None = None) -> list[str]:
    """Why trials are not cached, against the nearest earlier run of this spec."""
    cache = cache or TrialCache()
    now = plan.components()
    best: tuple[list[str], dict[str, Any]] | None = None
    for record in cache.run_records(plan.spec.name):
        diffs = _differences(record.get("components", {}), now)
        if best is None or len(diffs) < len(best[0]):
            best = (diffs, record)
        if not diffs:
            break
    if best is None:
        return [f"no earlier run of {plan.spec.name!r} in the cache"]
    diffs, record = best
    if not diffs:
        return [
            f"same environment, code, data and trial definition as run {record.get('run_id')}: "
            "the missing trials are new parameter points, or failed or did not finish there"
        ]
    return [f"compared with run {record.get('run_id')}: " + d for d in diffs]


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if old.get("env_hash") != new["env_hash"]:
        changes = diff_versions(old.get("packages", {}), new["packages"])
        out.append("environment changed: " + (", ".join(changes[:8]) or "lock hash differs"))
        if len(changes) > 8:
            out[-1] += f" (+{len(changes) - 8} more)"
    if old.get("code_hash") != new["code_hash"]:
        changed = diff_files(old.get("code_files", {}), new["code_files"])
        out.append("code changed: " + (", ".join(changed[:8]) or "code hash differs"))
    old_data, new_data = old.get("data", {}), new["data"]
    for name in sorted(set(old_data) | set(new_data)):
        if old_data.get(name) != new_data.get(name):
            a, b = old_data.get(name), new_data.get(name)
            out.append(
                f"data {name!r} changed: sha256 {str(a)[:12] if a else 'absent'} → {str(b)[:12] if b else 'absent'}"
            )
    if old.get("definition") != new["definition"]:
        out.append("trial definition changed (function, estimator, dataset, cv or scoring)")
    if old.get("sweep_version", 1) != new["sweep_version"]:
        out.append(
            f"trial keys and sweep expansion changed format (sweep version {old.get('sweep_version', 1)} → "
            f"{new['sweep_version']}): results of older xrun releases are not reused"
        )
    if old.get("seed") != new["seed"]:
        out.append(f"sweep.seed changed: {old.get('seed')} → {new['seed']}")
    return out


def diff_versions(old: dict[str, str], new: dict[str, str]) -> list[str]:
    out = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a != b:
            out.append(f"{name} {a or 'absent'} → {b or 'absent'}")
    return out


def diff_files(old: dict[str, str], new: dict[str, str]) -> list[str]:
    out = []
    for name in sorted(set(old) | set(new)):
        if name not in old:
            out.append(f"{name} (added)")
        elif name not in new:
            out.append(f"{name} (removed)")
        elif old[name] != new[name]:
            out.append(f"{name} (modified)")
    return out


def new_run_id(name: str, now: datetime | None = None) -> str:
    """``<name>-<UTC time>-<6 hex>``: the bundle directory and the label of everything a run starts."""
    now = now or datetime.now(timezone.utc)
    return f"{name}-{now.strftime('%Y%m%dT%H%M%SZ')}-{_secrets.token_hex(3)}"
