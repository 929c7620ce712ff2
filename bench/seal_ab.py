"""A finished run's work after its trials, two xrun source trees alternating:
the best point, results.csv and points.csv, the report and the terminal's tables
of one bundle's journal, as ``run_plan`` does them (an older tree: one pass each;
a tree with ``runner.bundle.ledger``: one pass for all). Each run is a process of
its own: wall time, CPU (rusage of the child), peak RSS, load average around it,
and the sha256 of every output (equal across trees: the outputs are the same bytes).

    python bench/seal_ab.py --bundle B --before DIR --pairs 3 [--objective x] --out bench/raw/seal-ab.json
    (DIR: mkdir DIR && git -C MAIN archive REV runner | tar -x -C DIR)

``--objective x``: the bundle's spec is given that objective (maximized) first,
so the best point is computed too (the benchmark's no-op sweep declares none).
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

REPO = Path(__file__).resolve().parents[1]
CODE = r"""
import hashlib, json, sys, time
from pathlib import Path
b, metric = Path(sys.argv[1]), (sys.argv[2] or None)
j = b / "trials.jsonl"
from runner.objective import Objective
from runner.report.page import write_report
obj = Objective(metric) if metric else None
meta = json.loads((b / "bundle.json").read_text())
t0 = time.perf_counter()
try:
    from runner.bundle.ledger import Ledger
except ImportError:
    Ledger = None
if Ledger is None:
    from runner.bundle.glance import glance
    from runner.bundle.points import best_point_of
    from runner.bundle.write import write_tables
    best = best_point_of(j, *obj) if obj else None
    write_tables(b / "results.csv", b / "points.csv", j)
    (b / "bundle.json").write_text(json.dumps({**meta, "best": best}))
    write_report(b)
    g = glance(j, metric if best else None, "maximize", 10)
else:
    from runner.report.data import new_scan
    s = new_scan(b, obj)
    with Ledger(j, obj, each=s.add) as ledger:
        best = ledger.best()
        ledger.write_tables(b / "results.csv", b / "points.csv")
        (b / "bundle.json").write_text(json.dumps({**meta, "best": best}))
        g = ledger.glance(metric if best else None, "maximize", 10)
    write_report(b, scanned=s)  # as run_plan does: the ledger closed first
seconds = time.perf_counter() - t0
import pprint, resource
work_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # before hashing (a 1M-trial results.csv is 267 MB)
h = lambda data: hashlib.sha256(data).hexdigest()[:16]
def hf(path):  # streamed: reading a file whole would be the process's peak
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()[:16]
print(json.dumps({"inner_seconds": round(seconds, 2), "work_peak_rss_mb": round(work_rss / 1024, 1),
                  "results_csv": hf(b / "results.csv"), "points_csv": hf(b / "points.csv"),
                  "best": h(json.dumps(best, sort_keys=True).encode()), "report_html": hf(b / "report.html"),
                  "glance": h(pprint.pformat(g, width=200).encode())}))  # pformat: sets sorted (repr's order varies)
"""


def one(label: str, src: Path, bundle: Path, metric: str) -> dict[str, object]:
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", CODE, str(bundle), metric],
                                env={**os.environ, "PYTHONPATH": str(src)}, stdout=out, stderr=err, text=True,
                                cwd=bundle.parent)  # not the repository: its runner/ would come first  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS and CPU
        seconds = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        text, tail = out.read(), err.read()[-500:]
    try:
        inner = json.loads(text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        inner = {"stdout_tail": text[-300:], "stderr_tail": tail}
    return {"label": label, "src": str(src), "seconds": round(seconds, 2),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            **inner, "returncode": os.waitstatus_to_exitcode(status),
            "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--objective", default="")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="seal-ab-"))
    bundle = work / "bundle"
    shutil.copytree(a.bundle, bundle)
    for name in ("report.html", "results.csv", "points.csv", "MANIFEST.sha256"):
        (bundle / name).unlink(missing_ok=True)
    if a.objective:
        resolved = json.loads((bundle / "spec.resolved.json").read_text())
        resolved["sweep"]["objective"] = {"metric": a.objective, "goal": "maximize"}
        (bundle / "spec.resolved.json").write_text(json.dumps(resolved))
    runs = []
    for _ in range(a.pairs):
        for label, src in (("before", a.before), ("after", REPO)):
            runs.append(one(label, src, bundle, a.objective))
            print(json.dumps(runs[-1]), flush=True)
    lines = sum(1 for _ in open(bundle / "trials.jsonl", "rb"))
    a.out.write_text(json.dumps({"trials": lines, "objective": a.objective or None, "cpus": os.cpu_count(),
                                 "runs": runs}, indent=2) + "\n")  # fmt: skip
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
