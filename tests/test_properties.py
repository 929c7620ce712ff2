"""Reproduction as an invariant, tested on generated specs (Hypothesis).

For any spec a user can write (parameter names and their order, value types,
grid / random / list, repeats, seeds, data entries, `--set` overrides):

* a spec written with its keys in another order (parameters, mappings inside
  values, `points` entries, `data` entries, top-level sections, `--set` order)
  has the same trials: ids, params, seeds and keys; running it after the
  original runs nothing (everything is cached);
* run, move the bundle, delete the project, reproduce (in part of the cases from
  another working directory, by a relative path): verdict match, and the
  printed bundle exists;
* a trial that ignores its seed (draws from the OS) is caught as a mismatch;
* the streamed plan (a sweep's trials expanded and keyed on each pass, looked
  up a chunk at a time) yields exactly the trials a list of them did, keyed by
  the reference definitions (``derive_seed``, ``trial_key``), cached or not.

The trial's metrics are a pure function of its params *as it sees them*
(including their key order) and its seed, so an order leaking into what a trial
receives shows up as a mismatch too.

Runs are in-process against one shared Dask cluster (`cluster.backend:
address`), so an example costs well under a second of cluster time. Example
counts are scaled from the `ci` profile (tests/conftest.py); `pytest
--hypothesis-profile=long tests/test_properties.py` soaks them.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner import sweep as sweep_mod
from runner.cache import TrialCache
from runner.env.imported import scope_env
from runner.plan import cached_trials, make_plan
from runner.reproduce import reproduce
from runner.run import load_environment, run
from runner.spec import loads_spec

TRIAL = '''
import hashlib
import json
import os


def score(params, ctx):
    seen = json.dumps(params) + "|" + ",".join(ctx.data) + "|" + str(ctx.seed)
    h = int(hashlib.sha256(seen.encode()).hexdigest()[:12], 16)
    return {"m": h / 2**48, "seed_mod": float(ctx.seed % 1009)}


def ignores_seed(params, ctx):
    return {"m": int.from_bytes(os.urandom(6), "big") / 2**48}
'''

# The whole of a property test counts against pytest-timeout: scale it with the profile.
pytestmark = pytest.mark.timeout(max(600, settings().max_examples * 3))

# ------------------------------------------------------------------ strategies

names = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
floats = st.floats(min_value=-1000, max_value=1000, allow_nan=False).map(lambda x: round(x, 3))
texts = st.text(alphabet="abcxyzYN_-. ", min_size=1, max_size=5)
scalars = st.one_of(st.integers(-10**6, 10**6), floats, texts, st.booleans(), st.none())
values = st.one_of(scalars, scalars, st.dictionaries(names, scalars, min_size=1, max_size=3))


def _distinct(items: list[Any]) -> list[Any]:
    seen, out = set(), []
    for v in items:
        key = json.dumps(v, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out


choices = st.lists(values, min_size=1, max_size=3).map(_distinct)


@st.composite
def distributions(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["choices", "uniform", "loguniform", "int"]))
    if kind == "choices":
        return draw(choices)
    if kind == "int":
        return {"int": sorted([draw(st.integers(-50, 50)), draw(st.integers(-50, 50))])}
    lo = draw(st.floats(min_value=0.001, max_value=100).map(lambda x: round(x, 3)))
    hi = round(lo + draw(st.floats(min_value=0.001, max_value=100)), 3)
    return {kind: [lo, hi]}


@dataclass
class Case:
    sweep: dict[str, Any]
    data: dict[str, str]  # name -> file content
    overrides: list[str]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    method = draw(st.sampled_from(["grid", "random", "list"]))
    params = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    sweep: dict[str, Any] = {"method": method}
    if method == "grid":
        sweep["parameters"] = {p: draw(choices) for p in params}
        size = 1
        for v in sweep["parameters"].values():
            size *= len(v)
        if size > 12:  # keep examples cheap: trim the widest lists
            sweep["parameters"] = {p: v[:1] for p, v in sweep["parameters"].items()}
    elif method == "random":
        sweep["parameters"] = {p: draw(distributions()) for p in params}
        sweep["samples"] = draw(st.integers(1, 4))
    else:
        sweep["points"] = [
            {p: draw(values) for p in draw(st.lists(st.sampled_from(params), min_size=1, unique=True))}
            for _ in range(draw(st.integers(1, 4)))
        ]
    sweep["repeats"] = draw(st.integers(1, 2))
    sweep["seed"] = draw(st.integers(0, 2**40))
    data = {n: draw(st.text(alphabet="ab,\n", max_size=10)) for n in draw(st.lists(names, max_size=3, unique=True))}
    overrides = [f"sweep.seed={sweep['seed']}"]
    if draw(st.booleans()):
        overrides.append("description=set from the command line")
    if method != "list" and draw(st.booleans()):  # --set adds a parameter (after the written ones)
        extra = draw(names.filter(lambda n: n not in params))
        overrides.append(f"sweep.parameters.{extra}=[1, 2]" if method == "grid" else f"sweep.parameters.{extra}={{int: [0, 9]}}")
    return Case(sweep, data, overrides)


# ------------------------------------------------------------------ writing specs


def _shuffled(value: Any, rng: random.Random) -> Any:
    """The same value with the keys of every mapping in another order."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: _shuffled(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


