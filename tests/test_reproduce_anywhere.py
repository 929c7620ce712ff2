"""`xrun reproduce` from any working directory, for specs written the way users
write them (parameter names out of alphabetical order, relative paths,
`--set`), and for bundles written by the previous release; the trial
pre-flight (`xrun validate` and the worker import check)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from runner.bundle.journal import read_journal

from .conftest import REPO

FIXTURES = Path(__file__).resolve().parent / "data" / "bundles"

MODEL = '''
import random


def fit_and_score(params, ctx):
    rng = random.Random(ctx.seed)
    depth = params["max_depth"] if params["max_depth"] is not None else 10
    return {"auc": round(params["n_estimators"] / 1000 + depth / 100 + rng.random() / 10, 12), "depth": float(depth)}
'''


def churn_project(root: Path) -> Path:
    """A project as in the report: code under src/, a spec under specs/, bundles in runs/."""
    (root / "src").mkdir(parents=True)
    (root / "src" / "__init__.py").write_text("")
    (root / "src" / "churn_model.py").write_text(MODEL)
    (root / "pyproject.toml").write_text("[project]\nname='churn'\nversion='0'\n")
    (root / "specs").mkdir()
    spec = root / "specs" / "churn.yaml"
    spec.write_text("""
xrun: 1
name: churn
code: {root: .., include: ["src/**/*.py"]}
trial: {function: "src.churn_model:fit_and_score"}
sweep:
  method: random
  parameters:
    n_estimators: {int: [10, 200]}
    max_depth: [2, 4, 8, null]
  samples: 6
  seed: 7
  objective: {metric: auc}
cluster: {workers: 1}
output: ../runs
""")
    return spec


def reproduced(res, run_xrun_result_cwd: Path) -> Path:
    """The path `reproduce` printed, as the user's shell would read it."""
    path = Path(res.out.strip().splitlines()[-1])
    return path if path.is_absolute() else run_xrun_result_cwd / path


# ------------------------------------------------------------------ order-free identity


@pytest.mark.parametrize("fixture", ["v1-random-order", "v1-grid-set"])
def test_bundles_of_the_previous_release_still_reproduce(fixture: str, run_xrun, tmp_path: Path) -> None:
    """Written by xrun 0.1.0 (sweep version 1, parameters expanded in written order)."""
    copy = tmp_path / "old" / fixture
    shutil.copytree(FIXTURES / fixture, copy)
    res = run_xrun("reproduce", f"old/{fixture}", "--trials", "all", cwd=tmp_path)
    assert res.code == 0, res.err
    assert "verdict: match" in res.err
    new = reproduced(res, tmp_path)
    assert new.parent == copy.parent and (new / "reproduce.json").is_file()
    rows = json.loads((new / "reproduce.json").read_text())["rows"]
    recorded = {r["id"] for r in read_journal(copy / "trials.jsonl")}
    assert {r["trial"] for r in rows} == recorded and all(r["match"] for r in rows)
    # the reproduction is itself a version-1 bundle, reproducible in turn
    assert json.loads((new / "bundle.json").read_text())["sweep"]["version"] == 1


def test_random_sweep_with_unsorted_names_and_a_set_override_reproduces(run_xrun, tmp_path: Path) -> None:
    spec = churn_project(tmp_path / "project")
    first = run_xrun(spec, "-q", "--set", "sweep.samples=2", cwd=tmp_path / "project")
    assert first.code == 0, first.err
    res = run_xrun("reproduce", first.bundle, "--trials", "all", cwd=tmp_path / "project")
    assert res.code == 0, res.err + res.out
    assert "verdict: match" in res.err and "no longer yields" not in res.err
    assert json.loads((first.bundle / "bundle.json").read_text())["sweep"]["version"] == 2


def test_the_shipped_forest_spec_reproduces_after_a_set(run_xrun, tmp_path: Path) -> None:
    """The report's first command, as written (output redirected out of the repository)."""
    first = run_xrun(REPO / "specs" / "forest.yaml", "-q", "--set", "sweep.samples=2", "-o", tmp_path / "runs", cwd=REPO)
    assert first.code == 0, first.err
    res = run_xrun("reproduce", first.bundle, cwd=tmp_path)
    assert res.code == 0, res.err
    assert "verdict: match" in res.err


# ------------------------------------------------------------------ from anywhere


def test_reproduce_from_anywhere_leaves_the_printed_bundle_in_place(run_xrun, tmp_path: Path) -> None:
    project = tmp_path / "project"
    spec = churn_project(project)
    first = run_xrun(spec, "-q", cwd=project)
    assert first.code == 0, first.err
    run_id = first.bundle.name
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def check(res, cwd: Path, expected_parent: Path) -> Path:
        assert res.code == 0, res.err + res.out
        assert "verdict: match" in res.err
        new = reproduced(res, cwd)
        assert new.is_dir() and (new / "reproduce.json").is_file(), new
        assert new.resolve().parent == expected_parent.resolve()
        assert json.loads((new / "reproduce.json").read_text())["verdict"] == "match"
        return new

    # the project directory, a relative path: the new bundle goes next to the original
    check(run_xrun("reproduce", f"runs/{run_id}", cwd=project), project, project / "runs")
    # from inside runs/ (the code root is an ancestor of the output directory)
    check(run_xrun("reproduce", run_id, "--trials", "all", cwd=project / "runs"), project / "runs", project / "runs")
    # from elsewhere, relative
    check(run_xrun("reproduce", f"../project/runs/{run_id}", cwd=elsewhere), elsewhere, project / "runs")
    # an archive, from elsewhere, after the project is gone: runs/ of the working directory
    packed = run_xrun("pack", f"../project/runs/{run_id}", "-o", "run.tar.gz", cwd=elsewhere)
    assert packed.code == 0, packed.err
    shutil.rmtree(project)
    check(run_xrun("reproduce", "run.tar.gz", "--backend", "local", cwd=elsewhere), elsewhere, elsewhere / "runs")
    # -o relative to the working directory
    out = check(run_xrun("reproduce", "run.tar.gz", "-o", "mine", cwd=elsewhere), elsewhere, elsewhere / "mine")
    assert out.is_relative_to(elsewhere)


