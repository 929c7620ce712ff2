"""`xrun run SPEC` spawns its local cluster from the spec's YAML before the spec
is validated (runner._entry, runner.cluster.local.start_ahead). The run adopts
that cluster only where the validated spec asks for the same one; a spec that
fails validation, a run that needs no cluster and a cluster of another shape
leave no process behind. Real commands, schedulers and nannies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ByteSize, TypeAdapter

from runner._entry import spec_to_run
from runner.bundle.journal import read_journal
from runner.cluster import local
from runner.errors import SpecError
from runner.spec.load import validate
from tests.conftest import alive

# Every Dask process of a command appends "<role> <pid> <time>" to a file as it
# starts, and the driver appends "validating <pid> <time>" as it first imports
# the spec's models (a sitecustomize on PYTHONPATH: the local backend passes it on).
SPY = '''
import os, sys, time
_argv = " ".join(sys.orig_argv)
_role = "scheduler" if "dask_scheduler" in _argv else "nannies" if "dask_worker" in _argv else None
def _note(role):
    with open({log!r}, "a") as fh:
        fh.write(f"{{role}} {{os.getpid()}} {{time.time()}}\\n")
if _role is not None:
    _note(_role)
elif sys.orig_argv[1:3] == ["-m", "runner"]:
    class _Spy:
        def find_spec(self, name, path=None, target=None):
            if name == "runner.spec.models":
                _note("validating")
            return None
    sys.meta_path.insert(0, _Spy())
'''

SKLEARN_SPEC = """
# keys in another order than the shipped examples, a relative output
sweep: {method: grid, parameters: {C: [0.5, 1.0]}}
cluster: {memory_limit: 1GiB, workers: 2}
output: ../runs
trial:
  sklearn: {cv: 3, scoring: [accuracy], dataset: "sklearn.datasets:load_iris", estimator: sklearn.svm.SVC}
