"""The 1,000,000-trial random no-op sweep (bench/run.py's dispatch spec) once,
``xrun run SPEC -q --no-cache``: wall time, the driver's peak RSS (psutil, every
20 ms) and CPU, the load around it. A check that nothing holds every trial
(goal: driver RSS <= 500 MB), not an A/B.

    python bench/driver_million.py [--tree DIR] [--trials 1000000] [--out bench/raw/driver-1m.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import run as h  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", type=Path, default=BENCH.parent, help="source tree holding runner/ (default: this one)")
    ap.add_argument("--trials", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="xrun-driver-1m-"))
    try:
        ctx = h.Ctx(work=work, quick=False, repeats=None, keep=False)
        spec = h.noop_spec(ctx, args.trials)
        env = {"PYTHONPATH": str(args.tree.resolve()), "XRUN_CACHE_DIR": str(work / "cache")}
        s = h.measure("million", [*h.xrun_command(args.tree.resolve()), "run", str(spec), "-q", "--no-cache", "-o",
                                  str(work / "out")], timeout=1800,
                      env=env, cwd=work, logdir=ctx.logs, rss=True)  # fmt: skip
        result = {"what": __doc__.split("\n\n")[0], "trials": args.trials, "tree": str(args.tree),
                  "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "wall_s": s.seconds,
                  "returncode": s.returncode, "driver_peak_rss_mb": s.peak_rss_mb, "driver_cpu_s": s.driver_cpu_s,
                  "load_before": s.load_before, "load_after": s.load_after}  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
