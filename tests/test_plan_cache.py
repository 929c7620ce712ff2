"""`xrun plan`: what is cached, and why the rest is not; widened grids reuse results."""

from __future__ import annotations

import json
from pathlib import Path

from runner.bundle.journal import read_journal

CODE = '''
def train(params, ctx):
    return {"score": params["a"] * 10 + params["b"]}
'''


def make(project, grid_a: str = "[1, 2]") -> Path:
    project.file("experiments/grid.py", CODE)
    return project.spec(f"""
        xrun: 1
        name: grid
        code: {{include: ["experiments/*.py"]}}
        trial: {{function: "experiments.grid:train"}}
        sweep:
          parameters: {{a: {grid_a}, b: [0, 1]}}
          objective: {{metric: score}}
        cluster: {{workers: 1}}
        output: runs
    """)


def plan_json(run_xrun, spec: Path, cwd: Path) -> dict:
    res = run_xrun("plan", spec, "--json", cwd=cwd)
    assert res.code == 0, res.err
    return json.loads(res.out)


def test_plan_explains_misses_and_a_widened_grid_reuses_the_overlap(project, run_xrun) -> None:
    spec = make(project)
    before = plan_json(run_xrun, spec, project.root)
    assert before["trials"] == 4 and before["cached"] == 0
    assert before["why_not_cached"] == ["no earlier run of 'grid' in the cache"]
    first = run_xrun(spec, "-q", cwd=project.root)
    assert first.code == 0, first.err
    assert plan_json(run_xrun, spec, project.root)["to_run"] == 0

    spec = make(project, "[1, 2, 3]")  # widened grid
    widened = plan_json(run_xrun, spec, project.root)
    assert widened["cached"] == 4 and widened["to_run"] == 2
    assert "new parameter points" in widened["why_not_cached"][0]
    second = run_xrun(spec, "-q", cwd=project.root)
    records = read_journal(second.bundle / "trials.jsonl")
    assert sum(r["cached"] for r in records) == 4 and len(records) == 6

    project.file("experiments/grid.py", CODE + "\n# a change\n")
    changed = plan_json(run_xrun, spec, project.root)
    assert changed["cached"] == 0
    assert any("code changed: experiments/grid.py (modified)" in r for r in changed["why_not_cached"])

    res = run_xrun("plan", spec, cwd=project.root)  # the human form
    assert res.code == 0 and "6 to run" in res.out and "code changed" in res.out


def test_no_cache_runs_everything(project, run_xrun) -> None:
    spec = make(project)
    assert run_xrun(spec, "-q", cwd=project.root).code == 0
    res = run_xrun(spec, "-q", "--no-cache", cwd=project.root)
    assert res.code == 0
    assert not any(r["cached"] for r in read_journal(res.bundle / "trials.jsonl"))


def test_each_cached_trial_is_in_the_journal_before_the_display_hears_of_it(project, run_xrun, monkeypatch) -> None:
    """Cached trials' lines are flushed a few hundred at a time (not one write
    each); whoever hears of a cached trial (the progress display) can already
    read its line, and every one of them is heard of once."""
    from runner.run import RunOptions, run
    from runner.spec import load_spec

    spec = make(project, grid_a=str(list(range(700))))  # 1,400 trials: several flushes
    first = run_xrun("run", spec, "-q", cwd=project.root)
    assert first.code == 0, first.err
    monkeypatch.chdir(project.root)
    out = project.root / "again"
    heard: list[str] = []

    def on_event(e) -> None:
        if e.kind != "cached":
            return
        heard.append(e.record["id"])
        (journal,) = out.glob("*/trials.jsonl")
        with open(journal, "rb") as fh:  # another reader: only what reached the kernel
            assert f'"id":"{e.record["id"]}"'.encode() in fh.read()

    result = run(load_spec(spec), RunOptions(output=out, on_event=on_event))
    assert result.outcome.counts["cached"] == 1400
    assert sorted(heard) == sorted(r["id"] for r in read_journal(first.bundle / "trials.jsonl"))
