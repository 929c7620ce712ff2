"""What Ctrl-C means, and how trials whose worker dies are classified: each
test is written as the attack (a trial or a signal), with real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from runner.bundle.journal import read_journal
from runner.bundle.manifest import verify
from tests.conftest import local_worker_processes

MARKING = '''
import os, time

def train(params, ctx):
    with open(os.path.join(params["marks"], ctx.trial_id), "w") as fh:
        fh.write(repr(time.time()))
    time.sleep(params["sleep"])
    return {"score": float(params["x"])}
'''


def start(spec: Path, cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "run", spec.name, *args], cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def wait_for(cond, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def marking_spec(project, n: int, sleep: float, marks: Path, extra: str = "") -> Path:
    points = ", ".join(f"{{x: {i}, sleep: {sleep}, marks: '{marks}'}}" for i in range(n))
    return project.spec(f"""
        name: marks
        xrun: 1
        output: runs
        cluster: {{workers: 2, threads_per_worker: 1}}
        trial: {{function: "experiments.marking:train"{extra}}}
        code: {{include: ["experiments/*.py"]}}
        sweep: {{method: list, points: [{points}]}}
    """)


def test_first_ctrl_c_starts_no_further_trial(project, tmp_path: Path) -> None:
    """8 trials of 5 s on 2 slots, Ctrl-C (to the whole process group, as a
    terminal sends it) while 2 run: once, 4 more started after it."""
    project.file("experiments/marking.py", MARKING)
    marks = tmp_path / "marks"
    marks.mkdir()
    spec = marking_spec(project, 8, 5, marks)
    proc = start(spec, project.root)
    wait_for(lambda: len(list(marks.iterdir())) >= 2, proc)
    os.killpg(proc.pid, signal.SIGINT)
    interrupted_at = time.time()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    started = {p.name: float(p.read_text()) for p in marks.iterdir()}
    assert len(started) == 2 and all(t < interrupted_at for t in started.values()), started
    bundle = Path(out.strip().splitlines()[-1])
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["status"] == "interrupted"
    rows = read_journal(bundle / "trials.jsonl")
    assert sorted(r["id"] for r in rows) == sorted(started) and all(r["status"] == "ok" for r in rows)
    assert meta["counts"]["not_run"] == 6
    assert verify(bundle).ok


@pytest.mark.parametrize("gap", [0.05, 0.2, 0.8])
def test_double_ctrl_c_while_the_cluster_starts_is_clean(project, tmp_path: Path, gap: float) -> None:
    """The second Ctrl-C once landed in a cluster process between fork and
    exec (a traceback), inside a Dask client's connect or close (Dask errors
    at exit), or in Python's shutdown (killed by SIGINT, not exit 130)."""
    project.file("experiments/marking.py", MARKING)
    marks = tmp_path / "marks"
    marks.mkdir()
    spec = marking_spec(project, 4, 1, marks)
    proc = start(spec, project.root)
    children: list[psutil.Process] = []

    def cluster_starting() -> bool:
        try:
            children[:] = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            return False
        return len(children) >= 2  # the scheduler and a worker are starting

    wait_for(cluster_starting, proc)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(gap)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "distributed" not in err and "internal error" not in err, err
    assert not list(marks.iterdir()), err  # no trial started
    meta = json.loads(next((project.root / "runs").glob("*/bundle.json")).read_text())
    assert meta["status"] == "interrupted", f"bundle status {meta['status']}; stderr:\n{err}"
    deadline = time.monotonic() + 30
    while [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]:
        assert time.monotonic() < deadline, "cluster processes outlived the driver"
        time.sleep(0.1)


HOG_IN_C = '''
def train(params, ctx):
    if params["mode"] == "hog":
        blob = b"x" * (3 * 2**30)   # one C call, holding the GIL: no Python code runs meanwhile
        return {"score": float(len(blob))}
    return {"score": 1.0}
'''


def test_one_large_c_allocation_over_the_memory_limit_is_oom(project, run_xrun) -> None:
    """Once `worker-lost`: the nanny killed the worker for its memory, and said so."""
    project.file("experiments/hogc.py", HOG_IN_C)
    spec = project.spec("""
        xrun: 1
        name: hogc
        code: {include: ["experiments/*.py"]}
        trial: {function: "experiments.hogc:train"}
        sweep: {method: list, points: [{mode: hog}, {mode: ok}, {mode: ok}]}
        cluster: {workers: 1, memory_limit: 600MiB}
        output: runs
    """)
    res = run_xrun(spec, "-q", cwd=project.root)
    assert res.code == 1, res.err
    rows = {r["id"]: r for r in read_journal(res.bundle / "trials.jsonl")}
    assert rows["t00000"]["failure_class"] == "oom", rows["t00000"]
    assert rows["t00001"]["status"] == rows["t00002"]["status"] == "ok"


