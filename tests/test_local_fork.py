"""The local backend's nannies fork their worker processes, and warm them with
the built-in scikit-learn trial's modules, never with the user's own code.
Real schedulers, nannies and workers; real signals."""

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

SLEEPY = """
import time

def train(params, ctx):
    time.sleep(0.3)
    return {"score": float(params["x"])}
"""

# An estimator in the user's code: importing its module leaves a mark saying in which process.
USER_ESTIMATOR = """
import multiprocessing
from sklearn.svm import SVC

with open(MARKS, "a") as fh:
    fh.write(multiprocessing.current_process().name + "\\n")


class Mine(SVC):
    pass
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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the nanny forks its worker on Linux only")
def test_workers_are_forked_and_one_killed_mid_sweep_is_restarted(project) -> None:
    """The worker process is its nanny's fork (same command line, no
    ``spawn_main``); SIGKILLed while trials run, the nanny starts another and
    every trial of the sweep completes."""
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
        workers = wait_until(lambda: local_worker_processes(proc.pid), proc)
        victim = workers[0]
        nanny = victim.parent()
        assert nanny is not None
        assert victim.cmdline() == nanny.cmdline() and "spawn_main" not in " ".join(victim.cmdline())
        victim.send_signal(signal.SIGKILL)
        # The nanny starts a new worker process of its own.
        wait_until(lambda: [p for p in nanny.children() if p.pid != victim.pid and p.cmdline() == nanny.cmdline()],
                   proc)  # fmt: skip
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
    backend = local.LocalBackend(workers=1, threads_per_worker=1, memory_limit=None)
    with backend.open():
        workers = wait_until(lambda: local_worker_processes(os.getpid()))
        assert "spawn_main" in " ".join(workers[0].cmdline())


# Shipped by value to the workers and nannies (a module they cannot import).
_PROBE: dict = {"__name__": "xrun_test_probe"}
exec(
    "import multiprocessing, sys\n"
    "def in_process():\n"
    "    return (multiprocessing.current_process().name, 'sklearn.svm' in sys.modules, 'usermod' in sys.modules)\n",
    _PROBE,
)
_in_process = _PROBE["in_process"]


def test_nanny_imports_installed_modules_and_never_the_users(tmp_path: Path, monkeypatch) -> None:
    """Asked to warm ``sklearn.svm`` and ``usermod`` (a module in the working
    directory, first on the nanny's ``sys.path``): the nanny imports scikit-learn,
    its forked worker has it before any task, and neither imports ``usermod``."""
    from distributed import Client

    (tmp_path / "usermod.py").write_text(
        "import multiprocessing\nopen('usermod-imported.txt', 'a').write(multiprocessing.current_process().name)\n"
    )
    monkeypatch.chdir(tmp_path)
    backend = local.LocalBackend(workers=1, threads_per_worker=1, memory_limit=None, warm=("usermod", "sklearn.svm"))
    with backend.open() as info, Client(info.address, set_as_default=False) as client:
        on_workers = list(client.run(_in_process).values())
        on_nannies = list(client.run(_in_process, nanny=True).values())
    assert on_workers == [("Dask Worker process (from Nanny)", True, False)]
    assert on_nannies == [("MainProcess", True, False)]
    assert not (tmp_path / "usermod-imported.txt").exists()


def test_sklearn_trial_of_the_users_estimator_is_imported_by_workers_only(project) -> None:
    """An estimator shipped in the code snapshot is imported where trials run
    (the forked workers), never by a nanny, though the nanny runs where the
    module is importable (the working directory): a module loaded there would
    shadow the snapshot's."""
    marks_file = project.root / "imported-in.txt"
    project.file("experiments/mine.py", USER_ESTIMATOR.replace("MARKS", repr(str(marks_file))))
    spec = project.spec("""
        trial:
          sklearn: {estimator: experiments.mine.Mine, dataset: "sklearn.datasets:load_iris", cv: 3}
        name: mine
        xrun: 1
        environment: {current: true}
        sweep: {method: grid, parameters: {C: [0.5, 1.0]}}
        cluster: {workers: 2}
        code: {include: ["experiments/*.py"]}
        output: out
    """)
    assert local.warm_imports(_loaded(spec).spec) == ("sklearn.datasets", "sklearn.model_selection")
    done = subprocess.run([sys.executable, "-m", "runner.cli", "run", str(spec), "-q", "--no-cache"],
                          cwd=project.root, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = read_journal(Path(done.stdout.strip().splitlines()[-1]) / "trials.jsonl")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    marks = marks_file.read_text().split("\n")
    assert set(filter(None, marks)) == {"Dask Worker process (from Nanny)"}, marks


@pytest.mark.parametrize(
    ("trial", "expected"),
    [
        ({"sklearn": {"estimator": "sklearn.svm.SVC", "dataset": "sklearn.datasets:load_iris"}},
         ("sklearn.svm", "sklearn.datasets", "sklearn.model_selection")),
        ({"sklearn": {"estimator": "sklearn.linear_model.Ridge", "data": "table", "target": "y"}},
         ("sklearn.linear_model", "sklearn.model_selection")),
        ({"function": "experiments.sleepy:train"}, ()),
    ],
)  # fmt: skip
def test_what_the_nanny_warms_is_known_from_the_spec(project, trial, expected) -> None:
    import json

    project.file("experiments/sleepy.py", SLEEPY)
    project.file("table.csv", "a,y\n1,0\n2,1\n")
    data = 'data: {table: {path: table.csv}}\n' if "data" in trial.get("sklearn", {}) else ""
    spec = project.spec(f"xrun: 1\nname: w\ntrial: {json.dumps(trial)}\nsweep: {{parameters: {{C: [1]}}}}\n"
                        f"code: {{include: ['experiments/*.py']}}\n{data}")  # fmt: skip
    assert local.warm_imports(_loaded(spec).spec) == expected


def _loaded(spec: Path):
    from runner.spec import load_spec

    return load_spec(spec)



_VERSION: dict = {"__name__": "xrun_test_probe"}
exec(
    "import multiprocessing, sys\n"
    "def sklearn_version():\n"
    "    mod = sys.modules.get('sklearn')\n"
    "    return (multiprocessing.current_process().name, getattr(mod, '__version__', None))\n",
    _VERSION,
)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Mismatched versions")  # the lock's cloudpickle, not the driver's
def test_a_locked_environments_nanny_warms_its_own_sklearn(tmp_path: Path) -> None:
    """The nanny runs the environment's interpreter (xrun is not installed
    there: the warm-up module is given by its path) and its forked worker has
    the lock's scikit-learn (1.5.2) loaded before any task, not the driver's."""
    from distributed import Client

    from runner.env import create_env, load_env
    from tests.env.condachannel import pip_spec

    python = create_env(load_env(pip_spec(Path(__file__).resolve().parents[1] / "envs" / "sklearn-pip.in")))
    backend = local.LocalBackend(workers=1, threads_per_worker=1, memory_limit=None, python=python,
                                 warm=("sklearn.svm", "sklearn.model_selection"))  # fmt: skip
    with backend.open() as info, Client(info.address, set_as_default=False) as client:
        on_workers = list(client.run(_VERSION["sklearn_version"]).values())
        on_nannies = list(client.run(_VERSION["sklearn_version"], nanny=True).values())
    assert on_workers == [("Dask Worker process (from Nanny)", "1.5.2")]
    assert on_nannies == [("MainProcess", "1.5.2")]
