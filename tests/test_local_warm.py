"""A local worker imports the trial's own modules from its environment as it
starts, before the driver sends it anything; an import that fails there
changes nothing (the pre-flight check reports it as before). Real schedulers,
nannies and workers."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from runner import _plugin
from runner.cluster import local
from runner.spec.models import FunctionTrial, SklearnTrial
from tests.conftest import local_worker_processes

MARKER = """
import os, pathlib, threading
pathlib.Path(os.environ["WARM_MARKS"], f"{{os.getpid()}}-{name}").write_text(threading.current_thread().name)
"""


def wait_until(cond, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s")


def _user_preload(path: Path, kind: str) -> Path:
    """A preload of the user's own, from Dask's configuration, that marks its setup and teardown."""
    path.write_text(
        "import os, pathlib\n"
        "def dask_setup(server):\n"
        f"    pathlib.Path(os.environ['WARM_MARKS'], f'{{os.getpid()}}-{kind}').write_text('')\n"
        "def dask_teardown(server):\n"
        f"    pathlib.Path(os.environ['WARM_MARKS'], f'{{os.getpid()}}-{kind}-teardown').write_text('')\n"
    )
    return path


def test_each_worker_imports_the_modules_as_it_starts_and_a_failing_one_is_ignored(tmp_path: Path) -> None:
    mods, marks = tmp_path / "mods", tmp_path / "marks"
    mods.mkdir()
    marks.mkdir()
    (mods / "warm_a.py").write_text(MARKER.format(name="warm_a"))
    (mods / "warm_b.py").write_text("raise RuntimeError('broken at import')\n")
    (mods / "warm_c.py").write_text(MARKER.format(name="warm_c"))
    # The preloads Dask is configured with for each kind of server still run (and are torn down):
    # xrun's own preload replaces them on the command line and runs them itself.
    env = {"PYTHONPATH": f"{mods}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "WARM_MARKS": str(marks),
           "DASK_DISTRIBUTED__WORKER__PRELOAD": f'["{_user_preload(tmp_path / "user_w.py", "user")}"]',
           "DASK_DISTRIBUTED__NANNY__PRELOAD": f'["{_user_preload(tmp_path / "user_n.py", "nanny")}"]',
           "DASK_DISTRIBUTED__SCHEDULER__PRELOAD": f'["{_user_preload(tmp_path / "user_s.py", "sched")}"]'}
    backend = local.LocalBackend(workers=2, threads_per_worker=1, memory_limit=None, env=env,
                                 warm=("warm_a", "warm_b", "warm_c"))  # fmt: skip
    os.environ.update({k: env[k] for k in ("WARM_MARKS", "DASK_DISTRIBUTED__SCHEDULER__PRELOAD")})  # the scheduler's env
    try:
        with backend.open() as info:
            # Nothing was submitted: the workers imported both loadable modules on their own, in a thread of their
            # own; their nannies' process imported neither (only scikit-learn's modules are imported before a fork).
            workers = wait_until(lambda: len(found := local_worker_processes(os.getpid())) == 2 and found)
            pids = {p.pid for p in workers}
            nannies = {p.parent().pid for p in workers}
            scheduler = backend.processes()["scheduler"]
            assert len(nannies) == 1 and len(scheduler) == 1
            wanted = ({f"{pid}-{m}" for pid in pids for m in ("warm_a", "warm_c", "user")}
                      | {f"{pid}-nanny" for pid in nannies} | {f"{scheduler[0]}-sched"})  # fmt: skip
            wait_until(lambda: {f.name for f in marks.iterdir()} == wanted)
            assert {f.read_text() for f in marks.iterdir() if "warm" in f.name} == {"xrun-warm"}
            from distributed import Client

            with Client(info.address, set_as_default=False) as client:
                assert client.submit(lambda: 41 + 1, pure=False).result(timeout=60) == 42  # the failed import broke nothing
                seen = client.run(lambda: sorted(m for m in ("warm_a", "warm_b", "warm_c") if m in sys.modules))
                assert list(seen.values()) == [["warm_a", "warm_c"]] * 2
    finally:
        for k in ("WARM_MARKS", "DASK_DISTRIBUTED__SCHEDULER__PRELOAD"):
            os.environ.pop(k, None)
    teardowns = ({f"{pid}-user-teardown" for pid in pids} | {f"{pid}-nanny-teardown" for pid in nannies}
                 | {f"{scheduler[0]}-sched-teardown"})  # fmt: skip
    assert {f.name for f in marks.iterdir()} == wanted | teardowns


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the nannies fork their workers on Linux only")
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_scikit_learn_is_imported_once_before_the_workers_are_forked(tmp_path: Path, method: str) -> None:
    """Forking nannies import scikit-learn's modules in their own process first
    (every worker inherits them); where a user has Dask spawn its workers
    instead, that import would be wasted, and each worker imports them itself."""
    env = {local.FORK_ENV: method}
    backend = local.LocalBackend(workers=2, threads_per_worker=1, memory_limit=None, env=env,
                                 warm=("sklearn.svm", "sklearn.model_selection"))  # fmt: skip
    libsvm = f"sklearn{os.sep}svm{os.sep}_libsvm"
    with backend.open() as info:
        workers = wait_until(lambda: len(found := local_worker_processes(os.getpid())) == 2 and found)
        nannies = workers[0].parent().pid
        from distributed import Client

        with Client(info.address, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=120)  # spawned ones register later than they exist
            parents = set(client.run(os.getppid).values())
            pids = set(client.run(os.getpid).values())
        assert parents == {nannies}
        assert pids == {w.pid for w in workers}
        wait_until(lambda: all(libsvm in _maps(w.pid) for w in workers))  # imported by the time they start, or soon
        assert (libsvm in _maps(nannies)) is (method == "fork")


def test_what_a_spec_s_trial_warms() -> None:
    sk = SklearnTrial.model_validate({"sklearn": {"estimator": "sklearn.svm.SVC", "dataset": "sklearn.datasets:load_iris"}})
    assert local.warm_modules(sk) == ("sklearn.svm", "sklearn.datasets", "sklearn.model_selection")
    same = SklearnTrial.model_validate({"sklearn": {"estimator": "sklearn.model_selection.GridSearchCV"}})
    assert local.warm_modules(same) == ("sklearn.model_selection",)
    # A function trial's module comes with the code the driver ships later: nothing is imported before.
    assert local.warm_modules(FunctionTrial.model_validate({"function": "experiments.train:train"})) == ()


def test_installing_xrun_on_a_worker_tolerates_modules_imported_meanwhile(tmp_path: Path) -> None:
    """A worker's own threads (the warm-up, a trial's) import modules while the
    plugin installs xrun's worker package: it must not iterate ``sys.modules``
    as it changes."""
    sources = _plugin.worker_sources()
    stop = threading.Event()

    def churn() -> None:  # as an import does: modules come (and go, when one fails)
        while not stop.is_set():
            for i in range(2000):
                sys.modules[f"_churn_{i}"] = sys
            for i in range(2000):
                sys.modules.pop(f"_churn_{i}", None)

    thread = threading.Thread(target=churn, daemon=True)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # the threads take turns often enough to meet inside an iteration
    thread.start()
    try:
        for round_ in range(100):
            if round_ % 2:
                sources = {**sources, "__init__.py": sources["__init__.py"] + f"\n# {round_}\n"}  # re-imported each time
            _plugin._install_worker_package(tmp_path, sources)
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
        for name in [n for n in list(sys.modules) if n.startswith("_churn_") or n.startswith(_plugin.WORKER_MODULE)]:
            del sys.modules[name]
        if str(tmp_path) in sys.path:
            sys.path.remove(str(tmp_path))


def test_a_warmed_trial_that_cannot_be_imported_still_stops_the_run_with_the_check_s_message(project, run_xrun) -> None:
    spec = project.spec("""
        xrun: 1
        cluster: {workers: 1, backend: local}
        name: typo
        trial: {sklearn: {dataset: "sklearn.datasets:load_iris", estimator: sklearn.svm.SVCC, cv: 2}}
        sweep: {parameters: {C: [1.0]}}
        environment: {current: true}
        output: out
    """)
    r = run_xrun("run", str(spec), "--no-cache", cwd=project.root)
    assert r.code == 2, r.out + r.err
    assert "module 'sklearn.svm' has no estimator class 'SVCC'; did you mean 'SVC'?" in r.err
    assert "Traceback" not in r.err