LATE_MEMORY_EVENT = """
import asyncio

async def dask_setup(nanny):
    log_event = nanny.log_event

    def late(topic, msg):  # as on a loaded machine: the worker's death reaches the scheduler first
        if topic == "worker-restart-memory":
            asyncio.get_running_loop().call_later(DELAY, log_event, topic, msg)
        else:
            log_event(topic, msg)

    nanny.log_event = late
"""


@pytest.mark.parametrize("delay", [0.0, 1.0])
def test_a_worker_killed_for_memory_is_oom_when_the_nannys_event_comes_late(project, run_xrun, delay) -> None:
    """Once `worker-lost` on a loaded machine: the nanny's event reached the
    scheduler after the worker's death, and every later attempt died on a new
    worker whose event was late again."""
    project.file("experiments/hogc.py", HOG_IN_C)
    preload = project.file("late_event.py", LATE_MEMORY_EVENT.replace("DELAY", repr(delay)))
    spec = project.spec("""
        name: hogc
        trial: {function: "experiments.hogc:train"}
        cluster: {memory_limit: 600MiB, workers: 1}
        xrun: 1
        sweep: {points: [{mode: ok}, {mode: hog}], method: list}
        code: {include: ["experiments/*.py"]}
    """)
    env = {"DASK_DISTRIBUTED__NANNY__PRELOAD": json.dumps([str(preload)])}
    res = run_xrun("run", spec.name, "-q", cwd=project.root, env=env)
    assert res.code == 1, res.err
    rows = {r["id"]: r for r in read_journal(res.bundle / "trials.jsonl")}
    assert rows["t00001"]["failure_class"] == "oom", rows["t00001"]
    assert rows["t00000"]["status"] == "ok"


EXITING = '''
import os, time

def train(params, ctx):
    if params["x"] == 0:
        os._exit(1)
    time.sleep(0.2)
    return {"score": float(params["x"])}
'''


def test_a_trial_that_exits_its_worker_is_worker_lost_even_with_a_timeout(project, run_xrun) -> None:
    """Once classified `timeout`: a stale start time of the dead worker looked like a stuck trial."""
    project.file("experiments/exiting.py", EXITING)
    spec = project.spec("""
        xrun: 1
        name: exiting
        code: {include: ["experiments/*.py"]}
        trial: {function: "experiments.exiting:train", timeout: 1s}
        sweep: {method: list, points: [{x: 0}, {x: 1}, {x: 2}, {x: 3}]}
        cluster: {workers: 2}
        output: runs
    """)
    res = run_xrun(spec, "-q", cwd=project.root)
    assert res.code == 1, res.err
    rows = {r["id"]: r for r in read_journal(res.bundle / "trials.jsonl")}
    assert rows["t00000"]["failure_class"] == "worker-lost", rows["t00000"]
    assert all(rows[f"t0000{i}"]["status"] == "ok" for i in (1, 2, 3))


COUNTING = '''
import os, time

def train(params, ctx):
    fd = os.open(params["runs"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, (ctx.trial_id + "\\n").encode())
    os.close(fd)
    if params["x"] == 300:
        os._exit(1)
    time.sleep(0.005)
    return {"score": float(params["x"])}
'''


def run_with_a_dying_trial(project, tmp_path: Path, run_xrun, source: str, n: int, poison: int) -> tuple[dict, dict, dict]:
    """A 2-worker sweep of ``n`` counting trials (``source``) in which trial
    x=``poison`` kills its worker: its rows by x, bundle.json, and how many
    extra times each other trial ran."""
    project.file("experiments/counting.py", source)
    runs = tmp_path / "runs.txt"
    spec = project.spec(f"""
        xrun: 1
        name: counting
        code: {{include: ["experiments/*.py"]}}
        trial: {{function: "experiments.counting:train"}}
        sweep: {{parameters: {{x: {list(range(n))}, runs: ['{runs}']}}}}
        cluster: {{workers: 2}}
        output: out
    """)
    res = run_xrun(spec, "-q", cwd=project.root)
    assert res.code == 1, res.err
    rows = {r["params"]["x"]: r for r in read_journal(res.bundle / "trials.jsonl")}
    assert len(rows) == n
    assert rows[poison]["failure_class"] == "worker-lost"
    counts = Counter(runs.read_text().split())
    extra = {t: c - 1 for t, c in counts.items() if t != rows[poison]["id"] and c > 1}
    return rows, json.loads((res.bundle / "bundle.json").read_text()), extra