def spec_text(case: Case, *, project: Path, data_dir: Path, address: str, function: str, rng: random.Random | None) -> str:
    """The spec as JSON (valid YAML); with ``rng``, every mapping's keys shuffled."""
    sweep = dict(case.sweep)
    spec: dict[str, Any] = {
        "xrun": 1,
        "name": "prop",
        "code": {"root": ".", "include": ["trialmod.py"]},
        "data": {n: {"path": str(data_dir / f"{n}.txt")} for n in case.data},  # as drawn: not sorted
        "trial": {"function": f"trialmod:{function}"},
        "sweep": sweep,
        "cluster": {"backend": "address", "address": address, "workers": 1},
        "output": "runs",
    }
    if rng is not None:
        spec = _shuffled(spec, rng)
    return json.dumps(spec, indent=1)


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    """A fresh directory and trial cache per example; the working directory restored."""
    cwd, cache = os.getcwd(), os.environ.get("XRUN_CACHE_DIR")
    root = Path(tempfile.mkdtemp(prefix="xrun-prop-"))
    os.environ["XRUN_CACHE_DIR"] = str(root / "cache")
    try:
        yield root
    finally:
        os.chdir(cwd)
        if cache is None:
            os.environ.pop("XRUN_CACHE_DIR", None)
        else:
            os.environ["XRUN_CACHE_DIR"] = cache
        shutil.rmtree(root, ignore_errors=True)


def make_project(root: Path, case: Case) -> tuple[Path, Path]:
    project, data_dir = root / "project", root / "data"
    project.mkdir()
    data_dir.mkdir()
    (project / "pyproject.toml").write_text("")
    (project / "trialmod.py").write_text(TRIAL)
    for name, content in case.data.items():
        (data_dir / f"{name}.txt").write_text(content)
    return project, data_dir


@pytest.fixture(scope="module")
def cluster_address() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def env():
    with workspace() as root:
        (root / "spec.yaml").write_text("xrun: 1\nname: env\ntrial: {function: 'm:f'}\n")
        (root / "m.py").write_text("def f(p, c):\n    return {}\n")
        yield load_environment(loads_spec((root / "spec.yaml").read_text(), root / "spec.yaml"))


def trials_of(plan) -> list[tuple[str, dict[str, Any], int, str]]:
    return [(t.id, t.point.params, t.point.seed, t.key) for t in plan.trials]


def reference_trials(plan) -> list[tuple[str, dict[str, Any], int, int, str, str | None]]:
    """The trials as a list of them was made before plans were streamed: every
    point × repeats, in order, each seed and key from the reference definitions."""
    sweep = plan.spec.sweep
    common = dict(definition=plan.definition, code_hash=plan.code.hash, version=plan.sweep_version,
                  data_hashes={k: v["sha256"] for k, v in plan.data.items()}, inputs=plan.inputs)
    out, index = [], 0
    for params in sweep_mod.points(sweep, plan.sweep_version):
        for repeat in range(sweep.repeats):
            seed = sweep_mod.derive_seed(sweep.seed, params, repeat)
            key = sweep_mod.trial_key(params=params, seed=seed, env_hash=plan.env.lock_hash, **common)
            scope = (sweep_mod.trial_key(params=params, seed=seed, env_hash=scope_env(plan.env.python_version or ""),
                                         **common) if plan.env.kind == "current" else None)  # fmt: skip
            out.append((f"t{index:05d}", params, seed, repeat, key, scope))
            index += 1
    return out


# ------------------------------------------------------------------ properties


