"""End to end on a real LocalCluster, through the real `xrun` command."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from runner.bundle.manifest import bundle_files, verify

REPO = Path(__file__).resolve().parents[1]


def trials(bundle: Path) -> list[dict]:
    return [json.loads(line) for line in (bundle / "trials.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One quickstart run shared by the tests below (the spec as shipped)."""
    import os
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("qs-runs")
    env = {**os.environ, "XRUN_CACHE_DIR": str(tmp_path_factory.mktemp("qs-cache")), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "runner.cli", str(REPO / "specs" / "quickstart.yaml"), "-o", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    bundle = Path(proc.stdout.strip().splitlines()[-1])
    assert bundle.parent == out and bundle.name.startswith("quickstart-")
    return bundle


def test_quickstart_bundle_has_every_part(quickstart: Path) -> None:
    for name in ("bundle.json", "spec.yaml", "spec.resolved.json", "env/freeze.txt", "env/env.json",
                 "code/source.tar.gz", "code/git.json", "data.json", "trials.jsonl", "results.csv",
                 "host.json", "MANIFEST.sha256"):  # fmt: skip
        assert (quickstart / name).is_file(), name
    meta = json.loads((quickstart / "bundle.json").read_text())
    assert meta["bundle_version"] == 1 and meta["status"] == "ok"
    assert meta["counts"]["total"] == 6 and meta["counts"]["ok"] == 6
    assert meta["best"]["metric"] == "accuracy" and meta["best"]["value"] > 0.9
    rows = trials(quickstart)
    assert sorted(r["id"] for r in rows) == [f"t{i:05d}" for i in range(6)]
    for r in rows:
        assert set(r["metrics"]) == {"accuracy", "accuracy_std", "f1_macro", "f1_macro_std"}
        assert (quickstart / "logs" / f"{r['id']}.log").read_text().startswith("SVC(")
    host = json.loads((quickstart / "host.json").read_text())
    assert len(host["workers"]) == 2
    assert all("scikit-learn" in w["packages"] for w in host["workers"].values())
    assert (quickstart / "spec.yaml").read_text() == (REPO / "specs" / "quickstart.yaml").read_text()


def test_verify_passes_then_fails_after_any_byte_changes(quickstart: Path, tmp_path: Path, run_xrun) -> None:
    copy = tmp_path / "b"
    shutil.copytree(quickstart, copy)
    res = run_xrun("verify", copy)
    assert res.code == 0, res.err
    for rel in bundle_files(copy):
        path = copy / rel
        data = bytearray(path.read_bytes())
        if not data:
            continue
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
        result = verify(copy)
        assert result.changed == [rel], rel
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    assert verify(copy).ok
    (copy / "logs" / "t00000.log").write_text("tampered")
    (copy / "extra.txt").write_text("x")
    (copy / "results.csv").unlink()
    res = run_xrun("verify", copy)
    assert res.code == 1
    assert "changed: logs/t00000.log" in res.err and "missing: results.csv" in res.err and "extra: extra.txt" in res.err


def test_rerun_gives_identical_points_seeds_and_metrics(quickstart: Path, tmp_path: Path, run_xrun) -> None:
    res = run_xrun(REPO / "specs" / "quickstart.yaml", "--no-cache", "-q", "-o", tmp_path)
    assert res.code == 0, res.err
    first = {r["id"]: r for r in trials(quickstart)}
    second = {r["id"]: r for r in trials(res.bundle)}
    assert first.keys() == second.keys()
    for tid in first:
        for field in ("params", "seed", "metrics", "key"):
            assert first[tid][field] == second[tid][field], (tid, field)
        assert second[tid]["cached"] is False


FAILING = '''
import time

def train(params, ctx):
    mode = params["mode"]
    print("running", mode)
    if mode == "raise":
        raise ValueError("bad value for the demo")
    if mode == "hang":
        time.sleep(3600)          # stuck in C: the worker must be restarted
    if mode == "spin":
        while True:               # stuck in Python: stopped inside its thread
            pass
    return {"score": float(params["x"])}
'''


def test_raising_and_hanging_trials_are_classified_and_the_sweep_finishes(project, run_xrun) -> None:
    project.file("experiments/flaky.py", FAILING)
    spec = project.spec(
        """
        xrun: 1
        name: flaky
        code: {include: ["experiments/*.py"]}
        trial: {function: "experiments.flaky:train", timeout: 4s, retries: 1}
        sweep:
          method: list
          points:
            - {mode: ok, x: 1}
            - {mode: raise, x: 2}
            - {mode: hang, x: 3}
            - {mode: spin, x: 4}
            - {mode: ok, x: 5}
            - {mode: ok, x: 6}
          objective: {metric: score}
        cluster: {workers: 2}
        """
    )
    start = time.monotonic()
    res = run_xrun(spec, "-o", project.root / "runs")
    elapsed = time.monotonic() - start
    assert res.code == 1, res.err
    assert "Traceback" not in res.err
    assert "2 of 6 trials failed" not in res.err  # three failed
    assert "3 of 6 trials failed" in res.err
    rows = {r["params"]["x"]: r for r in trials(res.bundle)}
    assert [rows[x]["status"] for x in (1, 5, 6)] == ["ok", "ok", "ok"]
    assert rows[2]["failure_class"] == "error" and "ValueError: bad value for the demo" in rows[2]["error"]
    assert rows[2]["attempts"] == 2  # retried once
    assert "Traceback" in rows[2]["traceback"]
    assert rows[3]["failure_class"] == "timeout" and rows[4]["failure_class"] == "timeout"
    assert "running raise" in (res.bundle / "logs" / f"{rows[2]['id']}.log").read_text()
    meta = json.loads((res.bundle / "bundle.json").read_text())
    assert meta["status"] == "failed" and meta["failures"] == {"error": 1, "timeout": 2}
    assert meta["best"]["trial"] == rows[6]["id"]
    assert elapsed < 60, f"took {elapsed:.0f}s; the hang is 3600s and the timeout 4s"
    assert verify(res.bundle).ok
