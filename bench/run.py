"""xrun benchmark harness: xrun against plain Dask / scikit-learn, side by side.

    python bench/run.py [--quick] [--only NAME[,NAME…]] [--repeats N] [--keep]

Benchmarks (each a ``bench_*`` function that adds an entry to ``RESULTS``):

* ``startup``  ``xrun validate`` / ``xrun plan`` of specs/quickstart.yaml     goal < 0.5 s each
* ``dispatch`` N no-op trials vs LocalCluster + client.map + gather         goal ≤ 1.1× (2k), ≤ 1.0× (≥ 20k)
* ``real``     16-point SVC grid on digits, 5-fold CV, vs GridSearchCV(n_jobs=2),
               joblib's Dask backend and dask-ml                            goal ≤ 1.0× the best
* ``scale``    driver peak RSS over 100,000 trials                          goal ≤ 500 MB
* ``resume``   fully cached re-run of 20,000 trials                         goal < 3 s
* ``images``   cached ``xrun build --json``                                 goal < 1 s (needs Docker)

Every time is the wall time of a whole process (imports, cluster start-up and,
for xrun, writing the bundle included), measured in alternating runs (xrun,
baseline, xrun, baseline, …) and summarised by the median. The load average
is recorded around every run: the machine may be shared.

Writes bench/RESULTS.md and bench/results.json. With --only, the other
benchmarks' previous results are kept from bench/results.json.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
BASELINES = BENCH / "baselines"
PYTHON = sys.executable
XRUN = str(Path(sys.executable).with_name("xrun"))
QUICKSTART = REPO / "specs" / "quickstart.yaml"
NAMES = ("startup", "dispatch", "real", "scale", "resume", "images",
         "quickstart", "svc", "firstrun", "report", "reportsynth", "million", "straggler", "docker", "imagebuild")  # fmt: skip
PHASES = ("before", "after")


def xrun_command(tree: Path) -> list[str]:
    """The ``xrun`` command of another source tree (run with ``PYTHONPATH=tree``): ``python -m runner`` where the
    tree has the script's entry (``runner/_entry.py``), ``python -m runner.cli`` in older ones. Not the installed
    script: it would import this checkout's entry beside the other tree's modules."""
    return [PYTHON, "-m", "runner" if (tree / "runner" / "_entry.py").exists() else "runner.cli"]


RESULTS: dict[str, Any] = {}  # name -> benchmark entry, rendered into RESULTS.md
CACHE: dict[Any, Any] = {}  # measurements shared between benchmarks (e.g. dispatch 100k -> scale)


# ------------------------------------------------------------------ measuring one process


@dataclass
class Sample:
    """One whole-process run."""

    label: str
    seconds: float
    returncode: int | None
    timed_out: bool = False
    peak_rss_mb: float | None = None  # the process itself (psutil polling), not its children
    tree_maxrss_mb: float | None = None  # ru_maxrss from wait4: max over it and its reaped children
    load_before: float = 0.0
    load_after: float = 0.0
    run_seconds: float | None = None  # xrun: bundle.json duration_seconds (trials phase)
    note: str = ""
    stderr_tail: str = ""
    spawn_epoch: float = 0.0  # time.time() at spawn: for start-to-first-trial
    driver_cpu_s: float | None = None  # user+system CPU of the process itself (last psutil poll)
    bundle: str = ""  # xrun: the bundle directory, when kept
    journaled: int | None = None  # xrun, killed: trial records in its journal

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def precompile(tree: Path) -> None:
    """Byte-compile the ``runner/`` package of a source tree, as installing it does.
    Run from a checkout with PYTHONDONTWRITEBYTECODE set (as on this machine),
    every xrun process would compile its ~100 modules from source each time
    (~0.1 s of CPU each, the driver's and its workers'); an installed xrun never does."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "runner")], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def middle(values: list[float]) -> float | None:
    """The median of ``values`` (of an even count: the mean of the middle two, to 3 places); None for none."""
    vals = sorted(values)
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else round((vals[mid - 1] + vals[mid]) / 2, 3)


def write_ab(out: Path | None, what: str, trials: int, trees: dict[str, Path], labels: str,
             medians: dict[str, Any], rows: list[dict[str, Any]]) -> None:  # fmt: skip
    """Print an A/B script's medians and write them with every run to ``out`` (JSON)."""
    result = {"what": what, "trials": trials, "trees": {k: str(v) for k, v in trees.items()},
              "labels": dict(zip(trees, labels.split(","))) if labels else {},
              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
              "medians": medians, "runs": rows}  # fmt: skip
    print(json.dumps(medians, indent=1))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")


def _load1() -> float:
    return round(os.getloadavg()[0], 2)


def measure(
    label: str,
    argv: list[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    logdir: Path,
    rss: bool = False,
    tty: bool = False,
) -> Sample:
    """Run argv as a process of its own session; wall time from spawn to exit.

    On timeout the whole process group (driver and Dask workers) is killed.
    With rss, the process's RSS is polled every 20 ms (the process only, not
    its children: for xrun, the driver). With tty, stderr is a pseudo-terminal
    (drained and discarded) so xrun shows its default live progress display.
    """
    logdir.mkdir(parents=True, exist_ok=True)
    stem = f"{len(list(logdir.iterdir())):04d}-{label.replace(' ', '_').replace('/', '_')}"
    out_path, err_path = logdir / f"{stem}.out", logdir / f"{stem}.err"
    full_env = {**os.environ, **(env or {})}
    load_before = _load1()
    master = slave = None
    if tty:
        import pty

        master, slave = pty.openpty()
        full_env.setdefault("COLUMNS", "120")
        full_env.setdefault("TERM", "xterm-256color")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        spawn_epoch = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            argv, stdout=out, stderr=slave if tty else err, env=full_env, cwd=cwd,
            start_new_session=True,
        )  # fmt: skip
    drainer = None
    if tty:
        os.close(slave)  # type: ignore[arg-type]

        def drain() -> None:  # keep the terminal's buffer from filling up; keep the tail
            tail = b""
            while True:
                try:
                    chunk = os.read(master, 65536)  # type: ignore[arg-type]
                except OSError:
                    break
                if not chunk:
                    break
                tail = (tail + chunk)[-20000:]
            err_path.write_bytes(tail)

        drainer = threading.Thread(target=drain, daemon=True)
        drainer.start()
    peak = [0]
    cpu = [None]
    halt = threading.Event()

    def sample_rss() -> None:
        import psutil

        try:
            p = psutil.Process(proc.pid)
            while not halt.is_set():
                peak[0] = max(peak[0], p.memory_info().rss)
                t = p.cpu_times()
                cpu[0] = t.user + t.system  # type: ignore[call-overload]
                halt.wait(0.02)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            pass

    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.1)

    sampler = threading.Thread(target=sample_rss, daemon=True) if rss else None
    if sampler:
        sampler.start()
    timer = threading.Timer(timeout, kill)
    timer.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    timer.cancel()
    halt.set()
    if sampler:
        sampler.join()
    if drainer:
        drainer.join(timeout=10)
        os.close(master)  # type: ignore[arg-type]
    proc.returncode = os.waitstatus_to_exitcode(status)
    if timed_out.is_set():  # workers may outlive their driver for a moment
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    tail = err_path.read_text(errors="replace").strip().splitlines()[-5:]
    return Sample(
        label=label,
        seconds=round(seconds, 3),
        returncode=proc.returncode,
        timed_out=timed_out.is_set(),
        peak_rss_mb=round(peak[0] / 2**20, 1) if rss and peak[0] else None,
        tree_maxrss_mb=round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
        load_before=load_before,
        load_after=_load1(),
        stderr_tail="\n".join(tail),
        spawn_epoch=spawn_epoch,
        driver_cpu_s=round(cpu[0], 2) if cpu[0] is not None else None,
    )


