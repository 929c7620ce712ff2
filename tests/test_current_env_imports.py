"""`environment: current` reuses a cached result while the distributions the
trial imported keep their versions; installing or upgrading anything else
does not invalidate it, and `xrun plan` says which imported distribution
changed when one did."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import xrun


def _dist(site: Path, name: str, version: str, module: str | None = None) -> None:
    """A minimal installed distribution (dist-info), optionally providing a module."""
    for old in site.glob(f"{name.replace('-', '_')}-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if module:
        (info / "top_level.txt").write_text(module + "\n")
        pkg = site / module
        pkg.mkdir(exist_ok=True)
        (pkg / "__init__.py").write_text(f"SCALE = {version!r}\n")


def test_unrelated_install_keeps_cache_and_imported_upgrade_misses(project, tmp_path_factory) -> None:
    site = tmp_path_factory.mktemp("site")  # outside the project: not part of the code snapshot
    _dist(site, "xrun-test-used", "1.0", module="xrun_test_used")
    project.file(
        "experiments/imp.py",
        """
        def train(params, ctx):
            import xrun_test_used
            return {"score": params["a"] * float(xrun_test_used.SCALE)}
        """,
    )
    spec = project.spec(
        """
        name: imports
        xrun: 1
        trial: {function: experiments.imp:train}
        sweep: {parameters: {a: [1, 2, 3]}}
        cluster: {workers: 1}
        """
    )
    env = {"PYTHONPATH": str(site)}
    first = xrun(spec, "-q", cwd=project.root, env=env)
    assert first.code == 0, first.err

    # An unrelated distribution appears (as `pip install` of some extra would do):
    # the lock hash of the current environment changes, the trials still hit.
    _dist(site, "xrun-test-unrelated", "2.7.1")
    plan = xrun("plan", spec, "--json", cwd=project.root, env=env)
    assert plan.code == 0, plan.err
    info = json.loads(plan.out)
    assert info["environment"]["lock_hash"] != json.loads((first.bundle / "env" / "env.json").read_text())["lock_hash"]
    assert (info["cached"], info["to_run"], info["reused_across_environments"]) == (3, 0, 3)
    text = xrun("plan", spec, cwd=project.root, env=env)
    assert "3 cached, 0 to run" in text.out and "did not import" in text.out
    second = xrun(spec, cwd=project.root, env=env)
    assert second.code == 0, second.err
    meta = json.loads((second.bundle / "bundle.json").read_text())
    assert meta["counts"]["cached"] == 3 and meta["counts"].get("ok", 0) == 0
    records = [json.loads(line) for line in (second.bundle / "trials.jsonl").read_text().splitlines()]
    assert all(r["cached"] and r["cached_key"] != r["key"] for r in records)

    # The distribution the trial imports is upgraded: every trial misses, and plan says why.
    _dist(site, "xrun-test-used", "2.0", module="xrun_test_used")
    plan = xrun("plan", spec, cwd=project.root, env=env)
    assert plan.code == 0, plan.err
    assert "0 cached, 3 to run" in plan.out
    assert "distributions they imported changed: xrun-test-used 1.0 → 2.0" in plan.out
    assert "xrun-test-unrelated" not in plan.out.split("not cached", 1)[1]
    third = xrun(spec, "-q", cwd=project.root, env=env)
    assert third.code == 0, third.err
    scores = sorted(json.loads(line)["metrics"]["score"] for line in (third.bundle / "trials.jsonl").read_text().splitlines())
    assert scores == [2.0, 4.0, 6.0]  # computed with the new version, not reused


def _plan(project, env):
    from runner.plan import make_plan
    from runner.spec import load_spec

    project.file("experiments/f.py", "def f(params, ctx):\n    return {'x': 1.0}\n")
    spec = project.spec("xrun: 1\nname: scoped\ntrial: {function: experiments.f:f}\nsweep: {parameters: {a: [1, 2]}}\n")
    return make_plan(load_spec(spec), env)


def test_locked_environments_key_on_their_lock_only(project) -> None:
    from runner.env.model import LockedEnv

    plan = _plan(project, LockedEnv(kind="pip", lock_hash="a" * 64, packages={"numpy": "2.0.0"}))
    assert plan.scopes == {} and plan.reused == {}


def test_hostile_import_records_are_ignored(project) -> None:
    """Entries under <cache>/imports are untrusted: a record naming another key,
    a non-map, a link to /dev/zero or a huge file never makes a trial a hit."""
    from runner.cache import TrialCache
    from runner.env import imported
    from runner.env.model import LockedEnv

    env = LockedEnv(kind="current", lock_hash="b" * 64, packages={"numpy": "2.0.0"}, python_version="3.11.0")
    plan = _plan(project, env)
    cache = TrialCache()
    first, second = list(plan.trials)
    key, other, scope = first.key, second.key, first.scope
    assert scope is not None
    # A real result stored under `other` (a different point), and records that point at it.
    cache.put({"key": other, "id": "t00001", "status": "ok", "metrics": {"x": 9.0}, "run_id": "r"})  # a well-formed entry
    d = cache.root / "imports" / scope[:2] / scope
    d.mkdir(parents=True)
    (d / f"{other}.json").write_text(json.dumps({"key": key, "imported": {"numpy": "2.0.0"}}))  # key mismatch
    (d / f"{key}.json").write_text(json.dumps({"key": key, "imported": ["numpy"]}))  # not a map
    (d / ("c" * 64 + ".json")).symlink_to("/dev/zero")
    (d / ("d" * 64 + ".json")).write_text(" " * (imported.MAX_ENTRY_BYTES + 1))
    assert imported.lookup(cache, scope, env.packages) is None
    again = _plan(project, env)
    # (`other` itself is an exact hit)
    assert again.n_cached == 1 and again.n_reused == 0 and [t.key for t in again.pending] == [key]
    # The same record, well formed, for a result stored under its own key: reused.
    imported.remember(cache, scope, other, {"numpy": "2.0.0"})
    (d / f"{other}.json").write_text(json.dumps({"key": other, "imported": {"numpy": "2.0.0"}}))
    found = imported.lookup(cache, scope, env.packages)
    assert isinstance(found, imported.Reuse) and found.key == other
    # ...but not once numpy changed.
    blocked = imported.lookup(cache, scope, {"numpy": "2.1.0"})
    assert isinstance(blocked, imported.Blocked) and blocked.changed == ["numpy 2.0.0 → 2.1.0"]
