"""Crash safety, lost workers, failure policy, concurrency and secrets, with
real processes killed by real signals."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil

from runner.bundle.journal import read_journal
from runner.bundle.manifest import verify
from tests.conftest import local_worker_processes

SLEEPY = '''
import os, time

def train(params, ctx):
    time.sleep(params.get("sleep", 0.3))
    if params.get("fail"):
        raise RuntimeError("failing on purpose")
    return {"score": params["x"] * 2.0 + ctx.seed % 7}
'''


def spec_text(n: int, sleep: float, workers: int = 2, extra: str = "") -> str:
    points = "\n".join(f"    - {{x: {i}, sleep: {sleep}}}" for i in range(n))
    return f"""
xrun: 1
name: sleepy
code: {{include: ["experiments/*.py"]}}
trial: {{function: "experiments.sleepy:train", timeout: 2m}}
sweep:
  method: list
  points:
{points}
  objective: {{metric: score}}
cluster: {{workers: {workers}}}
output: runs
{extra}
"""


def start(spec: Path, *args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "run", str(spec), *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def wait_for_lines(out_dir: Path, n: int, proc: subprocess.Popen[str], timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bundles = sorted(out_dir.glob("*/trials.jsonl")) if out_dir.exists() else []
        if bundles and len(read_journal(bundles[-1])) >= n:
            return bundles[-1].parent
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} trials finished in {timeout}s")


def ids(bundle: Path) -> list[str]:
    return [r["id"] for r in read_journal(bundle / "trials.jsonl")]


def dask_workers(pid: int) -> list[psutil.Process]:
    return local_worker_processes(pid)


def test_sigkill_of_a_worker_loses_no_trial(project) -> None:
    project.file("experiments/sleepy.py", SLEEPY)
    spec = project.spec(spec_text(40, 0.4))
    proc = start(spec, "-q", cwd=project.root)
    wait_for_lines(project.root / "runs", 5, proc)
    victims = dask_workers(proc.pid)
    assert len(victims) == 2
    victims[0].send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    bundle = Path(out.strip().splitlines()[-1])
    seen = ids(bundle)
    assert sorted(seen) == [f"t{i:05d}" for i in range(40)]  # each exactly once
    assert all(r["status"] == "ok" for r in read_journal(bundle / "trials.jsonl"))
    assert verify(bundle).ok


def test_sigkill_of_the_driver_then_resume_reuses_finished_trials(project) -> None:
    project.file("experiments/sleepy.py", SLEEPY)
    spec = project.spec(spec_text(30, 0.3))
    proc = start(spec, "-q", cwd=project.root)
    first = wait_for_lines(project.root / "runs", 8, proc)
    cluster = psutil.Process(proc.pid).children(recursive=True)  # scheduler, nannies, workers
    assert len(dask_workers(proc.pid)) == 2
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    finished = {r["key"] for r in read_journal(first / "trials.jsonl") if r["status"] == "ok"}
    assert len(finished) >= 8
    # The cluster dies with its driver (in its own sessions, the kill of the
    # driver's group did not reach it): nothing is left running on the machine.
    deadline = time.monotonic() + 90
    while alive := [p for p in cluster if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]:
        assert time.monotonic() < deadline, [" ".join(p.cmdline()[-4:]) for p in alive]
        time.sleep(0.2)
    second = subprocess.run([sys.executable, "-m", "runner.cli", "run", str(spec), "-q"], cwd=project.root,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert second.returncode == 0, second.stderr
    bundle = Path(second.stdout.strip().splitlines()[-1])
    records = read_journal(bundle / "trials.jsonl")
    assert sorted(r["id"] for r in records) == [f"t{i:05d}" for i in range(30)]
    for r in records:
        assert r["cached"] is (r["key"] in finished), r["id"]
    cached = [r for r in records if r["cached"]]
    assert all(r["cached_from"] == first.name for r in cached)
    third = subprocess.run([sys.executable, "-m", "runner.cli", "run", str(spec), "-q"], cwd=project.root,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert third.returncode == 0, third.stderr
    meta = json.loads((Path(third.stdout.strip().splitlines()[-1]) / "bundle.json").read_text())
    assert meta["counts"]["cached"] == 30 and meta["counts"]["ok"] == 0
    assert meta["dask_tasks"] == 0  # nothing was submitted (its speed is measured in bench/, not here)


def test_torn_last_journal_line_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "trials.jsonl"
    path.write_text('{"id": "t00000", "status": "ok"}\n{"id": "t00001", "sta')
    assert [r["id"] for r in read_journal(path)] == ["t00000"]


OOM = '''
import time

def train(params, ctx):
    if params["mode"] == "hog":
        hoard = []
        for _ in range(400):               # up to 4 GB, in 10 MB steps
            hoard.append(bytearray(10 * 2**20))
            time.sleep(0.005)
    return {"score": 1.0}
'''


def test_memory_exceeding_trial_is_classified_oom(project, run_xrun) -> None:
    project.file("experiments/hog.py", OOM)
    spec = project.spec("""
        xrun: 1
        name: hog
        code: {include: ["experiments/*.py"]}
        trial: {function: "experiments.hog:train", timeout: 2m}
        sweep: {method: list, points: [{mode: hog}, {mode: ok}, {mode: ok}]}
        cluster: {workers: 1, memory_limit: 700MiB}
        output: runs
    """)
    res = run_xrun(spec, "-q", cwd=project.root)
    assert res.code == 1, res.err
    rows = {r["id"]: r for r in read_journal(res.bundle / "trials.jsonl")}
    assert rows["t00000"]["failure_class"] == "oom", rows["t00000"]
    assert "memory" in rows["t00000"]["error"]
    assert rows["t00001"]["status"] == rows["t00002"]["status"] == "ok"


def test_fail_fast_stops_at_the_first_failure(project, run_xrun) -> None:
    project.file("experiments/sleepy.py", SLEEPY)
    text = spec_text(12, 1.0).replace("    - {x: 0, sleep: 1.0}", "    - {x: 0, sleep: 0.1, fail: true}")
    spec = project.spec(text)
    res = run_xrun(spec, "--fail-fast", "-q", cwd=project.root)
    assert res.code == 1, res.err
    meta = json.loads((res.bundle / "bundle.json").read_text())
    assert meta["status"] == "failed" and meta.get("stopped") == "fail-fast"
    # Stopped early: most of the 1 s trials never ran (what it saves is measured by their count, not a clock).
    assert meta["counts"]["failed"] == 1 and meta["counts"]["not_run"] >= 8
    assert verify(res.bundle).ok


def test_first_ctrl_c_finishes_running_trials_and_marks_interrupted(project) -> None:
    project.file("experiments/sleepy.py", SLEEPY)
    spec = project.spec(spec_text(20, 1.5))
    proc = start(spec, cwd=project.root)
    bundle = wait_for_lines(project.root / "runs", 1, proc)
    workers = dask_workers(proc.pid)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopping: waiting for running trials" in err
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["status"] == "interrupted"
    done = ids(bundle)
    assert 1 <= len(done) < 20 and len(done) == len(set(done))
    assert all(r["status"] == "ok" for r in read_journal(bundle / "trials.jsonl"))  # none cut off
    assert meta["counts"]["not_run"] == 20 - len(done)
    assert verify(bundle).ok
    assert not [p for p in workers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_second_ctrl_c_cancels_running_trials(project) -> None:
    project.file("experiments/sleepy.py", SLEEPY)
    spec = project.spec(spec_text(6, 60))
    proc = start(spec, cwd=project.root)
    deadline = time.monotonic() + 60
    while not list((project.root / "runs").glob("*/bundle.json")) or len(dask_workers(proc.pid)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(3)  # trials are running (each sleeps 60s)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 130, err
    bundle = next((project.root / "runs").glob("*/bundle.json")).parent
    assert json.loads((bundle / "bundle.json").read_text())["status"] == "interrupted"
    assert verify(bundle).ok


def test_two_concurrent_runs_on_one_cache(project) -> None:
    project.file("experiments/sleepy.py", SLEEPY)
    spec = project.spec(spec_text(16, 0.2, workers=1))
    a = start(spec, "-q", cwd=project.root)
    b = start(spec, "-q", cwd=project.root)
    outs = [p.communicate(timeout=300) for p in (a, b)]
    assert a.returncode == 0 and b.returncode == 0, outs
    bundles = [Path(o.strip().splitlines()[-1]) for o, _ in outs]
    metrics = [{r["id"]: r["metrics"] for r in read_journal(bd / "trials.jsonl")} for bd in bundles]
    assert metrics[0] == metrics[1] and len(metrics[0]) == 16
    third = subprocess.run([sys.executable, "-m", "runner.cli", "run", str(spec), "-q"], cwd=project.root,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    meta = json.loads((Path(third.stdout.strip().splitlines()[-1]) / "bundle.json").read_text())
    assert meta["counts"]["cached"] == 16
    cache = Path(os.environ["XRUN_CACHE_DIR"])
    conn = sqlite3.connect(cache / "trials.sqlite")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for (body,) in conn.execute("SELECT body FROM results"):
        json.loads(body)  # every cache entry whole
    conn.close()
    assert not list((cache / "trials").rglob("*.tmp"))


SECRETIVE = '''
import os

def train(params, ctx):
    token = os.environ["XRUN_TEST_TOKEN"]
    print("the token is", token)
    with open(os.path.join(ctx.artifact_dir, "leak.txt"), "w") as fh:
        fh.write(token)
    if params["x"] == 1:
        raise ValueError(f"bad token {token}")
    return {"token_length": float(len(token)), "looks_right": float(token.startswith("tok-"))}
'''


def test_secret_values_never_reach_bundle_logs_cache_or_output(project, run_xrun) -> None:
    secret = "tok-9f8e7d6c5b4a39281706"
    project.file("experiments/secretive.py", SECRETIVE)
    spec = project.spec("""
        xrun: 1
        name: secretive
        code: {include: ["experiments/*.py"]}
        trial: {function: "experiments.secretive:train"}
        sweep: {method: list, points: [{x: 0}, {x: 1}]}
        secrets: [XRUN_TEST_TOKEN]
        output: runs
    """)
    res = run_xrun(spec, cwd=project.root, env={"XRUN_TEST_TOKEN": secret})
    assert res.code == 1, res.err  # one trial raises
    rows = {r["params"]["x"]: r for r in read_journal(res.bundle / "trials.jsonl")}
    assert rows[0]["metrics"] == {"token_length": float(len(secret)), "looks_right": 1.0}  # workers had it
    assert "[secret]" in (res.bundle / "logs" / f"{rows[0]['id']}.log").read_text()
    assert secret not in res.out + res.err
    for root in (res.bundle, Path(os.environ["XRUN_CACHE_DIR"])):
        for path in root.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
    env = {k: v for k, v in os.environ.items() if k != "XRUN_TEST_TOKEN"}
    missing = subprocess.run([sys.executable, "-m", "runner.cli", "run", str(spec)], cwd=project.root,
                             capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert missing.returncode == 2
    assert "environment variable(s) not set: XRUN_TEST_TOKEN" in missing.stderr


QUICK = '''
import time

def train(params, ctx):
    time.sleep(0.005)
    return {"score": float(params["x"])}
'''


def test_short_trials_are_batched_and_a_killed_worker_loses_none(project) -> None:
    project.file("experiments/quick.py", QUICK)
    spec = project.spec(f"""
        xrun: 1
        name: quick
        code: {{include: ["experiments/*.py"]}}
        trial: {{function: "experiments.quick:train", timeout: 1m}}
        sweep: {{parameters: {{x: {list(range(1500))}}}, objective: {{metric: score}}}}
        cluster: {{workers: 2}}
        output: runs
    """)
    proc = start(spec, "-q", cwd=project.root)
    wait_for_lines(project.root / "runs", 200, proc)
    victims = dask_workers(proc.pid)
    victims[0].send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    bundle = Path(out.strip().splitlines()[-1])
    seen = ids(bundle)
    assert sorted(seen) == [f"t{i:05d}" for i in range(1500)]
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["dask_tasks"] < 500, meta["dask_tasks"]  # batched, not one task per trial