def test_innocent_trials_batched_with_a_dying_one_run_once_and_are_kept(project, tmp_path: Path, run_xrun) -> None:
    """Once, Dask re-ran the whole batch on 4 workers: its finished trials were
    lost with each worker and ran again and again."""
    rows, meta, extra = run_with_a_dying_trial(project, tmp_path, run_xrun, COUNTING, 400, 300)
    assert all(r["status"] == "ok" for x, r in rows.items() if x != 300)
    assert meta["dask_tasks"] < 300  # they were batched
    # At most the trial that finished just before each death, if its result had not left yet.
    assert sum(extra.values()) <= 4, extra


FAST_COUNTING = '''
import os, time

def train(params, ctx):
    fd = os.open(params["runs"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, (ctx.trial_id + "\\n").encode())
    os.close(fd)
    if params["x"] == 1300:
        time.sleep(0.5)   # long past the coalescing window: what finished before has left
        os._exit(1)
    return {"score": float(params["x"])}
'''


def test_a_dying_trials_batch_mates_that_finished_before_it_are_kept_not_run_again(project, tmp_path: Path, run_xrun) -> None:
    """Trials shorter than the coalescing window stream their results in one
    event per few milliseconds, which arrived over TCP with the messages in a
    tuple: the driver ignored them all, gathered every batch's result from its
    worker instead, and re-ran every finished trial of a batch whose worker died."""
    rows, meta, extra = run_with_a_dying_trial(project, tmp_path, run_xrun, FAST_COUNTING, 2000, 1300)
    assert meta["dask_tasks"] < 1000  # they were batched
    assert sum(extra.values()) <= 2, extra


NEXT_KILLS = '''
import os, time

def train(params, ctx):
    fd = os.open(params["runs"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, (ctx.trial_id + "\\n").encode())
    os.close(fd)
    if params["x"] == 1:
        time.sleep(0.5)   # x=0's result has long left
        os._exit(1)
    return {"score": float(params["x"])}
'''


def test_a_finished_task_is_not_run_again_when_its_worker_dies_before_the_driver_handles_it(
        project, tmp_path: Path, monkeypatch) -> None:  # fmt: skip
    """Under load the driver's loop can be seconds behind its workers. A task
    whose results had all come as events stayed wanted until the loop handled
    it, so when its worker died meanwhile (killed by its next task), Dask
    computed it again on the restarted worker: every trial of it ran twice. Here
    the loop is held back on purpose while the one worker finishes x=0 and
    x=1, already queued behind it, kills the worker."""
    from runner.execute.executor import Executor
    from runner.run import RunOptions, run
    from runner.spec import load_spec

    project.file("experiments/next_kills.py", NEXT_KILLS)
    runs = tmp_path / "runs.txt"
    runs.touch()
    points = ", ".join(f"{{x: {x}, runs: '{runs}'}}" for x in range(8))  # more than the tasks kept out at once
    spec = project.spec(f"""
        sweep: {{method: list, points: [{points}]}}
        trial: {{function: "experiments.next_kills:train"}}
        name: next-kills
        cluster: {{workers: 1}}
        code: {{include: ["experiments/*.py"]}}
        xrun: 1
        output: out
    """)
    handle_unit = Executor._handle_unit
    held: list[object] = []

    def behind(self, unit, queue):  # as a driver busy elsewhere
        if not held:
            held.append(unit)
            deadline = time.monotonic() + 60
            while "t00001" not in runs.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            # x=1 kills the worker 0.5 s later, and its nanny starts it again at once: Dask
            # ran x=0 again there well within this (and then this waits no longer).
            deadline = time.monotonic() + 5
            while runs.read_text().split().count("t00000") < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        return handle_unit(self, unit, queue)

    monkeypatch.setattr(Executor, "_handle_unit", behind)
    monkeypatch.chdir(project.root)
    result = run(load_spec(spec), RunOptions(output=project.root / "out", use_cache=False))
    rows = {r["id"]: r for r in read_journal(result.bundle / "trials.jsonl")}
    assert rows["t00001"]["failure_class"] == "worker-lost", rows["t00001"]
    assert all(rows[f"t0000{x}"]["status"] == "ok" for x in (0, 2, 3, 4, 5, 6, 7)), rows
    counts = Counter(runs.read_text().split())
    assert all(counts[f"t0000{x}"] == 1 for x in (0, 2, 3, 4, 5, 6, 7)), counts


