"""Micro-benchmark of the trial cache's write path (runner/cache.py), runnable alone.

Writes N realistic entries (~400-byte bodies, random 64-hex keys, one
``environment: current`` imports row each, as a no-op sweep's) into a new cache
in batches like the executor's flushes, and reports the time per trial of the
commits, layout by layout:

* ``tc``: :class:`runner.cache.TrialCache` as importable (``PYTHONPATH`` picks
  the code: main's tree extracted with ``git archive`` against this one's),
  through ``stage``/``stage_imports``/``commit`` as the executor calls them;
* ``sql:<variant>``: the same transactions in raw SQL, one layout each
  (``main``: main's tables; ``hash``: rowid tables written in order with a small
  index on the key's first 64 bits; ``+p8k``/``+ckpt…``: page size and
  checkpoint policy on top).

    python bench/cache_write.py [--trials 100000] [--batch 1500] [--reps 2]
                                [--prefill 0] [--only tc,sql:main,...] [--out bench/raw/x.json]

Variants alternate within each repetition (load on a shared machine shifts
between them); the load average is recorded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MAX = 64 * 1024 * 1024
IMPORTED = {f"pkg{i}": f"{i}.{i}.0" for i in range(12)}


def make_entries(n: int, seed: int = 1) -> list[tuple[str, bytes, str]]:
    """(key, body, scope) of n no-op trials, bodies as the executor encodes them."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        key = hashlib.sha256(f"k{seed}-{i}".encode()).hexdigest()
        scope = hashlib.sha256(f"s{seed}-{i}".encode()).hexdigest()
        x = rnd.randrange(10**9)
        body = (f'{{"id":"t{i:05d}","key":"{key}","params":{{"i":{x}}},"seed":{rnd.randrange(2**31)},"repeat":0,'
                f'"status":"ok","metrics":{{"x":{x}}},"error":null,"traceback":null,"failure_class":null,'
                f'"worker":"tcp://127.0.0.1:39127","start":{time.time()},"end":{time.time()},"attempts":1,'
                f'"history":[],"run_id":"bench-dispatch-20261130T180449Z-7bf7d1","log":""}}')
        out.append((key, body.encode(), scope))
    return out


def batches(entries: list[Any], size: int) -> list[list[Any]]:
    return [entries[i : i + size] for i in range(0, len(entries), size)]


# ------------------------------------------------------------------ TrialCache as importable


def run_tc(root: Path, entries: list[tuple[str, bytes, str]], size: int) -> dict[str, float]:
    from runner.cache import TrialCache

    cache = TrialCache(root)
    if PREFILL:  # one commit of the earlier runs' entries
        for key, body, scope in PREFILL:
            cache.stage(key, body, [])
            cache.stage_imports(scope, key, IMPORTED)
        cache.commit()
    commit = cpu = 0.0
    t0 = time.perf_counter()
    for chunk in batches(entries, size):
        imported = dict(IMPORTED)  # one object per batch, as a unit's results share one
        for key, body, scope in chunk:
            cache.stage(key, body, [])
            cache.stage_imports(scope, key, imported)
        p0 = time.thread_time()
        c0 = time.perf_counter()
        cache.commit()
        commit += time.perf_counter() - c0
        cpu += time.thread_time() - p0
    total = time.perf_counter() - t0
    assert cache.unwritable is None, cache.unwritable
    cache.close()
    return {"commit_s": commit, "commit_cpu_s": cpu, "total_s": total}


# ------------------------------------------------------------------ raw SQL variants


def _key64(key: str) -> int:
    v = int(key[:16], 16)
    return v - (1 << 64) if v >= 1 << 63 else v


