"""What a worker pays per trial: no artifact directory unless the trial asks
for one, one watchdog thread per process (not per trial), and timeouts still
stop a trial inside a batch without touching the trials after it."""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

import pytest

from runner.worker.trial import run_batch

TRIALS = '''
import os, time

def quiet(params, ctx):
    return {"x": params["i"]}

def writes(params, ctx):
    with open(os.path.join(ctx.artifact_dir, "out.txt"), "w") as fh:
        fh.write(str(params["i"]))
    return {"x": params["i"]}

def spins(params, ctx):
    while True:
        sum(range(100))
'''


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"xrun_trials_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(TRIALS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def task(module: str, fn: str, i: int, timeout: float | None = None) -> dict:
    return {"trial_id": f"t{i:05d}", "key": f"{i:064x}", "params": {"i": i}, "seed": i,
            "definition": {"function": f"{module}:{fn}"}, "timeout": timeout, "run": "r", "unit": "u"}  # fmt: skip


def leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("xrun-tw*")}


def test_a_trial_that_writes_no_file_costs_no_directory(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []
    real = tempfile.mkdtemp

    def counting(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(tempfile, "mkdtemp", counting)
    results = run_batch([{**task(module, "quiet", i), "trial_id": f"tw{i:04d}"} for i in range(20)])
    assert [r["status"] for r in results] == ["ok"] * 20
    assert all(r["artifacts"] == [] for r in results)
    assert made == []
    run_batch([{**task(module, "writes", 0), "trial_id": "tw0000"}])
    assert len(made) == 1 and not Path(made[0]).exists()  # asked for: made, collected, removed


def test_files_a_trial_writes_are_collected_and_its_directory_removed(module: str) -> None:
    results = run_batch([{**task(module, "writes", i), "trial_id": f"tw{i:04d}"} for i in range(3)])
    assert [r["artifacts"] for r in results] == [[("out.txt", str(i).encode())] for i in range(3)]
    assert not leftovers()


def test_one_watchdog_thread_and_timeouts_inside_a_batch(module: str) -> None:
    tasks = [task(module, "quiet", 0, timeout=0.5), task(module, "spins", 1, timeout=0.5), task(module, "quiet", 2, timeout=0.5)]
    tasks += [task(module, "quiet", i, timeout=5) for i in range(3, 60)]
    results = run_batch(tasks)
    assert [r["status"] for r in results[:3]] == ["ok", "timeout", "ok"]
    assert results[1]["end"] - results[1]["start"] >= 0.5
    assert all(r["status"] == "ok" for r in results[3:])
    assert sum(t.name == "xrun-watchdog" for t in threading.enumerate()) == 1