def test_trials_that_drew_the_same_point_in_tasks_in_flight_at_once_are_all_recorded(project, run_xrun) -> None:
    """Two trials of one sweep can share a point, and so a key (a random sweep
    drawing a value twice, a list repeating one): streamed results were filed by
    that key, so one task took the other's result for its own, was released as if
    complete while it was not, and the run ended as if the scheduler had dropped it."""
    project.file("experiments/same.py", "def train(params, ctx):\n    return {'score': float(params['x'])}\n")
    points = ", ".join(f"{{x: {i % 7}}}" for i in range(2000))
    spec = project.spec(f"""
        cluster: {{workers: 2}}
        trial: {{function: "experiments.same:train"}}
        sweep: {{method: list, points: [{points}]}}
        code: {{include: ["experiments/*.py"]}}
        name: same-points
        xrun: 1
        output: out
    """)
    res = run_xrun(spec, "-q", "--no-cache", cwd=project.root)
    assert res.code == 0, res.err
    rows = read_journal(res.bundle / "trials.jsonl")
    assert len({r["id"] for r in rows}) == 2000 and all(r["status"] == "ok" for r in rows)
    assert all(r["metrics"]["score"] == r["params"]["x"] for r in rows)
    meta = json.loads((res.bundle / "bundle.json").read_text())
    assert meta["dask_tasks"] < 2000  # batched: several tasks held one point at once


STUCK = '''
import os, time

def train(params, ctx):
    with open(os.path.join(params["marks"], ctx.trial_id), "w") as fh:
        fh.write(repr(time.time()))
    time.sleep(60)        # in C: only restarting the worker stops it
    return {"score": 0.0}
'''


def test_timeouts_of_trials_stuck_in_c_are_enforced_promptly(project, tmp_path: Path, run_xrun) -> None:
    """Once, 4 s timeouts took ~140 s under load: stuck workers were restarted
    one after another, each restart holding up every other stuck trial."""
    project.file("experiments/marking.py", STUCK)
    marks = tmp_path / "marks"
    marks.mkdir()
    spec = marking_spec(project, 4, 0, marks, extra=", timeout: 2s")
    res = run_xrun(spec, "-q", cwd=project.root)
    assert res.code == 1, res.err
    rows = read_journal(res.bundle / "trials.jsonl")
    assert len(rows) == 4 and {r["failure_class"] for r in rows} == {"timeout"}, rows
    for r in rows:
        began = float((marks / r["id"]).read_text())
        # timeout (2 s) + grace (3 s) + the monitor's polling, with room for a loaded machine
        assert r["end"] - began < 15, (r["id"], r["end"] - began)


COUNTED = '''
import os, time

def train(params, ctx):
    fd = os.open(params["runs"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, (ctx.trial_id + "\\n").encode())
    os.close(fd)
    time.sleep(0.3)
    return {"score": float(params["x"])}
'''


def test_a_killed_worker_reruns_only_what_it_was_running(project, tmp_path: Path) -> None:
    project.file("experiments/counted.py", COUNTED)
    runs = tmp_path / "runs.txt"
    spec = project.spec(f"""
        xrun: 1
        name: counted
        code: {{include: ["experiments/*.py"]}}
        trial: {{function: "experiments.counted:train", timeout: 1m}}
        sweep: {{parameters: {{x: {list(range(30))}, runs: ['{runs}']}}}}
        cluster: {{workers: 2, threads_per_worker: 1}}
        output: out
    """)
    proc = start(spec, project.root, "-q")
    out = project.root / "out"
    wait_for(lambda: any(len(read_journal(p)) >= 8 for p in out.glob("*/trials.jsonl")), proc)
    workers = local_worker_processes(proc.pid)
    workers[0].send_signal(signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    rows = read_journal(Path(stdout.strip().splitlines()[-1]) / "trials.jsonl")
    assert sorted(r["params"]["x"] for r in rows) == list(range(30)) and all(r["status"] == "ok" for r in rows)
    counts = Counter(runs.read_text().split())
    assert sum(n - 1 for n in counts.values()) <= 1, counts  # one thread: at most its running trial