@settings(max_examples=max(20, settings().max_examples * 2))
@given(case=cases(), version=st.sampled_from(sweep_mod.SWEEP_VERSIONS), cached_seed=st.integers(0, 2**32))
def test_the_streamed_plan_yields_the_trials_a_list_of_them_did(case: Case, version: int, cached_seed: int, env) -> None:
    rng = random.Random(cached_seed)
    with workspace() as root:
        project, data_dir = make_project(root, case)
        text = spec_text(case, rng=None, project=project, data_dir=data_dir, address="tcp://127.0.0.1:1", function="score")
        loaded = loads_spec(text, project / "spec.yaml", case.overrides)
        plan = make_plan(loaded, env, sweep_version=version)
        expected = reference_trials(plan)
        assert len(plan.trials) == len(expected) == sweep_mod.count(plan.spec.sweep)
        assert [(t.id, t.point.params, t.point.seed, t.point.repeat, t.key, t.scope) for t in plan.trials] == expected
        assert [t.id for t in plan.pending] == [e[0] for e in expected] and plan.n_cached == 0

        # Some of them cached (by another run): the same trials, those cached, the others pending, in order.
        cache = TrialCache()
        stored = {e[4] for e in expected if rng.random() < 0.5}
        for tid, _, _, _, key, _ in expected:
            if key in stored:
                cache.put({"key": key, "id": tid, "status": "ok", "metrics": {"m": 1.0}, "run_id": "before"})
        again = make_plan(loaded, env, cache=cache, sweep_version=version)
        assert [(t.id, t.point.params, t.point.seed, t.point.repeat, t.key, t.scope) for t in again.trials] == expected
        assert set(cache.get_many([e[4] for e in expected])) == stored  # what a list of them looked up
        hits = sum(e[4] in stored for e in expected)  # a list sweep may name one point twice: one key, two trials
        assert again.n_cached == hits and len(again.pending) == len(expected) - hits
        assert [t.id for t in again.pending] == [e[0] for e in expected if e[4] not in stored]
        assert [(t.id, entry["key"]) for t, entry, _ in cached_trials(again, cache)] == [
            (e[0], e[4]) for e in expected if e[4] in stored]  # fmt: skip
        assert again.computed_by() == (["before"] if stored else [])


@settings(max_examples=max(20, settings().max_examples * 2))
@given(case=cases(), shuffle_seed=st.integers(0, 2**32))
def test_a_reordered_spec_has_the_same_trials(case: Case, shuffle_seed: int, env) -> None:
    rng = random.Random(shuffle_seed)
    with workspace() as root:
        project, data_dir = make_project(root, case)
        common = dict(project=project, data_dir=data_dir, address="tcp://127.0.0.1:1", function="score")
        a = loads_spec(spec_text(case, rng=None, **common), project / "a.yaml", case.overrides)
        permuted_overrides = list(case.overrides)
        rng.shuffle(permuted_overrides)  # they set different keys: order must not matter
        b = loads_spec(spec_text(case, rng=rng, **common), project / "b.yaml", permuted_overrides)
        plan_a, plan_b = make_plan(a, env), make_plan(b, env)
        first, second = trials_of(plan_a), trials_of(plan_b)
        assert first == second
        assert list(plan_a.data) == list(plan_b.data) == sorted(case.data)  # ctx.data in one order too
        assert [list(p) for _, p, _, _ in first] == [sorted(p) for _, p, _, _ in first]  # trials see sorted keys


@settings(max_examples=max(2, settings().max_examples // 4))
@given(case=cases(), shuffle_seed=st.integers(0, 2**32), elsewhere=st.booleans())
def test_run_move_delete_reproduce_matches_and_a_reordered_spec_is_cached(
    case: Case, shuffle_seed: int, elsewhere: bool, cluster_address: str
) -> None:
    rng = random.Random(shuffle_seed)
    with workspace() as root:
        project, data_dir = make_project(root, case)
        common = dict(project=project, data_dir=data_dir, address=cluster_address, function="score")
        (project / "spec.yaml").write_text(spec_text(case, rng=None, **common))
        (project / "again.yaml").write_text(spec_text(case, rng=rng, **common))
        os.chdir(project)
        first = run(loads_spec((project / "spec.yaml").read_text(), project / "spec.yaml", case.overrides))
        assert first.status == "ok", first.outcome.failures
        overrides = list(case.overrides)
        rng.shuffle(overrides)
        again = run(loads_spec((project / "again.yaml").read_text(), project / "again.yaml", overrides))
        assert again.outcome.counts["cached"] == again.total == first.total
        assert again.outcome.tasks == 0  # nothing was submitted

        moved = root / "archive" / first.bundle.name
        shutil.move(str(first.bundle), moved)
        os.chdir(root)
        shutil.rmtree(project)
        if elsewhere:
            (root / "elsewhere").mkdir()
            os.chdir(root / "elsewhere")
            target = Path("..") / "archive" / moved.name
        else:
            target = moved
        result = reproduce(target, trials="all")
        assert result.verdict == "match", (result.problems, [r for r in result.rows if not r.match])
        assert len({r.trial for r in result.rows}) == first.total
        assert result.bundle is not None and (result.bundle / "reproduce.json").is_file()
        assert result.bundle.resolve().parent == moved.parent.resolve()


@settings(max_examples=max(2, settings().max_examples // 12))
@given(case=cases())
def test_a_trial_that_ignores_its_seed_is_caught(case: Case, cluster_address: str) -> None:
    with workspace() as root:
        project, data_dir = make_project(root, case)
        common = dict(project=project, data_dir=data_dir, address=cluster_address, function="ignores_seed")
        (project / "spec.yaml").write_text(spec_text(case, rng=None, **common))
        first = run(loads_spec((project / "spec.yaml").read_text(), project / "spec.yaml", case.overrides))
        assert first.status == "ok", first.outcome.failures
        result = reproduce(first.bundle, trials="all")
        assert result.verdict == "mismatch"
        assert {r.trial for r in result.rows if not r.match} == {r.trial for r in result.rows}
