"""Quickstart, interleaved: an older xrun, GridSearchCV, this xrun, GridSearchCV, ... per round.

    python bench/quickstart_ab.py ROUNDS OUT.json OLD_SRC

OLD_SRC holds the older ``runner/`` (``git archive REV runner | tar -x -C OLD_SRC``), run with
PYTHONPATH=OLD_SRC ahead of the editable install. Same commands as ``bench/run.py --only quickstart``
(``xrun run specs/quickstart.yaml -q --no-cache``, bench/baselines/quickstart_gridsearch.py), each with a
new empty cache; the 1-minute load is recorded before every process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from run import xrun_command  # noqa: E402

XRUN = str(REPO / ".venv" / "bin" / "xrun")
PYTHON = sys.executable


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed:\n{proc.stderr[-2000:]}")
    return round(time.perf_counter() - started, 3)


def main() -> None:
    rounds, out, old_src = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    res: dict[str, list] = {"load": [], "pairs": []}
    for i in range(rounds):
        row = {}
        for side in ("before", "peer_b", "after", "peer_a"):
            env = {**os.environ, "XRUN_CACHE_DIR": tempfile.mkdtemp(prefix="xrun-ab-cache-")}
            res["load"].append(round(os.getloadavg()[0], 2))
            if side.startswith("peer"):
                row[side] = timed([PYTHON, str(REPO / "bench" / "baselines" / "quickstart_gridsearch.py")], env)
                continue
            xrun = [XRUN]
            if side == "before":
                env["PYTHONPATH"] = old_src
                xrun = xrun_command(Path(old_src))
            bundles = tempfile.mkdtemp(prefix="xrun-ab-runs-")
            row[side] = timed([*xrun, "run", str(REPO / "specs" / "quickstart.yaml"), "-q", "--no-cache", "-o", bundles], env)
        res["pairs"].append(row)
        print(i, row, round(os.getloadavg()[0], 2), flush=True)
        out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