def xrun_run(
    label: str,
    spec: Path,
    ctx: Ctx,
    *,
    timeout: float,
    no_cache: bool = True,
    display: bool = False,
    env: dict[str, str] | None = None,
    keep: bool = False,
    extra: list[str] | None = None,
) -> Sample:
    """``xrun run SPEC -q [--no-cache] -o DIR``, with the driver's RSS and the bundle's trial phase.

    display: no -q, stderr a pseudo-terminal (the default live progress display).
    keep: keep the bundle (its path is ``Sample.bundle``)."""
    out = ctx.work / "bundles" / f"{label.replace(' ', '_')}-{time.time_ns()}"
    argv = [XRUN, "run", str(spec), "-o", str(out)] + ([] if display else ["-q"])
    argv += (["--no-cache"] if no_cache else []) + (extra or [])
    s = measure(label, argv, timeout=timeout, env={**ctx.env, **(env or {})}, logdir=ctx.logs,
                rss=True, tty=display)  # fmt: skip
    bundles = sorted(out.glob("*/bundle.json")) if out.exists() else []
    if bundles:
        meta = json.loads(bundles[-1].read_text())
        s.run_seconds = meta.get("duration_seconds")
        sealed = (bundles[-1].parent / "MANIFEST.sha256").exists()
        if s.timed_out:
            counts = meta.get("counts") or {}
            try:  # what the killed run had recorded: a throughput to compare
                with open(bundles[-1].parent / "trials.jsonl", "rb") as fh:
                    s.journaled = sum(1 for _ in fh)
            except OSError:
                pass
            s.note = (f"journaled {s.journaled} trials before it was killed; " if s.journaled is not None else "") + (
                f"killed at {timeout:.0f} s; status {meta.get('status')!r}, counts {counts}, "
                f"trial phase {s.run_seconds} s, bundle {'sealed' if sealed else 'not sealed (killed while writing the report/manifest)'}"
            )
    elif s.timed_out:
        s.note = f"killed at {timeout:.0f} s before any bundle.json was written"
    if bundles:
        s.bundle = str(bundles[-1].parent)
    if not ctx.keep and not keep:
        shutil.rmtree(out, ignore_errors=True)
    return s


# ------------------------------------------------------------------ context and summaries


@dataclass
class Ctx:
    work: Path
    quick: bool
    repeats: int | None
    keep: bool
    env: dict[str, str] = field(default_factory=dict)
    sizes: list[int] = field(default_factory=list)  # dispatch sizes; empty = the defaults

    @property
    def logs(self) -> Path:
        return self.work / "logs"

    def n(self, full: int, quick: int) -> int:
        return self.repeats or (quick if self.quick else full)


def median(samples: list[Sample]) -> float | None:
    ok = [s.seconds for s in samples if s.ok]
    return round(statistics.median(ok), 3) if ok else None


def summary(samples: list[Sample]) -> dict[str, Any]:
    """Median of the successful runs; a timed-out run gives a lower bound instead."""
    ok = [s for s in samples if s.ok]
    timeouts = [s for s in samples if s.timed_out]
    failed = [s for s in samples if not s.ok and not s.timed_out]
    d: dict[str, Any] = {
        "median_s": median(samples),
        "runs_s": [s.seconds for s in samples],
        "n_ok": len(ok), "n_timeout": len(timeouts), "n_failed": len(failed),
    }  # fmt: skip
    if d["median_s"] is None and timeouts:
        d["lower_bound_s"] = min(s.seconds for s in timeouts)
    phases = [s.run_seconds for s in samples if s.run_seconds is not None]
    if phases:
        d["trial_phase_median_s"] = round(statistics.median(phases), 3)
    rss = [s.peak_rss_mb for s in samples if s.peak_rss_mb is not None]
    if rss:
        d["peak_rss_mb_max"] = max(rss)
    d["notes"] = [s.note for s in samples if s.note] + [
        f"{s.label}: exit {s.returncode}: {s.stderr_tail}" for s in failed
    ]
    return d


def ratio(x: dict[str, Any], base: float | None) -> tuple[float | None, str]:
    """xrun / baseline; '>' when xrun only has a lower bound (timed out)."""
    if base is None:
        return None, ""
    if x.get("median_s") is not None:
        return round(x["median_s"] / base, 3), "="
    if x.get("lower_bound_s") is not None:
        return round(x["lower_bound_s"] / base, 3), ">"
    return None, ""


def verdict(value: float | None, op: str, limit: float, *, bound: str = "=") -> str:
    if value is None:
        return "NO DATA"
    if bound == ">":  # only a lower bound is known
        return "NOT MET" if value >= limit else "UNKNOWN"
    ok = value <= limit if op == "<=" else value < limit
    return "MET" if ok else "NOT MET"


def loads(samples: list[Sample]) -> dict[str, float]:
    vals = [v for s in samples for v in (s.load_before, s.load_after)]
    return (
        {"min": min(vals), "median": round(statistics.median(vals), 2), "max": max(vals)}
        if vals
        else {}
    )


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {_load1():.2f}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ spec files

