"""Peak RSS of each phase of the work after a run's trials (psutil polling the
process every 20 ms; ``ru_maxrss`` too, taken before the outputs are hashed),
as run_plan does it on this tree (one ledger pass feeding the report's scan,
best point, tables, terminal tables, ledger closed, report) or main's (one pass
each). One process, one tree:

    PYTHONPATH=TREE python bench/seal_phases.py BUNDLE
    (BUNDLE: tests/report/synth.py make_bundle with its spec given the objective
    ``score``; its report.html, results.csv, points.csv and best are rewritten)
"""

from __future__ import annotations

import hashlib
import json
import os
import pprint
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

PHASE = ["import"]
PEAKS: dict[str, int] = {}
LOCK = threading.Lock()


def _poll() -> None:
    proc = psutil.Process()
    while True:
        rss = proc.memory_info().rss
        with LOCK:
            if rss > PEAKS.get(PHASE[0], 0):
                PEAKS[PHASE[0]] = rss
        time.sleep(0.02)


def _enter(name: str) -> None:
    time.sleep(0.05)  # the poller sees the end of the phase before
    with LOCK:
        PHASE[0] = name


def _hash_file(path: Path) -> str:
    with open(path, "rb") as fh:  # streamed: reading a 1M-trial results.csv whole would be the peak
        return hashlib.file_digest(fh, "sha256").hexdigest()[:16]


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def main() -> None:
    threading.Thread(target=_poll, daemon=True).start()
    b = Path(sys.argv[1])
    j = b / "trials.jsonl"
    for name in ("report.html", "results.csv", "points.csv", "MANIFEST.sha256"):
        (b / name).unlink(missing_ok=True)
    from runner.objective import Objective
    from runner.report.page import write_report

    metric = "score"
    obj = Objective(metric)
    meta = json.loads((b / "bundle.json").read_text())
    meta.pop("best", None)
    (b / "bundle.json").write_text(json.dumps(meta))
    t0 = time.perf_counter()
    g: Any
    try:
        from runner.bundle.ledger import Ledger
    except ImportError:
        from runner.bundle.glance import glance
        from runner.bundle.points import best_point_of
        from runner.bundle.write import write_tables

        _enter("best")
        best = best_point_of(j, *obj)
        _enter("tables")
        write_tables(b / "results.csv", b / "points.csv", j)
        (b / "bundle.json").write_text(json.dumps({**meta, "best": best}))
        _enter("report")
        write_report(b)
        _enter("glance")
        g = glance(j, metric if best else None, "maximize", 10)
    else:
        from runner.report.data import new_scan

        _enter("pass")
        s = new_scan(b, obj)
        with Ledger(j, obj, each=s.add) as ledger:
            _enter("best")
            best = ledger.best()
            _enter("tables")
            ledger.write_tables(b / "results.csv", b / "points.csv")
            (b / "bundle.json").write_text(json.dumps({**meta, "best": best}))
            _enter("glance")
            g = ledger.glance(metric if best else None, "maximize", 10)
        _enter("report")
        write_report(b, scanned=s)
    _enter("end")
    time.sleep(0.1)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with LOCK:
        phases = {k: round(v / 2**20, 1) for k, v in PEAKS.items()}
    print(json.dumps({
        "trials": sum(1 for _ in open(j, "rb")), "seconds": round(seconds, 1), "cpu_s": round(sum(os.times()[:2]), 1),
        "peak_rss_mb_by_phase": phases, "ru_maxrss_mb": round(peak, 1),
        "results_csv": _hash_file(b / "results.csv"), "points_csv": _hash_file(b / "points.csv"),
        "best": _hash(json.dumps(best, sort_keys=True).encode()), "report_html": _hash_file(b / "report.html"),
        "glance": _hash(pprint.pformat(g, width=200).encode()), "load": round(os.getloadavg()[0], 1)}))  # fmt: skip


if __name__ == "__main__":
    main()
