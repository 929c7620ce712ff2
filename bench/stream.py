"""The streamed plan, A/B against another source tree (alternating, load recorded).

    python bench/stream.py --xrun-src DIR --case plan --n 1000000 --out bench/raw/stream-plan.json
    python bench/stream.py --xrun-src DIR --case cached --n 100000 --out bench/raw/stream-cached.json
    python bench/stream.py --xrun-src DIR --case run --n 1000000 --timeout 300 --out bench/raw/stream-run1m.json

* ``plan``: ``xrun plan SPEC --json`` of the dispatch spec (random, ``environment: current``)
  with an empty cache: wall time and the driver's peak RSS.
* ``cached``: the same spec run once (this tree) to fill the cache, then run again with
  every trial cached, by each tree in turn: wall time and peak RSS.
* ``run``: ``xrun run -q --no-cache`` for at most ``--timeout`` seconds: the driver's RSS
  sampled every second (its peak, and the trials journaled by then), each tree in turn.

Each sample polls the driver process's RSS (not its children's) every 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import NOOP_SPEC, xrun_command  # noqa: E402

XRUN = str(Path(sys.executable).with_name("xrun"))


def sample(argv: list[str], env: dict[str, str], cwd: Path, timeout: float, journal: Path | None = None) -> dict[str, Any]:
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, env={**os.environ, **env}, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    ps = psutil.Process(proc.pid)
    peak, series, last = 0, [], 0.0
    timed_out = False
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss
        except psutil.Error:
            break
        peak = max(peak, rss)
        now = time.monotonic() - t0
        if now - last >= 1.0:
            last = now
            done = None
            if journal is not None:
                files = list(journal.glob("*/trials.jsonl"))
                done = sum(f.stat().st_size for f in files) if files else 0
            series.append([round(now, 1), round(rss / 2**20, 1), done])
        if now > timeout:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    out, err = proc.communicate()
    return {"seconds": round(time.monotonic() - t0, 2), "peak_rss_mb": round(peak / 2**20, 1), "returncode": proc.returncode,
            "timed_out": timed_out, "load1_before": round(load, 2), "load1_after": round(os.getloadavg()[0], 2),
            "series": series, "stdout_tail": out.decode(errors="replace")[-400:], "stderr_tail": err.decode(errors="replace")[-400:]}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--xrun-src", type=Path, required=True, help="the other tree (PYTHONPATH=DIR)")
    ap.add_argument("--case", choices=("plan", "cached", "run"), required=True)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="xrun-stream-bench-"))
    shutil.copy(HERE / "baselines" / "noop.py", work / "noop.py")
    spec = work / "spec.yaml"
    spec.write_text(NOOP_SPEC.format(n=args.n))
    trees = {"other": {"PYTHONPATH": str(args.xrun_src.resolve())}, "this": {}}
    results: dict[str, Any] = {"case": args.case, "n": args.n, "other": str(args.xrun_src), "samples": []}
    try:
        if args.case == "cached":
            env = {"XRUN_CACHE_DIR": str(work / "cache")}
            results["fill"] = sample([XRUN, "run", str(spec), "-q", "-o", str(work / "fill")], env, work, args.timeout)
        for i in range(args.repeats):
            for name in (("other", "this") if i % 2 == 0 else ("this", "other")):
                env = dict(trees[name])
                xrun = xrun_command(args.xrun_src.resolve()) if name == "other" else [XRUN]
                if args.case == "plan":
                    env["XRUN_CACHE_DIR"] = str(work / f"cache-{name}-{i}")
                    s = sample([*xrun, "plan", str(spec), "--json"], env, work, args.timeout)
                elif args.case == "cached":
                    env["XRUN_CACHE_DIR"] = str(work / "cache")
                    s = sample([*xrun, "run", str(spec), "-q", "-o", str(work / f"out-{name}-{i}")], env, work, args.timeout)
                else:
                    env["XRUN_CACHE_DIR"] = str(work / f"cache-{name}-{i}")
                    out = work / f"out-{name}-{i}"
                    s = sample([*xrun, "run", str(spec), "-q", "--no-cache", "-o", str(out)], env, work, args.timeout, out)
                    shutil.rmtree(out, ignore_errors=True)
                    shutil.rmtree(work / f"cache-{name}-{i}", ignore_errors=True)
                s["tree"] = name
                results["samples"].append(s)
                print(name, {k: s[k] for k in ("seconds", "peak_rss_mb", "returncode", "timed_out", "load1_before")}, flush=True)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(results, indent=1) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
