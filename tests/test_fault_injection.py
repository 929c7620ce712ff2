"""Fault injection: a worker (process or container), the local scheduler or the
driver is killed with SIGKILL at a moment drawn from the whole run, over many
seeds. Every run ends with each trial recorded exactly once, exit 0 (the trials
all succeed), never an internal error; a killed scheduler ends in exit 3 with
a resumable cache, a killed driver's re-run resumes.

``XRUN_SOAK_SEEDS=200`` runs the local-backend harness over 200 seeds (a soak,
by hand); CI runs a few.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from runner.bundle.journal import read_journal
from runner.bundle.manifest import verify
from tests.conftest import descendants, local_worker_processes

TRIAL = '''
import time

def train(params, ctx):
    time.sleep(params["sleep"])
    return {"score": float(params["x"])}
'''

N = 12
SOAK = int(os.environ.get("XRUN_SOAK_SEEDS", "0") or 0)
PHASES = ("before-scheduler", "worker-start", "mid-sweep", "last-trial")


def spec_text(backend: str = "{backend: local, workers: 2}", n: int = N, sleep: float = 0.3) -> str:
    points = "\n".join(f"    - {{x: {i}, sleep: {sleep}}}" for i in range(n))
    return f"""
sweep:
  method: list
  points:
{points}
trial: {{function: "experiments.faulty:train", timeout: 2m}}
code: {{include: ["experiments/*.py"]}}
name: faulty
xrun: 1
cluster: {backend}
output: ./out
"""


def start(spec: Path, cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "run", spec.name, "-q", *args], cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def with_marker(pid: int, marker: str) -> list[psutil.Process]:
    """The processes under ``pid`` whose command line holds ``marker``."""
    return descendants(pid, lambda p: marker in " ".join(p.cmdline()))


def worker_processes(pid: int) -> list[psutil.Process]:
    """Nannies (``dask_worker``) and the worker processes they fork (or spawn)."""
    workers = local_worker_processes(pid)
    return [p for p in with_marker(pid, "dask_worker") if p not in workers] + workers


def journal(out: Path) -> list[dict]:
    paths = sorted(out.glob("*/trials.jsonl")) if out.exists() else []
    return read_journal(paths[-1]) if paths else []


def wait_until(cond: Callable[[], object], proc: subprocess.Popen[str], timeout: float = 120) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        if proc.poll() is not None:
            return None
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout}s")


def kill_at_random_moment(proc: subprocess.Popen[str], out: Path, rng: random.Random,
                          victims: Callable[[], list], kill: Callable[[object], None], timeout: float = 120) -> str:  # fmt: skip
    """Wait for a moment of the run chosen by ``rng``, then kill one victim."""
    phase = rng.choice(PHASES)
    if phase == "before-scheduler":
        wait_until(victims, proc, timeout)
    elif phase == "worker-start":
        wait_until(victims, proc, timeout)
        time.sleep(rng.uniform(0, 3))
    elif phase == "mid-sweep":
        k = rng.randint(1, N - 3)
        wait_until(lambda: len(journal(out)) >= k, proc, timeout)
    else:
        wait_until(lambda: len(journal(out)) >= N - 2, proc, timeout)
    found = victims()
    if found:
        kill(rng.choice(found))
    return phase


def check_complete(proc: subprocess.Popen[str], out: Path, what: str) -> None:
    stdout, stderr = proc.communicate(timeout=300)
    assert "internal error" not in stderr and "Traceback" not in stderr, (what, stderr)
    assert proc.returncode == 0, (what, proc.returncode, stderr)
    bundle = Path(stdout.strip().splitlines()[-1])
    records = read_journal(bundle / "trials.jsonl")
    assert sorted(r["id"] for r in records) == [f"t{i:05d}" for i in range(N)], what  # each exactly once
    assert all(r["status"] == "ok" for r in records), (what, [r for r in records if r["status"] != "ok"])
    assert json.loads((bundle / "bundle.json").read_text())["status"] == "ok", what
    assert verify(bundle).ok, what


def sigkill(p: object) -> None:
    try:
        p.send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
    except psutil.NoSuchProcess:
        pass


def no_process_left(pid_markers: list[psutil.Process], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pid_markers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("seed", range(SOAK or 4))
def test_local_worker_killed_at_a_random_moment(project, seed: int) -> None:
    project.file("experiments/faulty.py", TRIAL)
    spec = project.spec(spec_text())
    rng = random.Random(seed)
    proc = start(spec, project.root)
    phase = kill_at_random_moment(proc, project.root / "out", rng, lambda: worker_processes(proc.pid), sigkill)
    check_complete(proc, project.root / "out", f"seed {seed}, {phase}")


def test_worker_killed_while_the_cluster_starts(project) -> None:
    """Once "internal error: RuntimeError: Nanny failed to start", exit 1, nothing run."""
    project.file("experiments/faulty.py", TRIAL)
    spec = project.spec(spec_text(n=N))
    proc = start(spec, project.root)
    for _ in range(2):  # the first worker process seen, then another during start
        found = wait_until(lambda: worker_processes(proc.pid), proc, 60)
        assert found, proc.communicate()
        sigkill(found[0])
        time.sleep(0.3)
    check_complete(proc, project.root / "out", "killed during start")


def test_no_worker_can_start_is_an_infrastructure_error_with_its_log(project, tmp_path: Path) -> None:
    project.file("experiments/faulty.py", TRIAL)
    site = tmp_path / "site"
    site.mkdir()
    # Every worker process dies at startup, as with a broken environment on a node.
    (site / "sitecustomize.py").write_text(
        "import os, sys\n"
        "if 'distributed.cli.dask_worker' in sys.orig_argv:\n"
        "    print('cannot start: /dev/nvidia0 is missing', flush=True)\n"
        "    os._exit(7)\n"
    )
    spec = project.spec(spec_text(n=3))
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "COLUMNS": "200"}
    res = subprocess.run([sys.executable, "-m", "runner.cli", "run", spec.name], cwd=project.root,
                         capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert res.returncode == 3, res.stderr
    assert "no local worker could start" in res.stderr and "/dev/nvidia0 is missing" in res.stderr
    assert "internal error" not in res.stderr and "Traceback" not in res.stderr


def big_spec_text(n: int = 1_001, slow: int = 12) -> str:
    """A sweep too large for a scheduler in the driver's process (runner.cluster.local.IN_DRIVER_MAX_TRIALS):
    its first ``slow`` trials take 0.5 s, the rest none."""
    points = "\n".join(f"    - {{x: {i}, sleep: {0.5 if i < slow else 0}}}" for i in range(n))
    return spec_text(n=0).replace("  points:\n", f"  points:\n{points}")


def test_killed_local_scheduler_ends_with_exit_3_and_a_resumable_cache(project) -> None:
    project.file("experiments/faulty.py", TRIAL)
    spec = project.spec(big_spec_text())
    out = project.root / "out"
    proc = start(spec, project.root)
    wait_until(lambda: len(journal(out)) >= 3, proc)
    scheduler = with_marker(proc.pid, "dask_scheduler")
    assert len(scheduler) == 1
    workers = worker_processes(proc.pid)
    scheduler[0].send_signal(signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 3, stderr
    assert "scheduler exited" in stderr and "internal error" not in stderr and "Traceback" not in stderr
    finished = {r["key"] for r in journal(out) if r["status"] == "ok"}
    assert len(finished) >= 3
    bundle = sorted(out.glob("*/bundle.json"))[-1]
    assert json.loads(bundle.read_text())["status"] == "error"
    assert no_process_left(workers)
    again = subprocess.run([sys.executable, "-m", "runner.cli", "run", spec.name, "-q"], cwd=project.root,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr
    records = read_journal(Path(again.stdout.strip().splitlines()[-1]) / "trials.jsonl")
    assert sorted(r["id"] for r in records) == [f"t{i:05d}" for i in range(1_001)]
    assert {r["key"] for r in records if r["cached"]} == finished


# A scheduler preload (configured in Dask, as a user may) that closes the scheduler once three trials' tasks are done.
CLOSER = """
import asyncio
from distributed.diagnostics.plugin import SchedulerPlugin