NOOP_SPEC = """\
xrun: 1
name: bench-dispatch
environment: {{current: true}}
code: {{root: ., include: ["noop.py"]}}
trial: {{function: "noop:noop"}}
sweep:
  method: random
  samples: {n}
  parameters:
    i: {{int: [0, 1000000000]}}
cluster: {{backend: local, workers: 2, threads_per_worker: 1}}
output: bundles
"""

SVC_SPEC = """\
xrun: 1
name: bench-svc
environment: {{current: true}}
code: {{root: ., include: ["noop.py"]}}
trial:
  sklearn:
    estimator: sklearn.svm.SVC
    dataset: sklearn.datasets:load_digits
    cv: {cv}
    scoring: [{scoring}]
sweep:
  method: grid
  parameters:
    C: {c}
    gamma: {gamma}
cluster: {{backend: local, workers: 2, threads_per_worker: 1}}
output: bundles
"""

IMAGE_SPEC = """\
xrun: 1
name: bench-image
environment: {{pip: {env_in}}}
image:
  base: {dockerfile}
  build_args: {{BASE_IMAGE: "xrun-base:bookworm"}}
code: {{root: ., include: ["noop.py"]}}
trial: {{function: "noop:noop"}}
sweep: {{method: grid, parameters: {{i: [1]}}}}
cluster: {{backend: docker, workers: 2, threads_per_worker: 1}}
output: bundles
"""


def noop_spec(ctx: Ctx, n: int) -> Path:
    path = ctx.work / f"dispatch-{n}.yaml"
    if not path.exists():
        shutil.copy(BASELINES / "noop.py", ctx.work / "noop.py")
        path.write_text(NOOP_SPEC.format(n=n))
    return path


# ------------------------------------------------------------------ benchmarks


def bench_startup(ctx: Ctx) -> None:
    """xrun validate / plan of the quickstart spec: goal < 0.5 s each (median)."""
    reps = ctx.n(5, 3)
    runs: dict[str, list[Sample]] = {"validate": [], "plan": []}
    # one untimed warm-up of each (bytecode caches, page cache)
    for cmd in runs:
        measure(
            f"warmup {cmd}", [XRUN, cmd, str(QUICKSTART)], timeout=60, env=ctx.env, logdir=ctx.logs
        )
    for _ in range(reps):
        for cmd in runs:
            runs[cmd].append(
                measure(
                    f"xrun {cmd}",
                    [XRUN, cmd, str(QUICKSTART)],
                    timeout=60,
                    env=ctx.env,
                    logdir=ctx.logs,
                )
            )
    ref = [
        measure("python -c pass", [PYTHON, "-c", "pass"], timeout=60, logdir=ctx.logs)
        for _ in range(reps)
    ]
    rows = []
    for cmd, samples in runs.items():
        s = summary(samples)
        rows.append({"case": f"xrun {cmd} specs/quickstart.yaml", "xrun": s, "baseline": None,
                     "ratio": None, "goal": "< 0.5 s", "status": verdict(s["median_s"], "<", 0.5)})  # fmt: skip
    RESULTS["startup"] = {
        "title": "Startup", "rows": rows, "load": loads([x for v in runs.values() for x in v]),
        "notes": [f"for scale: `python -c pass` takes {median(ref)} s (median of {reps})",
                  f"median of {reps} runs each, after one untimed warm-up; validate and plan alternate"],
    }  # fmt: skip


def bench_dispatch(ctx: Ctx) -> None:
    """N no-op trials vs LocalCluster + client.map + gather."""
    sizes = ctx.sizes or ([2_000, 20_000] if ctx.quick else [2_000, 20_000, 100_000])
    rows, everything = [], []
    for n in sizes:
        # (repeats, xrun timeout, baseline timeout): a timed-out run ends the
        # alternation early: its median is unknown anyway and more runs cost minutes
        reps, t_x, t_b = (
            (ctx.n(3, 2), 120, 120)
            if n <= 2_000
            else (ctx.n(3, 2), 180, 300)
            if n <= 20_000
            else (ctx.n(1, 1), 300, 900)
        )
        spec = noop_spec(ctx, n)
        xs: list[Sample] = []
        bs: list[Sample] = []
        for i in range(reps):
            progress(f"dispatch {n:,}: xrun run {i + 1}/{reps}")
            xs.append(xrun_run(f"xrun dispatch {n}", spec, ctx, timeout=t_x))
            progress(
                f"dispatch {n:,}: baseline run {i + 1}/{reps} (xrun took {xs[-1].seconds} s{', timed out' if xs[-1].timed_out else ''})"
            )
            bs.append(measure(f"dask dispatch {n}", [PYTHON, str(BASELINES / "dask_map.py"), str(n)],
                              timeout=t_b, logdir=ctx.logs, rss=True))  # fmt: skip
            if xs[-1].timed_out or bs[-1].timed_out:
                break
        CACHE[("dispatch", n)] = xs
        x, b = summary(xs), summary(bs)
        r, bound = ratio(x, b["median_s"])
        limit = 1.1 if n <= 2_000 else 1.0
        rows.append({"case": f"{n:,} no-op trials", "xrun": x, "baseline": b, "baseline_name": "LocalCluster + client.map + gather",
                     "ratio": r, "ratio_bound": bound, "goal": f"≤ {limit}×",
                     "status": verdict(r, "<=", limit, bound=bound)})  # fmt: skip
        everything += xs + bs
    RESULTS["dispatch"] = {
        "title": "Dispatch", "rows": rows, "load": loads(everything),
        "notes": [
            "xrun: `xrun run SPEC -q --no-cache -o DIR`; function trial returning `{\"x\": params[\"i\"]}`, "
            "`sweep: {method: random, samples: N, parameters: {i: {int: [0, 10**9]}}}`, local backend, 2 workers × 1 thread",
            "baseline: bench/baselines/dask_map.py: `LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`, "
            "`client.gather(client.map(noop, range(N)))`",
            "trial phase = bundle.json `duration_seconds` (cluster start, trials, cluster stop); the rest of the "
            "wall time is imports, spec/plan and sealing the bundle (report, manifest)",
            "a timed-out xrun run stops the alternation for that size; its time is then a lower bound",
        ],
    }  # fmt: skip


