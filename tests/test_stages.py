"""prepare and final stages end to end: real `xrun` commands, real local Dask clusters.

Projects are written from scratch in temporary directories (a package named
`labs`, keys in an unusual order, xrun started from another directory).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from runner.bundle.manifest import verify
from tests.conftest import write

PREP = '''
import json, os
from pathlib import Path

def make(params, ctx):
    with open(params["count"], "a") as fh:   # one line per time prepare runs, wherever it runs
        fh.write(f"{os.getpid()}\\n")
    print("preparing the offset", params["offset"])
    Path(ctx.output_dir, "table.json").write_text(json.dumps({"offset": params["offset"]}))
    Path(ctx.output_dir, "nested").mkdir()
    Path(ctx.output_dir, "nested", "note.txt").write_text("from prepare")
    return {"rows": 3}
'''

TRAIN = '''
import json
from pathlib import Path

def train(params, ctx):
    table = json.loads(Path(ctx.inputs["prepare"], "table.json").read_text())
    if params.get("vandal"):
        Path(ctx.inputs["prepare"], "table.json").write_text("{}")  # refused, or noticed and undone (root)
    return {"score": params["x"] + table["offset"]}
'''

FINAL = '''
import json
from pathlib import Path

def pick(params, ctx):
    with open(params["count"], "a") as fh:
        fh.write("final\\n")
    note = Path(ctx.inputs["prepare"], "nested", "note.txt").read_text()
    Path(ctx.artifact_dir, "model.json").write_text(json.dumps({"best": ctx.best["params"], "note": note}, sort_keys=True))
    if params.get("fail"):
        print("final is about to fail")
        raise RuntimeError("the refit diverged")
    return {"final_score": ctx.best["value"] * 2}
'''

SPEC = """
xrun: 1
name: staged
final: {{function: "labs.fin:pick", params: {{count: {final_count}, fail: {fail}}}}}
trial: {{function: "labs.train:train"}}
prepare:
  params: {{offset: 100, count: {prep_count}}}
  function: labs.prep:make
sweep:
  parameters: {{x: [{xs}]}}
  objective: {{metric: score}}
