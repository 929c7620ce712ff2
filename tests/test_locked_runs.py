"""Runs in locked environments: local workers from the lock's interpreter,
workers checked against the lock, and `xrun diff` across a version change."""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path

from runner.bundle.journal import read_journal

REPO = Path(__file__).resolve().parents[1]


def test_local_workers_import_the_locked_versions_not_the_drivers(tmp_path: Path, run_xrun) -> None:
    driver = metadata.version("scikit-learn")
    assert driver != "1.5.2"  # the lock pins 1.5.2: the run must see that one
    res = run_xrun(REPO / "specs" / "pinned.yaml", "-q", "-o", tmp_path, timeout=600)
    assert res.code == 0, res.err
    records = read_journal(res.bundle / "trials.jsonl")
    assert {r["metrics"]["sklearn_version"] for r in records} == {10502}
    assert "scikit-learn 1.5.2" in (res.bundle / "logs" / "t00000.log").read_text()
    env = json.loads((res.bundle / "env" / "env.json").read_text())
    assert env["kind"] == "pip" and env["packages"]["scikit-learn"] == "1.5.2"
    assert (res.bundle / "env" / "sklearn-pip.lock").read_bytes() == (REPO / "envs" / "sklearn-pip.lock").read_bytes()
    host = json.loads((res.bundle / "host.json").read_text())
    assert {w["packages"]["scikit-learn"] for w in host["workers"].values()} == {"1.5.2"}
    assert all("/envs/" in w["executable"] for w in host["workers"].values())


def test_an_existing_cluster_whose_workers_do_not_match_the_lock_is_refused(tmp_path: Path, run_xrun, dask_cluster) -> None:
    address, _ = dask_cluster  # workers run the driver's interpreter: scikit-learn != the lock's
    res = run_xrun(REPO / "specs" / "pinned.yaml", "-q", "-o", tmp_path, "--backend", "address",
                   "--set", f"cluster.address={address}", "--set", "cluster.workers=1")  # fmt: skip
    assert res.code == 3, res.err
    assert f"scikit-learn: lock 1.5.2, worker {metadata.version('scikit-learn')}" in res.err
    assert "Traceback" not in res.err


TRIAL = '''
def train(params, ctx):
    import six
    return {"x": float(params["x"]), "six_minor": float(six.__version__.split(".")[1])}
'''


def test_diff_shows_a_package_version_change_between_two_runs(project, run_xrun) -> None:
    project.file("experiments/six_trial.py", TRIAL)
    bundles = []
    for version in ("1.16.0", "1.17.0"):
        project.file("envs/six.in", f"six=={version}\n")
        spec = project.spec("""
            xrun: 1
            name: six
            environment: {pip: envs/six.in}
            code: {include: ["experiments/*.py"]}
            trial: {function: "experiments.six_trial:train"}
            sweep: {parameters: {x: [1, 2]}}
            cluster: {workers: 1}
            output: runs
        """)
        stale = run_xrun(spec, "-q", cwd=project.root)
        assert stale.code == 2 and "xrun lock" in stale.err, stale.err  # no lock yet, or a stale one
        locked = run_xrun("lock", spec, cwd=project.root)
        assert locked.code == 0, locked.err
        assert run_xrun("lock", spec, "--check", cwd=project.root).code == 0
        res = run_xrun(spec, "-q", cwd=project.root, timeout=600)
        assert res.code == 0, res.err
        minor = int(version.split(".")[1])
        assert {r["metrics"]["six_minor"] for r in read_journal(res.bundle / "trials.jsonl")} == {float(minor)}
        bundles.append(res.bundle)
        shutil.copy(project.root / "envs" / "six.lock", project.root / f"six-{version}.lock")
    d = run_xrun("diff", *bundles, "--json")
    assert d.code == 0, d.err
    assert "six 1.16.0 → 1.17.0" in json.loads(d.out)["environment"]["packages"]
    human = run_xrun("diff", *bundles)
    assert "six 1.16.0 → 1.17.0" in human.out