def bench_real(ctx: Ctx) -> None:
    """16-point SVC grid on digits, 5-fold CV: xrun vs GridSearchCV, joblib-dask, dask-ml."""
    sys.path.insert(0, str(BASELINES))
    import svc_common as sc

    shutil.copy(BASELINES / "noop.py", ctx.work / "noop.py")
    spec = ctx.work / "svc.yaml"
    spec.write_text(
        SVC_SPEC.format(
            cv=sc.CV, scoring=sc.SCORING, c=json.dumps(sc.C), gamma=json.dumps(sc.GAMMA)
        )
    )
    candidates = {
        "GridSearchCV(n_jobs=2)": "svc_gridsearch.py",
        "joblib Dask backend (2×1 LocalCluster)": "svc_joblib_dask.py",
        "dask-ml GridSearchCV (2×1 LocalCluster)": "svc_daskml.py",
    }
    notes = [
        "xrun: zero-code `trial.sklearn` spec (estimator sklearn.svm.SVC, dataset sklearn.datasets:load_digits, "
        f"cv {sc.CV}, scoring [{sc.SCORING}]), grid C={sc.C} × gamma={sc.GAMMA}, local backend 2 workers × 1 thread, --no-cache",
        "baselines (bench/baselines/svc_*.py) use the same grid, cv and scoring, refit=False (xrun does not refit)",
    ]
    try:
        import dask_ml

        notes.append(
            f"dask-ml {dask_ml.__version__} installed with `pip install dask-ml` into the venv"
        )
    except ImportError:
        del candidates["dask-ml GridSearchCV (2×1 LocalCluster)"]
        notes.append(
            "dask-ml not installed (`pip install dask-ml` failed or was not run): its baseline is left out"
        )
    reps = ctx.n(3, 2)
    xs: list[Sample] = []
    bs: dict[str, list[Sample]] = {k: [] for k in candidates}
    for i in range(reps):
        progress(f"real: round {i + 1}/{reps}")
        xs.append(xrun_run("xrun svc", spec, ctx, timeout=300))
        for name, script in candidates.items():
            bs[name].append(
                measure(name, [PYTHON, str(BASELINES / script)], timeout=300, logdir=ctx.logs)
            )
    x = summary(xs)
    base = {k: summary(v) for k, v in bs.items()}
    best_name, best = min(((k, v["median_s"]) for k, v in base.items() if v["median_s"] is not None),
                          key=lambda kv: kv[1], default=(None, None))  # fmt: skip
    r, bound = ratio(x, best)
    rows = [{"case": "16-point SVC grid, digits, 5-fold CV", "xrun": x, "baseline": base.get(best_name) if best_name else None,
             "baseline_name": f"best: {best_name}", "ratio": r, "ratio_bound": bound, "goal": "≤ 1.0× the best",
             "status": verdict(r, "<=", 1.0, bound=bound)}]  # fmt: skip
    RESULTS["real"] = {
        "title": "Real workload", "rows": rows, "load": loads(xs + [s for v in bs.values() for s in v]),
        "baselines": base, "notes": notes,
    }  # fmt: skip


def bench_scale(ctx: Ctx) -> None:
    """Driver peak RSS over 100,000 trials: goal ≤ 500 MB (from the dispatch run when it ran)."""
    n = 100_000
    samples = CACHE.get(("dispatch", n))
    source = "the 100,000-trial dispatch run(s) above"
    if not samples:
        progress("scale: xrun run of 100,000 trials")
        samples = [xrun_run("xrun scale 100000", noop_spec(ctx, n), ctx, timeout=300)]
        source = "one run of its own"
    s = summary(samples)
    peak = s.get("peak_rss_mb_max")
    complete = all(x.ok for x in samples)
    status = (
        verdict(peak, "<=", 500) if complete else ("NOT MET" if peak and peak > 500 else "UNKNOWN")
    )
    rows = [{"case": f"{n:,} no-op trials: driver peak RSS", "xrun": s, "baseline": None, "ratio": None,
             "goal": "≤ 500 MB", "status": status, "value": f"{peak} MB" if peak else "n/a"}]  # fmt: skip
    notes = [
        f"measured on {source}: the RSS of the xrun driver process (not its Dask workers), polled every 20 ms with psutil",
        "max over the driver and its reaped children (wait4 ru_maxrss): "
        + ", ".join(f"{x.tree_maxrss_mb} MB" for x in samples),
    ]
    if not complete:
        notes.append(
            "the run did not finish (see dispatch): the peak is that of the part that ran, a lower bound"
        )
    RESULTS["scale"] = {"title": "Scale", "rows": rows, "load": loads(samples), "notes": notes}


