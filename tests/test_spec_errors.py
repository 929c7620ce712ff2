"""Malformed specs: each exits 2 quickly with file, line and key path, never a traceback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runner.cli import main

GOOD = """\
xrun: 1
name: demo
trial:
  function: experiments.train:run
sweep:
  method: grid
  parameters:
    C: [0.1, 1]
"""

# (id, spec text (or bytes), expected fragments of the message)
CASES: list[tuple[str, str | bytes, list[str]]] = [
    ("typo-top-level", GOOD + "clustr: {workers: 2}\n", [":9 clustr", "did you mean 'cluster'"]),
    ("typo-nested", GOOD.replace("  method: grid", "  methd: grid"), [":6 sweep.methd", "did you mean 'method'"]),
    ("unknown-key", GOOD + "frobnicate: 3\n", [":9 frobnicate", "unknown key"]),
    ("wrong-type-list", GOOD.replace("C: [0.1, 1]", "C: 3"), [":8 sweep.parameters.C", "expected a list"]),
    ("wrong-type-int", GOOD + "cluster: {workers: many}\n", [":9 cluster.workers", "expected an integer"]),
    ("missing-name", GOOD.replace("name: demo\n", ""), ["spec.yaml:1 name", "required key is missing"]),
    ("missing-trial", "xrun: 1\nname: demo\n", ["trial", "required key is missing"]),
    ("missing-version", GOOD.replace("xrun: 1\n", ""), ["xrun", "required key is missing"]),
    ("bad-version", GOOD.replace("xrun: 1", "xrun: 7"), [":1 xrun", "version 7 is not supported"]),
    ("invalid-yaml", GOOD + "cluster: {workers: [1, 2\n", ["spec.yaml:", "invalid YAML"]),
    ("bad-indentation", "xrun: 1\nname: demo\n  trial: x\n", ["spec.yaml:3", "invalid YAML"]),
    ("empty-file", "", ["spec.yaml:1", "empty"]),
    ("comments-only", "# nothing here\n", ["spec.yaml:1", "empty"]),
    ("list-at-root", "- xrun: 1\n- name: demo\n", ["spec.yaml:1", "must be a mapping"]),
    ("scalar-at-root", "just a string\n", ["spec.yaml:1", "must be a mapping"]),
    ("non-utf8", b"xrun: 1\nname: d\xe9mo\n", ["spec.yaml:2", "not valid UTF-8"]),
    ("alias-bomb", "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
     "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
     "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n", ["spec.yaml:", "alias bomb"]),
    ("unknown-backend", GOOD + "cluster:\n  backend: slurm\n", [":9 cluster", "unknown backend 'slurm'"]),
    ("backend-typo", GOOD + "cluster:\n  backend: dokcer\n", ["cluster", "did you mean 'docker'"]),
    ("random-without-samples", GOOD.replace("method: grid", "method: random"), [":5 sweep.samples", "required when method is random"]),
    ("distribution-in-grid", GOOD.replace("C: [0.1, 1]", "C: {loguniform: [0.001, 10]}"), [":8 sweep.parameters.C", "only allowed with method: random"]),
    ("missing-module", GOOD.replace("experiments.train:run", "experiments.nope:run"), [":4 trial.function", "module 'experiments.nope' not found"]),
    ("bad-function-format", GOOD.replace("experiments.train:run", "experiments.train.run"), [":4 trial.function", "module.path:function"]),
    ("two-environments", GOOD + "environment:\n  pip: a.in\n  conda: b.yml\n", [":9 environment", "exactly one of conda, pip, current"]),
    ("two-trial-kinds", GOOD.replace("trial:\n", "trial:\n  sklearn: {estimator: sklearn.svm.SVC, dataset: 'sklearn.datasets:load_iris'}\n"),
     [":3 trial", "exactly one of function, sklearn"]),
    ("bad-name", GOOD.replace("name: demo", "name: My Sweep"), [":2 name", "not a valid name"]),
    ("bad-timeout", GOOD.replace("trial:\n", "trial:\n  timeout: soon\n"), [":4 trial.timeout", "duration"]),
    ("negative-retries", GOOD.replace("trial:\n", "trial:\n  retries: -1\n"), [":4 trial.retries", "greater than or equal to 0"]),
    ("bad-memory", GOOD + "cluster: {memory_limit: lots}\n", [":9 cluster.memory_limit", "size like"]),
    ("samples-in-grid", GOOD + "  samples: 5\n", [":9 sweep.samples", "only used with method: random"]),
    ("duplicate-key", GOOD + "name: again\n", [":9 name", "duplicate key"]),
    ("sklearn-missing-data-entry", "xrun: 1\nname: demo\ntrial:\n  sklearn:\n    estimator: sklearn.svm.SVC\n    data: iris\n    target: y\n",
     [":6 trial.sklearn.data", "no data entry named 'iris'"]),
    ("data-file-missing", GOOD + "data:\n  iris: {path: nowhere.csv}\n", [":10 data.iris.path", "file not found"]),
    ("list-without-points", GOOD.replace("method: grid", "method: list"), ["sweep.points", "non-empty list of points"]),
    ("secret-not-an-env-name", GOOD + "secrets: [\"not valid\"]\n", [":9 secrets[0]", "not an environment variable name"]),
]


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "train.py").write_text("def run(params, ctx):\n    return {}\n")
    return tmp_path


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malformed_spec_exits_2_with_location(case, proj: Path, capsys, monkeypatch) -> None:
    name, text, fragments = case
    monkeypatch.chdir(proj)
    spec = proj / "spec.yaml"
    spec.write_bytes(text if isinstance(text, bytes) else text.encode())
    start = time.monotonic()
    with pytest.raises(SystemExit) as exc:
        main(["validate", str(spec)])
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "Traceback" not in err
    assert err.startswith("error: spec.yaml"), err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    assert elapsed < 30  # a liveness bound against alias bombs and the like, not a speed target


def test_good_spec_validates(proj: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(proj)
    (proj / "spec.yaml").write_text(GOOD)
    with pytest.raises(SystemExit) as exc:
        main(["validate", "spec.yaml"])
    assert exc.value.code == 0
    assert "valid spec 'demo'" in capsys.readouterr().err


def test_missing_spec_file(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["validate", str(tmp_path / "nope.yaml")])
    assert exc.value.code == 2
    assert "spec file not found" in capsys.readouterr().err


def test_set_override_bad_value_is_located(proj: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(proj)
    (proj / "spec.yaml").write_text(GOOD)
    with pytest.raises(SystemExit) as exc:
        main(["validate", "spec.yaml", "--set", "cluster.workers=lots"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "cluster.workers" in err and "(from --set cluster.workers=lots)" in err


def test_errors_list_several_problems(proj: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(proj)
    (proj / "spec.yaml").write_text(GOOD + "clustr: 1\nsecretz: []\n")
    with pytest.raises(SystemExit):
        main(["validate", "spec.yaml"])
    err = capsys.readouterr().err
    assert "spec.yaml:9 clustr" in err and "spec.yaml:10 secretz" in err


def test_paths_outside_the_project_are_reported_unless_allowed(proj: Path, tmp_path_factory, capsys, monkeypatch) -> None:
    outside = tmp_path_factory.mktemp("elsewhere") / "data.csv"
    outside.write_text("a,b\n1,2\n")
    (proj / "pyproject.toml").write_text("")
    monkeypatch.chdir(proj)
    (proj / "spec.yaml").write_text(GOOD + f"data:\n  table: {{path: {outside}}}\n")
    with pytest.raises(SystemExit) as exc:
        main(["validate", "spec.yaml"])
    assert exc.value.code == 0
    err = capsys.readouterr().err
    assert "warning: spec.yaml:10 data.table.path" in err and "outside the project tree" in err
    monkeypatch.setenv("XRUN_ALLOW_OUTSIDE_PATHS", "1")
    with pytest.raises(SystemExit):
        main(["validate", "spec.yaml"])
    assert "outside the project tree" not in capsys.readouterr().err
