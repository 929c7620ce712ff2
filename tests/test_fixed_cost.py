"""The fixed cost of a run, with real processes: a local cluster spawned while
the driver plans, every connected worker importing the trial at pre-flight,
and a cluster that stops while the bundle is sealed -- none of which may
change what a run leaves behind, how it fails, or leave a process running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from runner.bundle.journal import read_journal
from tests.conftest import alive

TRIAL = '''
import time

def train(params, ctx):
    time.sleep(params["sleep"])
    return {"score": float(params["x"])}
'''

# Every Dask process of the run appends "<role> <pid>" to a file as it starts
# (a sitecustomize on PYTHONPATH: the local backend passes the environment on).
SPY = '''
import os, sys
_argv = " ".join(sys.orig_argv)
_role = "scheduler" if "dask_scheduler" in _argv else "worker" if "dask_worker" in _argv else None
if _role is not None:
    with open({log!r}, "a") as fh:
        fh.write(f"{{_role}} {{os.getpid()}}\\n")
{extra}
'''


def spec_text(n: int = 4, sleep: float = 0.1, extra: str = "") -> str:
    points = ", ".join(f"{{x: {i}, sleep: {sleep}}}" for i in range(n))
    return f"""
        # keys in another order than the shipped examples
        output: out
        cluster: {{workers: 2, backend: local, threads_per_worker: 1}}
        sweep: {{method: list, points: [{points}]}}
        trial: {{function: "experiments.fc:train", timeout: 2m}}
        code: {{include: ["experiments/*.py"]}}
        name: fixed-cost
        xrun: 1
        {extra}
    """


def spied_env(tmp_path: Path, extra: str = "") -> tuple[dict[str, str], Path]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    log = tmp_path / "processes.log"
    (site / "sitecustomize.py").write_text(SPY.format(log=str(log), extra=extra))
    env = {"PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "COLUMNS": "200"}
    return env, log


def started(log: Path) -> list[tuple[str, int]]:
    if not log.exists():
        return []
    return [(role, int(pid)) for role, pid in (line.split() for line in log.read_text().splitlines() if line.strip())]


def test_no_cluster_process_outlives_the_run_and_a_cached_rerun_starts_none(project, run_xrun, tmp_path) -> None:
    """The cluster stops while the bundle is sealed; `xrun` returns only once it is gone.
    A re-run whose results are all cached spawns no Dask process at all (none early)."""
    project.file("experiments/fc.py", TRIAL)
    spec = project.spec(spec_text())
    env, log = spied_env(tmp_path)
    first = run_xrun("run", spec.name, "-q", cwd=project.root, env=env)
    assert first.code == 0, first.err
    procs = started(log)
    assert {role for role, _ in procs} == {"worker"}  # a small sweep's scheduler runs in the driver
    still = [(role, pid) for role, pid in procs if alive(pid)]
    assert not still, f"left running after xrun returned: {still}"
    assert json.loads((first.bundle / "bundle.json").read_text())["status"] == "ok"
    assert (first.bundle / "MANIFEST.sha256").is_file() and (first.bundle / "report.html").is_file()
    verified = run_xrun("verify", first.bundle, cwd=tmp_path)
    assert verified.code == 0, verified.out + verified.err

    again = run_xrun("run", spec.name, "-q", cwd=project.root, env=env)
    assert again.code == 0, again.err
    assert started(log) == procs, "a fully cached re-run started Dask processes"
    meta = json.loads((again.bundle / "bundle.json").read_text())
    assert meta["counts"]["cached"] == 4 and meta["cluster_started"] is False


def test_planning_that_fails_after_the_cluster_was_spawned_leaves_no_process(project, run_xrun, tmp_path) -> None:
    """The cluster is spawned before planning; a spec error found while planning
    (the trial's module left out of the code snapshot) still exits 2 with its
    message, and the processes spawned for nothing are stopped."""
    project.file("experiments/fc.py", TRIAL)
    spec = project.spec(spec_text().replace('include: ["experiments/*.py"]', 'include: ["experiments/__init__.py"]'))
    env, log = spied_env(tmp_path)
    res = run_xrun("run", spec.name, "-q", "--no-cache", cwd=project.root, env=env)
    assert res.code == 2, res.err
    assert "is not in the code snapshot" in res.err and "Traceback" not in res.err and "internal error" not in res.err
    assert not list((project.root / "out").glob("*/bundle.json"))  # as before: no bundle for a bad spec
    procs = started(log)  # (a process stopped before its interpreter started has no line)
    deadline = time.monotonic() + 30
    while any(alive(pid) for _, pid in procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in procs if alive(p[1])]


def test_workers_that_cannot_start_while_the_driver_plans_exit_3_with_a_bundle(project, run_xrun, tmp_path) -> None:
    """Workers spawned early that die at once: the same infrastructure error
    (exit 3, their own log, no traceback) and a bundle marked `error`."""
    project.file("experiments/fc.py", TRIAL)
    spec = project.spec(spec_text())
    die = "if _role == 'worker':\n    print('cannot start: out of file handles', flush=True)\n    os._exit(9)\n"
    env, log = spied_env(tmp_path, extra=die)
    res = run_xrun("run", spec.name, "-q", cwd=project.root, env=env)
    assert res.code == 3, res.err
    assert "no local worker could start" in res.err and "out of file handles" in res.err
    assert "Traceback" not in res.err and "internal error" not in res.err
    assert "partial results kept in" in res.err
    bundles = sorted((project.root / "out").glob("*/bundle.json"))
    assert len(bundles) == 1 and json.loads(bundles[0].read_text())["status"] == "error"
    assert not [p for p in started(log) if alive(p[1])]


def test_a_driver_killed_while_sealing_leaves_its_results_for_the_rerun(project, tmp_path) -> None:
    """SIGKILL once every trial is journaled (the bundle being sealed, the cluster
    stopping): no Dask process survives the driver and a re-run takes every
    result from the cache."""
    project.file("experiments/fc.py", TRIAL)
    spec = project.spec(spec_text(n=6))
    env, log = spied_env(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "runner.cli", "run", spec.name, "-q"], cwd=project.root,
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    out = project.root / "out"

    def finished() -> bool:  # bundle.json turns terminal just before sealing starts
        metas = sorted(out.glob("*/bundle.json")) if out.exists() else []
        try:
            return bool(metas) and json.loads(metas[-1].read_text()).get("status") != "running"
        except (OSError, ValueError):
            return False

    deadline = time.monotonic() + 240
    while not finished() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    bundle = sorted(out.glob("*/bundle.json"))[-1].parent
    assert len(read_journal(bundle / "trials.jsonl")) == 6
    deadline = time.monotonic() + 30
    while any(alive(pid) for _, pid in started(log)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in started(log) if alive(p[1])]
    again = subprocess.run([sys.executable, "-m", "runner.cli", "run", spec.name, "-q"], cwd=project.root,
                           capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert again.returncode == 0, again.stderr
    meta = json.loads((Path(again.stdout.strip().splitlines()[-1]) / "bundle.json").read_text())
    assert meta["counts"]["cached"] == 6 and meta["status"] == "ok"


SLOW_IMPORT = '''
import os, time
with open({log!r}, "a") as fh:
    fh.write(f"{{os.getpid()}} start {{time.time()}}\\n")
time.sleep(3)
with open({log!r}, "a") as fh:
    fh.write(f"{{os.getpid()}} end {{time.time()}}\\n")

def train(params, ctx):
    return {{"score": float(params["x"]), "pid": float(os.getpid())}}
'''


def test_every_connected_worker_imports_the_trial_at_preflight(project, run_xrun, dask_cluster, tmp_path) -> None:
    """Two workers already connected: both import the (slow to import) trial
    module at once, before trials are sent, instead of the second one doing it
    when its first trial arrives, after the first worker's import ended."""
    from distributed import Client

    address, _ = dask_cluster
    with Client(address, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=120)
    imports = tmp_path / "imports.log"
    project.file("experiments/slow.py", SLOW_IMPORT.format(log=str(imports)))
    spec = project.spec(f"""
        name: warm
        xrun: 1
        trial: {{function: "experiments.slow:train"}}
        code: {{include: ["experiments/*.py"]}}
        sweep: {{method: list, points: [{{x: 1}}, {{x: 2}}, {{x: 3}}, {{x: 4}}]}}
        cluster: {{backend: address, address: "{address}", workers: 2}}
        output: runs
    """)
    res = run_xrun(spec, "-q", cwd=project.root)
    assert res.code == 0, res.err
    times: dict[int, dict[str, float]] = {}
    for line in imports.read_text().splitlines():
        pid, what, when = line.split()
        times.setdefault(int(pid), {})[what] = float(when)
    assert len(times) == 2, times  # each worker imported it once
    (a, b) = sorted(times.values(), key=lambda t: t["start"])
    assert b["start"] < a["end"], f"the imports did not overlap: {times}"
    ran_on = {int(r["metrics"]["pid"]) for r in read_journal(res.bundle / "trials.jsonl")}
    assert ran_on <= set(times)