class Closer(SchedulerPlugin):
    def __init__(self, scheduler):
        self.scheduler, self.done = scheduler, 0

    def transition(self, key, start, finish, *args, **kwargs):
        if finish == "memory" and str(key).startswith("xrun-trial"):  # the trials' tasks, not the pre-flight's
            self.done += 1
            if self.done == 3:
                asyncio.get_running_loop().call_later(0.2, lambda: asyncio.ensure_future(self.scheduler.close()))

async def dask_setup(scheduler):
    scheduler.add_plugin(Closer(scheduler))
"""


def test_a_scheduler_in_the_driver_that_stops_ends_with_exit_3_and_a_resumable_cache(project) -> None:
    """A small sweep's scheduler runs in the driver's process; when it stops by
    itself mid-sweep the run ends as when the scheduler's process dies."""
    project.file("experiments/faulty.py", TRIAL)
    closer = project.file("closer.py", CLOSER)
    spec = project.spec(spec_text(n=N, sleep=0.5))
    out = project.root / "out"
    env = {**os.environ, "COLUMNS": "200", "DASK_DISTRIBUTED__SCHEDULER__PRELOAD": json.dumps([str(closer)])}
    res = subprocess.run([sys.executable, "-m", "runner", "run", spec.name, "-q"], cwd=project.root, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 3, res.stderr
    assert "scheduler exited" in res.stderr and "internal error" not in res.stderr and "Traceback" not in res.stderr
    assert not with_marker(os.getpid(), "dask_scheduler")
    finished = {r["key"] for r in journal(out) if r["status"] == "ok"}
    assert len(finished) >= 3
    bundle = sorted(out.glob("*/bundle.json"))[-1]
    assert json.loads(bundle.read_text())["status"] == "error"
    again = subprocess.run([sys.executable, "-m", "runner", "run", spec.name, "-q"], cwd=project.root,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr
    records = read_journal(Path(again.stdout.strip().splitlines()[-1]) / "trials.jsonl")
    assert sorted(r["id"] for r in records) == [f"t{i:05d}" for i in range(N)]
    assert {r["key"] for r in records if r["cached"]} == finished


@pytest.mark.parametrize("seed", range(2))
def test_killed_driver_leaves_no_process_and_the_rerun_resumes(project, seed: int) -> None:
    project.file("experiments/faulty.py", TRIAL)
    spec = project.spec(spec_text())
    out = project.root / "out"
    rng = random.Random(1000 + seed)
    proc = start(spec, project.root)
    procs: list[psutil.Process] = []

    def snapshot() -> list[psutil.Process]:
        procs[:] = worker_processes(proc.pid) + with_marker(proc.pid, "dask_scheduler")
        return procs

    kill_at_random_moment(proc, out, rng, snapshot, lambda _: proc.send_signal(signal.SIGKILL))
    proc.wait(timeout=30)
    assert no_process_left(procs), [p.cmdline() for p in procs if p.is_running()]
    finished = {r["key"] for r in journal(out) if r["status"] == "ok"}
    again = subprocess.run([sys.executable, "-m", "runner.cli", "run", spec.name, "-q"], cwd=project.root,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr
    records = read_journal(Path(again.stdout.strip().splitlines()[-1]) / "trials.jsonl")
    assert sorted(r["id"] for r in records) == [f"t{i:05d}" for i in range(N)]
    assert {r["key"] for r in records if r["cached"]} == finished


# ------------------------------------------------------------------ address


def home_cluster(tmp: Path, port: int) -> list[subprocess.Popen[bytes]]:
    """A scheduler and two nanny-less workers, as someone would start them by hand."""
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]  # fmt: skip
    for i in range(2):
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                       "--no-nanny", "--name", f"home-{i}", "--no-dashboard"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp))  # fmt: skip
    return procs


