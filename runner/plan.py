"""Plan, then apply: everything a run will do, computed without running it.

``make_plan`` feeds both ``xrun plan`` (printed) and ``xrun run`` (executed).

A sweep's trials are streamed, never held (a million-trial sweep plans in a
few megabytes): ``plan.trials`` is then a :class:`SweepTrials`, which expands
the sweep and keys its trials again on each pass over them. Looking them up in
the trial cache is one pass, a chunk of a few hundred keys per query, that
keeps only counts and one bit per trial (:class:`Census`: cached or not);
the entries themselves are read again, a chunk at a time, when the run
journals them (:func:`cached_trials`). Trials chosen one by one (the
generations of an adaptive sweep, the trials ``xrun reproduce`` selects) are a
list, and their cache entries are held in ``plan.cached``.
"""

from __future__ import annotations

import itertools
import secrets as _secrets
from collections.abc import Callable, Iterable, Iterator
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
    # environment: current (runner.env.imported): the key of the trial's scope
    scope: str | None = field(default=None, compare=False, hash=False)

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
    trials: list[PlannedTrial] | SweepTrials
    # trials in a list only (a streamed sweep's are counted in ``census``): key -> entry
    cached: dict[str, dict[str, Any]] = field(default_factory=dict)
    use_cache: bool = True
    sweep_version: int = sweep_mod.SWEEP_VERSION
    # environment: current only (runner.env.imported): trial key -> scope key, of
    # trials being run (the executor adds and drops them; a trial carries its own);
    # trial key -> the key of a result reused because nothing it imported changed;
    # trial key -> imported distributions that changed since a result was stored.
    scopes: dict[str, str] = field(default_factory=dict)
    reused: dict[str, str] = field(default_factory=dict)
    blocked: dict[str, list[str]] = field(default_factory=dict)
    stages: StagePlan = field(default_factory=StagePlan)  # prepare / final (runner.stages)
    # adaptive sweeps: the runner.search.AdaptiveSearch that decides trials generation by generation
    search: Any = None
    # a streamed sweep: what looking its trials up found (None: nothing was looked up, every trial runs)
    census: Census | None = None

    @property
    def inputs(self) -> dict[str, str]:
        """Stage outputs trials depend on (name -> sha256, or ``pending`` before prepare ran)."""
        return self.stages.inputs()

    @property
    def spec(self):  # type: ignore[no-untyped-def]
        return self.loaded.spec

    @property
    def pending(self) -> list[PlannedTrial] | PendingTrials:
        """The trials not cached (of a streamed sweep: a view that streams them)."""
        if isinstance(self.trials, SweepTrials):
            return PendingTrials(self)
        return [t for t in self.trials if t.key not in self.cached]

    @property
    def n_cached(self) -> int:
        if isinstance(self.trials, SweepTrials):
            return self.census.cached if self.census else 0
        return sum(1 for t in self.trials if t.key in self.cached)

    @property
    def n_reused(self) -> int:
        """Cached trials whose result was stored under another environment (``environment: current``)."""
        if isinstance(self.trials, SweepTrials):
            return self.census.reused if self.census else 0
        return len(self.reused)

    def computed_by(self) -> list[str]:
        """The runs that computed the cached trials' results."""
        if isinstance(self.trials, SweepTrials):
            return sorted(self.census.runs) if self.census else []
        return sorted({str(e.get("run_id")) for e in self.cached.values() if e.get("run_id")})

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
    _check_values(loaded)
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
    Adaptive sweeps (runner.search) add their trials generation by generation.
    A sweep's trials are streamed (:class:`SweepTrials`), keyed as each pass needs them."""
    plan.cached, plan.scopes, plan.reused, plan.blocked, plan.census = {}, {}, {}, {}, None
    if plan.spec.sweep.adaptive:
        plan.trials = []
    elif isinstance(plan.trials, list) and plan.trials:  # a selection (reproduce) stays one
        keep = {t.id for t in plan.trials}
        plan.trials = [t for t in SweepTrials(plan) if t.id in keep]
    else:
        plan.trials = SweepTrials(plan)
    if PENDING in plan.inputs.values() or on_workers(plan.data) or not plan.use_cache:
        return
    cache = cache or TrialCache()
    if isinstance(plan.trials, SweepTrials):
        plan.census = take_census(plan, cache)
    else:
        look_up(plan, plan.trials, cache)


def pin_worker_data(plan: Plan, hashed: dict[str, dict[str, Any]], cache: TrialCache | None = None) -> None:
    """Once a worker hashed the data only it sees: pin the digests in ``plan.data``,
    then key the prepare stage and the trials with them and look them up."""
    pin_hashed(plan.data, hashed)
    spec = plan.spec
    plan.stages = plan_stages(spec, code_hash=plan.code.hash, env_hash=plan.env.lock_hash,
                              data_hashes={k: v["sha256"] for k, v in plan.data.items()},
                              cache=cache or TrialCache(), use_cache=plan.use_cache)  # fmt: skip
    key_trials(plan, cache)


