"""`xrun reproduce`, `xrun pack` and `xrun diff` from bundles alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from runner.bundle.journal import read_journal

TRAIN = '''
import csv, random

def train(params, ctx):
    rows = list(csv.reader(open(ctx.data["table"])))
    rng = random.Random(ctx.seed)
    noise = rng.random() * 0.01
    return {"score": params["a"] + len(rows) + noise, "rows": float(len(rows))}
'''

UNSEEDED = '''
import random

def train(params, ctx):
    return {"score": params["a"] + random.random(), "stable": 1.0}
'''


def make_project(project, code: str, name: str = "repro") -> Path:
    project.file("experiments/train.py", code)
    project.file("data/table.csv", "x,y\n1,2\n3,4\n")
    return project.spec(f"""
        xrun: 1
        name: {name}
        code: {{include: ["experiments/*.py"]}}
        data: {{table: {{path: data/table.csv}}}}
        trial: {{function: "experiments.train:train"}}
        sweep: {{parameters: {{a: [1, 2, 3]}}, seed: 5, objective: {{metric: score}}}}
        cluster: {{workers: 1}}
        output: runs
    """)


def test_reproduce_all_trials_matches(project, run_xrun) -> None:
    spec = make_project(project, TRAIN)
    first = run_xrun(spec, "-q", cwd=project.root)
    assert first.code == 0, first.err
    res = run_xrun("reproduce", first.bundle, "--trials", "all", cwd=project.root)
    assert res.code == 0, res.err
    assert "verdict: match" in res.err
    assert "cannot be rebuilt" in res.err  # current: true is said plainly
    new = res.bundle
    meta = json.loads((new / "bundle.json").read_text())
    assert meta["reproduces"] == first.bundle.name and meta["verdict"] == "match"
    rep = json.loads((new / "reproduce.json").read_text())
    assert {r["trial"] for r in rep["rows"]} == {"t00000", "t00001", "t00002"}
    assert all(r["match"] and r["delta"] == 0 for r in rep["rows"])
    assert not any(r["cached"] for r in read_journal(new / "trials.jsonl"))  # really re-ran
    assert run_xrun("verify", new).code == 0


def test_reproduce_of_a_trial_ignoring_its_seed_fails_naming_the_metric(project, run_xrun) -> None:
    spec = make_project(project, UNSEEDED, name="unseeded")
    first = run_xrun(spec, "-q", cwd=project.root)
    assert first.code == 0, first.err
    res = run_xrun("reproduce", first.bundle, cwd=project.root)
    assert res.code == 1, res.err
    assert "verdict: mismatch" in res.err
    assert "score: recorded" in res.err and "stable" not in res.err.split("does not match")[-1]
    rep = json.loads((res.bundle / "reproduce.json").read_text())
    assert rep["verdict"] == "mismatch"
    assert {r["metric"]: r["match"] for r in rep["rows"]} == {"score": False, "stable": True}


def test_reproduce_after_moving_the_bundle_and_deleting_the_source(project, run_xrun, tmp_path_factory) -> None:
    spec = make_project(project, TRAIN, name="moved")
    first = run_xrun(spec, "-q", cwd=project.root)
    assert first.code == 0, first.err
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    moved = Path(shutil.move(str(first.bundle), elsewhere / first.bundle.name))
    data_copy = elsewhere / "table.csv"
    shutil.copy(project.root / "data" / "table.csv", data_copy)
    shutil.rmtree(project.root)  # source, data and spec are gone
    missing = run_xrun("reproduce", moved, cwd=elsewhere)
    assert missing.code == 2 and "--data table=PATH" in missing.err, missing.err
    res = run_xrun("reproduce", moved, "--data", f"table={data_copy}", "-o", elsewhere / "runs", cwd=elsewhere)
    assert res.code == 0, res.err
    assert res.bundle.parent == elsewhere / "runs"
    assert run_xrun("verify", moved).code == 0  # the original is untouched


def test_pack_is_deterministic_and_packed_bundles_are_accepted(project, run_xrun, tmp_path_factory) -> None:
    spec = make_project(project, TRAIN, name="packed")
    first = run_xrun(spec, "-q", cwd=project.root)
    out = tmp_path_factory.mktemp("packs")
    a = run_xrun("pack", first.bundle, "-o", out / "a.tar.gz")
    b = run_xrun("pack", first.bundle, "-o", out / "b.tar.gz")
    assert a.code == 0 and b.code == 0, a.err
    assert (out / "a.tar.gz").read_bytes() == (out / "b.tar.gz").read_bytes()
    assert run_xrun("verify", out / "a.tar.gz").code == 0
    shown = run_xrun("show", out / "a.tar.gz", "--json")
    assert json.loads(shown.out)["run_id"] == first.bundle.name
    res = run_xrun("reproduce", out / "a.tar.gz", "-o", out / "runs", cwd=project.root)
    assert res.code == 0, res.err
    bad = run_xrun("pack", first.bundle, "-o", out / "c.zip")
    assert bad.code == 2


def test_diff_shows_code_sweep_and_metric_changes(project, run_xrun) -> None:
    spec = make_project(project, TRAIN, name="diffed")
    a = run_xrun(spec, "-q", cwd=project.root)
    project.file("experiments/train.py", TRAIN.replace("0.01", "0.02"))
    b = run_xrun(spec, "-q", "--set", "sweep.parameters.a=[1, 2, 3, 4]", cwd=project.root)
    res = run_xrun("diff", a.bundle, b.bundle, "--json")
    assert res.code == 0, res.err
    d = json.loads(res.out)
    assert d["code"] == ["experiments/train.py (modified)"]
    assert "sweep.parameters.a: [1, 2, 3] → [1, 2, 3, 4]" in d["sweep"]
    score = next(m for m in d["metrics"] if m["metric"] == "score")
    assert score["a_n"] == 3 and score["b_n"] == 4
    human = run_xrun("diff", a.bundle, b.bundle)
    assert "experiments/train.py (modified)" in human.out and "environment: identical" in human.out


@pytest.mark.parametrize("bad", ["nope", "0"])
def test_reproduce_bad_arguments_exit_2(project, run_xrun, bad: str) -> None:
    spec = make_project(project, TRAIN, name="badargs")
    first = run_xrun(spec, "-q", cwd=project.root)
    res = run_xrun("reproduce", first.bundle, "--trials", bad, cwd=project.root)
    assert res.code == 2 and "Traceback" not in res.err