name: ahead
xrun: 1
"""


def spied(tmp_path: Path) -> tuple[dict[str, str], Path]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    log = tmp_path / "processes.log"
    (site / "sitecustomize.py").write_text(SPY.format(log=str(log)))
    return {"PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}, log


def notes(log: Path) -> list[tuple[str, int, float]]:
    if not log.exists():
        return []
    return [(r, int(p), float(t)) for r, p, t in (line.split() for line in log.read_text().splitlines() if line.strip())]


def test_a_run_adopts_the_cluster_spawned_before_its_spec_was_validated(project, run_xrun, tmp_path) -> None:
    spec = project.spec(SKLEARN_SPEC, name="specs/ahead.yaml")
    env, log = spied(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = run_xrun("run", os.path.relpath(spec, elsewhere), "-q", cwd=elsewhere, env=env)
    assert res.code == 0, res.err
    seen = notes(log)
    roles = sorted(r for r, _, _ in seen)
    assert roles == ["nannies", "validating"], seen  # one cluster, the one spawned ahead (its scheduler in the driver)
    when = {r: t for r, _, t in seen}
    assert when["nannies"] < when["validating"]
    assert not [p for r, p, _ in seen if r != "validating" and alive(p)]
    assert (project.root / "runs").is_dir() and res.bundle.parent == project.root / "runs"


@pytest.mark.parametrize(
    "broken, message",
    [
        (SKLEARN_SPEC.replace("cv: 3", "cv: 3, bogus: 1"), "unknown key 'bogus'"),
        (SKLEARN_SPEC.replace("method: grid", "method: gird"), "sweep.method"),
        (SKLEARN_SPEC.replace("xrun: 1", "xrun: 1\nsecrets: [XRUN_TEST_UNSET_SECRET]"), "XRUN_TEST_UNSET_SECRET"),
    ],
    ids=["typo", "bad-value", "missing-secret"],
)
def test_a_command_that_ends_without_a_run_leaves_no_process_spawned_ahead(project, run_xrun, tmp_path, broken,
                                                                          message) -> None:  # fmt: skip
    spec = project.spec(broken)
    env, log = spied(tmp_path)
    started = time.monotonic()
    res = run_xrun("run", spec.name, cwd=project.root, env=env)
    assert res.code == 2, res.err
    assert message in res.err and "Traceback" not in res.err and "internal error" not in res.err
    spawned = [(r, p) for r, p, _ in notes(log) if r != "validating"]
    assert [r for r, _ in spawned].count("scheduler") <= 1
    assert not [p for _, p in spawned if alive(p)], "a process spawned ahead outlived the command"
    assert time.monotonic() - started < 60
    assert not list(project.root.glob("**/bundle.json"))


@pytest.mark.parametrize("delay", [0.1, 0.2, 0.35, 0.6, 1.0])  # (before ~0.05 s the interpreter itself is starting)
def test_ctrl_c_while_the_command_starts_ends_cleanly_and_leaves_no_process(project, tmp_path, delay) -> None:
    """Ctrl-C at any moment of the start (reading the spec, spawning ahead, importing the command line):
    exit 130, no traceback, nothing spawned left running."""
    project.spec(SKLEARN_SPEC, name="specs/ahead.yaml")
    env, log = spied(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", "specs/ahead.yaml", "-q", "--no-cache"], cwd=project.root,
                            env={**os.environ, **env, "COLUMNS": "200"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal's
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "internal error" not in err
    assert not [p for r, p, _ in notes(log) if r != "validating" and alive(p)]


def test_no_cluster_is_spawned_ahead_for_command_lines_that_may_change_it(project, run_xrun, tmp_path) -> None:
    spec = project.spec(SKLEARN_SPEC)
    env, log = spied(tmp_path)
    res = run_xrun("run", spec.name, "-q", "--workers", "1", cwd=project.root, env=env)
    assert res.code == 0, res.err
    seen = notes(log)
    when = {r: t for r, _, t in seen}
    assert sorted(r for r, _, _ in seen) == ["nannies", "validating"]
    assert when["nannies"] > when["validating"]  # spawned in its usual place, after validation


def test_a_large_sweep_spawned_ahead_has_a_scheduler_process_of_its_own(project, run_xrun, tmp_path) -> None:
    """Over runner.cluster.local.IN_DRIVER_MAX_TRIALS trials the scheduler is a process, spawned ahead too."""
    project.file("experiments/t.py", "def train(params, ctx):\n    return {'score': float(params['x'])}\n")
    spec = project.spec(f"""
        trial: {{function: "experiments.t:train"}}
        sweep: {{method: grid, parameters: {{x: {list(range(501))}, y: [0, 1]}}}}
        name: large
        xrun: 1
        output: out
    """)
    env, log = spied(tmp_path)
    res = run_xrun("run", spec.name, "-q", "--no-cache", cwd=project.root, env=env)
    assert res.code == 0, res.err
    seen = notes(log)
    assert sorted(r for r, _, _ in seen) == ["nannies", "scheduler", "validating"], seen
    when = {r: t for r, _, t in seen}
    assert when["scheduler"] < when["validating"] and when["nannies"] < when["validating"]
    assert len(read_journal(res.bundle / "trials.jsonl")) == 1_002


def project_dir(base: Path) -> Path:
    """A spec's directory holding the function trial's module (validation looks for it)."""
    (base / "experiments").mkdir(parents=True, exist_ok=True)
    (base / "experiments" / "t.py").write_text("def train(params, ctx):\n    return {'score': 1.0}\n")
    return base


def raw_spec(cluster: Any, trial: Any, environment: Any = None, sweep: Any = None) -> dict[str, Any]:
    sweep = {"method": "grid", "parameters": {"x": [1]}} if sweep is None else sweep
    raw: dict[str, Any] = {"xrun": 1, "name": "shape", "trial": trial, "sweep": sweep}
    if cluster is not None:
        raw["cluster"] = cluster
    if environment is not None:
        raw["environment"] = environment
    return raw


scalars = st.one_of(st.none(), st.booleans(), st.integers(-2, 5), st.sampled_from(["2", "local", "docker", 2.0, [], {}]))
memory = st.one_of(
    st.integers(-1, 2**40), st.sampled_from(["1GiB", "512MB", "2gb", "1.5GiB", "2 GiB", "10", "1XB", "GiB", "", "1e9"]),
    st.from_regex(r"\A[0-9]{1,4}(|b|B|kb|KiB|mb|MiB|gb|GiB|tb|TiB|k|m|g|kib)\Z"),
)  # fmt: skip
clusters = st.one_of(
    st.none(), scalars,
    st.fixed_dictionaries({}, optional={"backend": st.sampled_from(["local", "docker", "address", 1]),
                                        "workers": st.one_of(scalars, st.integers(1, 16)),
                                        "threads_per_worker": st.one_of(scalars, st.integers(1, 8)),
                                        "memory_limit": memory}),
)  # fmt: skip
trials = st.one_of(
    st.just({"function": "experiments.t:train"}),
    st.fixed_dictionaries({"sklearn": st.fixed_dictionaries(
        {"estimator": st.sampled_from(["sklearn.svm.SVC", "sklearn.linear_model.Ridge", 3]),
         "dataset": st.sampled_from(["sklearn.datasets:load_iris", "sklearn.datasets:load_digits", None])})}),
)  # fmt: skip
sizes = st.one_of(st.integers(1, 40), st.sampled_from([999, 1000, 1001, 0, -1, 2.0, "3", None, True]))
sweeps = st.one_of(
    st.builds(lambda a, b: {"method": "grid", "parameters": {"a": list(range(a)), "b": list(range(b))}},
              st.integers(0, 40), st.integers(1, 40)),
    st.builds(lambda n: {"method": "list", "points": [{"a": i} for i in range(n)]}, st.integers(0, 1002)),
    st.builds(lambda n: {"method": "random", "samples": n, "parameters": {"a": {"float": [0, 1]}}}, sizes),
    st.builds(lambda n, r: {"method": "grid", "parameters": {"a": list(range(n))}, "repeats": r}, st.integers(1, 600), sizes),
    st.sampled_from([{"method": "grid", "parameters": {"a": {"int": [0, 3]}}}, {"method": "grid"}, [], "grid"]),
)  # fmt: skip
environments = st.one_of(st.none(), st.just({"current": True}), st.just({"current": False}),
                         st.just({"pip": "requirements.txt"}), st.just({"current": True, "pip": "r.txt"}))  # fmt: skip


@given(cluster=clusters, trial=trials, environment=environments, sweep=sweeps)
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@example(cluster={"memory_limit": "2GiB", "workers": 2},
         trial={"sklearn": {"estimator": "sklearn.svm.SVC", "dataset": "sklearn.datasets:load_digits"}},
         environment={"current": True}, sweep={"method": "list", "points": [{"a": i} for i in range(1001)]})  # fmt: skip
def test_a_cluster_is_spawned_ahead_only_in_the_shape_the_validated_spec_asks_for(tmp_path_factory, cluster, trial,
                                                                                  environment, sweep) -> None:  # fmt: skip
    """What is spawned ahead is what the validated spec spawns, or nothing:
    never a cluster the run would kill and spawn again (see runner.cluster.local._from_raw)."""
    raw = raw_spec(cluster, trial, environment, sweep)
    ahead = local._from_raw(raw)
    if ahead is None:
        return
    base = project_dir(tmp_path_factory.getbasetemp() / "shape")
    try:
        loaded = validate(raw, base / "spec.yaml")
    except SpecError:
        return  # the command ends with the spec's error; the cluster spawned ahead is killed
    spec = loaded.spec
    assert spec.cluster.backend == "local" and spec.environment.kind == "current"
    assert ahead.shape() == local.for_spec(spec).shape()


@pytest.mark.parametrize(
    "cluster, trial",
    [(None, {"function": "experiments.t:train"}),
     ({"backend": "local", "memory_limit": "2GiB"},
      {"sklearn": {"estimator": "sklearn.svm.SVC", "dataset": "sklearn.datasets:load_iris"}}),
     ({"threads_per_worker": 2, "workers": 3, "memory_limit": 10**9},
      {"sklearn": {"estimator": "sklearn.linear_model.Ridge", "dataset": "sklearn.datasets:load_diabetes"}})],
)  # fmt: skip
def test_common_specs_are_spawned_ahead_in_their_validated_shape(tmp_path, cluster, trial) -> None:
    """The property above holds for these with a cluster spawned ahead (it is not met by spawning none)."""
    raw = raw_spec(cluster, trial)
    ahead = local._from_raw(raw)
    assert ahead is not None
    spec = validate(raw, project_dir(tmp_path) / "spec.yaml").spec
    assert ahead.shape() == local.for_spec(spec).shape()


@given(value=st.one_of(memory, st.text(max_size=8), st.floats(allow_nan=False), st.booleans()))
@settings(max_examples=300, deadline=None)
def test_a_memory_limit_read_ahead_is_what_the_spec_reads_or_nothing(value) -> None:
    read = local.byte_size(value)
    if read is None:
        return
    assert read == TypeAdapter(ByteSize).validate_python(value)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["run", "s.yaml"], ("s.yaml", False)),
        (["-q", "run", "--no-cache", "s.yml", "-o", "out"], ("s.yml", True)),
        (["s.yaml", "--output=x", "--fail-fast", "-v"], ("s.yaml", False)),
        (["run", "-o", "run", "spec"], ("spec", False)),  # -o's value is no command
        (["spec"], None),  # `xrun spec` is a run too, but a file named like a command would be read
        (["run", "s.yaml", "--workers", "3"], None),
        (["run", "s.yaml", "--set", "cluster.workers=3"], None),
        (["run", "s.yaml", "--backend=docker"], None),
        (["run", "--help"], None),
        (["validate", "s.yaml"], None),
        (["reproduce", "bundle"], None),
        (["run", "a.yaml", "b.yaml"], None),
        ([], None),
    ],
)
def test_only_a_plain_run_command_line_spawns_ahead(argv, expected) -> None:
    assert spec_to_run(argv) == expected


def test_a_cluster_spawned_ahead_of_another_shape_is_killed_and_not_used() -> None:
    assert local.start_ahead(raw_spec({"workers": 1}, {"function": "experiments.t:train"}))
    ahead = local._ahead[0]
    procs = [p for p in (ahead._scheduler, ahead._nannies.proc) if p is not None]
    assert len(procs) == 2
    wanted = local.LocalBackend(workers=2, threads_per_worker=1, memory_limit=None)
    try:
        assert local.adopt(wanted) is wanted
        assert not local._ahead and all(p.poll() is not None for p in procs)
        assert ahead._logs is not None and not ahead._logs.exists()
    finally:
        local.discard_ahead()
        wanted.close()


def test_a_cluster_spawned_ahead_of_the_same_shape_is_the_runs() -> None:
    assert local.start_ahead(raw_spec({"workers": 1, "threads_per_worker": 1}, {"function": "experiments.t:train"}))
    ahead = local._ahead[0]
    same = local.LocalBackend(workers=1, threads_per_worker=1, memory_limit=None, scheduler_in_driver=True)
    try:
        assert local.adopt(same) is ahead and not local._ahead
        assert same._scheduler is None  # never spawned anything
        with ahead.open() as info:
            assert info.backend == "local" and info.address == ahead._address
            assert ahead.processes()["scheduler"] == []  # a sweep of one trial: the scheduler runs in this process
            from distributed import Client

            with Client(info.address, set_as_default=False) as client:
                settings = client.run_on_scheduler(lambda dask_scheduler: (
                    dask_scheduler.WORKER_SATURATION, dask_scheduler.allowed_failures, os.getpid()))  # fmt: skip
            assert settings == (1.0, 0, os.getpid())  # xrun's scheduler settings (runner.cluster.local.SCHEDULER_CONFIG)
    finally:
        local.discard_ahead()
        ahead.close()