def _spec_error(plan_or_loaded: Plan | LoadedSpec, exc: Exception) -> SpecError:
    loaded = plan_or_loaded.loaded if isinstance(plan_or_loaded, Plan) else plan_or_loaded
    return SpecError(
        f"parameter values must be strings, numbers, booleans or null ({exc})",
        file=loaded.display,
        line=loaded.lines.get(("sweep",)),
        path="sweep",
    )


def _check_values(loaded: LoadedSpec) -> None:
    """Every value a sweep's trials can get has canonical JSON (a streamed sweep
    is keyed while it runs: a bad value must be refused before)."""
    sweep = loaded.spec.sweep
    try:
        sweep_mod.canonical_json([v for v in sweep.parameters.values() if isinstance(v, list)])
        sweep_mod.canonical_json([dict(p) for p in sweep.points or []])
    except (TypeError, ValueError) as exc:
        raise _spec_error(loaded, exc) from None


class _Keys:
    """The keys (and scope keys) of one plan's trials, as they are now (with the stage outputs)."""

    def __init__(self, plan: Plan, early_stop: dict[str, Any] | None = None) -> None:
        definition = plan.definition if early_stop is None else {**plan.definition, "early_stop": early_stop}
        common = dict(definition=definition, code_hash=plan.code.hash, version=plan.sweep_version, inputs=plan.inputs,
                      data_hashes={k: v["sha256"] for k, v in plan.data.items()})  # fmt: skip
        self.plan = plan
        self.early_stop = early_stop
        self.key = sweep_mod.Keyer(env_hash=plan.env.lock_hash, **common).key  # type: ignore[arg-type]
        self.scope = (sweep_mod.Keyer(env_hash=scope_env(plan.env.python_version or ""), **common).key  # type: ignore[arg-type]
                      if plan.env.kind == "current" else None)  # fmt: skip

    def trial(self, point: sweep_mod.TrialPoint, params_json: str | None = None) -> PlannedTrial:
        try:
            text = sweep_mod.canonical_json(point.params) if params_json is None else params_json
        except (TypeError, ValueError) as exc:
            raise _spec_error(self.plan, exc) from None
        scope = self.scope(text, point.seed) if self.scope is not None else None
        return PlannedTrial(point, self.key(text, point.seed), self.early_stop, scope)


def plan_trial(plan: Plan, point: sweep_mod.TrialPoint, early_stop: dict[str, Any] | None = None) -> PlannedTrial:
    """A trial's key (and scope key, for ``environment: current``); ``early_stop``,
    the stopping thresholds a trial of an adaptive sweep is given, is part of what it computes."""
    return _Keys(plan, early_stop).trial(point)


class SweepTrials:
    """A sweep's trials, expanded and keyed again on each pass (never held):
    ``len`` without expanding, iteration in trial order."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.count = sweep_mod.count(plan.spec.sweep)

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def __iter__(self) -> Iterator[PlannedTrial]:
        return self.where(None)

    def where(self, want: Callable[[int], bool] | None) -> Iterator[PlannedTrial]:
        """The trials whose index ``want`` accepts (only those are keyed)."""
        keys = _Keys(self.plan)
        key, scope = keys.key, keys.scope  # what _Keys.trial does, for each of up to millions of trials
        for point, text in sweep_mod.expand_json(self.plan.spec.sweep, self.plan.sweep_version):
            if want is None or want(point.index):
                seed = point.seed
                yield PlannedTrial(point, key(text, seed), None, scope(text, seed) if scope is not None else None)


@dataclass
class Census:
    """What looking a streamed sweep's trials up found, without their entries:
    counts, and one bit per trial (set: not cached, it runs)."""

    total: int
    missing: bytearray
    cached: int = 0
    reused: int = 0  # of the cached: stored under another environment (environment: current)
    blocked: int = 0  # of the missing: distributions they imported changed
    changes: set[str] = field(default_factory=set)  # those changes
    runs: set[str] = field(default_factory=set)  # run ids that computed the cached results

    @classmethod
    def none_cached(cls, total: int) -> Census:
        return cls(total, bytearray(b"\xff" * ((total + 7) // 8)))

    def is_missing(self, index: int) -> bool:
        return bool(self.missing[index >> 3] & (1 << (index & 7)))

    def is_cached(self, index: int) -> bool:
        return not self.missing[index >> 3] & (1 << (index & 7))

    def set_missing(self, index: int) -> None:
        if not self.is_missing(index):
            self.missing[index >> 3] |= 1 << (index & 7)
            self.cached -= 1

    @property
    def pending(self) -> int:
        return self.total - self.cached


class PendingTrials:
    """A streamed sweep's trials not cached: counted, and streamed when iterated."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def __len__(self) -> int:
        census = self.plan.census
        return census.pending if census else len(self.plan.trials)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __iter__(self) -> Iterator[PlannedTrial]:
        trials = self.plan.trials
        assert isinstance(trials, SweepTrials)
        census = self.plan.census
        return trials.where(census.is_missing if census and census.cached else None)  # none cached: all run

    def __getitem__(self, index: slice) -> list[PlannedTrial]:
        """The first pending trials (``pending[:10]``)."""
        if not isinstance(index, slice) or index.start or index.step or index.stop is None:
            raise TypeError("only pending[:n]")
        return list(itertools.islice(self, index.stop))