class SqlMain:
    """main 729dbf2's tables and statements."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.c = conn
        for ddl in ("CREATE TABLE entries (key TEXT PRIMARY KEY, body BLOB NOT NULL)",
                    "CREATE TABLE imports (scope TEXT NOT NULL, key TEXT NOT NULL, imported TEXT NOT NULL, "
                    "at REAL NOT NULL, PRIMARY KEY (scope, key)) WITHOUT ROWID",
                    "CREATE TABLE import_sets (digest TEXT PRIMARY KEY, body BLOB NOT NULL)"):  # fmt: skip
            conn.execute(ddl)

    def found(self, keys: list[str]) -> set[str]:
        out = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = ("SELECT key, CASE WHEN typeof(body) = 'blob' AND length(body) <= ? THEN body END "
                 f"FROM entries WHERE key IN ({','.join('?' * len(chunk))})")  # fmt: skip
            out.update(k for k, b in self.c.execute(q, (MAX, *chunk)) if b is not None and json.loads(b))
        return out

    def write(self, batch: list[tuple[str, bytes, str]], digest: str, now: float) -> None:
        self.c.executemany("INSERT OR REPLACE INTO entries (key, body) VALUES (?, ?)", [(k, b) for k, b, _ in batch])
        self.c.executemany("INSERT OR IGNORE INTO imports (scope, key, imported, at) VALUES (?, ?, ?, ?)",
                           [(s, k, digest, now) for k, _, s in batch])  # fmt: skip


class SqlHash:
    """Rowid tables appended in order, looked up through a small index on the
    first 64 bits of the key (and of the scope)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.c = conn
        for ddl in ("CREATE TABLE results (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, key TEXT NOT NULL, body BLOB NOT NULL)",
                    "CREATE INDEX results_k ON results (k)",
                    "CREATE TABLE imported (id INTEGER PRIMARY KEY, s INTEGER NOT NULL, scope TEXT NOT NULL, "
                    "key TEXT NOT NULL, imported TEXT NOT NULL, at REAL NOT NULL)",
                    "CREATE INDEX imported_s ON imported (s)",
                    "CREATE TABLE import_sets (digest TEXT PRIMARY KEY, body BLOB NOT NULL)"):  # fmt: skip
            conn.execute(ddl)

    index = staticmethod(lambda key: _key64(key))  # the indexed integer of a key

    def found(self, keys: list[str]) -> set[str]:
        want = {self.index(k): k for k in keys}
        hits: set[int] = set()
        ks = list(want)
        for i in range(0, len(ks), 500):
            chunk = ks[i : i + 500]
            hits.update(r[0] for r in self.c.execute(f"SELECT k FROM results WHERE k IN ({','.join('?' * len(chunk))})", chunk))
        return {want[h] for h in hits}  # (a real one reads these few rows' keys and bodies)

    def write(self, batch: list[tuple[str, bytes, str]], digest: str, now: float) -> None:
        self.c.executemany("INSERT INTO results (k, key, body) VALUES (?, ?, ?)", [(self.index(k), k, b) for k, b, _ in batch])
        self.c.executemany("INSERT INTO imported (s, scope, key, imported, at) VALUES (?, ?, ?, ?, ?)",
                           [(self.index(s), s, k, digest, now) for k, _, s in batch])  # fmt: skip


class SqlMainFound(SqlMain):
    """main's tables, the check reading keys only (bodies decoded only where found)."""

    def found(self, keys: list[str]) -> set[str]:
        out = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            out.update(r[0] for r in self.c.execute(f"SELECT key FROM entries WHERE key IN ({','.join('?' * len(chunk))})", chunk))
        return out


class SqlHash32(SqlHash):
    """As SqlHash, the index on the key's first 32 bits (4-byte integers)."""

    index = staticmethod(lambda key: _key32(key))


def _key32(key: str) -> int:
    v = int(key[:8], 16)
    return v - (1 << 32) if v >= 1 << 31 else v


LAYOUTS = {"main": SqlMain, "mainfound": SqlMainFound, "hash": SqlHash, "hash32": SqlHash32}


PREFILL: list[tuple[str, bytes, str]] = []  # entries of earlier runs, stored before the timed ones


