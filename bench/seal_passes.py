"""CPU seconds (process time) of each piece of a finished run's journal-derived
work, by the xrun tree on PYTHONPATH: an older tree's separate passes (best
point, tables, terminal tables, the report's load_run) or the one ledger pass
and what is read from it. Prints one JSON line.

    PYTHONPATH=DIR python bench/seal_passes.py BUNDLE METRIC   (METRIC: - for none)
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from runner.objective import Objective
from runner.report.data import load_run


def main() -> None:
    b = Path(sys.argv[1])
    metric = None if sys.argv[2] == "-" else sys.argv[2]
    j = b / "trials.jsonl"
    d = Path(tempfile.mkdtemp())
    out: dict[str, float] = {}
    t0 = t = time.process_time()

    def lap(name: str) -> None:
        nonlocal t
        now = time.process_time()
        out[name], t = now - t, now

    try:
        from runner.bundle.ledger import Ledger
    except ImportError:  # an older tree
        from runner.bundle.glance import glance
        from runner.bundle.points import best_point_of
        from runner.bundle.write import write_tables

        if metric:
            best_point_of(j, metric)
        lap("best")
        write_tables(d / "r.csv", d / "p.csv", j)
        lap("tables")
        glance(j, metric, "maximize", 10)
        lap("glance")
        load_run(b)
        lap("load_run")
        code = "before"
    else:
        from runner.report.data import new_scan

        obj = Objective(metric) if metric else None
        s = new_scan(b, obj)
        with Ledger(j, obj, each=s.add) as ledger:
            lap("pass")
            ledger.best()
            lap("best")
            ledger.write_tables(d / "r.csv", d / "p.csv")
            lap("tables")
            ledger.glance(metric, "maximize", 10)
            lap("glance")
            load_run(b, s)
            lap("load_run")
        code = "after"
    out["total"] = time.process_time() - t0
    print(json.dumps({"code": code, **{k: round(v, 3) for k, v in out.items()}}))


if __name__ == "__main__":
    main()