def bench_resume(ctx: Ctx) -> None:
    """A fully cached re-run of 20,000 trials: goal < 3 s."""
    n = 20_000
    spec = noop_spec(ctx, n)
    notes = [
        "`xrun run SPEC -q -o DIR` (cache on) of the dispatch spec with 20,000 trials, all of them cached"
    ]

    def cached_count() -> int:
        out = subprocess.run([XRUN, "plan", str(spec), "--json"], env={**os.environ, **ctx.env},
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        return int(json.loads(out.stdout)["cached"]) if out.returncode == 0 else -1

    have = cached_count()
    if have < n:
        progress(f"resume: priming the cache ({have} of {n:,} cached)")
        prime = xrun_run("xrun resume prime", spec, ctx, timeout=300, no_cache=False)
        notes.append(
            f"priming run: {prime.seconds} s{' (timed out: ' + prime.note + ')' if prime.timed_out else ''}"
        )
        have = cached_count()
    else:
        notes.append(
            "no priming run needed: earlier runs of this harness (dispatch, scale) had filled the cache"
        )
    notes.append(f"`xrun plan`: {have:,} of {n:,} trials cached before the timed runs")
    reps = ctx.n(3, 2)
    xs: list[Sample] = []
    for i in range(reps):
        progress(f"resume: cached run {i + 1}/{reps}")
        xs.append(xrun_run("xrun resume", spec, ctx, timeout=90, no_cache=False))
        if xs[-1].timed_out:
            break
    s = summary(xs)
    value, bound = (
        (s["median_s"], "=") if s["median_s"] is not None else (s.get("lower_bound_s"), ">")
    )
    status = verdict(value, "<", 3.0, bound=bound) if have == n else "NO DATA"
    RESULTS["resume"] = {
        "title": "Resume", "load": loads(xs), "notes": notes,
        "rows": [{"case": f"fully cached re-run, {n:,} trials", "xrun": s, "baseline": None, "ratio": None,
                  "goal": "< 3 s", "status": status}],
    }  # fmt: skip


def bench_images(ctx: Ctx) -> None:
    """A cached ``xrun build --json``: goal < 1 s. Needs Docker and xrun-base:bookworm."""
    notes: list[str] = []

    def skip(why: str) -> None:
        RESULTS["images"] = {"title": "Images", "notes": notes + [f"SKIPPED: {why}"],
                             "rows": [{"case": "cached xrun build", "xrun": None, "baseline": None, "ratio": None,
                                       "goal": "< 1 s", "status": "SKIPPED"}]}  # fmt: skip

    def ok(argv: list[str], timeout: float = 60) -> bool:
        try:
            return subprocess.run(argv, capture_output=True, timeout=timeout).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    if not shutil.which("docker") or not ok(["docker", "info"]):
        return skip("no Docker daemon (`docker info` failed)")
    if not ok(["docker", "image", "inspect", "xrun-base:bookworm"]):
        return skip("the local base image xrun-base:bookworm is missing")
    shutil.copy(BASELINES / "noop.py", ctx.work / "noop.py")
    spec = ctx.work / "image.yaml"
    for env_in in (REPO / "tests/docker/data/worker-env.in", REPO / "envs/sklearn-pip.in"):
        if not env_in.exists():
            notes.append(f"{env_in.relative_to(REPO)} is missing")
            continue
        spec.write_text(IMAGE_SPEC.format(env_in=env_in, dockerfile=REPO / "Dockerfile.base"))
        if ok([XRUN, "lock", str(spec), "--check"]):
            notes.append(
                f"environment: {env_in.relative_to(REPO)} (lock fresh per `xrun lock --check`)"
            )
            break
        notes.append(
            f"{env_in.relative_to(REPO)}: lock missing or stale (`xrun lock --check` failed)"
        )
    else:
        return skip("no environment file with a fresh lock")
    progress("images: first build (may take a minute)")
    first = measure(
        "xrun build (first)",
        [XRUN, "build", str(spec), "--json"],
        timeout=900,
        env=ctx.env,
        logdir=ctx.logs,
    )
    if not first.ok:
        return skip(f"the first build failed (exit {first.returncode}): {first.stderr_tail}")
    out = sorted(ctx.logs.glob("*xrun_build_(first).out"))
    try:
        info = json.loads(out[-1].read_text())
        notes.append(
            f"first build: {first.seconds} s, cached={info.get('cached')}, image {info.get('image')}"
        )
    except (IndexError, ValueError):
        notes.append(f"first build: {first.seconds} s")
    reps = ctx.n(5, 3)
    xs = [measure("xrun build (cached)", [XRUN, "build", str(spec), "--json"], timeout=120, env=ctx.env, logdir=ctx.logs)
          for _ in range(reps)]  # fmt: skip
    cached = []
    for p in sorted(ctx.logs.glob("*xrun_build_(cached).out")):
        try:
            cached.append(json.loads(p.read_text()).get("cached"))
        except ValueError:
            cached.append(None)
    notes.append(f"`cached` in the timed runs' JSON: {cached}")
    s = summary(xs)
    RESULTS["images"] = {
        "title": "Images", "load": loads(xs), "notes": notes,
        "rows": [{"case": "cached `xrun build SPEC --json`", "xrun": s, "baseline": None, "ratio": None,
                  "goal": "< 1 s", "status": verdict(s["median_s"], "<", 1.0)}],
    }  # fmt: skip


BENCHMARKS: dict[str, Callable[[Ctx], None]] = {
    "startup": bench_startup, "dispatch": bench_dispatch, "real": bench_real,
    "scale": bench_scale, "resume": bench_resume, "images": bench_images,
}  # fmt: skip


def _perf_case(name: str) -> Callable[[Ctx], None]:
    def bench(ctx: Ctx) -> None:
        sys.path.insert(0, str(BENCH))
        import perf_cases  # the fixed cost of a run, bookkeeping, stragglers, containers

        RESULTS[name] = perf_cases.CASES[name](ctx)

    return bench


for _name in ("quickstart", "svc", "firstrun", "report", "reportsynth", "million", "straggler", "docker", "imagebuild"):
    BENCHMARKS[_name] = _perf_case(_name)


# ------------------------------------------------------------------ machine and versions


# A fixed pure-Python workload of the driver's kind (a trial-like record built, encoded to JSON, parsed back,
# hashed): its CPU time tracks the host's speed for per-trial bookkeeping, which drifts by up to 2x over a day.
SPEED_PROBE = r"""
import hashlib, json, time
rec = {"id": "t00001", "key": "ab" * 32, "params": {"C": 0.5, "kernel": "rbf", "i": 12345}, "seed": 1,
       "status": "ok", "metrics": {"score": 0.91, "fit_time": 0.01}, "start": 1.7e9, "end": 1.7e9 + 0.01,
       "history": []}
t = time.thread_time()
for i in range(20000):
    line = json.dumps(dict(rec, seed=i), separators=(",", ":"))
    back = json.loads(line)
    hashlib.sha256(line.encode()).hexdigest()
    sorted(back["params"].items())
print(round((time.thread_time() - t) * 1000, 1))
"""


def host_speed() -> float | None:
    """CPU milliseconds of :data:`SPEED_PROBE`, the best of 3 fresh processes (None: it failed)."""
    best = None
    for _ in range(3):
        try:
            out = subprocess.run([PYTHON, "-c", SPEED_PROBE], capture_output=True, text=True, timeout=60).stdout
            ms = float(out.strip())
        except (OSError, ValueError, subprocess.SubprocessError):
            continue
        best = ms if best is None else min(best, ms)
    return best


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem, "os": platform.platform(),
            "load_at_start": [round(x, 2) for x in os.getloadavg()], "host_speed_ms_at_start": host_speed()}  # fmt: skip