def test_tutorial_reproduce_commands_run_as_written(run_xrun, tmp_path: Path) -> None:
    """docs/tutorial.md §5 and README's bundle commands in a fresh checkout, with
    their relative paths (the run from §1 makes the bundle)."""
    checkout = tmp_path / "checkout"
    for part in ("specs", "experiments", "envs"):
        shutil.copytree(REPO / part, checkout / part)
    shutil.copy(REPO / "pyproject.toml", checkout)
    tutorial = (REPO / "docs" / "tutorial.md").read_text(encoding="utf-8")
    assert "xrun specs/quickstart.yaml" in tutorial
    first = run_xrun("specs/quickstart.yaml", "-q", cwd=checkout)
    assert first.code == 0, first.err
    bundle = f"runs/{first.bundle.name}"
    section = tutorial.split("## 5. Reproduce and compare", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(xrun [^#\n]*?)\s*(?:#.*)?$", section, re.M)
    assert "xrun reproduce runs/my-sweep-…" in commands, commands
    pack = re.search(r"`(xrun pack BUNDLE -o run\.tar\.gz)`", section)
    assert pack, "the tutorial no longer shows `xrun pack BUNDLE -o run.tar.gz`"
    readme = (REPO / "README.md").read_text(encoding="utf-8").split("## Everyday use", 1)[1].split("```", 2)[1]
    readme_commands = re.findall(r"^(xrun (?:reproduce|pack|verify|show) [^#\n]*?)\s*(?:#.*)?$", readme, re.M)
    assert len(readme_commands) == 4, readme_commands
    ran = 0
    for line in [pack.group(1), *commands, *readme_commands]:
        line = line.replace("BUNDLE", bundle).replace("runs/my-sweep-…", bundle).replace("runs/quickstart-…", bundle)
        args = line.split()[1:]
        if "--backend" in args and "docker" in args:
            continue  # the quickstart runs in `current: true`; tests/docker runs this line on a docker bundle
        if args[0] == "diff":
            args = ["diff", bundle, bundle]
        res = run_xrun(*args, cwd=checkout)
        assert res.code == 0, (line, res.err)
        if args[0] == "reproduce":
            new = reproduced(res, checkout)
            assert new.is_dir() and "verdict: match" in res.err, line
        ran += 1
    assert ran >= 7


# ------------------------------------------------------------------ pre-flight


def test_validate_finds_a_misspelt_trial_function_without_importing_it(run_xrun, tmp_path: Path) -> None:
    spec = churn_project(tmp_path)
    (tmp_path / "src" / "churn_model.py").write_text(MODEL + "\nraise SystemExit('imported!')\n")
    res = run_xrun("validate", spec, "--set", "trial.function=src.churn_model:fit_and_scor", cwd=tmp_path)
    assert res.code == 2
    assert res.err.strip() == (
        "error: specs/churn.yaml:5 trial.function: module 'src.churn_model' (churn_model.py) has no "
        "top-level function 'fit_and_scor'; did you mean 'fit_and_score'?"
    )
    ok = run_xrun("validate", spec, cwd=tmp_path)
    assert ok.code == 0 and "imported!" not in ok.out + ok.err  # parsed, never imported
    mod = run_xrun("validate", spec, "--set", "trial.function=src.churn_modle:fit_and_score", cwd=tmp_path)
    assert mod.code == 2 and "did you mean 'src.churn_model'?" in mod.err


def test_a_misspelt_estimator_stops_the_run_before_any_trial(run_xrun, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    spec = tmp_path / "forest.yaml"
    spec.write_text("""
xrun: 1
name: typo
trial:
  sklearn: {estimator: sklearn.ensemble.RandomForrestClassifier, dataset: "sklearn.datasets:load_iris", cv: 2}
sweep: {parameters: {n_estimators: [5, 10, 20], max_depth: [2, 3, 4]}}
cluster: {workers: 2}
output: runs
""")
    assert run_xrun("validate", spec, cwd=tmp_path).code == 0  # the estimator lives in the trial environment
    res = run_xrun(spec, cwd=tmp_path)
    assert res.code == 2, res.err
    errors = [line for line in res.err.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: forest.yaml:5 trial.sklearn.estimator: module 'sklearn.ensemble' has no estimator class "
        "'RandomForrestClassifier'; did you mean 'RandomForestClassifier'? (checked on a worker, before any trial ran)"
    ]
    assert "AttributeError" not in res.err and "Traceback" not in res.err
    (bundle,) = (tmp_path / "runs").iterdir()
    assert read_journal(bundle / "trials.jsonl") == []  # no trial ran
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["status"] == "error" and "RandomForrestClassifier" in meta["error"]


def test_a_trial_module_that_fails_to_import_on_workers_is_one_message(run_xrun, tmp_path: Path) -> None:
    spec = churn_project(tmp_path)
    (tmp_path / "src" / "churn_model.py").write_text("import not_installed_anywhere\n" + MODEL)
    assert run_xrun("validate", spec, cwd=tmp_path).code == 0  # statically the function is there
    res = run_xrun(spec, "-q", cwd=tmp_path)
    assert res.code == 2
    assert res.err.count("error:") == 1
    assert ("trial.function: cannot import 'src.churn_model': no module named 'not_installed_anywhere'" in res.err)
