"""The local backend's nannies fork their worker processes (Linux): from the
driver's interpreter and from a locked environment's. Real schedulers,
nannies and workers; real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.bundle.journal import read_journal
from runner.cluster import local
from tests.conftest import local_worker_processes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the nanny forks its worker on Linux only")

SLEEPY = """
import time

def train(params, ctx):
    time.sleep(0.3)
    return {"score": float(params["x"])}
"""


def wait_until(cond, proc: subprocess.Popen[str] | None = None, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        assert proc is None or proc.poll() is None, proc.communicate() if proc else ""
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s")


def journal(out: Path) -> list[dict]:
    paths = sorted(out.glob("*/trials.jsonl")) if out.exists() else []
    return read_journal(paths[-1]) if paths else []


def forked(worker) -> bool:
    """A worker process that is its nanny's fork: the nanny's command line, no ``spawn_main``."""
    nanny = worker.parent()
    return nanny is not None and worker.cmdline() == nanny.cmdline() and "spawn_main" not in " ".join(worker.cmdline())


def test_workers_are_forked_and_one_killed_mid_sweep_is_restarted(project) -> None:
    """SIGKILLed while trials run, a forked worker is forked again by its
    nanny and every trial of the sweep completes."""
    project.file("experiments/sleepy.py", SLEEPY)
    spec = project.spec("""
        output: out
        cluster: {threads_per_worker: 1, workers: 2}
        sweep: {parameters: {x: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]}}
        trial: {timeout: 1m, function: "experiments.sleepy:train"}
        code: {include: ["experiments/*.py"]}
        name: forked
        xrun: 1
    """)
    proc = subprocess.Popen([sys.executable, "-m", "runner.cli", "run", spec.name, "-q"], cwd=project.root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        wait_until(lambda: len(journal(project.root / "out")) >= 3, proc)
        victim = wait_until(lambda: local_worker_processes(proc.pid), proc)[0]
        nanny = victim.parent()
        assert forked(victim)
        victim.send_signal(signal.SIGKILL)
        # The nannies' process holds both workers: the victim's nanny forks a new one beside the other.
        wait_until(lambda: len([p for p in nanny.children() if p.pid != victim.pid and forked(p)]) == 2, proc)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, stderr
    rows = read_journal(Path(stdout.strip().splitlines()[-1]) / "trials.jsonl")
    assert sorted(r["params"]["x"] for r in rows) == list(range(20))
    assert all(r["status"] == "ok" for r in rows), [r["status"] for r in rows]


def test_a_users_dask_multiprocessing_method_is_kept(monkeypatch) -> None:
    """Spawn asked for explicitly: the worker is a new interpreter (``spawn_main``)."""
    monkeypatch.setenv(local.FORK_ENV, "spawn")
    with local.LocalBackend(workers=1, threads_per_worker=1, memory_limit=None).open():
        workers = wait_until(lambda: local_worker_processes(os.getpid()))
        assert "spawn_main" in " ".join(workers[0].cmdline()) and not forked(workers[0])


# Shipped by value to the workers (a module they cannot import).
_PROBE: dict = {"__name__": "xrun_test_probe"}
exec(
    "import importlib.metadata, multiprocessing, sys\n"
    "def sklearn_version():\n"
    "    return (multiprocessing.current_process().name, sys.executable, importlib.metadata.version('scikit-learn'))\n",
    _PROBE,
)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Mismatched versions")  # the lock's cloudpickle, not the driver's
def test_a_locked_environments_worker_is_forked_from_its_own_interpreter() -> None:
    """The nanny runs the environment's interpreter, so its fork is that
    interpreter too: the worker sees the lock's scikit-learn (1.5.2), not the driver's."""
    from distributed import Client

    from runner.env import create_env, load_env
    from tests.env.condachannel import pip_spec

    python = create_env(load_env(pip_spec(Path(__file__).resolve().parents[1] / "envs" / "sklearn-pip.in")))
    backend = local.LocalBackend(workers=1, threads_per_worker=1, memory_limit=None, python=python)
    with backend.open() as info, Client(info.address, set_as_default=False) as client:
        workers = wait_until(lambda: local_worker_processes(os.getpid()))
        assert forked(workers[0])
        answers = list(client.run(_PROBE["sklearn_version"]).values())
    assert answers == [("Dask Worker process (from Nanny)", str(python), "1.5.2")]
