"""The report of a synthetic bundle, two xrun source trees alternating, each run
``write_report`` in a process of its own: wall time, peak RSS (ru_maxrss of the
child) and the load average around each run.

    python bench/report_ab.py --n 100000 --before DIR --out bench/raw/report-ab-100k.json
    (DIR: mkdir DIR && git -C MAIN archive REV runner | tar -x -C DIR)

The bundle is made once (tests/report/synth.py) and reused by every run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE = "import sys; from pathlib import Path; from runner.report.page import write_report; write_report(Path(sys.argv[1]))"


def one(label: str, src: Path, bundle: Path) -> dict[str, object]:
    load0 = os.getloadavg()[0]
    (bundle / "report.html").unlink(missing_ok=True)
    with tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", CODE, str(bundle)], env={**os.environ, "PYTHONPATH": str(src)},
                                stdout=subprocess.DEVNULL, stderr=err, text=True,
                                cwd=bundle.parent)  # not the repository: its runner/ would come first  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS and CPU
        seconds = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read()[-300:]
    report = bundle / "report.html"
    return {"label": label, "src": str(src), "seconds": round(seconds, 2),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "returncode": proc.returncode, "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2),
            "report_bytes": report.stat().st_size if report.exists() else None, "stderr_tail": tail}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--before", type=Path, help="the older source tree (PYTHONPATH)")
    ap.add_argument("--after", type=Path, default=REPO)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--bundle", type=Path, help="an existing synthetic bundle")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="report-ab-"))
    bundle = args.bundle or work / f"synth-{args.n}"
    if not args.bundle:
        sys.path.insert(0, str(REPO))
        from tests.report.synth import make_bundle

        make_bundle(bundle, n=args.n, workers=2)
    runs = []
    for _ in range(args.pairs):
        for label, src in (("after", args.after), ("before", args.before)):
            if src is None:
                continue
            runs.append(one(label, src, bundle))
            print(json.dumps(runs[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"n": args.n, "bundle_bytes": (bundle / "trials.jsonl").stat().st_size,
                                    "cpus": os.cpu_count(), "runs": runs}, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
