"""Where the driver's CPU goes in the 100,000 no-op trial first run (bench/run.py's
dispatch spec, empty cache), two source trees alternating: the CPU seconds of
the driver's main thread inside each phase (the trial loop and, within it,
handling results and committing the cache; the pass over the journal; writing
the tables; the terminal's tables; sealing), its whole-process CPU and peak
RSS, and the CPU spent in Python's cyclic garbage collector.

Each run is ``xrun run SPEC`` in a process of its own with the phases timed by
``time.thread_time`` around the functions (a few hundred calls: no per-trial
overhead) and the collector timed by ``gc.callbacks``. CPU seconds, which the
load of a shared machine disturbs little; no display (stderr is not a terminal).

    python bench/driver_phases.py --a DIR [--b DIR] [--trials 100000] [--pairs 2] [--labels 'main REV,branch REV']
                                  [--out bench/raw/driver2-phases.json]
    (DIR: mkdir DIR && git -C MAIN archive REV runner | tar -x -C DIR; default --b: this tree)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import run as h  # noqa: E402  (the harness: the dispatch spec)

# Run in the measured process: wraps the phases, runs the CLI, prints one JSON line on stderr.
PROBE = r'''
import atexit, collections, functools, gc, importlib, json, resource, sys, threading, time
acc = collections.Counter()
gc_cpu = collections.Counter()
gc_n = collections.Counter()
_t0 = {}
def _gc(phase, info):
    if phase == "start":
        _t0[threading.get_ident()] = time.thread_time()
    else:
        g = info["generation"]
        gc_cpu[g] += time.thread_time() - _t0.get(threading.get_ident(), time.thread_time())
        gc_n[g] += 1
gc.callbacks.append(_gc)
def wrap(mod, name, owner=None, label=None):
    try:
        m = importlib.import_module(mod)
        o = getattr(m, owner) if owner else m
        fn = getattr(o, name)
    except (ImportError, AttributeError):
        return
    @functools.wraps(fn)
    def w(*a, **k):
        if threading.current_thread() is not threading.main_thread():
            return fn(*a, **k)
        t = time.thread_time()
        try:
            return fn(*a, **k)
        finally:
            acc[label or name] += time.thread_time() - t
    setattr(o, name, w)
wrap("runner.execute.executor", "run", "Executor", "trial loop")
wrap("runner.execute.executor", "_handle_unit", "Executor", "  handling results")
wrap("runner.execute.executor", "_flush", "Executor", "  flushing (cache, journal, display)")
wrap("runner.cache", "commit", "TrialCache", "    cache commits")
wrap("runner.run", "_one_pass", None, "pass over the journal (ledger + report scan)")
wrap("runner.bundle.write", "finish", "BundleWriter", "results.csv, points.csv, bundle.json")
wrap("runner.bundle.ledger", "glance", "Ledger", "terminal tables")
wrap("runner.run", "seal", None, "seal (report, RO-Crate, manifest)")
def report():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out = {"main_thread_cpu_s": round(time.thread_time(), 3), "process_cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
           "peak_rss_mb": round(ru.ru_maxrss / 1024, 1), "phases_cpu_s": {k: round(v, 3) for k, v in acc.items()},
           "gc_cpu_s": {str(g): round(v, 3) for g, v in sorted(gc_cpu.items())},
           "gc_collections": {str(g): n for g, n in sorted(gc_n.items())}}
    sys.stderr.write("PHASES " + json.dumps(out) + "\n")
atexit.register(report)
from runner.cli.app import main
sys.argv = ["xrun", *sys.argv[1:]]
main()
'''


def one(label: str, tree: Path, spec: Path, work: Path) -> dict[str, Any]:
    cache, out = work / f"cache-{label}", work / f"out-{label}"
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "XRUN_CACHE_DIR": str(cache)}
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    p = subprocess.run([sys.executable, "-c", PROBE, "run", str(spec), "-o", str(out)], env=env, cwd=work,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=900)  # fmt: skip
    wall = time.monotonic() - started
    line = next((x for x in p.stderr.splitlines() if x.startswith("PHASES ")), None)
    row: dict[str, Any] = {"tree": label, "returncode": p.returncode, "wall_s": round(wall, 2),
                           "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}  # fmt: skip
    if line is None:
        row["stderr_tail"] = p.stderr[-2000:]
    else:
        row.update(json.loads(line[len("PHASES "):]))
    shutil.rmtree(out, ignore_errors=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=100_000)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--a", type=Path, required=True, help="baseline source tree (holds runner/)")
    ap.add_argument("--b", type=Path, default=BENCH.parent, help="candidate source tree (default: this one)")
    ap.add_argument("--labels", default="", help="what the trees are, e.g. 'main a7541c4,branch 14bfbf5'")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="xrun-driver-phases-"))
    trees = {"a": args.a.resolve(), "b": args.b.resolve()}
    for tree in trees.values():
        h.precompile(tree)
    rows: list[dict[str, Any]] = []
    try:
        ctx = h.Ctx(work=work, quick=False, repeats=None, keep=False)
        spec = h.noop_spec(ctx, args.trials)
        for pair in range(args.pairs):
            for name in ("a", "b") if pair % 2 == 0 else ("b", "a"):
                r = one(name, trees[name], spec, work)
                r["pair"] = pair
                rows.append(r)
                print(json.dumps(r), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(tree: str, key: str) -> float | None:
        return h.middle([r[key] for r in rows if r["tree"] == tree and r.get(key) is not None])

    medians = {f"{t}/{k}": med(t, k) for t in trees for k in ("process_cpu_s", "main_thread_cpu_s", "peak_rss_mb")}
    for t in trees:
        cpu = medians[f"{t}/process_cpu_s"]
        medians[f"{t}/process_cpu_us_per_trial"] = round(cpu / args.trials * 1e6, 1) if cpu else None
    h.write_ab(args.out, __doc__.split("\n\n")[0], args.trials, trees, args.labels, medians, rows)

if __name__ == "__main__":
    main()
