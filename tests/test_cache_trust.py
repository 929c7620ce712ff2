"""Cache entries are not trusted, and storage can fail: a corrupt entry (a row
of the database, a database that is not one, or a file an earlier release
wrote) is a miss that the next result replaces; a read-only or full cache never
fails a run; a full disk under the bundle is a clean exit 3 with a terminal status."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.bundle.journal import read_journal
from runner.cache import TrialCache

KEY = "ab" + "0" * 62


def entry(key: str = KEY, score: float = 1.0, **extra) -> dict:
    return {"id": "t00000", "key": key, "params": {"a": 1}, "seed": 7, "status": "ok", "metrics": {"score": score},
            "error": None, "traceback": None, "failure_class": None, "attempts": 1, "history": [], "log": "",
            "run_id": "r", **extra}  # fmt: skip


ROW_KINDS = {
    "truncated": lambda key: json.dumps(entry(key)).encode()[:40],
    "garbage": lambda key: b"\x00\xff not json \x80",
    "empty": lambda key: b"",
    "json-list": lambda key: b"[1, 2, 3]",
    "wrong-shape": lambda key: json.dumps({**entry(key), "metrics": "lots", "attempts": "x"}).encode(),
    "other-key": lambda key: json.dumps(entry("cd" + "1" * 62)).encode(),
    "text-not-blob": lambda key: json.dumps(entry(key))[:-3],
}


def corrupt_row(cache: TrialCache, key: str, kind: str, *, only_if_absent: bool = False, table: str = "results") -> None:
    """Write a bad entry for ``key`` straight into the cache's database: into
    ``results``, where entries are stored, or ``entries``, the table of the
    previous release (still read; here made in another layout than it made)."""
    conn = sqlite3.connect(cache.db_path, timeout=60)
    try:
        body = ROW_KINDS[kind](key)
        if table == "entries":
            conn.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID")
            verb = "INSERT OR IGNORE" if only_if_absent else "INSERT OR REPLACE"
            conn.execute(f"{verb} INTO entries (key, body) VALUES (?, ?)", (key, body))
        else:
            conn.execute("CREATE TABLE IF NOT EXISTS results (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, "
                         "key TEXT NOT NULL, body BLOB NOT NULL)")  # fmt: skip
            k = int(key[:16], 16) - (1 << 64 if int(key[:16], 16) >= 1 << 63 else 0)  # the key's first 64 bits
            conn.execute("BEGIN IMMEDIATE")
            present = conn.execute("SELECT 1 FROM results WHERE k = ? AND key = ?", (k, key)).fetchone()
            if not (present and only_if_absent):
                conn.execute("DELETE FROM results WHERE k = ? AND key = ?", (k, key))
                conn.execute("INSERT INTO results (k, key, body) VALUES (?, ?, ?)", (k, key, body))
        conn.commit()
    finally:
        conn.close()


def corrupt(cache: TrialCache, key: str, kind: str) -> None:
    """A bad entry file where an earlier release stored ``key`` (still read)."""
    path = cache._path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        path.rmdir()
    elif os.path.lexists(path):
        path.unlink()
    good = json.dumps(entry(key)).encode()
    if kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "garbage":
        path.write_bytes(b"\x00\xff not json \x80")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "directory":
        (path / "inner").mkdir(parents=True)
    elif kind == "json-list":
        path.write_text("[1, 2, 3]")
    elif kind == "wrong-shape":
        path.write_text(json.dumps({**entry(key), "metrics": "lots", "attempts": "x"}))
    elif kind == "link-to-dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        raise AssertionError(kind)


KINDS = ["truncated", "garbage", "empty", "directory", "json-list", "wrong-shape", "link-to-dev-zero", "fifo"]


@pytest.mark.parametrize(("store", "kind"), [("row", k) for k in ROW_KINDS] + [("old-row", k) for k in ROW_KINDS]
                         + [("file", k) for k in KINDS])  # fmt: skip
def test_a_corrupt_entry_is_a_miss_and_the_next_result_replaces_it(tmp_path: Path, store: str, kind: str) -> None:
    if store == "file":
        corrupt(TrialCache(tmp_path), KEY, kind)
    else:
        corrupt_row(TrialCache(tmp_path), KEY, kind, table="entries" if store == "old-row" else "results")
    cache = TrialCache(tmp_path)
    assert cache.get(KEY) is None
    cache.put(entry(score=2.0), [("out/model.txt", b"weights")])
    assert cache.get(KEY) == entry(score=2.0)
    assert (cache.artifacts_dir(KEY) / "out" / "model.txt").read_bytes() == b"weights"
    cache.put(entry(score=3.0))  # the first valid result stays
    assert cache.get(KEY)["metrics"] == {"score": 2.0}
    assert cache.unwritable is None


def _put_many(root: str, key: str, score: float, corrupt_first: bool) -> None:
    cache = TrialCache(Path(root))
    for i in range(30):
        if corrupt_first and i % 3 == 0 and cache.get(key) is None:
            with contextlib.suppress(OSError):
                corrupt(cache, key, "truncated")
            with contextlib.suppress(sqlite3.Error):
                corrupt_row(cache, key, "truncated", only_if_absent=True)
        if i % 2:
            with cache.batch():  # one transaction for several results, as a run stores them
                cache.put(entry(key, score))
                cache.put(entry(key[:-4] + "ffff", score))
        else:
            cache.put(entry(key, score))


def test_concurrent_writers_leave_one_valid_first_result(tmp_path: Path) -> None:
    """Processes race to store, and to repair, the same keys: each key ends with
    one valid entry, and it never changes once a reader has seen it valid."""
    ctx = multiprocessing.get_context("spawn")
    keys = [f"{i:02x}" + uuid.uuid4().hex * 2 for i in range(3)]
    keys = [k[:64] for k in keys]
    procs = [ctx.Process(target=_put_many, args=(str(tmp_path), keys[i % 3], float(i), i < 3)) for i in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    cache = TrialCache(tmp_path)
    for key in keys:
        got = cache.get(key)
        assert got is not None and got["key"] == key
        cache.put(entry(key, 99.0))
        assert cache.get(key) == got
    assert not list(tmp_path.glob("trials/*/.*.tmp"))  # no temporary files left behind
    conn = sqlite3.connect(cache.db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


_junk = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda v: json.dumps(v).encode(), st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)),
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
        max_leaves=10)),
    st.builds(lambda patch: json.dumps({**entry(), **patch}).encode(), st.dictionaries(
        st.sampled_from(["key", "status", "metrics", "id", "params", "log", "history", "attempts"]),
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.just({"m": "x"}), st.just([1])),
        max_size=3)),
    st.builds(lambda n: json.dumps(entry()).encode()[:n], st.integers(min_value=0, max_value=200)),
)  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=_junk, store=st.sampled_from(["row", "file"]))
def test_any_entry_bytes_are_a_miss_or_a_valid_hit(tmp_path_factory, data: bytes, store: str) -> None:
    """Property: whatever bytes sit in an entry (a database row, or a file an
    earlier release wrote), get() never raises and returns None or an entry
    whose metrics the run can use; put() then leaves a valid one."""
    cache = TrialCache(tmp_path_factory.mktemp("c"))
    if store == "row":
        ROW_KINDS["junk"] = lambda key: data
        corrupt_row(cache, KEY, "junk")
    else:
        path = cache._path(KEY)
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        cache = TrialCache(cache.root)  # as on a cache an earlier release wrote
    got = cache.get(KEY)
    if got is not None:
        assert got["key"] == KEY and got["status"] == "ok"
        assert all(isinstance(v, (int, float)) or v is None for v in got["metrics"].values())
    cache.put(entry(score=5.0))
    assert cache.get(KEY) == (got if got is not None else entry(score=5.0))


@pytest.mark.parametrize("kind", ["garbage", "empty-dir", "link-to-dev-zero", "fifo", "truncated-db"])
def test_a_database_that_is_not_one_is_a_miss_then_set_aside(tmp_path: Path, kind: str) -> None:
    good = TrialCache(tmp_path / "good")
    good.put(entry())
    good.close()
    cache = TrialCache(tmp_path / "c")
    db = cache.db_path
    db.parent.mkdir(parents=True)
    if kind == "garbage":
        db.write_bytes(b"SQLite format 3\x00" + os.urandom(5000))
    elif kind == "empty-dir":
        db.mkdir()
    elif kind == "link-to-dev-zero":
        db.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(db)
    else:
        db.write_bytes(good.db_path.read_bytes()[:1500])
    assert cache.get(KEY) is None
    cache.put(entry(score=4.0))
    assert cache.unwritable is None
    assert TrialCache(tmp_path / "c").get(KEY) == entry(score=4.0)
    assert [p.name.startswith("trials.sqlite.corrupt-") for p in (tmp_path / "c").iterdir()].count(True) == 1


WRITER = """
import os, sys, time
from pathlib import Path
from runner.cache import TrialCache
sys.path.insert(0, {tests!r})
from test_cache_trust import entry
cache = TrialCache(Path({root!r}))
with cache.batch():
    for i in range(50):
        cache.put(entry(f"{{i:02x}}" + "a" * 62, float(i)))
