"""The trial cache's tables: results found by the first 64 bits of their key
(the full key compared), caches of the previous release still read, and a
commit stores exactly what the rules say (first valid result stays, a corrupt
row is replaced) for any mix of staged, duplicate, valid and corrupt keys."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from runner.bundle.journal import read_journal
from runner.cache import TrialCache
from runner.env import imported

OLD = Path(__file__).parent / "data" / "caches" / "main-729dbf2"
OLD_KEYS = [f"{i:02x}" + "0" * 62 for i in range(1, 6)]
E1, E2 = "e1" + "0" * 62, "e2" + "0" * 62
OLD_IMPORTED = {"numpy": "1.26.4", "xrun-old": "0.1.0"}


def entry(key: str, score: float, **extra) -> dict:
    return {"id": "t00000", "key": key, "params": {"a": 1}, "seed": 7, "status": "ok", "metrics": {"score": score},
            "error": None, "traceback": None, "failure_class": None, "attempts": 1, "history": [], "log": "",
            "run_id": "r", **extra}  # fmt: skip


def body(key: str, score: float) -> bytes:
    return json.dumps(entry(key, score)).encode()


def _k(key: str) -> int:
    v = int(key[:16], 16)
    return v - (1 << 64) if v >= 1 << 63 else v


def old_cache(tmp_path: Path) -> Path:
    return Path(shutil.copytree(OLD, tmp_path / "old"))


def test_a_cache_the_previous_release_wrote_is_read_and_written(tmp_path: Path) -> None:
    root = old_cache(tmp_path)
    cache = TrialCache(root)
    assert [cache.get(k)["metrics"]["score"] for k in OLD_KEYS[:4]] == [1.0, 2.0, 3.0, 4.0]  # type: ignore[index]
    assert cache.get(OLD_KEYS[4]) is None  # its truncated row
    assert set(cache.get_many(OLD_KEYS)) == set(OLD_KEYS[:4])
    assert (cache.artifacts_dir(OLD_KEYS[0]) / "out" / "model.txt").read_bytes() == b"model 1"
    assert sorted(k for k, _, _ in cache.imports_under(E1, 10, 1 << 20)) == [OLD_KEYS[0], OLD_KEYS[2]]
    assert all(json.loads(b) == OLD_IMPORTED for _, _, b in cache.imports_under(E2, 10, 1 << 20))
    assert cache.scopes_with_imports([E1, E2, "e3" + "0" * 62]) == {E1, E2}
    reuse = imported.lookup(cache, E2, dict(OLD_IMPORTED))
    assert isinstance(reuse, imported.Reuse) and reuse.key in (OLD_KEYS[1], OLD_KEYS[3])
    blocked = imported.lookup(cache, E2, {**OLD_IMPORTED, "numpy": "2.0.0"})
    assert isinstance(blocked, imported.Blocked) and blocked.changed == ["numpy 1.26.4 → 2.0.0"]

    # Writing to it: the old valid entry stays, the corrupt one is replaced, new ones are stored.
    new_key = "06" + "0" * 62
    with cache.batch():
        cache.put(entry(OLD_KEYS[0], 9.0), [("out/model.txt", b"other")])
        cache.put(entry(OLD_KEYS[4], 5.0))
        cache.put(entry(new_key, 6.0))
        cache.stage_imports(E1, OLD_KEYS[4], {"numpy": "2.0.0"})
        cache.stage_imports(E1, OLD_KEYS[0], {"numpy": "2.0.0"})  # its result was stored before: no second row
    assert cache.unwritable is None
    fresh = TrialCache(root)
    assert fresh.get(OLD_KEYS[0])["metrics"] == {"score": 1.0}  # type: ignore[index]
    assert (fresh.artifacts_dir(OLD_KEYS[0]) / "out" / "model.txt").read_bytes() == b"model 1"
    assert fresh.get(OLD_KEYS[4])["metrics"] == {"score": 5.0}  # type: ignore[index]
    assert fresh.get(new_key)["metrics"] == {"score": 6.0}  # type: ignore[index]
    assert sorted(k for k, _, _ in fresh.imports_under(E1, 10, 1 << 20)) == [OLD_KEYS[0], OLD_KEYS[2], OLD_KEYS[4]]
    assert dict((k, json.loads(b)) for k, _, b in fresh.imports_under(E1, 10, 1 << 20))[OLD_KEYS[0]] == OLD_IMPORTED
    # The previous release's tables are as it left them (it still reads its own rows).
    conn = sqlite3.connect(root / "trials.sqlite")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM entries").fetchone()[0] == 5
    assert conn.execute("SELECT count(*) FROM imports").fetchone()[0] == 4
    assert json.loads(conn.execute("SELECT body FROM entries WHERE key = ?", (OLD_KEYS[1],)).fetchone()[0])["metrics"] == {"score": 2.0}
    conn.close()


def test_keys_sharing_their_first_64_bits_are_told_apart(tmp_path: Path) -> None:
    """The index holds a key's first 64 bits only: keys (and scope keys) that
    share them, as a cache made by someone else may hold, are still distinct."""
    a, b, c = ("ab" * 8 + d * 48 for d in "012")
    cache = TrialCache(tmp_path)
    cache.put(entry(a, 1.0))
    assert cache.get(b) is None
    cache.put(entry(b, 2.0))
    with cache.batch():
        cache.put(entry(a, 3.0))  # the first valid result stays
        cache.put(entry(c, 4.0))
        cache.stage_imports(a, b, {"numpy": "2.0.0"})  # scope keys sharing their first 64 bits too
        cache.stage_imports(c, c, {"numpy": "1.0.0"})
    fresh = TrialCache(tmp_path)
    assert {k: e["metrics"]["score"] for k, e in fresh.get_many([a, b, c, "ab" * 8 + "3" * 48]).items()} == {a: 1.0, b: 2.0, c: 4.0}
    assert [k for k, _, _ in fresh.imports_under(a, 10, 1 << 20)] == [b]
    assert [k for k, _, _ in fresh.imports_under(c, 10, 1 << 20)] == [c]
    assert fresh.imports_under(b, 10, 1 << 20) == []
    assert fresh.scopes_with_imports([a, b, c]) == {a, c}
    # A key that is not hex is stored and found too (indexed by its SHA-256).
    fresh.put(entry("not a hex key", 5.0))
    assert TrialCache(tmp_path).get("not a hex key")["metrics"] == {"score": 5.0}  # type: ignore[index]


def test_of_several_rows_for_one_key_the_first_valid_is_read(tmp_path: Path) -> None:
    """A cache made by someone else may hold several rows for a key: a corrupt
    one is skipped, and a commit neither adds another nor drops a valid one."""
    key = "cd" + "0" * 62
    TrialCache(tmp_path).put(entry("ef" + "0" * 62, 0.0))  # makes the tables
    conn = sqlite3.connect(tmp_path / "trials.sqlite")
    for data in (b"garbage", body(key, 1.0), body(key, 2.0)):
        conn.execute("INSERT INTO results (k, key, body) VALUES (?, ?, ?)", (_k(key), key, data))
    conn.commit()
    cache = TrialCache(tmp_path)
    assert cache.get(key)["metrics"] == {"score": 1.0}  # type: ignore[index]
    cache.put(entry(key, 3.0))
    assert conn.execute("SELECT count(*) FROM results WHERE key = ?", (key,)).fetchone()[0] == 3
    assert TrialCache(tmp_path).get_many([key])[key]["metrics"] == {"score": 1.0}
    conn.close()


# ---------------------------------------------------------------- property: the commit path

KEYS = [f"{i:02x}" + "7" * 62 for i in range(5)]
# What a key holds before: in this release's table, in the previous release's table, both.
PRIOR = st.sampled_from(["none", "valid", "corrupt", "old-valid", "old-corrupt", "corrupt+old-valid",
                         "valid+old-valid", "corrupt+valid"])  # fmt: skip
STAGED = st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(["valid", "corrupt"]), st.booleans()), max_size=12)


@given(prior=st.lists(PRIOR, min_size=len(KEYS), max_size=len(KEYS)), commits=st.lists(STAGED, min_size=1, max_size=3))
def test_a_commit_stores_what_the_rules_say_for_any_mix_of_keys(tmp_path_factory, prior: list[str], commits: list) -> None:
    """Property, against a model of the rules: a staged result is stored unless
    its key has a valid entry (already, or earlier in the same commit); a corrupt
    row is replaced; an imported-versions row is kept with a result stored; reads
    (one at a time and many at once) give each key's first valid entry."""
    root = tmp_path_factory.mktemp("c")
    TrialCache(root).put(entry("ff" + "0" * 62, 0.0))  # makes the tables
    conn = sqlite3.connect(root / "trials.sqlite")
    model: dict[str, float | None] = {}  # what get() returns (its score), per key
    for i, (key, kind) in enumerate(zip(KEYS, prior)):
        new, _, old = kind.partition("+old-") if "+old-" in kind else (kind, "", "")
        if new.startswith("old-"):
            new, old = "none", new[4:]
        rows = {"none": [], "valid": [body(key, 10.0 + i)], "corrupt": [b"{"], "corrupt+valid": [b"[]", body(key, 20.0 + i)]}
        for data in rows[new]:
            conn.execute("INSERT INTO results (k, key, body) VALUES (?, ?, ?)", (_k(key), key, data))
        if old:
            conn.execute("INSERT INTO entries (key, body) VALUES (?, ?)", (key, body(key, 30.0 + i) if old == "valid" else b"x"))
        scores = [json.loads(d)["metrics"]["score"] for d in rows[new] if d.startswith(b'{"')]
        model[key] = scores[0] if scores else (30.0 + i if old == "valid" else None)
    conn.commit()
    conn.close()
    imports: set[str] = set()
    for n, staged in enumerate(commits):
        cache = TrialCache(root)
        before = {k for k, v in model.items() if v is not None}
        written: set[str] = set()
        with cache.batch():
            for j, (key, kind, with_imports) in enumerate(staged):
                score = 100.0 * (n + 1) + j
                cache.stage(key, body(key, score) if kind == "valid" else b"not json", [])
                if with_imports:
                    cache.stage_imports("aa" * 32, key, {"numpy": f"{n}.{j}"})
                if key in before:
                    continue  # a valid entry already: dropped, and so are its imported versions
                if key not in written:  # the first staged for the key is stored
                    written.add(key)
                    model[key] = score if kind == "valid" else None
                if with_imports:
                    imports.add(key)
        assert cache.unwritable is None
        fresh = TrialCache(root)
        got = {k: fresh.get(k) for k in KEYS}
        assert {k: (e["metrics"]["score"] if e else None) for k, e in got.items()} == model
        assert fresh.get_many(KEYS * 2) == {k: e for k, e in got.items() if e is not None}
        assert {k for k, _, _ in fresh.imports_under("aa" * 32, 100, 1 << 20)} == imports
        with sqlite3.connect(root / "trials.sqlite") as conn:  # a stored result replaced the key's corrupt rows
            assert all(conn.execute("SELECT count(*) FROM results WHERE key = ?", (k,)).fetchone()[0] == 1 for k in written)


