"""A sweep's plan is streamed, not held: its trials are keyed on each pass, looked
up in the cache a chunk at a time, and the memory of planning does not grow
with the number of trials. (Equivalence with a list of the trials, for any
spec, is a property in tests/test_properties.py.)"""

from __future__ import annotations

import json
import sqlite3
import tracemalloc

from runner.cache import TrialCache
from runner.env.model import LockedEnv
from runner.plan import CHUNK, SweepTrials, cached_trials, make_plan
from runner.spec import load_spec

ENV = LockedEnv(kind="current", lock_hash="b" * 64, packages={"numpy": "2.0.0"}, python_version="3.11.0")


def _loaded(project, samples: int, repeats: int = 1):
    project.file("experiments/f.py", "def f(params, ctx):\n    return {'x': 1.0}\n")
    return load_spec(project.spec(
        "xrun: 1\nname: streamed\ntrial: {function: experiments.f:f}\n"
        f"sweep: {{method: random, samples: {samples}, repeats: {repeats}, seed: 3, "
        "parameters: {lr: {loguniform: [0.0001, 1.0]}, depth: {int: [1, 9]}, kind: [a, b, c]}}\n"))  # fmt: skip


def _entry(t) -> dict:
    return {"key": t.key, "id": t.id, "status": "ok", "metrics": {"x": float(t.point.index)}, "run_id": "earlier"}


def test_cached_trials_over_many_chunks_and_an_entry_gone_since_planning_runs(project) -> None:
    loaded = _loaded(project, samples=1234, repeats=2)  # 2,468 trials: five chunks of lookups
    trials = list(make_plan(loaded, ENV, use_cache=False).trials)
    assert len(trials) == 2468 > 4 * CHUNK
    cache = TrialCache()
    with cache.batch():
        for t in trials[::3]:
            cache.put(_entry(t))
    plan = make_plan(loaded, ENV, cache=cache)
    assert isinstance(plan.trials, SweepTrials) and plan.census is not None
    assert plan.n_cached == len(trials[::3]) and len(plan.pending) == len(trials) - len(trials[::3])
    assert plan.pending[:3] == [trials[1], trials[2], trials[4]]
    # Between planning and journaling, another process deletes one entry and breaks another.
    gone, broken = trials[3], trials[2403]
    conn = sqlite3.connect(cache.db_path)
    with conn:
        conn.execute("DELETE FROM results WHERE key = ?", (gone.key,))
        conn.execute("UPDATE results SET body = ? WHERE key = ?", (b'{"key": "truncated', broken.key))
    conn.close()
    seen = [(t.id, entry["metrics"]["x"]) for t, entry, _ in cached_trials(plan, cache)]
    expected = [t for t in trials[::3] if t not in (gone, broken)]
    assert seen == [(t.id, float(t.point.index)) for t in expected]
    # Both run: counted and streamed as pending, in trial order.
    assert plan.n_cached == len(expected) and len(plan.pending) == len(trials) - len(expected)
    pending = list(plan.pending)
    assert gone in pending and broken in pending and pending == sorted(pending, key=lambda t: t.point.index)


def test_planning_memory_does_not_grow_with_the_sweep(project) -> None:
    """A list of the trials took ~730 bytes each (15 MB for 20,000); the streamed
    plan holds one bit per trial (and nothing at all with --no-cache)."""
    big, small = _loaded(project, samples=1_000_000), _loaded(project, samples=20_000)
    make_plan(_loaded(project, samples=10), ENV)  # what planning imports, imported before
    tracemalloc.start()
    try:
        plan = make_plan(big, ENV, use_cache=False)
        _, peak = tracemalloc.get_traced_memory()
        assert len(plan.trials) == len(plan.pending) == 1_000_000
        assert peak < 4_000_000, peak
        first = plan.pending[:2]
        assert [t.id for t in first] == ["t00000", "t00001"]

        tracemalloc.reset_peak()
        cache = TrialCache()
        cache.put(_entry(first[1]))
        looked = make_plan(small, ENV, cache=cache)  # every trial looked up
        _, peak = tracemalloc.get_traced_memory()
        assert looked.n_cached == 1 and len(looked.pending) == 19_999
        assert peak < 4_000_000, peak
    finally:
        tracemalloc.stop()


def test_xrun_plan_json_counts_a_sweep_without_listing_it(project, tmp_path) -> None:
    from tests.conftest import xrun

    loaded = _loaded(project, samples=600)
    spec = project.root / "spec.yaml"
    r = xrun("plan", spec, "--json", cwd=tmp_path)
    assert r.code == 0, r.err
    info = json.loads(r.out)
    assert (info["trials"], info["cached"], info["to_run"]) == (600, 0, 600)
    assert loaded.spec.sweep.samples == 600


def test_a_plan_against_a_new_cache_keys_no_trial_and_runs_them_all(project, tmp_path, monkeypatch) -> None:
    """Nothing can be found in a cache that holds nothing: planning does not
    expand and key the sweep to look it up (the first pass over the sweep is
    the one that submits it), and every trial is pending, in order."""
    loaded = _loaded(project, samples=700)
    trials = list(make_plan(loaded, ENV, use_cache=False).trials)
    from runner import sweep as sweep_mod

    keyed: list[int] = []
    real = sweep_mod.Keyer.key

    def counting(self, params_json, seed):
        keyed.append(seed)
        return real(self, params_json, seed)

    monkeypatch.setattr(sweep_mod.Keyer, "key", counting)
    plan = make_plan(loaded, ENV, cache=TrialCache(tmp_path / "new"))
    assert keyed == [] and plan.census is not None and plan.n_cached == 0
    assert list(plan.pending) == trials
    assert len(keyed) == 2 * len(trials)  # the pass that submits them keys each once (its key and its scope)
    # With one entry in it, the cache is looked up as before: that trial is cached.
    cache = TrialCache(tmp_path / "new")
    cache.put(_entry(trials[5]))
    plan = make_plan(loaded, ENV, cache=TrialCache(tmp_path / "new"))
    assert plan.n_cached == 1 and list(plan.pending) == trials[:5] + trials[6:]
