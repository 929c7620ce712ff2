"""Small sweeps, A/B: several xrun sources and GridSearchCV, interleaved, with each run's timeline.

    python bench/small_ab.py ROUNDS OUT.json CASE NAME=SRC [NAME=SRC ...]

CASE is ``quickstart`` (specs/quickstart.yaml) or ``svc`` (the 16-point SVC grid of bench/perf_cases.py).
Each NAME=SRC is a directory holding a ``runner/`` (``git archive REV runner | tar -x -C SRC``), run with
PYTHONPATH=SRC ahead of the editable install, byte-compiled first as installing does (see run.precompile);
``NAME=.`` is this worktree. Every round runs each source
and the peer (GridSearchCV(n_jobs=2, refit=False), bench/baselines/) once, in an order rotated per round,
each xrun through bench/timeline.py (``xrun run SPEC -q --no-cache -o DIR``, a new empty cache): the
whole-process wall time, the 1-minute load before it and the driver's phase stamps are recorded.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
BENCH = REPO / "bench"
STAMP = re.compile(r"^\[\s*([\d.]+)\] ([<>] \w+|xrun imported|interpreter up|spawned ahead|xrun returned)$")


def svc_spec(work: Path) -> Path:
    sys.path[:0] = [str(BENCH / "baselines"), str(BENCH)]
    import svc_common as sc
    from run import SVC_SPEC

    (work / "noop.py").write_text((BENCH / "baselines" / "noop.py").read_text())
    spec = work / "svc.yaml"
    spec.write_text(SVC_SPEC.format(cv=sc.CV, scoring=sc.SCORING, c=json.dumps(sc.C), gamma=json.dumps(sc.GAMMA)))
    return spec


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float, list[tuple[float, str]]]:
    """Wall seconds, CPU seconds of the whole process tree (every process of it
    is reaped by its parent: the driver waits for its cluster), phase stamps."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = round(time.perf_counter() - started, 3)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 3)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed:\n{proc.stderr[-2000:]}")
    stamps = [(float(m[1]), m[2]) for m in map(STAMP.match, proc.stderr.splitlines()) if m]
    return wall, cpu, stamps


def phases(stamps: list[tuple[float, str]]) -> dict[str, float]:
    """First start and last end of each phase, and the seconds between (outermost call)."""
    out: dict[str, float] = {}
    opened: dict[str, float] = {}
    for t, what in stamps:
        if what.startswith("> "):
            opened.setdefault(what[2:], t)
        elif what.startswith("< ") and what[2:] in opened:
            name = what[2:]
            out.setdefault(f"{name}_at", opened[name])
            out[f"{name}_s"] = round(t - out[f"{name}_at"], 3)
        else:
            out[what.replace(" ", "_")] = t
    return out


def main() -> None:
    rounds, out, case = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    sources = dict(arg.split("=", 1) for arg in sys.argv[4:])
    work = Path(tempfile.mkdtemp(prefix="xrun-small-ab-"))
    spec = REPO / "specs" / "quickstart.yaml" if case == "quickstart" else svc_spec(work)
    peer = BENCH / "baselines" / ("quickstart_gridsearch.py" if case == "quickstart" else "svc_gridsearch.py")
    sides = [*sources, "peer"]
    sys.path.insert(0, str(BENCH))
    from run import precompile

    for src in sources.values():
        precompile(Path(src).resolve())
    res: dict[str, object] = {"case": case, "sources": sources, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "rounds": []}  # fmt: skip
    for i in range(rounds):
        row: dict[str, object] = {}
        k = i % len(sides)
        for side in sides[k:] + sides[:k]:
            env = {**os.environ, "XRUN_CACHE_DIR": tempfile.mkdtemp(prefix="xrun-ab-cache-")}
            load = round(os.getloadavg()[0], 2)
            if side == "peer":
                wall, cpu, _ = run_once([PYTHON, str(peer)], env)
                row[side] = {"wall_s": wall, "cpu_s": cpu, "load": load}
                continue
            src = sources[side]
            if src != ".":
                env["PYTHONPATH"] = str(Path(src).resolve())
            bundles = tempfile.mkdtemp(prefix="xrun-ab-runs-", dir=work)
            argv = [PYTHON, str(BENCH / "timeline.py"), "run", str(spec), "-q", "--no-cache", "-o", bundles]
            wall, cpu, stamps = run_once(argv, env)
            row[side] = {"wall_s": wall, "cpu_s": cpu, "load": load, **phases(stamps)}
        res["rounds"].append(row)  # type: ignore[attr-defined]
        print(i, {s: (v["wall_s"], v["cpu_s"], v.get("preflight_s"), v["load"]) for s, v in row.items()}, flush=True)  # type: ignore[index]
        out.write_text(json.dumps(res, indent=1))
    walls = {s: sorted(r[s]["wall_s"] for r in res["rounds"]) for s in sides}  # type: ignore[attr-defined,index]
    res["median_wall_s"] = {s: w[len(w) // 2] for s, w in walls.items()}
    cpus = {s: sorted(r[s]["cpu_s"] for r in res["rounds"]) for s in sides}  # type: ignore[attr-defined,index]
    res["median_cpu_s"] = {s: c[len(c) // 2] for s, c in cpus.items()}
    out.write_text(json.dumps(res, indent=1))
    print(res["median_wall_s"], res["median_cpu_s"])


if __name__ == "__main__":
    main()