def test_a_cache_holds_nothing_only_while_no_lookup_could_find_anything(tmp_path: Path) -> None:
    """A plan keys no trial to look it up in a cache that holds nothing; anything
    a lookup could find (a result, an imported-versions row, an earlier release's
    tables or files) makes the cache not empty."""
    root = tmp_path / "c"
    assert TrialCache(root).holds_nothing()  # no directory at all
    cache = TrialCache(root)
    cache.stage_imports(E1, OLD_KEYS[0], {"numpy": "2.0.0"})  # an imports row alone: reuse may find it
    cache.commit()
    assert not TrialCache(root).holds_nothing()
    other = TrialCache(tmp_path / "d")
    other.put(entry(E2, 1.0))
    assert not TrialCache(tmp_path / "d").holds_nothing()
    assert not TrialCache(old_cache(tmp_path)).holds_nothing()  # the previous release's tables
    legacy = tmp_path / "legacy"
    (legacy / "trials" / "ab").mkdir(parents=True)  # one file per trial, as older releases stored them
    assert not TrialCache(legacy).holds_nothing()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "trials.sqlite").write_bytes(b"not a database")
    assert not TrialCache(tmp_path / "bad").holds_nothing()  # unreadable: looked up as before


WRITES_SOME = '''
import os

def train(params, ctx):
    if params["i"] % 2 == 0:
        with open(os.path.join(ctx.artifact_dir, "model.txt"), "w") as fh:
            fh.write(f"model {params['i']}")
    return {"score": float(params["i"])}
'''