def versions(src: Path | None = None) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    v: dict[str, Any] = {"python": platform.python_version()}
    for dist in ("dask", "distributed", "scikit-learn", "joblib", "dask-ml", "xrun"):
        try:
            v[dist] = version(dist)
        except PackageNotFoundError:
            v[dist] = None
    try:  # which xrun source was measured: the tree is edited while benchmarks run
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "runner"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout
        v["xrun_source"] = {
            "commit": head,
            "modified_in_runner": [ln[3:] for ln in dirty.splitlines()],
        }
    except OSError:
        pass
    if src is not None:
        v["xrun_source"] = {"commit": f"source tree {src} (--xrun-src)", "modified_in_runner": []}
    tree = sorted(((src or REPO) / "runner").rglob("*.py"))
    if tree:
        h = hashlib.sha256()
        for f in tree:
            h.update(
                f.relative_to(src or REPO).as_posix().encode() + b"\0" + f.read_bytes() + b"\0"
            )
        v.setdefault("xrun_source", {})["runner_py_sha256"] = h.hexdigest()[:12]
    ex = (src or REPO) / "runner" / "execute.py"
    if ex.exists():
        v.setdefault("xrun_source", {})["execute_py_sha256"] = hashlib.sha256(
            ex.read_bytes()
        ).hexdigest()[:12]
        v["xrun_source"]["batching_in_execute_py"] = "call_batch" in ex.read_text()
    try:
        v["docker"] = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                                     capture_output=True, text=True, timeout=20).stdout.strip() or None  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        v["docker"] = None
    return v


# ------------------------------------------------------------------ rendering


def _t(d: dict[str, Any] | None) -> str:
    if not d:
        return "–"
    if d.get("median_s") is not None:
        return f"{d['median_s']:.2f} s"
    if d.get("lower_bound_s") is not None:
        return f"> {d['lower_bound_s']:.0f} s (timed out)"
    return "failed"


def _runs(d: dict[str, Any] | None) -> str:
    return ", ".join(f"{x:.2f}" for x in d["runs_s"]) if d else "–"


HOW_TO_READ = [
    "## How to read these numbers",
    "",
    "- Every time is the **wall time of a whole process** (interpreter start, imports, cluster start-up and, "
    "for xrun, writing and sealing the bundle), not of the trials alone.",
    "- Each xrun figure is measured **side by side with its peer in the same run**: xrun, peer, xrun, peer, … "
    "alternating, so both see the same machine. The ratio is xrun's median over the peer's median.",
    "- The machine has **2 cores shared with other work**: the 1-minute load average around each benchmark is "
    "recorded next to it. A load above 2 means both cores were contended and times are inflated for both sides; "
    "compare ratios, not absolute times, across runs.",
    "- **Before** is the code of main before the performance work, **after** the code of this branch, measured "
    "by the same harness on the same machine (`--phase before` / `--phase after`); the dates and loads differ.",
    "- A run killed at its time limit gives a lower bound (`> N s`), a goal it misses is NOT MET; "
    "RSS is the xrun driver process's own peak (not its Dask workers), polled every 20 ms.",
    "- xrun runs from byte-compiled sources (the harness compiles `runner/` first, as installing xrun does): "
    "this machine's shell sets PYTHONDONTWRITEBYTECODE, under which a checkout's xrun would compile its modules "
    "in every process of every run. Runs before 2026-12-01 did not: they include ~0.1 s of CPU per xrun process.",
    "- The machine's own speed varies by up to 2× over a day for reasons outside the repository (the same "
    "code and peer, hours apart): compare a figure with its peer in the same run.",
    "- The **host speed reference**, recorded before and after each benchmark since 2026-12-01, is the CPU time of "
    "a fixed pure-Python workload of the driver's kind (20,000 trial-like records built, encoded to JSON, parsed "
    "back and hashed; best of 3 fresh processes, `bench/run.py: SPEED_PROBE`). Absolute figures of driver CPU and "
    "of no-op runs scale with it: read a goal in µs or seconds together with the reference it was measured at.",
    "",
]


def _speed(entry: dict[str, Any]) -> str:
    """The host speed reference around a benchmark (runs before 2026-12-01 have none)."""
    ms = [x for x in entry.get("host_speed_ms") or [] if x is not None]
    return f"; host speed reference {' → '.join(f'{x:g}' for x in ms)} ms" if ms else ""


def _fig(d: dict[str, Any] | None, row: dict[str, Any] | None, peer: bool = False) -> str:
    if not row:
        return "–"
    if peer:
        return _t(row.get("baseline")) if row.get("baseline") else "–"
    return row.get("value") or _t(row.get("xrun"))