CHUNK = 500  # trials looked up per query


def _chunks(trials: Iterable[PlannedTrial], size: int = CHUNK) -> Iterator[list[PlannedTrial]]:
    it = iter(trials)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _find(plan: Plan, trials: list[PlannedTrial], cache: TrialCache
          ) -> tuple[dict[str, dict[str, Any]], dict[str, str], dict[str, list[str]]]:  # fmt: skip
    """``trials``' cache entries by key, the keys of results reused across
    environments, and the imported distributions that changed for the others."""
    found = cache.get_many([t.key for t in trials])  # a query per few hundred trials, not one each
    reused: dict[str, str] = {}
    blocked: dict[str, list[str]] = {}
    missed = [t.scope for t in trials if t.key not in found and t.scope is not None]
    if not missed:
        return found, reused, blocked
    # environment: current: only scopes with imported versions recorded can reuse anything
    known = cache.scopes_with_imports(missed)
    legacy = (cache.root / "imports").is_dir()  # files of earlier releases
    for t in trials:
        if t.key in found or t.scope is None or not (legacy or t.scope in known):
            continue
        # reuse a result whose imported versions are all unchanged
        hit = lookup(cache, t.scope, plan.env.packages)
        if isinstance(hit, Reuse):
            found[t.key] = hit.entry
            reused[t.key] = hit.key
        elif hit is not None:
            blocked[t.key] = hit.changed
    return found, reused, blocked


def look_up(plan: Plan, trials: list[PlannedTrial], cache: TrialCache) -> None:
    """Fill ``plan.cached`` (and ``reused``/``blocked``) for ``trials`` (a list of them)."""
    for chunk in _chunks(trials):
        found, reused, blocked = _find(plan, chunk, cache)
        plan.cached.update(found)
        plan.reused.update(reused)
        plan.blocked.update(blocked)


def take_census(plan: Plan, cache: TrialCache) -> Census:
    """Look a streamed sweep's trials up, a chunk at a time, keeping only counts and bits."""
    census = Census.none_cached(len(plan.trials))
    if cache.holds_nothing():  # a new cache: nothing to find, no trial keyed for it
        return census
    for chunk in _chunks(plan.trials):
        found, reused, blocked = _find(plan, chunk, cache)
        for t in chunk:
            entry = found.get(t.key)
            if entry is not None:
                i = t.point.index
                census.missing[i >> 3] &= ~(1 << (i & 7)) & 0xFF
                census.cached += 1
                census.reused += t.key in reused
                if entry.get("run_id"):
                    census.runs.add(str(entry["run_id"]))
            elif t.key in blocked:
                census.blocked += 1
                census.changes.update(blocked[t.key])
    return census


def cached_trials(plan: Plan, cache: TrialCache) -> Iterator[tuple[PlannedTrial, dict[str, Any], str | None]]:
    """Each cached trial, its entry and the key it was stored under when another
    (reused across environments), in trial order. A streamed sweep's entries are
    read again a chunk at a time (not held): one gone or broken since it was
    looked up is no longer cached, and runs."""
    trials = plan.trials
    if not isinstance(trials, SweepTrials):
        for t in trials:
            entry = plan.cached.get(t.key)
            if entry is not None:
                yield t, entry, plan.reused.get(t.key)
        return
    census = plan.census
    if census is None or not census.cached:
        return
    for chunk in _chunks(trials.where(census.is_cached)):
        found, reused, _ = _find(plan, chunk, cache)
        for t in chunk:
            entry = found.get(t.key)
            if entry is None:
                census.set_missing(t.point.index)
            else:
                yield t, entry, reused.get(t.key)


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
    if plan.census is not None:
        n_blocked, changed = plan.census.blocked, plan.census.changes
    else:
        blocked = [plan.blocked[t.key] for t in plan.pending if t.key in plan.blocked]
        n_blocked, changed = len(blocked), {c for cs in blocked for c in cs}
    if n_blocked:  # environment: current, and distributions the trials imported changed
        changes = sorted(changed)
        line = (f"{n_blocked} trial(s): distributions they imported changed: " + ", ".join(changes[:8])
                + (f" (+{len(changes) - 8} more)" if len(changes) > 8 else ""))  # fmt: skip
        if n_blocked == len(plan.pending):
            return [line]
        return [line, f"{len(plan.pending) - n_blocked} other trial(s): " + "; ".join(_explain_by_runs(plan, cache))]
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
