"""Per-trial bookkeeping, two xrun source trees alternating: the 100,000 no-op
trial sweep (bench/run.py's dispatch spec), first run with an empty cache and
then the same run again with every trial cached, both with the default live
progress display (stderr a pseudo-terminal), as ``bench/run.py``'s firstrun case.

For each run: whole-process wall time, the driver's own CPU (user+system, last
psutil poll before exit), the CPU of the whole process tree (wait4's rusage:
the driver and the scheduler and workers it reaped), peak driver RSS, the load
average around it, and a digest of results.csv and of the journal with its
times and worker addresses blanked (the outputs must be the same bytes).

    python bench/driver_ab.py --a DIR [--b DIR] [--trials 100000] [--pairs 2] [--labels 'main REV,branch REV']
                              [--out bench/raw/driver-x.json]
    (DIR: mkdir DIR && git -C MAIN archive REV runner | tar -x -C DIR; default --b: this tree)

The trees alternate within each pair (a, b, b, a, ...) so load drifts touch both.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import run as h  # noqa: E402  (the harness: measure, with a pseudo-terminal)

_VOLATILE = re.compile(rb'"(start|end|worker|cached_from)":("[^"]*"|[0-9.e+-]+|null)')


def _digest_journal(path: Path) -> str:
    """sha256 of the journal's lines, sorted (they are written as trials end), with
    the fields that differ between runs blanked (times, workers, the run a cached result came from)."""
    with open(path, "rb") as fh:
        lines = sorted(_VOLATILE.sub(rb'"\1":_', line) for line in fh)
    return hashlib.sha256(b"".join(lines)).hexdigest()[:16]


def _digest_csv(path: Path) -> str:
    d = hashlib.sha256()
    with open(path, "rb") as fh:
        header = fh.readline()
        d.update(header)
        cols = header.decode().rstrip("\r\n").split(",")
        blank = [i for i, c in enumerate(cols) if c in ("start", "end", "worker", "duration")]
        for line in fh:
            parts = line.rstrip(b"\r\n").split(b",")
            for i in blank:
                if i < len(parts):
                    parts[i] = b"_"
            d.update(b",".join(parts))
    return d.hexdigest()[:16]


def one(label: str, tree: Path, spec: Path, cache: Path, ctx: h.Ctx, first: bool, trials: int) -> dict[str, Any]:
    out = ctx.work / "bundles" / f"{label}-{time.time_ns()}"
    env = {"PYTHONPATH": str(tree), "XRUN_CACHE_DIR": str(cache)}
    if first:
        shutil.rmtree(cache, ignore_errors=True)
    t_before = os.times()
    s = h.measure(f"{label} {'first' if first else 'cached'}", [*h.xrun_command(tree), "run", str(spec), "-o", str(out)],
                  timeout=600, env=env, cwd=ctx.work, logdir=ctx.logs, rss=True, tty=True)  # fmt: skip
    if s.returncode != 0:
        raise SystemExit(f"{label}: xrun exited with {s.returncode} (log: {ctx.logs})")
    t_after = os.times()
    tree_cpu = (t_after.children_user - t_before.children_user) + (t_after.children_system - t_before.children_system)
    bundles = sorted(out.glob("*/bundle.json"))
    row: dict[str, Any] = {
        "tree": label, "run": "first (empty cache)" if first else "cached re-run", "wall_s": s.seconds,
        "driver_cpu_s": s.driver_cpu_s, "tree_cpu_s": round(tree_cpu, 2), "driver_peak_rss_mb": s.peak_rss_mb,
        "returncode": s.returncode, "load_before": s.load_before, "load_after": s.load_after,
    }  # fmt: skip
    if bundles:
        b = bundles[-1].parent
        meta = json.loads((b / "bundle.json").read_text())
        row["trial_phase_s"] = meta.get("duration_seconds")
        row["counts"] = meta.get("counts")
        row["journal_digest"] = _digest_journal(b / "trials.jsonl")
        row["results_csv_digest"] = _digest_csv(b / "results.csv")
    n = (row.get("counts") or {}).get("total") or trials
    if s.driver_cpu_s:
        row["driver_us_per_trial"] = round(s.driver_cpu_s / n * 1e6, 1)
    shutil.rmtree(out, ignore_errors=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=100_000)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--a", type=Path, help="baseline source tree (holds runner/)")
    ap.add_argument("--b", type=Path, default=BENCH.parent, help="candidate source tree (default: this one)")
    ap.add_argument("--labels", default="", help="what the trees are, e.g. 'main a48694e,branch 420aad0'")
    ap.add_argument("--no-cached", action="store_true", help="first runs only")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.a is None:
        ap.error("--a DIR (a tree with the baseline's runner/) is required")
    work = Path(tempfile.mkdtemp(prefix="xrun-driver-ab-"))
    ctx = h.Ctx(work=work, quick=False, repeats=None, keep=False)
    spec = h.noop_spec(ctx, args.trials)
    trees = {"a": args.a.resolve(), "b": args.b.resolve()}
    for tree in trees.values():
        h.precompile(tree)
    rows: list[dict[str, Any]] = []
    try:
        for p in range(args.pairs):
            order = ("a", "b") if p % 2 == 0 else ("b", "a")
            for name in order:
                cache = work / f"cache-{name}"
                for first in (True,) if args.no_cached else (True, False):
                    r = one(name, trees[name], spec, cache, ctx, first, args.trials)
                    r["pair"] = p
                    rows.append(r)
                    print(json.dumps(r), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(tree: str, run: str, key: str) -> float | None:
        return h.middle([r[key] for r in rows if r["tree"] == tree and r["run"] == run and r.get(key) is not None])

    summary = {f"{t}/{run}/{k}": med(t, run, k) for t in trees for run in ("first (empty cache)", "cached re-run")
               for k in ("wall_s", "driver_cpu_s", "driver_us_per_trial", "tree_cpu_s", "driver_peak_rss_mb")}  # fmt: skip
    h.write_ab(args.out, __doc__.split("\n\n")[0], args.trials, trees, args.labels, summary, rows)

if __name__ == "__main__":
    main()