def render_phases(data: dict[str, Any]) -> list[str]:
    """Before/after table of the benchmarks measured in both phases (or either)."""
    phases = data.get("phases") or {}
    if not phases:
        return []
    before, after = phases.get("before", {}), phases.get("after", {})
    L = ["## Before / after", "",
         "| benchmark | case | before: xrun | before: peer | after: xrun | after: peer | ratio before → after | goal | status (after) |",
         "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    names = list(NAMES) + sorted((set(before) | set(after)) - set(NAMES))  # e.g. a case at another size
    for name in [n for n in names if n in before or n in after]:
        b, a = before.get(name, {}), after.get(name, {})
        cases = list(dict.fromkeys([r["case"] for r in b.get("rows", [])] + [r["case"] for r in a.get("rows", [])]))
        for case in cases:
            rb = next((r for r in b.get("rows", []) if r["case"] == case), None)
            ra = next((r for r in a.get("rows", []) if r["case"] == case), None)

            def rt(r: dict[str, Any] | None) -> str:
                if not r or r.get("ratio") is None:
                    return "–"
                return f"{'> ' if r.get('ratio_bound') == '>' else ''}{r['ratio']:.2f}×"

            title = (a or b).get("title", name)
            goal = (ra or rb or {}).get("goal", "")
            status = f"**{ra['status']}**" if ra else "not measured"
            L.append(f"| {title} | {case} | {_fig(None, rb)} | {_fig(None, rb, True)} | {_fig(None, ra)} | "
                     f"{_fig(None, ra, True)} | {rt(rb)} → {rt(ra)} | {goal} | {status} |")  # fmt: skip
    for label, ph in (("before", before), ("after", after)):
        for name in [n for n in names if n in ph]:
            e = ph[name]
            ld = e.get("load") or {}
            L.append("")
            L.append(f"- {label}, {e.get('title', name)}: measured {e.get('date', '?')}, 1-min load min "
                     f"{ld.get('min')} / median {ld.get('median')} / max {ld.get('max')}{_speed(e)}")  # fmt: skip
            for n in e.get("notes") or []:
                L.append(f"  - {n}")
            for r in e.get("rows", []):
                for who in ("xrun", "baseline"):
                    d = r.get(who)
                    if d and d.get("runs_s"):
                        L.append(f"  - {r['case']}: {r.get('baseline_name') if who == 'baseline' else 'xrun'} runs (s): {_runs(d)}"
                                 + (f"; driver peak RSS {d['peak_rss_mb_max']} MB" if who == 'xrun' and d.get('peak_rss_mb_max') else ""))  # fmt: skip
    return L + [""]


def keep_foreign_sections(md: str, path: Path) -> str:
    """``md`` followed by the ``## `` sections of the file at ``path`` that ``md``
    does not have (written by hand or by other benchmark scripts): regenerating
    this file never drops them."""
    try:
        old = path.read_text()
    except OSError:
        return md
    # Marked blocks (<!-- NAME:begin --> ... <!-- NAME:end -->) are put back by write_results.
    old = re.sub(r"<!-- ([a-z]+):begin -->\n.*?<!-- \1:end -->\n?", "", old, flags=re.S)
    owned = {ln.strip() for ln in md.splitlines() if ln.startswith("## ")}
    sections: list[list[str]] = []
    for ln in old.splitlines():
        if ln.startswith("## "):
            sections.append([ln])
        elif sections:
            sections[-1].append(ln)
    kept = ["\n".join(sec).rstrip() for sec in sections if sec[0].strip() not in owned]
    return md.rstrip() + ("\n\n" + "\n\n".join(kept) if kept else "") + "\n"


def render(data: dict[str, Any]) -> str:
    m, v = data["machine"], data["versions"]
    L = [
        "# xrun benchmarks",
        "",
        f"Generated by `bench/run.py` on {data['date']}{' (--quick)' if data.get('quick') else ''}"
        f" in {data.get('harness_seconds', 0) / 60:.1f} min. Raw numbers: `bench/results.json`.",
        "",
        *HOW_TO_READ,
        *render_phases(data),
        "## How to run",
        "",
        "```bash",
        "make bench                                  # = .venv/bin/python bench/run.py (full run, 10-20 min)",
        "python bench/run.py --quick                 # no 100,000-trial runs, fewer repeats (~5 min)",
        "python bench/run.py --only dispatch,startup # some benchmarks; the others' results are kept",
        "python bench/run.py --repeats 5 --keep      # more alternating runs; keep the temp dir (bundles, logs)",
        "python bench/run.py --only dispatch --sizes 2000,20000 --xrun-src DIR --out /tmp/old",
        "                                            # an older xrun: mkdir DIR && git archive REV runner | tar -x -C DIR",
        "python bench/run.py --render                # re-render RESULTS.md from results.json",
        "python bench/run.py --only quickstart,svc,firstrun,report,reportsynth,straggler,docker,imagebuild,million --phase after",
        "                                            # the performance goals' cases; --phase keeps them as before/after figures",
        "python bench/run.py --only firstrun --sizes 20000 --xrun-src DIR --phase before --out /tmp/b",
        "                                            # a first run of 20,000 trials with an older xrun",
        "```",
        "",
        "Use the venv's python: xrun is run as the `xrun` next to it and the baselines with that python. "
        "Every time is whole-process wall time (imports, cluster start-up and, for xrun, the bundle included), "
        "the median of alternating runs (xrun, baseline, xrun, …). `XRUN_CACHE_DIR` and bundles go to a "
        "temporary directory. The machine may be shared: the 1-minute load average around the runs is recorded.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {m['cpu']} |",
        f"| cores | {m['cores']} |",
        f"| memory | {m['memory_gib']} GiB |",
        f"| OS | {m['os']} |",
        f"| load average at start (1/5/15 min) | {' / '.join(str(x) for x in m['load_at_start'])} |",
        f"| load average at end | {' / '.join(str(x) for x in data.get('load_at_end', []))} |",
        "",
        "## Versions",
        "",
        "| | |",
        "|---|---|",
    ]
    for k in (
        "python",
        "dask",
        "distributed",
        "scikit-learn",
        "joblib",
        "dask-ml",
        "xrun",
        "docker",
    ):
        L.append(f"| {k} | {v.get(k) or 'not installed'} |")
    src = v.get("xrun_source") or {}
    if src:
        mod = ", ".join(src.get("modified_in_runner") or []) or "none"
        L.append(f"| xrun source | commit {src.get('commit')}; uncommitted changes in runner/: {mod}; "
                 f"runner/**/*.py sha256 {src.get('runner_py_sha256')}; execute.py sha256 {src.get('execute_py_sha256')}, "
                 f"batching code present: {src.get('batching_in_execute_py')} |")  # fmt: skip
    if data.get("xrun_source_at_end"):
        e = data["xrun_source_at_end"]
        L.append(f"| xrun source at the end | **changed during the run**: commit {e.get('commit')}; uncommitted changes "
                 f"in runner/: {', '.join(e.get('modified_in_runner') or []) or 'none'}; runner sha256 {e.get('runner_py_sha256')} |")  # fmt: skip
    L += [
        "",
        "## Summary",
        "",
        "| benchmark | case | xrun (median) | baseline (median) | xrun / baseline | goal | status |",
        "|---|---|---|---|---|---|---|",
    ]
    order = [n for n in NAMES if n in data["benchmarks"]]
    for name in order:
        b = data["benchmarks"][name]
        for r in b["rows"]:
            xv = r.get("value") or _t(r.get("xrun"))
            rt = (
                f"{'> ' if r.get('ratio_bound') == '>' else ''}{r['ratio']:.2f}×"
                if r.get("ratio") is not None
                else "–"
            )
            L.append(
                f"| {b['title']} | {r['case']} | {xv} | {_t(r.get('baseline'))} | {rt} | {r['goal']} | **{r['status']}** |"
            )
    for name in order:
        b = data["benchmarks"][name]
        L += ["", f"## {b['title']}", ""]
        if b.get("date"):
            ld = b.get("load") or {}
            L.append(f"Measured {b['date']}; 1-min load around the runs: min {ld.get('min')}, "
                     f"median {ld.get('median')}, max {ld.get('max')}{_speed(b)}." if ld
                     else f"Measured {b['date']}{_speed(b)}.")  # fmt: skip
            L.append("")
        L += ["| case | runs | all runs (s) | median | trial phase (median) | peak RSS (driver process) | status |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in b["rows"]:
            for who, d in (
                ("xrun", r.get("xrun")),
                (r.get("baseline_name") or "baseline", r.get("baseline")),
            ):
                if not d or (who != "xrun" and b.get("baselines")):  # listed below, one row each
                    continue
                tp = (
                    f"{d['trial_phase_median_s']:.2f} s"
                    if d.get("trial_phase_median_s") is not None
                    else "–"
                )
                rss = (
                    f"{d['peak_rss_mb_max']:.0f} MB"
                    if d.get("peak_rss_mb_max") is not None
                    else "–"
                )
                st = r["status"] if who == "xrun" else ""
                L.append(
                    f"| {r['case']}: {who} | {len(d['runs_s'])} | {_runs(d)} | {_t(d)} | {tp} | {rss} | {st} |"
                )
        for bname, d in (b.get("baselines") or {}).items():
            L.append(f"| {bname} | {len(d['runs_s'])} | {_runs(d)} | {_t(d)} | – | – | |")
        notes = list(b.get("notes") or [])
        for r in b["rows"]:
            for d in (r.get("xrun"), r.get("baseline")):
                notes += (d or {}).get("notes") or []
        if notes:
            L.append("")
            L += [f"- {n}" for n in dict.fromkeys(notes)]
    return "\n".join(L) + "\n"


def write_results(path: Path, text: str) -> None:
    """RESULTS.md from ``text``, keeping the sections other scripts own
    (``<!-- NAME:begin -->`` … ``<!-- NAME:end -->``, e.g. bench/storage.py's)."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    blocks = [m.group(0) for m in re.finditer(r"<!-- ([a-z]+):begin -->\n.*?<!-- \1:end -->\n", old, flags=re.S)]
    path.write_text(text + "".join("\n" + b for b in blocks), encoding="utf-8")


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="skip 100,000 trials (dispatch, scale); fewer repeats"
    )
    ap.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"comma-separated, from {', '.join(NAMES)}",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="alternating runs per measurement (default: per benchmark)",
    )
    ap.add_argument(
        "--sizes",
        default="",
        help="dispatch sizes, comma-separated (default 2000,20000,100000; --quick: 2000,20000)",
    )
    ap.add_argument(
        "--xrun-src",
        type=Path,
        default=None,
        metavar="DIR",
        help="run xrun from another source tree (PYTHONPATH=DIR), e.g. an older commit: "
        "mkdir DIR && git archive REV runner | tar -x -C DIR",
    )
    ap.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (bundles, logs, cache)"
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=BENCH,
        help="where RESULTS.md and results.json go (default: bench/)",
    )
    ap.add_argument(
        "--render", action="store_true", help="only re-render RESULTS.md from results.json"
    )
    ap.add_argument(
        "--phase",
        choices=PHASES,
        default=None,
        help="also keep these results as the 'before' or 'after' figures (results.json phases)",
    )
    args = ap.parse_args(argv)
    if args.render:
        md = render(json.loads((args.out / "results.json").read_text()))
        write_results(args.out / "RESULTS.md", keep_foreign_sections(md, args.out / "RESULTS.md"))
        return 0
    only = [n for item in args.only for n in item.split(",") if n]
    unknown = [n for n in only if n not in NAMES]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(NAMES)}")
    if not Path(XRUN).exists():
        ap.error(f"{XRUN} not found: run this with the python of the venv xrun is installed in")
    selected = only or [n for n in NAMES if not (args.quick and n == "scale")]

    work = Path(tempfile.mkdtemp(prefix="xrun-bench-"))
    ctx = Ctx(work=work, quick=args.quick, repeats=args.repeats, keep=args.keep,
              env={"XRUN_CACHE_DIR": str(work / "cache")},
              sizes=[int(x.replace("_", "")) for x in args.sizes.split(",") if x])  # fmt: skip
    if args.xrun_src:
        src = args.xrun_src.resolve()
        if not ((src / "runner" / "cli.py").exists() or (src / "runner" / "cli" / "__init__.py").exists()):
            ap.error(f"--xrun-src {src}: no runner/cli.py there")
        ctx.env["PYTHONPATH"] = str(src)  # ahead of the editable install's finder
    precompile(args.xrun_src.resolve() if args.xrun_src else REPO)
    progress(f"work dir {work}; benchmarks: {', '.join(selected)}")
    started = time.monotonic()
    data: dict[str, Any] = {"benchmarks": {}}
    results_json = args.out / "results.json"
    if results_json.exists():
        previous = json.loads(results_json.read_text())
        data["phases"] = previous.get("phases", {})  # before/after figures are kept across runs
        if only:
            data["benchmarks"] = previous.get("benchmarks", {})
    data.update(machine=machine(), versions=versions(args.xrun_src.resolve() if args.xrun_src else None), quick=args.quick,
                date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))  # fmt: skip
    try:
        speed = data["machine"]["host_speed_ms_at_start"]  # before the first benchmark; then after the last one
        for name in selected:
            progress(f"== {name} (host speed reference {speed} ms)")
            t0 = time.monotonic()
            try:
                BENCHMARKS[name](ctx)
            except Exception as exc:  # one broken benchmark does not lose the others
                RESULTS[name] = {
                    "title": name,
                    "rows": [],
                    "notes": [f"harness error: {type(exc).__name__}: {exc}"],
                }
            RESULTS[name]["date"] = _dt.datetime.now(_dt.timezone.utc).strftime(
                "%Y-%m-%d %H:%M UTC"
            )
            RESULTS[name]["harness_seconds"] = round(time.monotonic() - t0, 1)
            after = host_speed()
            RESULTS[name]["host_speed_ms"] = [speed, after]  # before and after the benchmark
            speed = after
            data["benchmarks"][name] = RESULTS[name]
            if args.phase:
                data.setdefault("phases", {}).setdefault(args.phase, {})[name] = RESULTS[name]
            progress(f"   {name} took {RESULTS[name]['harness_seconds']} s")
    finally:
        data["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
        at_end = versions(args.xrun_src.resolve() if args.xrun_src else None).get("xrun_source")
        if at_end != data["versions"].get("xrun_source"):
            data["xrun_source_at_end"] = at_end  # the tree changed while the benchmarks ran
        data["harness_seconds"] = round(time.monotonic() - started, 1)
        args.out.mkdir(parents=True, exist_ok=True)
        results_json.write_text(json.dumps(data, indent=2, default=lambda o: asdict(o)) + "\n")
        write_results(args.out / "RESULTS.md", keep_foreign_sections(render(data), args.out / "RESULTS.md"))
        if args.keep:
            progress(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    progress(f"done in {data['harness_seconds']} s: {args.out / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