@pytest.mark.parametrize("seed", range(2))
def test_address_worker_killed_at_a_random_moment(project, tmp_path: Path, seed: int) -> None:
    """The scheduler may come up after xrun started (a cluster someone is
    starting); one of its two workers dies at a random moment."""
    import socket

    project.file("experiments/faulty.py", TRIAL)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = project.spec(spec_text(f"{{backend: address, address: 'tcp://127.0.0.1:{port}', workers: 2}}"))
    rng = random.Random(seed)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        proc = start(spec, project.root)
        time.sleep(rng.uniform(0, 2))  # xrun waits for the scheduler to come up
        procs = home_cluster(tmp_path, port)
        victim = psutil.Process(rng.choice(procs[1:]).pid)
        phase = kill_at_random_moment(proc, project.root / "out", rng, lambda: [victim] if victim.is_running() else [],
                                      sigkill)  # fmt: skip
        check_complete(proc, project.root / "out", f"seed {seed}, {phase}")
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_a_scheduler_that_dies_while_starting_is_started_again(monkeypatch) -> None:
    """Its port taken by another process between choosing and binding it: the
    scheduler exits at once, and the cluster starts on another port."""
    import socket

    from distributed import Client

    from runner.cluster import local

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    taken = busy.getsockname()[1]
    ports = iter([taken])
    real = local._free_port
    monkeypatch.setattr(local, "_free_port", lambda: next(ports, None) or real())
    try:
        with local.LocalBackend(workers=1, threads_per_worker=1, memory_limit=None).open() as info:
            assert info.address != f"tcp://127.0.0.1:{taken}"
            with Client(info.address, set_as_default=False) as client:
                assert client.submit(lambda: 41 + 1, pure=False).result(timeout=60) == 42
    finally:
        busy.close()