with cache.batch():
    for i in range(50, 100):
        cache.put(entry(f"{{i:02x}}" + "a" * 62, float(i)), [("out/f.txt", b"x")])
    Path({ready!r}).write_text("in the second batch")
    time.sleep(600)
"""


def _kill_when_ready(code: str, ready: Path) -> None:
    """Run ``code`` in a process of its own and SIGKILL it once it wrote ``ready``."""
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_a_writer_killed_inside_a_batch_loses_only_that_batch(tmp_path: Path) -> None:
    """SIGKILL while a batch's transaction is open: the batches committed before
    are whole, the open one is absent (its trials run again), and the cache
    takes new results at once (no stale lock)."""
    ready = tmp_path / "ready"
    code = WRITER.format(tests=str(Path(__file__).parent), root=str(tmp_path / "c"), ready=str(ready))
    _kill_when_ready(code, ready)
    cache = TrialCache(tmp_path / "c")
    keys = [f"{i:02x}" + "a" * 62 for i in range(100)]
    assert [cache.get(k)["metrics"]["score"] for k in keys[:50]] == [float(i) for i in range(50)]  # type: ignore[index]
    assert all(cache.get(k) is None for k in keys[50:])
    start = time.monotonic()
    cache.put(entry(keys[60], 60.0), [("out/f.txt", b"y")])
    assert time.monotonic() - start < 30 and cache.unwritable is None
    assert cache.get(keys[60])["metrics"] == {"score": 60.0}  # type: ignore[index]
    assert (cache.artifacts_dir(keys[60]) / "out" / "f.txt").read_bytes() == b"y"


MULTI_TASK_WRITER = """
import json, sys, time
from pathlib import Path
from runner.cache import TrialCache
sys.path.insert(0, {tests!r})
from test_cache_trust import entry
cache = TrialCache(Path({root!r}))
cache.put(entry("00" + "a" * 62, 0.0))
for task in range(3):  # as a run stages several tasks' results for one commit
    for i in range(1 + task * 10, 11 + task * 10):
        key = f"{{i:02x}}" + "a" * 62
        cache.stage(key, json.dumps(entry(key, float(i))).encode(), [("out/f.txt", b"x")])
    cache.stage_imports("ff" * 32, f"{{1 + task * 10:02x}}" + "a" * 62, {{"numpy": "2.0.0"}})