def _artifacts(bundle: Path) -> dict[str, bytes]:
    root = bundle / "artifacts"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_cached_re_run_brings_each_trial_s_artifacts_from_the_cache(project, run_xrun, tmp_path: Path) -> None:
    """The bundle of a run whose every trial is cached holds the artifacts the
    trials wrote when they ran, and only theirs (none where none was written)."""
    project.file("experiments/some.py", WRITES_SOME)
    spec = project.spec("""
        sweep: {points: [{i: 0}, {i: 1}, {i: 2}, {i: 3}], method: list}
        trial: {function: "experiments.some:train"}
        name: some-artifacts
        xrun: 1
        code: {include: ["experiments/*.py"]}
    """)
    env = {"XRUN_CACHE_DIR": str(tmp_path / "cache")}
    first = run_xrun("run", spec.name, "-q", "-o", "first", cwd=project.root, env=env)
    assert first.code == 0, first.err
    again = run_xrun("run", spec, "-q", "-o", tmp_path / "again", cwd=tmp_path, env=env)
    assert again.code == 0, again.err
    assert [r["cached"] for r in read_journal(again.bundle / "trials.jsonl")] == [True] * 4
    assert _artifacts(again.bundle) == _artifacts(first.bundle) == {
        "t00000/model.txt": b"model 0", "t00002/model.txt": b"model 2"}  # fmt: skip


def test_a_cached_re_run_of_trials_that_wrote_no_artifacts_has_none(project, run_xrun, tmp_path: Path) -> None:
    project.file("experiments/none.py", "def train(params, ctx):\n    return {'score': 1.0}\n")
    spec = project.spec("""
        xrun: 1
        name: no-artifacts
        code: {include: ["experiments/*.py"]}
        trial: {function: "experiments.none:train"}
        sweep: {method: list, points: [{i: 0}, {i: 1}]}
    """)
    env = {"XRUN_CACHE_DIR": str(tmp_path / "cache")}
    for out in ("first", "again"):
        res = run_xrun("run", spec.name, "-q", "-o", out, cwd=project.root, env=env)
        assert res.code == 0, res.err
    assert not (tmp_path / "cache" / "trials").exists()
    assert [r["cached"] for r in read_journal(res.bundle / "trials.jsonl")] == [True, True]
    assert _artifacts(res.bundle) == {}