cluster: {{workers: 2}}
output: runs
"""


def staged_project(root: Path, *, fail_final: bool = False, n: int = 20) -> Path:
    write(root / "labs" / "__init__.py", "")
    write(root / "labs" / "prep.py", PREP)
    write(root / "labs" / "train.py", TRAIN)
    write(root / "labs" / "fin.py", FINAL)
    return write(root / "spec.yaml", SPEC.format(final_count=root / "final.count", prep_count=root / "prep.count",
                                                 fail=str(fail_final).lower(), xs=", ".join(map(str, range(n)))))  # fmt: skip


def meta(bundle: Path) -> dict:
    return json.loads((bundle / "bundle.json").read_text())


def records(bundle: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in (bundle / "trials.jsonl").read_text().splitlines() if line.strip()]
    return {r["id"]: r for r in rows}


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_prepare_runs_once_everything_caches_and_a_prepare_change_reruns_downstream(tmp_path: Path, run_xrun) -> None:
    spec = staged_project(tmp_path / "proj")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    first = run_xrun("../proj/spec.yaml", cwd=elsewhere)
    assert first.code == 0, first.err
    bundle = first.bundle
    # 20 trials on 2 workers: prepare ran once, not per trial nor per worker
    assert len(lines(tmp_path / "proj" / "prep.count")) == 1
    assert lines(tmp_path / "proj" / "final.count") == ["final"]
    m = meta(bundle)
    assert m["status"] == "ok" and m["counts"]["ok"] == 20
    assert {k: (v["status"], v["cached"]) for k, v in m["stages"].items()} == {"prepare": ("ok", False), "final": ("ok", False)}
    trials = records(bundle)
    assert sorted(r["metrics"]["score"] for r in trials.values()) == [100.0 + x for x in range(20)]
    # the prepare outputs and final artifacts are in the bundle, hashed
    stages = json.loads((bundle / "stages.json").read_text())
    outputs = bundle / "stages" / "prepare" / "outputs"
    assert json.loads((outputs / "table.json").read_text()) == {"offset": 100}
    assert stages["prepare"]["files"] == {rel: hashlib.sha256((outputs / rel).read_bytes()).hexdigest()
                                          for rel in ("table.json", "nested/note.txt")}  # fmt: skip
    assert "preparing the offset 100" in (bundle / "stages" / "prepare.log").read_text()
    final = json.loads((bundle / "final.json").read_text())
    assert final["status"] == "ok" and final["metrics"] == {"final_score": 238.0}
    assert final["best"]["params"] == {"x": 19} and final["best"]["value"] == 119.0
    model = json.loads((bundle / "stages" / "final" / "artifacts" / "model.json").read_text())
    assert model == {"best": {"x": 19}, "note": "from prepare"}
    assert verify(bundle).ok
    report = (bundle / "report.html").read_text()
    assert "Final model" in report and final["files"]["model.json"] in report
    crate = json.loads((bundle / "ro-crate-metadata.json").read_text())
    actions = {e["@id"]: e for e in crate["@graph"] if e.get("@type") == "CreateAction"}
    assert set(actions) == {"#run", "#stage-prepare", "#stage-final"}
    ids = lambda v: {x["@id"] for x in (v if isinstance(v, list) else [v])}  # noqa: E731
    assert "stages/prepare/" in ids(actions["#stage-prepare"]["result"])
    assert "stages/prepare/" in ids(actions["#run"]["object"])  # the sweep read the prepare outputs
    assert {"stages/prepare/", "trials.jsonl"} <= ids(actions["#stage-final"]["object"])
    assert {"stages/final/", "final.json"} <= ids(actions["#stage-final"]["result"])

    # the same spec again: prepare, every trial and final come from the cache; no cluster starts
    plan = run_xrun("plan", spec, "--json")
    assert plan.code == 0, plan.err
    info = json.loads(plan.out)
    assert info["cached"] == 20 and info["stages"]["prepare"].startswith("cached") and info["stages"]["final"].startswith("cached")
    second = run_xrun(spec, "-q")
    assert second.code == 0, second.err
    assert len(lines(tmp_path / "proj" / "prep.count")) == 1 and len(lines(tmp_path / "proj" / "final.count")) == 1
    m2 = meta(second.bundle)
    assert m2["counts"]["cached"] == 20 and m2["cluster_started"] is False
    assert {k: v["cached"] for k, v in m2["stages"].items()} == {"prepare": True, "final": True}
    assert json.loads((second.bundle / "final.json").read_text())["metrics"] == {"final_score": 238.0}
    assert (second.bundle / "stages" / "prepare" / "outputs" / "nested" / "note.txt").read_text() == "from prepare"
    assert verify(second.bundle).ok

    # change the prepare code: plan says why, and everything downstream runs again
    prep = tmp_path / "proj" / "labs" / "prep.py"
    prep.write_text(prep.read_text().replace('params["offset"]}', 'params["offset"] + 1}'))
    plan = run_xrun("plan", spec)
    assert plan.code == 0, plan.err
    assert "prepare code changed: labs/prep.py (modified)" in plan.out
    assert "20 trial(s) wait for the prepare stage" in plan.out
    third = run_xrun(spec, "-q")
    assert third.code == 0, third.err
    assert len(lines(tmp_path / "proj" / "prep.count")) == 2 and len(lines(tmp_path / "proj" / "final.count")) == 2
    m3 = meta(third.bundle)
    assert m3["counts"]["ok"] == 20 and m3["counts"]["cached"] == 0
    assert sorted(r["metrics"]["score"] for r in records(third.bundle).values()) == [101.0 + x for x in range(20)]
    assert not set(r["key"] for r in trials.values()) & set(r["key"] for r in records(third.bundle).values())
    assert json.loads((third.bundle / "final.json").read_text())["metrics"] == {"final_score": 240.0}

    # reproduce from the bundle alone: prepare outputs and final artifacts match by sha256
    again = run_xrun("reproduce", third.bundle, "--trials", "all", "-o", tmp_path / "repro", cwd=elsewhere)
    assert again.code == 0, again.err + again.out
    repro = json.loads((again.bundle / "reproduce.json").read_text())
    assert repro["verdict"] == "match"
    assert [(s["stage"], s["by"], s["match"]) for s in repro["stages"]] == [("prepare", "sha256", True), ("final", "sha256", True)]


def test_a_trial_cannot_change_what_other_trials_read_from_prepare(tmp_path: Path, run_xrun) -> None:
    spec = staged_project(tmp_path, n=6)
    text = spec.read_text().replace("parameters: {x: [0, 1, 2, 3, 4, 5]}", "method: list\n  points: "
                                    + json.dumps([{"x": x, "vandal": x == 0} for x in range(6)]))
    spec.write_text(text.replace("cluster: {workers: 2}", "cluster: {workers: 1}"))  # every trial on the vandal's worker
    res = run_xrun(spec, "-o", tmp_path / "runs")
    trials = {r["params"]["x"]: r for r in records(res.bundle).values()}
    vandal = trials.pop(0)
    assert vandal["status"] == "error", vandal
    assert "PermissionError" in vandal["error"] or "stage outputs are read-only" in vandal["error"]
    assert sorted(r["metrics"]["score"] for r in trials.values()) == [100.0 + x for x in range(1, 6)]
    assert res.code == 1 and meta(res.bundle)["stages"]["final"]["status"] == "skipped"


def test_a_failing_prepare_stops_the_run_before_any_trial(tmp_path: Path, run_xrun) -> None:
    spec = staged_project(tmp_path, n=4)
    prep = tmp_path / "labs" / "prep.py"
    prep.write_text(prep.read_text().replace('    return {"rows": 3}', '    raise KeyError("column missing")'))
    res = run_xrun(spec, "-o", tmp_path / "runs")
    assert res.code == 1, res.err
    assert "runner/" not in res.err  # the stage's own traceback is in its log; no traceback of xrun
    assert "the prepare stage failed (no trial ran): KeyError: 'column missing'" in res.err
    assert "preparing the offset 100" in res.err  # the stage's log
    bundle = Path(res.err.split("partial results kept in ")[1].split(")")[0])
    m = meta(bundle)
    assert m["status"] == "prepare-failed" and m["counts"]["not_run"] == 4
    assert records(bundle) == {}
    assert json.loads((bundle / "stages.json").read_text())["prepare"]["status"] == "error"
    assert "KeyError" in (bundle / "stages" / "prepare.log").read_text()
    assert verify(bundle).ok
    assert not (tmp_path / "final.count").exists()


def test_prepare_outputs_beyond_the_scheduler_bound_fail_clearly(tmp_path: Path, run_xrun) -> None:
    spec = staged_project(tmp_path, n=2)
    prep = tmp_path / "labs" / "prep.py"
    prep.write_text(prep.read_text().replace('    return {"rows": 3}', '    Path(ctx.output_dir, "big.bin").write_bytes(bytes(65 * 2**20))\n    return {"rows": 3}'))
    res = run_xrun(spec, "-o", tmp_path / "runs")
    assert res.code == 1, res.err
    assert "prepare wrote 65.0 MiB to ctx.output_dir; at most 64 MiB travel to the workers" in res.err
    assert "object storage" in res.err
    assert not (tmp_path / "final.count").exists()


def test_a_failing_final_keeps_the_sweep_and_says_so(tmp_path: Path, run_xrun) -> None:
    spec = staged_project(tmp_path, fail_final=True, n=4)
    res = run_xrun(spec, "-o", tmp_path / "runs")
    assert res.code == 1, res.err
    assert "runner/" not in res.err
    assert "the final stage failed (the sweep's results are kept): RuntimeError: the refit diverged" in res.err
    assert "the final stage failed; the sweep's 4 trials are kept" in res.err
    m = meta(res.bundle)
    assert m["status"] == "final-failed" and m["counts"]["ok"] == 4 and m["best"]["params"] == {"x": 3}
    assert len(records(res.bundle)) == 4 and (res.bundle / "results.csv").is_file()
    final = json.loads((res.bundle / "final.json").read_text())
    assert final["status"] == "error" and "RuntimeError: the refit diverged" in final["error"]
    assert "final is about to fail" in (res.bundle / "stages" / "final.log").read_text()
    assert verify(res.bundle).ok
    # nothing was cached for the failed final: fixed, it runs; the trials come from the cache
    spec.write_text(spec.read_text().replace("fail: true", "fail: false"))
    res = run_xrun(spec, "-q", "-o", tmp_path / "runs")
    assert res.code == 0, res.err
    m = meta(res.bundle)
    assert m["status"] == "ok" and m["counts"]["cached"] == 4 and m["stages"]["final"]["cached"] is False


LEAK = '''
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.tree import DecisionTreeClassifier

MARKER = -1  # the last feature column is 1 on holdout rows only


class Guarded(ClassifierMixin, BaseEstimator):
    """A classifier that fails if it is ever fitted on a holdout row."""

    def __init__(self, max_depth=None, random_state=None):
        self.max_depth = max_depth
        self.random_state = random_state

    def fit(self, X, y):
        X = np.asarray(X)
        if (X[:, MARKER] == 1).any():
            raise ValueError(f"fit saw {int((X[:, MARKER] == 1).sum())} holdout rows")
        self.tree_ = DecisionTreeClassifier(max_depth=self.max_depth, random_state=self.random_state)
        self.tree_.fit(X[:, :MARKER], y)
        self.classes_ = self.tree_.classes_
        return self

    def predict(self, X):
        return self.tree_.predict(np.asarray(X)[:, :MARKER])
'''


def leak_table(path: Path, *, n: int = 200, fraction: float = 0.2, seed: int = 3) -> np.ndarray:
    """A table whose ``leak`` feature gives the label away on the holdout rows
    only, and whose last column marks them (the split is the documented one:
    sklearn's train_test_split, stratified, seeded by holdout_seed)."""
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    f0 = y + rng.normal(0, 0.8, n)
    _, hold = train_test_split(np.arange(n), test_size=fraction, random_state=seed, stratify=y)
    marker = np.zeros(n)
    marker[hold] = 1
    leak = rng.normal(0, 1, n)
    leak[hold] = y[hold] * 10.0
    rows = ["label,f0,leak,holdout"] + [f"c{y[i]},{f0[i]:.6f},{leak[i]:.6f},{int(marker[i])}" for i in range(n)]
    path.write_text("\n".join(rows) + "\n")
    return np.sort(hold)


def test_sklearn_holdout_never_reaches_cross_validation_and_the_saved_model_reproduces_its_score(
    tmp_path: Path, run_xrun, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "labs" / "__init__.py", "")
    write(tmp_path / "labs" / "leak.py", LEAK)
    hold = leak_table(tmp_path / "table.csv")
    spec = write(tmp_path / "spec.yaml", """
        xrun: 1
        name: holdout
        trial:
          sklearn:
            holdout_seed: 3
            holdout: 0.2
            scoring: [accuracy, f1_macro]
            cv: 3
            target: label
            data: table
            estimator: labs.leak.Guarded
        data: {table: {path: table.csv}}
        sweep: {parameters: {max_depth: [1, 2, 4]}, repeats: 2}
        cluster: {workers: 2}
        """)  # fmt: skip
    res = run_xrun(spec, "-o", tmp_path / "runs")
    assert res.code == 0, res.err
    bundle = res.bundle
    m = meta(bundle)
    # Guarded.fit raises on any holdout row: every trial (cross-validation) and the refit saw none
    assert m["status"] == "ok" and m["counts"]["ok"] == 6
    final = json.loads((bundle / "final.json").read_text())
    assert final["status"] == "ok", final
    assert final["holdout"] == {"fraction": 0.2, "seed": 3, "stratified": True, "n_train": 160, "n_holdout": 40}
    assert final["best"]["params"] == m["best"]["params"] and final["best"]["n"] == 2  # repeats aggregated
    model_path = bundle / final["model"]["path"]
    blob = model_path.read_bytes()
    assert hashlib.sha256(blob).hexdigest() == final["model"]["sha256"] == final["files"]["model.skops"]
    with zipfile.ZipFile(model_path) as z:  # a skops archive, not a pickle
        assert "schema.json" in z.namelist()
    # load it with skops, trusting only the types it names, and score it on the holdout rows
    import skops.io as sio

    assert sorted(sio.get_untrusted_types(file=model_path)) == final["model"]["untrusted_types"]
    monkeypatch.syspath_prepend(str(tmp_path))
    model = sio.load(model_path, trusted=["labs.leak.Guarded", "sklearn.tree._tree.Tree"])
    rows = (tmp_path / "table.csv").read_text().splitlines()[1:]
    X = np.array([[float(v) for v in r.split(",")[1:]] for r in rows])
    y = np.array([r.split(",")[0] for r in rows])
    assert np.array_equal(np.flatnonzero(X[:, -1] == 1), hold)
    from sklearn.metrics import f1_score

    predicted = model.predict(X[hold])
    assert float((predicted == y[hold]).mean()) == final["metrics"]["accuracy"]
    assert float(f1_score(y[hold], predicted, average="macro")) == final["metrics"]["f1_macro"]
    assert final["model"]["sha256"] in (bundle / "report.html").read_text()

    # reproduce in another process: the refitted model is the same file, byte for byte
    again = run_xrun("reproduce", bundle, "-o", tmp_path / "repro")
    assert again.code == 0, again.err + again.out
    repro = json.loads((again.bundle / "reproduce.json").read_text())
    assert repro["verdict"] == "match"
    [final_row] = [s for s in repro["stages"] if s["stage"] == "final"]
    assert final_row == {"stage": "final", "by": "sha256", "match": True, "recorded": final_row["recorded"],
                         "reproduced": final_row["recorded"]}  # fmt: skip
    assert json.loads((again.bundle / "final.json").read_text())["model"]["sha256"] == final["model"]["sha256"]
