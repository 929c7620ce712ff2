"""Adaptive sweeps on real Dask workers: the path a search takes depends only on
the spec and the trial results, never on the number of workers, their speed or
the order trials finish in; a re-run is fully cached; a killed driver's re-run
arrives at the same points; reproduce replays the suggestions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.bundle.journal import latest_records, read_journal
from runner.bundle.manifest import verify

pytestmark = pytest.mark.slow

# Sleeps from an unseeded generator: each run finishes its trials in another order.
TRIAL = '''
import random, time

def train(params, ctx):
    time.sleep(random.random() * params.get("sleep", 0.25))
    loss = None
    for step in range(1, 10):
        loss = (params["x"] - 1) ** 2 + 1.0 / step + 0.01 * params["depth"] + 0.1 * (params["kind"] == "b")
        ctx.log(step=step, loss=loss)
        time.sleep(0.01)
    return {"loss": loss}
'''

SPEC = """
output: out
sweep:
  parameters:
    depth: {{int: [1, 10]}}
    kind: [a, b]
    x: {{uniform: [-3, 3]}}
  early_stop: {{max_steps: 9, rule: halving, reduction: 3, min_steps: 1}}
  objective: {{goal: minimize, metric: loss}}
  samples: {samples}
  batch: 4
  seed: 7
  method: tpe
code: {{include: ["experiments/*.py"]}}
trial: {{function: "experiments.tune:train"}}
cluster: {{workers: {workers}, threads_per_worker: 1}}
name: tune
xrun: 1
"""


def spec(project, workers: int, samples: int = 16, name: str = "spec.yaml") -> Path:
    return project.spec(SPEC.format(workers=workers, samples=samples), name=name)


def run(spec: Path, cwd: Path, cache: Path, *args: str) -> Path:
    proc = subprocess.run([sys.executable, "-m", "runner.cli", "run", spec.name, "-q", *args], cwd=cwd,
                          env={**os.environ, "XRUN_CACHE_DIR": str(cache), "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def path_of(bundle: Path) -> list[tuple]:
    """(trial id, generation, params, seed, early-stopping table) of every suggestion,
    and each trial's status: what must not depend on the cluster."""
    search = json.loads((bundle / "search.json").read_text())
    statuses = {r["id"]: r["status"] for r in latest_records(read_journal(bundle / "trials.jsonl"))}
    return [(t["id"], g["generation"], json.dumps(t["params"], sort_keys=True), t["seed"],
             json.dumps(g["early_stop"], sort_keys=True), statuses.get(t["id"]))
            for g in search["generations"] for t in g["trials"]]  # fmt: skip


