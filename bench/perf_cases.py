"""Benchmarks of the fixed cost of a run, per-trial bookkeeping, stragglers and containers.

Each ``bench_*`` function takes the harness context and returns a benchmark
entry (title, rows, load, notes) in the shape ``run.py`` renders. Every figure
is measured side by side with its peer in the same run (alternating runs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import run as h  # the harness: measure, xrun_run, summary, …

NOOP_GRID_SPEC = """\
xrun: 1
name: bench-{name}
environment: {env}
code: {{root: ., include: ["noop.py", "straggler.py"]}}
trial: {{function: "{function}"}}
sweep:
  method: grid
  parameters:
    i: {values}
cluster: {{backend: {backend}, workers: 2, threads_per_worker: 1}}
output: bundles
"""


def _copy_trials(ctx: h.Ctx) -> None:
    for name in ("noop.py", "straggler.py"):
        shutil.copy(h.BASELINES / name, ctx.work / name)


def _row(case: str, x: dict[str, Any], base: dict[str, Any] | None, base_name: str, goal: str,
         status: str, value: str | None = None, r: float | None = None, bound: str = "=") -> dict[str, Any]:  # fmt: skip
    row = {"case": case, "xrun": x, "baseline": base, "baseline_name": base_name,
           "ratio": r, "ratio_bound": bound, "goal": goal, "status": status}  # fmt: skip
    if value is not None:
        row["value"] = value
    return row


def _pair(ctx: h.Ctx, reps: int, run_x: Any, run_b: Any) -> tuple[list[h.Sample], list[h.Sample]]:
    xs: list[h.Sample] = []
    bs: list[h.Sample] = []
    for i in range(reps):
        h.progress(f"  pair {i + 1}/{reps}: xrun")
        xs.append(run_x())
        h.progress(f"  pair {i + 1}/{reps}: peer (xrun took {xs[-1].seconds} s)")
        bs.append(run_b())
    return xs, bs


# ------------------------------------------------------------------ small sweeps


def _against_gridsearch(ctx: h.Ctx, title: str, case: str, label: str, spec: Path, baseline: str,
                        xrun_note: str) -> dict[str, Any]:
    """xrun on ``spec`` and ``bench/baselines/<baseline>`` (GridSearchCV(n_jobs=2,
    refit=False) on the same grid), alternating, whole-process wall time."""
    reps = ctx.n(5, 3)
    xs, bs = _pair(
        ctx, reps,
        lambda: h.xrun_run(f"xrun {label}", spec, ctx, timeout=300),
        lambda: h.measure(f"GridSearchCV {label}", [h.PYTHON, str(h.BASELINES / baseline)],
                          timeout=300, logdir=ctx.logs),
    )  # fmt: skip
    x, b = h.summary(xs), h.summary(bs)
    r, bound = h.ratio(x, b["median_s"])
    return {
        "title": title, "load": h.loads(xs + bs),
        "rows": [_row(case, x, b, "GridSearchCV(n_jobs=2, refit=False)",
                      "≤ 1.0×", h.verdict(r, "<=", 1.0, bound=bound), r=r, bound=bound)],
        "notes": [xrun_note, f"{reps} alternating pairs, whole-process wall time"],
    }  # fmt: skip


def bench_quickstart(ctx: h.Ctx) -> dict[str, Any]:
    """specs/quickstart.yaml vs GridSearchCV(n_jobs=2, refit=False) on the same grid."""
    return _against_gridsearch(
        ctx, "Quickstart", "specs/quickstart.yaml (6 points, iris, cv 5)", "quickstart", h.QUICKSTART,
        "quickstart_gridsearch.py",
        "xrun: `xrun run specs/quickstart.yaml -q --no-cache -o DIR`; baseline: "
        "bench/baselines/quickstart_gridsearch.py (same grid, cv 5, scoring [accuracy, f1_macro])",
    )  # fmt: skip


def bench_svc(ctx: h.Ctx) -> dict[str, Any]:
    """16-point SVC grid on digits vs GridSearchCV(n_jobs=2, refit=False), alternating."""
    sys.path.insert(0, str(h.BASELINES))
    import svc_common as sc

    shutil.copy(h.BASELINES / "noop.py", ctx.work / "noop.py")
    spec = ctx.work / "svc.yaml"
    spec.write_text(h.SVC_SPEC.format(cv=sc.CV, scoring=sc.SCORING, c=json.dumps(sc.C), gamma=json.dumps(sc.GAMMA)))
    return _against_gridsearch(
        ctx, "SVC grid", "16-point SVC grid, digits, cv 5", "svc", spec, "svc_gridsearch.py",
        "xrun: zero-code `trial.sklearn` spec, --no-cache; baseline bench/baselines/svc_gridsearch.py",
    )  # fmt: skip


# ------------------------------------------------------------------ per-trial bookkeeping


def _python_loop(ctx: h.Ctx, n: int) -> h.Sample:
    code = (f"import sys; sys.path.insert(0, {str(h.BASELINES)!r}); from noop import noop\n"
            f"out = [noop({{'i': i}}, None) for i in range({n})]")  # fmt: skip
    return h.measure(f"python loop {n}", [h.PYTHON, "-c", code], timeout=120, logdir=ctx.logs)


def _done(s: h.Sample, n: int) -> int:
    return n if s.ok else (s.journaled or 0)


def _per_trial(s: h.Sample, n: int) -> str:
    done = _done(s, n)
    if s.driver_cpu_s is None or not done:
        return "n/a"
    return f"{s.driver_cpu_s / done * 1e6:.0f} µs driver CPU per trial ({s.driver_cpu_s} s over {done:,} trials)"


def _marginal(first: list[h.Sample], n: int, small: h.Sample | None, small_n: int) -> list[str]:
    """The driver's CPU of a small first run of the same sweep (its fixed cost), and what each further trial
    cost: (CPU at n - CPU at small_n) / (n - small_n). Said beside the total, never instead of it."""
    if small is None or not small.ok or small.driver_cpu_s is None:
        return [f"{small_n:,}-trial first run (the fixed cost): n/a"] if small_n else []
    out = [f"{small_n:,}-trial first run of the same sweep (the fixed cost: start, imports, sealing): driver CPU "
           f"{small.driver_cpu_s} s, wall {small.seconds} s"]  # fmt: skip
    for i, s in enumerate(first):
        if s.ok and s.driver_cpu_s is not None:
            per = (s.driver_cpu_s - small.driver_cpu_s) / (n - small_n) * 1e6
            out.append(f"first run {i + 1}: {per:.0f} µs driver CPU per further trial beyond the fixed cost "
                       f"(the goal is judged on the total over trials)")  # fmt: skip
    return out


def bench_firstrun(ctx: h.Ctx) -> dict[str, Any]:
    """100,000 no-op trials, empty cache, default progress display; then the same with the cache filled.

    Also yields the driver's peak RSS and a 100,000-trial bundle for ``report``."""
    n = ctx.sizes[0] if ctx.sizes else 100_000
    spec = h.noop_spec(ctx, n)
    reps = ctx.n(1, 1)
    first: list[h.Sample] = []
    again: list[h.Sample] = []
    loops: list[h.Sample] = []
    timeout = 420
    for i in range(reps):
        cache = ctx.work / f"cache-first-{i}"
        env = {"XRUN_CACHE_DIR": str(cache)}
        h.progress(f"firstrun {i + 1}/{reps}: empty cache")
        first.append(h.xrun_run("xrun 100k first run", spec, ctx, timeout=timeout, no_cache=False,
                                display=True, env=env, keep=True))  # fmt: skip
        h.progress(f"firstrun {i + 1}/{reps}: python loop (xrun took {first[-1].seconds} s)")
        loops.append(_python_loop(ctx, n))
        h.progress(f"firstrun {i + 1}/{reps}: cache filled")
        again.append(h.xrun_run("xrun 100k cached run", spec, ctx, timeout=timeout, no_cache=False,
                                display=True, env=env))  # fmt: skip
        loops.append(_python_loop(ctx, n))
        if i + 1 < reps:
            shutil.rmtree(cache, ignore_errors=True)
    if n == 100_000:
        h.CACHE["bundle-100k"] = next((s.bundle for s in first if s.ok and s.bundle), "")
    # The same sweep with 1,000 trials, first run: the driver's fixed cost (start, imports, sealing), so the
    # marginal cost per trial can be read beside the total over trials (the goal is judged on the total).
    small_n = min(1_000, n // 10)
    small: h.Sample | None = None
    if small_n:
        h.progress(f"firstrun: {small_n:,} trials, empty cache (the fixed cost)")
        small = h.xrun_run(f"xrun {small_n} first run", h.noop_spec(ctx, small_n), ctx, timeout=120, no_cache=False,
                           display=True, env={"XRUN_CACHE_DIR": str(ctx.work / "cache-fixed")})  # fmt: skip
    f, a, lp = h.summary(first), h.summary(again), h.summary(loops)
    peak = f.get("peak_rss_mb_max")
    fin = all(s.ok for s in first)
    v = f["median_s"] if f["median_s"] is not None else f.get("lower_bound_s")
    rows = [
        _row(f"{n:,} no-op trials, first run, empty cache, progress display", f, lp, "a Python loop calling the trial",
             f"≤ {15 * n / 100_000:g} s", h.verdict(v, "<=", 15 * n / 100_000, bound="=" if fin else ">")),
        _row(f"{n:,} no-op trials, cache filled, progress display", a, lp, "a Python loop calling the trial",
             f"≤ {15 * n / 100_000:g} s", h.verdict(a["median_s"], "<=", 15 * n / 100_000)),
        _row(f"{n:,} no-op trials (first run): driver peak RSS", f, None, "", "≤ 300 MB",
             h.verdict(peak, "<=", 300) if fin else ("NOT MET" if peak and peak > 300 else "UNKNOWN"),
             value=f"{peak} MB" if peak else "n/a"),
        _row(f"{n:,} no-op trials (first run): driver CPU per trial", f, None, "", "≤ 100 µs",
             h.verdict(first[0].driver_cpu_s / _done(first[0], n) * 1e6
                       if first and first[0].driver_cpu_s and _done(first[0], n) else None, "<=", 100),
             value=_per_trial(first[0], n) if first else "n/a"),
    ]  # fmt: skip
    notes = [
        "xrun: `xrun run SPEC -o DIR` (cache on, no -q) with stderr a pseudo-terminal, so rich draws its live "
        "progress bar as a user sees it; XRUN_CACHE_DIR a new empty directory for the first run, the same "
        "directory for the second (every trial cached)",
        f"peer: a Python process calling the same no-op trial function {n:,} times (the work itself)",
        "driver CPU = user+system CPU time of the xrun process (not its Dask workers), last psutil poll before exit",
    ] + [f"first run {i + 1}: {_per_trial(s, n)}; cached run: {_per_trial(c, n)}" for i, (s, c) in enumerate(zip(first, again))]
    notes += _marginal(first, n, small, small_n)
    return {"title": "Per-trial bookkeeping", "load": h.loads(first + again + loops), "rows": rows, "notes": notes}


def bench_report(ctx: h.Ctx) -> dict[str, Any]:
    """``xrun report`` of a 100,000-trial bundle (kept from firstrun, or made here)."""
    bundle = h.CACHE.get("bundle-100k")
    notes = []
    if not bundle:
        h.progress("report: making a 100,000-trial bundle")
        s = h.xrun_run("xrun 100k for report", h.noop_spec(ctx, 100_000), ctx, timeout=600, keep=True)
        bundle = s.bundle
        notes.append(f"bundle made by a run of its own ({s.seconds} s)")
    if not bundle:
        return {"title": "Report", "rows": [], "notes": notes + ["no 100,000-trial bundle could be made"]}
    reps = ctx.n(1, 1)
    xs = [h.measure("xrun report 100k", [h.XRUN, "report", bundle], timeout=600, env=ctx.env, logdir=ctx.logs, rss=True)
          for _ in range(reps)]  # fmt: skip
    x = h.summary(xs)
    v = x["median_s"] if x["median_s"] is not None else x.get("lower_bound_s")
    bound = "=" if x["median_s"] is not None else ">"
    notes.append("`xrun report BUNDLE` (rewrites report.html, RO-Crate metadata and the manifest) of the "
                 "100,000-trial bundle of the first-run case")  # fmt: skip
    return {"title": "Report", "load": h.loads(xs), "notes": notes,
            "rows": [_row("report of a 100,000-trial bundle", x, None, "", "≤ 10 s", h.verdict(v, "<=", 10, bound=bound))]}  # fmt: skip


def bench_reportsynth(ctx: h.Ctx) -> dict[str, Any]:
    """The report of a synthetic 100,000-trial bundle (tests/report/synth.py), alone:
    ``write_report`` in a process of its own, without sealing (the bundle has no manifest)."""
    n = 100_000
    bundle = ctx.work / "synth-100k"
    made = subprocess.run([h.PYTHON, "-c", "import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
                           "from tests.report.synth import make_bundle; make_bundle(Path(sys.argv[2]), n=int(sys.argv[3]), workers=2)",
                           str(h.REPO), str(bundle), str(n)], capture_output=True, text=True, timeout=600)  # fmt: skip
    if made.returncode != 0:
        return {"title": "Report (synthetic bundle)", "rows": [], "notes": [f"making the bundle failed: {made.stderr[-300:]}"]}
    code = "import sys; from pathlib import Path; from runner.report.page import write_report; write_report(Path(sys.argv[1]))"
    reps = ctx.n(1, 1)
    xs = [h.measure("report synth 100k", [h.PYTHON, "-c", code, str(bundle)], timeout=900, env=ctx.env,
                    logdir=ctx.logs, rss=True) for _ in range(reps)]  # fmt: skip
    x = h.summary(xs)
    v = x["median_s"] if x["median_s"] is not None else x.get("lower_bound_s")
    return {"title": "Report (synthetic bundle)", "load": h.loads(xs),
            "notes": ["tests/report/synth.py make_bundle(n=100000, workers=2): a random sweep's records with the shapes "
                      "the writer gives them (params, metrics, history, failures every 9th trial); "
                      "`runner.report.page.write_report` in a process of its own (imports included, no RO-Crate or manifest)"],
            "rows": [_row("report of a synthetic 100,000-trial bundle", x, None, "", "≤ 10 s",
                          h.verdict(v, "<=", 10, bound="=" if x["median_s"] is not None else ">"))]}  # fmt: skip


def bench_million(ctx: h.Ctx) -> dict[str, Any]:
    """A 1,000,000-trial random sweep of no-op trials: driver peak RSS (bounded time)."""
    n = 1_000_000
    spec = h.noop_spec(ctx, n)
    timeout = 480
    s = h.xrun_run("xrun 1M", spec, ctx, timeout=timeout)
    x = h.summary([s])
    peak = x.get("peak_rss_mb_max")
    status = h.verdict(peak, "<=", 500) if s.ok else ("NOT MET" if peak and peak > 500 else "NOT MET (did not finish)")
    note = (f"finished in {s.seconds} s" if s.ok else
            f"did not finish within {timeout} s (killed); the RSS is the peak of the part that ran") if s.returncode is not None or s.timed_out else ""  # fmt: skip
    return {"title": "One million trials", "load": h.loads([s]),
            "rows": [_row(f"{n:,}-trial random sweep: driver peak RSS", x, None, "", "≤ 500 MB, completes", status,
                          value=f"{peak} MB" if peak else "n/a")],
            "notes": [note, "`xrun run SPEC -q --no-cache -o DIR`, the dispatch spec with samples: 1000000"]}  # fmt: skip


# ------------------------------------------------------------------ stragglers


def _trial_records(bundle: str) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for line in (Path(bundle) / "trials.jsonl").read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict) and r.get("id"):
            out[r["id"]] = r
    return list(out.values())