def _prefill(conn: sqlite3.Connection, impl: Any, digest: str) -> None:
    for i in range(0, len(PREFILL), 100_000):
        conn.execute("BEGIN")
        impl.write(PREFILL[i : i + 100_000], digest, time.time())
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def run_sql(root: Path, entries: list[tuple[str, bytes, str]], size: int, variant: str) -> dict[str, float]:
    layout, *opts = variant.split("+")
    root.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(root / "trials.sqlite", isolation_level=None)
    page = 4096
    ckpt = 10_000
    for o in opts:
        if o.startswith("p"):
            page = int(o[1:].rstrip("k")) * 1024
        elif o.startswith("ckpt"):
            ckpt = int(o[4:])
    conn.execute(f"PRAGMA page_size={page}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA cache_size=-{32 * 1024}")
    conn.execute(f"PRAGMA wal_autocheckpoint={ckpt}")
    conn.execute(f"PRAGMA journal_size_limit={ckpt * page}")
    impl = LAYOUTS[layout](conn)
    digest = hashlib.sha256(json.dumps(IMPORTED, sort_keys=True).encode()).hexdigest()
    conn.execute("INSERT INTO import_sets VALUES (?, ?)", (digest, json.dumps(IMPORTED).encode()))
    _prefill(conn, impl, digest)
    t = {"check_s": 0.0, "write_s": 0.0, "commit_s": 0.0, "commit_cpu_s": 0.0}
    t0 = time.perf_counter()
    for chunk in batches(entries, size):
        p0 = time.thread_time()
        c0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        impl.found(list({k: None for k, _, _ in chunk}))
        c1 = time.perf_counter()
        impl.write(chunk, digest, time.time())
        c2 = time.perf_counter()
        conn.execute("COMMIT")
        c3 = time.perf_counter()
        t["commit_cpu_s"] += time.thread_time() - p0
        t["check_s"] += c1 - c0
        t["write_s"] += c2 - c1
        t["commit_s"] += c3 - c0
    t["total_s"] = time.perf_counter() - t0
    conn.close()
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1500)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--only", default="tc,sql:main,sql:mainfound,sql:hash,sql:hash+p8k,sql:hash+ckpt2000")
    ap.add_argument("--prefill", type=int, default=0, help="entries of earlier runs in the cache before (0: empty)")
    ap.add_argument("--label", default="", help="a name for this tree's TrialCache (tc), e.g. main or branch")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    entries = make_entries(a.trials)
    PREFILL[:] = make_entries(a.prefill, seed=2)
    variants = [v for v in a.only.split(",") if v]
    results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for rep in range(a.reps):
        for v in variants:
            root = Path(tempfile.mkdtemp(prefix="xrun-cache-bench-"))
            try:
                r = run_tc(root / "c", entries, a.batch) if v == "tc" else run_sql(root / "c", entries, a.batch, v[4:])
                r["db_bytes"] = sum(p.stat().st_size for p in (root / "c").iterdir() if p.is_file())
            finally:
                shutil.rmtree(root, ignore_errors=True)
            r["load"] = os.getloadavg()[0]
            results[v].append(r)
            us = 1e6 * r["commit_s"] / a.trials
            print(f"rep {rep} {v:24s} commit {r['commit_s']:6.2f} s = {us:6.1f} us/trial "
                  + " ".join(f"{k} {x:.2f}" for k, x in r.items() if k not in ("commit_s",)), flush=True)  # fmt: skip
    summary = {v: {"commit_us_per_trial_min": round(min(1e6 * r["commit_s"] / a.trials for r in rs), 1),
                   "commit_cpu_us_per_trial_min": round(min(1e6 * r["commit_cpu_s"] / a.trials for r in rs), 1)}
               for v, rs in results.items()}  # fmt: skip
    out = {"trials": a.trials, "prefill": a.prefill, "batch": a.batch, "label": a.label, "python": sys.version.split()[0],
           "sqlite": sqlite3.sqlite_version, "runs": results, "summary": summary}  # fmt: skip
    print(json.dumps(summary, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