def test_one_worker_and_three_workers_take_the_same_path_and_a_rerun_is_cached(project, tmp_path: Path) -> None:
    project.file("experiments/tune.py", TRIAL)
    one = run(spec(project, 1), project.root, tmp_path / "cache-1")
    three = run(spec(project, 3, name="three.yaml"), project.root, tmp_path / "cache-3")
    path = path_of(one)
    assert len(path) == 16 and [p[0] for p in path] == [f"t{i:05d}" for i in range(16)]
    assert path == path_of(three)
    statuses = [p[-1] for p in path]
    assert "pruned" in statuses and "ok" in statuses and set(statuses) <= {"ok", "pruned"}
    assert all(p[-2] == "null" for p in path[:4])  # generation 0: no earlier results, no rungs
    assert any(p[-2] != "null" for p in path[4:])
    # the completion order did differ between the runs (else the test proves little)
    order = [[r["id"] for r in sorted(read_journal(b / "trials.jsonl"), key=lambda r: r["end"])] for b in (one, three)]
    assert order[0] != order[1] or order[0] != sorted(order[0])
    meta = json.loads((three / "bundle.json").read_text())
    assert meta["status"] == "ok" and meta["counts"]["pruned"] == statuses.count("pruned")
    assert meta["sweep"]["generations"] == 4 and meta["sweep"]["batch"] == 4
    pruned = [r for r in read_journal(three / "trials.jsonl") if r["status"] == "pruned"]
    for r in pruned:  # stopped at a rung, with the values it had there
        assert r["metrics"]["loss"] == r["history"][-1]["loss"] and r["history"][-1]["step"] < 9
        assert r["failure_class"] is None
    assert verify(three).ok
    report = (three / "report.html").read_text()
    assert "Adaptive search" in report and "best loss so far" in report and "stopped early" in report

    planned = subprocess.run([sys.executable, "-m", "runner.cli", "plan", "three.yaml", "--json"], cwd=project.root,
                             env={**os.environ, "XRUN_CACHE_DIR": str(tmp_path / "cache-3")},
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    known = json.loads(planned.stdout)
    assert known["search"]["generations_known"] == 4 and known["search"]["undecided"] == 0
    assert known["trials"] == known["cached"] == 16 and known["to_run"] == 0
    fresh = subprocess.run([sys.executable, "-m", "runner.cli", "plan", "three.yaml"], cwd=project.root,
                           env={**os.environ, "XRUN_CACHE_DIR": str(tmp_path / "empty"), "COLUMNS": "200"},
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr
    assert "0 generation(s) cached (0 trials); generation 0: 0 of 4 cached, 4 to run; 12 trial(s) not decided yet" in fresh.stdout

    again = run(spec(project, 3, name="three.yaml"), project.root, tmp_path / "cache-3")
    meta = json.loads((again / "bundle.json").read_text())
    assert meta["counts"]["cached"] == 16 and meta["counts"]["ok"] == 0 and meta.get("cluster_started") is False
    assert path_of(again) == path

    # widening the budget continues the same sequence: the first 16 come from the cache
    wider = run(spec(project, 3, samples=20, name="three.yaml"), project.root, tmp_path / "cache-3")
    assert path_of(wider)[:16] == path
    meta = json.loads((wider / "bundle.json").read_text())
    assert meta["counts"]["cached"] == 16 and meta["counts"]["total"] == 20


def test_a_killed_driver_resumes_on_the_same_path(project, tmp_path: Path) -> None:
    project.file("experiments/tune.py", TRIAL)
    reference = run(spec(project, 2), project.root, tmp_path / "cache-ref")
    cache = tmp_path / "cache-killed"
    proc = subprocess.Popen([sys.executable, "-m", "runner.cli", "run", "spec.yaml", "-q"], cwd=project.root,
                            env={**os.environ, "XRUN_CACHE_DIR": str(cache), "COLUMNS": "200"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    out = project.root / "out"

    def finished() -> list[dict]:
        journals = sorted(out.glob("*/trials.jsonl"), key=lambda p: p.stat().st_mtime)
        fresh = [j for j in journals if reference.name not in str(j)]
        return read_journal(fresh[-1]) if fresh else []

    deadline = time.monotonic() + 300
    while len(finished()) < 6:  # into the second generation
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run did not get far enough"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = {r["key"] for r in finished() if r["status"] in ("ok", "pruned")}
    assert 6 <= len(done) < 16
    killed = sorted(out.glob("*/search.json"), key=lambda p: p.stat().st_mtime)[-1]
    assert json.loads(killed.read_text())["decided"] < 16  # it wrote its suggestions as it went

    resumed = run(spec(project, 2), project.root, cache)
    assert path_of(resumed) == path_of(reference)
    records = read_journal(resumed / "trials.jsonl")
    assert {r["key"] for r in records if r["cached"]} == done  # no finished trial ran again


def test_reproduce_replays_the_suggestions_and_reports_a_changed_result(project, tmp_path: Path) -> None:
    project.file("experiments/tune.py", TRIAL)
    bundle = run(spec(project, 2, samples=12), project.root, tmp_path / "cache")
    env = {**os.environ, "XRUN_CACHE_DIR": str(tmp_path / "cache-r"), "COLUMNS": "200"}
    ok = subprocess.run([sys.executable, "-m", "runner.cli", "reproduce", str(bundle), "-o", str(tmp_path / "r")],
                        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "3 generation(s), 12 suggestions replayed from the recorded results: identical" in ok.stderr + ok.stdout

    # The worst result of generation 0 edited into the best: generation 1 would have been asked elsewhere.
    copy = tmp_path / "edited"
    subprocess.run(["cp", "-r", str(bundle), str(copy)], check=True)
    lines = (copy / "trials.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    first = [r for r in records if r["id"] < "t00004"]
    target = max(first, key=lambda r: r["metrics"]["loss"])
    target["metrics"]["loss"] = -1000.0
    (copy / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    bad = subprocess.run([sys.executable, "-m", "runner.cli", "reproduce", str(copy), "-o", str(tmp_path / "r2")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert bad.returncode == 1, bad.stderr
    assert "(generation 1): replayed" in bad.stderr
    assert "DIFFERENT" in bad.stderr

    # search.json from someone else: garbage where suggestions should be is a mismatch, never a crash
    (copy / "trials.jsonl").write_text("\n".join(lines) + "\n")
    (copy / "search.json").write_text(json.dumps({"generations": [1, "x", {"trials": "no", "told": True},
                                                                   {"trials": [None, {"params": []}]}]}))
    worse = subprocess.run([sys.executable, "-m", "runner.cli", "reproduce", str(copy), "-o", str(tmp_path / "r3")],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert worse.returncode == 1, worse.stderr
    assert "generation 0: 4 trials replayed, 0 recorded" in worse.stderr
    assert "Traceback" not in worse.stderr
    assert "Traceback" not in bad.stderr


def test_ctrl_c_stops_between_trials_keeps_what_ran_and_the_rerun_takes_the_same_path(project, tmp_path: Path) -> None:
    """A user's Ctrl-C in the middle of an adaptive sweep: running trials finish,
    nothing new is asked or started, the bundle is marked interrupted and seals;
    the re-run resumes on the uninterrupted run's path with nothing repeated."""
    project.file("experiments/tune.py", TRIAL)
    reference = run(spec(project, 2), project.root, tmp_path / "cache-ref")
    cache = tmp_path / "cache-interrupted"
    proc = subprocess.Popen([sys.executable, "-m", "runner.cli", "run", "spec.yaml", "-q"], cwd=project.root,
                            env={**os.environ, "XRUN_CACHE_DIR": str(cache), "COLUMNS": "200"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    out = project.root / "out"

    def journal() -> Path | None:
        fresh = [j for j in out.glob("*/trials.jsonl") if reference.name not in str(j)]
        return fresh[0] if fresh else None

    deadline = time.monotonic() + 300
    while (j := journal()) is None or len(read_journal(j)) < 5:  # into the second generation
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run did not get far enough"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    bundle = j.parent
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["status"] == "interrupted"
    records = read_journal(bundle / "trials.jsonl")
    done = {r["key"] for r in records if r["status"] in ("ok", "pruned")}
    assert len(done) == len(records) and 5 <= len(done) < 16  # none cut off, none failed
    assert meta["counts"]["not_run"] == 16 - len(done)
    search = json.loads((bundle / "search.json").read_text())
    assert search["decided"] < 16  # no generation asked for after the interrupt beyond the one running
    assert verify(bundle).ok

    resumed = run(spec(project, 2), project.root, cache)
    assert path_of(resumed) == path_of(reference)
    again = read_journal(resumed / "trials.jsonl")
    assert {r["key"] for r in again if r["cached"]} == done
