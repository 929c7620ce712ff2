"""Seconds from the end of a script that imports what xrun's driver imports (Dask, matplotlib,
rocrate, the report) to its process's end, with and without ``gc.freeze()`` first (the
interpreter's last full garbage collection at exit), alternating: ``python bench/exit_gc.py [ROUNDS]``."""

from __future__ import annotations

import os
import subprocess
import sys
import time

CODE = """
import gc, sys, time
import distributed, matplotlib.backends.backend_svg, matplotlib.figure, rocrate.rocrate
import runner.cli.app, runner.report.page, runner.run
print(len(gc.get_objects()), flush=True)
if sys.argv[1] == "freeze":
    gc.freeze()
sys.stderr.write(repr(time.time()))
"""


def main() -> None:
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 6):
        for mode in ("plain", "freeze"):
            load = os.getloadavg()[0]
            p = subprocess.run([sys.executable, "-c", CODE, mode], capture_output=True, text=True, check=True)
            took = time.time() - float(p.stderr.strip().splitlines()[-1])
            print(mode, "objects", p.stdout.strip(), "exit took", round(took, 3), "load", round(load, 2), flush=True)


if __name__ == "__main__":
    main()