def bench_straggler(ctx: h.Ctx) -> dict[str, Any]:
    """300 trials, log-normal sleep+CPU 10 ms–5 s: makespan vs max(total / slots, longest)."""
    sys.path.insert(0, str(h.BASELINES))
    import straggler as st

    _copy_trials(ctx)
    spec = ctx.work / "straggler.yaml"
    spec.write_text(NOOP_GRID_SPEC.format(name="straggler", env="{current: true}", function="straggler:work",
                                          values=json.dumps(list(range(st.N))), backend="local"))  # fmt: skip
    slots = 2
    nominal = sum(st.DURATIONS)
    nominal_bound = max(nominal / slots, max(st.DURATIONS))
    reps = ctx.n(2, 1)
    xs: list[h.Sample] = []
    measured: list[dict[str, float]] = []
    for i in range(reps):
        h.progress(f"straggler {i + 1}/{reps}")
        s = h.xrun_run("xrun straggler", spec, ctx, timeout=600, keep=True)
        xs.append(s)
        if s.ok and s.bundle:
            recs = [r for r in _trial_records(s.bundle) if r.get("status") == "ok"]
            starts = [r["start"] for r in recs]
            ends = [r["end"] for r in recs]
            durs = [r["end"] - r["start"] for r in recs]
            makespan = max(ends) - min(starts)
            bound = max(sum(durs) / slots, max(durs))
            measured.append({"makespan": round(makespan, 2), "bound": round(bound, 2),
                             "ratio": round(makespan / bound, 3), "tail": round(max(ends) - sorted(ends)[-2], 2)})  # fmt: skip
            shutil.rmtree(Path(s.bundle).parent, ignore_errors=True)
    x = h.summary(xs)
    ratios = sorted(m["ratio"] for m in measured)
    med = ratios[len(ratios) // 2] if ratios else None
    notes = [
        f"{st.N} trials (bench/baselines/straggler.py): log-normal durations (median 0.1 s, σ 1.2) clipped to "
        f"[10 ms, 5 s], half sleep half CPU; nominal total {nominal:.1f} s, longest {max(st.DURATIONS):.1f} s, "
        f"nominal lower bound max(total/{slots}, longest) = {nominal_bound:.1f} s",
        "makespan = last trial end − first trial start (trial records of the bundle); the bound is computed "
        "from the same run's measured trial durations (under load a trial's CPU half takes longer than nominal)",
    ] + [f"run {i + 1}: makespan {m['makespan']} s, bound {m['bound']} s, ratio {m['ratio']}×, "
         f"last trial ended {m['tail']} s after the one before" for i, m in enumerate(measured)]  # fmt: skip
    return {"title": "Stragglers", "load": h.loads(xs), "notes": notes,
            "rows": [_row("300 heterogeneous trials: makespan / lower bound", x, None, "", "≤ 1.15×",
                          h.verdict(med, "<=", 1.15), value=f"{med}× (makespan/bound)" if med else "n/a")]}  # fmt: skip


# ------------------------------------------------------------------ containers


def _docker_ready() -> str | None:
    def ok(argv: list[str]) -> bool:
        try:
            return subprocess.run(argv, capture_output=True, timeout=60).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    if not shutil.which("docker") or not ok(["docker", "info"]):
        return "no Docker daemon"
    if not ok(["docker", "image", "inspect", "xrun-base:bookworm"]):
        return "xrun-base:bookworm missing"
    return None


def _first_trial_s(s: h.Sample) -> float | None:
    if not s.ok or not s.bundle:
        return None
    starts = [r["start"] for r in _trial_records(s.bundle) if isinstance(r.get("start"), (int, float))]
    return round(min(starts) - s.spawn_epoch, 2) if starts else None


def bench_docker(ctx: h.Ctx) -> dict[str, Any]:
    """Docker backend (cached image) vs local backend: 20 no-op trials; start to first trial."""
    why = _docker_ready()
    if why:
        return {"title": "Docker backend", "rows": [], "notes": [f"SKIPPED: {why}"]}
    _copy_trials(ctx)
    env_in = ctx.work / "worker-env.in"
    for ext in (".in", ".lock"):
        shutil.copy(h.REPO / "tests/docker/data" / f"worker-env{ext}", ctx.work / f"worker-env{ext}")
    values = json.dumps(list(range(20)))
    docker_spec = ctx.work / "docker20.yaml"
    docker_spec.write_text(NOOP_GRID_SPEC.format(name="docker20", env=f"{{pip: {env_in.name}}}", function="noop:noop",
                                                 values=values, backend="docker")
                           + 'image: {base: "%s", build_args: {BASE_IMAGE: "xrun-base:bookworm"}}\n' % (h.REPO / "Dockerfile.base"))  # fmt: skip
    local_spec = ctx.work / "local20.yaml"
    local_spec.write_text(NOOP_GRID_SPEC.format(name="local20", env="{current: true}", function="noop:noop",
                                                values=values, backend="local"))  # fmt: skip
    h.progress("docker: building (or finding) the image")
    b = h.measure("xrun build docker20", [h.XRUN, "build", str(docker_spec), "--json"], timeout=900, env=ctx.env, logdir=ctx.logs)
    notes = [f"image build before the timed runs: {b.seconds} s (exit {b.returncode})",
             "docker: environment tests/docker/data/worker-env.in (pip, locked), image cached; local: environment current",
             "start to first trial = the first trial's recorded start − the xrun process's spawn time"]  # fmt: skip
    reps = ctx.n(3, 2)
    xs, bs = _pair(
        ctx, reps,
        lambda: h.xrun_run("xrun docker 20", docker_spec, ctx, timeout=300, keep=True),
        lambda: h.xrun_run("xrun local 20", local_spec, ctx, timeout=300, keep=True),
    )
    firsts_x = [_first_trial_s(s) for s in xs]
    firsts_b = [_first_trial_s(s) for s in bs]
    for s in xs + bs:
        if s.bundle:
            shutil.rmtree(Path(s.bundle).parent, ignore_errors=True)
    x, lb = h.summary(xs), h.summary(bs)
    r, bound = h.ratio(x, lb["median_s"])
    fx = sorted(v for v in firsts_x if v is not None)
    fb = sorted(v for v in firsts_b if v is not None)
    notes.append(f"start to first trial (s): docker {firsts_x}, local {firsts_b}")
    return {"title": "Docker backend", "load": h.loads(xs + bs), "notes": notes, "rows": [
        _row("20 no-op trials, cached image: docker vs local backend", x, lb, "the same run, local backend",
             "record", "RECORDED", r=r, bound=bound),
        _row("start to first trial: docker (local)", x, None, "", "record", "RECORDED",
             value=f"{fx[len(fx) // 2] if fx else 'n/a'} s ({fb[len(fb) // 2] if fb else 'n/a'} s local)"),
    ]}  # fmt: skip


CONDA_ENV_PY = '''\
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tests.env.condachannel import DISTRIBUTED, PLACEHOLDER, index_channel, make_package, write_env_yml
work = Path(sys.argv[2])
channel = work / "channel"
cfg = b"home = /usr/bin\\ninclude-system-site-packages = false\\nversion = 3.11.2\\n"
make_package(channel, "linux-64", "python", "3.11.2", files={"pyvenv.cfg": cfg}, links={"bin/python": "/usr/bin/python3"})
make_package(channel, "noarch", "liba", "1.0", files={"lib/python3.11/site-packages/liba.py": b"VALUE = 42\\n"})
make_package(channel, "noarch", "libp", "1.0", text_with_prefix={"etc/libp.conf": f"prefix={PLACEHOLDER}\\n".encode()})
make_package(channel, "noarch", "dask-core", DISTRIBUTED, depends=("python",))
make_package(channel, "noarch", "distributed", DISTRIBUTED, depends=("python", f"dask-core {DISTRIBUTED}.*"))
index_channel(channel)
print(write_env_yml(work / "proj", channel, "- python\\n- liba\\n- libp\\n"))
'''


def bench_imagebuild(ctx: h.Ctx) -> dict[str, Any]:
    """Cold (--no-cache: every step) and warm (image for the lock exists) builds, pip and conda test environments."""
    why = _docker_ready()
    if why:
        return {"title": "Image builds", "rows": [], "notes": [f"SKIPPED: {why}"]}
    _copy_trials(ctx)
    image = 'image: {base: "%s", build_args: {BASE_IMAGE: "xrun-base:bookworm"}}\n' % (h.REPO / "Dockerfile.base")
    for ext in (".in", ".lock"):
        shutil.copy(h.REPO / "tests/docker/data" / f"worker-env{ext}", ctx.work / f"worker-env{ext}")
    pip_spec = ctx.work / "pipimg.yaml"
    pip_spec.write_text(NOOP_GRID_SPEC.format(name="pipimg", env="{pip: worker-env.in}", function="noop:noop",
                                              values="[1]", backend="docker") + image)  # fmt: skip
    notes = ["cold = `xrun build SPEC --no-cache --json` (every Dockerfile step runs again; the base image is local); "
             "warm = `xrun build SPEC --json` when the image for this lock exists",
             "pip: tests/docker/data/worker-env.in (distributed, scikit-learn); conda: the tiny local channel of "
             "tests/docker/test_image_build.py (python as a venv of the base image's, liba, libp, dask-core, distributed)"]  # fmt: skip
    specs = {"pip": pip_spec}
    made = subprocess.run([h.PYTHON, "-c", CONDA_ENV_PY, str(h.REPO), str(ctx.work / "conda")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    if made.returncode == 0:
        env_yml = Path(made.stdout.strip().splitlines()[-1])
        conda_spec = ctx.work / "condaimg.yaml"
        conda_spec.write_text(NOOP_GRID_SPEC.format(name="condaimg", env=f"{{conda: {env_yml}}}", function="noop:noop",
                                                    values="[1]", backend="docker") + image)  # fmt: skip
        lock = subprocess.run([h.XRUN, "lock", str(conda_spec)], capture_output=True, text=True, timeout=600,
                              env={**os.environ, **ctx.env})  # fmt: skip
        if lock.returncode == 0:
            specs["conda"] = conda_spec
        else:
            notes.append(f"conda: `xrun lock` failed: {lock.stderr.strip()[-300:]}")
    else:
        notes.append(f"conda: making the channel failed: {made.stderr.strip()[-300:]}")
    rows = []
    everything: list[h.Sample] = []
    reps = ctx.n(1, 1)
    for kind, spec in specs.items():
        cold: list[h.Sample] = []
        warm: list[h.Sample] = []
        for i in range(reps):
            h.progress(f"imagebuild {kind} {i + 1}/{reps}: cold")
            cold.append(h.measure(f"build {kind} cold", [h.XRUN, "build", str(spec), "--no-cache", "--json"],
                                  timeout=900, env=ctx.env, logdir=ctx.logs))  # fmt: skip
            warm.append(h.measure(f"build {kind} warm", [h.XRUN, "build", str(spec), "--json"],
                                  timeout=300, env=ctx.env, logdir=ctx.logs))  # fmt: skip
        everything += cold + warm
        c, w = h.summary(cold), h.summary(warm)
        rows.append(_row(f"{kind} test environment image: cold build", c, None, "", "record", "RECORDED"))
        rows.append(_row(f"{kind} test environment image: warm build", w, None, "", "record", "RECORDED"))
    return {"title": "Image builds", "load": h.loads(everything), "rows": rows, "notes": notes}


CASES = {
    "quickstart": bench_quickstart, "svc": bench_svc, "firstrun": bench_firstrun, "report": bench_report,
    "million": bench_million, "reportsynth": bench_reportsynth, "straggler": bench_straggler, "docker": bench_docker, "imagebuild": bench_imagebuild,
}  # fmt: skip