stored = 0
real = cache._store_artifacts
def store(key, artifacts):
    global stored
    real(key, artifacts)
    stored += 1
    if stored == 25:  # most artifacts in place, nothing committed
        Path({ready!r}).write_text("inside the commit")
        time.sleep(600)
cache._store_artifacts = store
cache.commit()
"""


def test_a_writer_killed_inside_a_multi_task_commit_leaves_none_of_its_entries(tmp_path: Path) -> None:
    """SIGKILL after a commit of three tasks' results has put most of their
    artifacts in place: none of those results is an entry, no imported-versions
    row of them is kept, an earlier commit is whole, and the next writer
    replaces the leftover artifacts at once."""
    ready = tmp_path / "ready"
    code = MULTI_TASK_WRITER.format(tests=str(Path(__file__).parent), root=str(tmp_path / "c"), ready=str(ready))
    _kill_when_ready(code, ready)
    cache = TrialCache(tmp_path / "c")
    keys = [f"{i:02x}" + "a" * 62 for i in range(31)]
    assert cache.get(keys[0])["metrics"] == {"score": 0.0}  # type: ignore[index]
    assert all(cache.get(k) is None for k in keys[1:])
    assert os.path.lexists(cache.artifacts_dir(keys[5]))  # left behind by the killed writer...
    assert cache.imports_under("ff" * 32, 10, 1 << 20) == []
    cache.put(entry(keys[5], 5.0))
    assert cache.get(keys[5])["metrics"] == {"score": 5.0}  # type: ignore[index]
    assert not os.path.lexists(cache.artifacts_dir(keys[5]))  # ...and not taken as this result's
    conn = sqlite3.connect(cache.db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_an_interrupted_commit_stores_nothing_and_keeps_what_is_staged(tmp_path: Path) -> None:
    """Ctrl-C inside a commit: no entry, the results stay staged, and the next
    commit stores them all (a run commits again before it journals them)."""
    cache = TrialCache(tmp_path)
    keys = [f"{i:02x}" + "b" * 62 for i in range(5)]
    for k in keys:
        cache.stage(k, json.dumps(entry(k)).encode(), [("a.txt", b"1")])
    cache.stage_imports("ee" * 32, keys[0], {"numpy": "2.0.0"})
    real = cache._store_artifacts
    calls = []

    def store(key: str, artifacts: list) -> None:
        calls.append(key)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real(key, artifacts)

    cache._store_artifacts = store  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        cache.commit()
    assert all(TrialCache(tmp_path).get(k) is None for k in keys)
    cache.commit()
    fresh = TrialCache(tmp_path)
    assert all(fresh.get(k) == entry(k) for k in keys)
    assert all((fresh.artifacts_dir(k) / "a.txt").read_bytes() == b"1" for k in keys)
    assert [row[0] for row in fresh.imports_under("ee" * 32, 10, 1 << 20)] == [keys[0]]


def test_of_several_staged_results_for_one_key_the_first_stays(tmp_path: Path) -> None:
    cache = TrialCache(tmp_path)
    with cache.batch():
        cache.put(entry(KEY, 1.0), [("first.txt", b"1")])
        cache.put(entry(KEY, 2.0), [("second.txt", b"2")])
    assert cache.get(KEY)["metrics"] == {"score": 1.0}  # type: ignore[index]
    assert sorted(p.name for p in cache.artifacts_dir(KEY).iterdir()) == ["first.txt"]


# ---------------------------------------------------------------- through xrun

TRIAL = '''
def train(params, ctx):
    print("x" * 40000)
    return {"score": float(params["a"])}
'''


def spec(project, output: str = "runs", n: int = 5) -> Path:
    project.file("experiments/t.py", TRIAL)
    return project.spec(f"""
        xrun: 1
        name: trust
        trial: {{function: "experiments.t:train"}}
        sweep:
          parameters: {{a: {list(range(n))}}}
        cluster: {{workers: 1}}
        output: {output}
    """)


def test_corrupt_entries_are_recomputed_and_repaired_by_a_run(project, run_xrun) -> None:
    s = spec(project)
    first = run_xrun(s, "-q", cwd=project.root)
    assert first.code == 0, first.err
    cache = TrialCache()
    keys = [r["key"] for r in read_journal(first.bundle / "trials.jsonl")]
    for key, kind in zip(keys, ["truncated", "garbage", "empty", "json-list", "wrong-shape"]):
        corrupt_row(cache, key, kind)
    second = run_xrun(s, "-q", cwd=project.root)
    assert second.code == 0, second.err
    assert "internal error" not in second.err
    assert not any(r["cached"] for r in read_journal(second.bundle / "trials.jsonl"))
    third = run_xrun(s, "-q", cwd=project.root)  # before, corrupt entries stayed misses forever
    assert all(r["cached"] for r in read_journal(third.bundle / "trials.jsonl"))


@contextlib.contextmanager
def tmpfs(where: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    """A real small file system (tmpfs), so ENOSPC and EROFS come from the kernel."""
    where.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {res.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_read_only_cache_warns_and_runs_uncached(project, run_xrun, tmp_path) -> None:
    s = spec(project, n=3)
    with tmpfs(tmp_path / "ro-cache", "1m", read_only=True) as cache_dir:
        res = run_xrun(s, cwd=project.root, env={"XRUN_CACHE_DIR": str(cache_dir)})
    assert res.code == 0, res.err
    assert "internal error" not in res.err and "Traceback" not in res.err
    assert "cannot write to the trial cache" in res.err and "without caching" in res.err
    assert json.loads((res.bundle / "bundle.json").read_text())["status"] == "ok"
    assert len(read_journal(res.bundle / "trials.jsonl")) == 3


def test_full_cache_disk_warns_and_runs_uncached(project, run_xrun, tmp_path) -> None:
    s = spec(project, n=4)
    with tmpfs(tmp_path / "full-cache", "64k") as cache_dir:
        res = run_xrun(s, cwd=project.root, env={"XRUN_CACHE_DIR": str(cache_dir)})
    assert res.code == 0, res.err
    assert "No space left on device" in res.err and "without caching" in res.err
    assert json.loads((res.bundle / "bundle.json").read_text())["status"] == "ok"
    records = read_journal(res.bundle / "trials.jsonl")
    assert sorted(r["metrics"]["score"] for r in records) == [0.0, 1.0, 2.0, 3.0]


def test_full_disk_under_the_bundle_exits_3_with_a_terminal_status(project, run_xrun, tmp_path) -> None:
    with tmpfs(tmp_path / "small", "160k") as out:
        s = spec(project, output=str(out), n=8)
        res = run_xrun(s, cwd=project.root, env={"XRUN_ALLOW_OUTSIDE_PATHS": "1"})
        assert res.code == 3, res.err
        assert "internal error" not in res.err and "Traceback" not in res.err
        assert "No space left on device" in res.err and "kept in the trial cache" in res.err
        (bundle,) = list(out.iterdir())
        meta = json.loads((bundle / "bundle.json").read_text())
        assert meta["status"] == "error" and "No space left" in meta["error"]
        journaled = {r["key"] for r in read_journal(bundle / "trials.jsonl") if r["status"] == "ok"}
    # Nothing computed is lost: with space again, every journaled trial comes from the cache.
    s = spec(project, output="runs", n=8)
    again = run_xrun(s, "-q", cwd=project.root)
    assert again.code == 0, again.err
    cached = {r["key"] for r in read_journal(again.bundle / "trials.jsonl") if r["cached"]}
    assert journaled <= cached and cached


def test_an_entry_an_earlier_release_wrote_is_still_a_hit(tmp_path: Path) -> None:
    path = TrialCache(tmp_path)._path(KEY)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(entry(score=7.0)))
    cache = TrialCache(tmp_path)  # opened on a cache an earlier release filled
    assert cache.get(KEY) == entry(score=7.0)
    cache.put(entry(score=8.0))  # the first valid result stays
    assert TrialCache(tmp_path).get(KEY) == entry(score=7.0)


def test_looking_up_many_keys_at_once_answers_as_one_at_a_time(tmp_path: Path) -> None:
    """The plan looks keys up a few hundred per query: a valid row or an earlier
    release's file is a hit, any corrupt row or file a miss, exactly as ``get`` says."""
    keys = [f"{i:02x}" + "0" * 62 for i in range(40)]
    TrialCache(tmp_path).put(entry(keys[0], score=0.5))
    for i, kind in enumerate(ROW_KINDS, 1):
        corrupt_row(TrialCache(tmp_path), keys[i], kind)
    legacy = TrialCache(tmp_path)
    for i, kind in enumerate(KINDS, 20):
        corrupt(legacy, keys[i], kind)
    good = legacy._path(keys[30])
    good.parent.mkdir(parents=True, exist_ok=True)
    good.write_text(json.dumps(entry(keys[30])))
    cache = TrialCache(tmp_path)  # sees the legacy files
    one_by_one = {k: cache.get(k) for k in keys}
    assert cache.get_many(keys * 20) == {k: e for k, e in one_by_one.items() if e is not None}  # > one query's worth
    assert set(cache.get_many(keys)) == {keys[0], keys[30]}


def test_a_killed_writers_artifacts_are_not_taken_by_a_batch_without_artifacts(tmp_path: Path) -> None:
    """A batch checks once whether trials/ exists; leftovers under it are still replaced."""
    cache = TrialCache(tmp_path)
    stale = cache.artifacts_dir(KEY) / "old.txt"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"from a writer killed before its commit")
    with cache.batch():
        cache.put(entry(KEY))
        cache.put(entry("cd" + "0" * 62))
    assert cache.get(KEY) == entry(KEY)
    assert not os.path.lexists(cache.artifacts_dir(KEY))
