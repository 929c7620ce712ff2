"""`xrun run` and `xrun reproduce` on the Docker backend, through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.image.docker import LABEL_MANAGED as MANAGED_LABEL

from .conftest import BASE_ARGS, DATA, PINNED_SKLEARN, REPO, TEST_IMAGE_NAME

pytestmark = pytest.mark.docker

TRIAL = '''
def train(params, ctx):
    import sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    X, y = load_iris(return_X_y=True)
    acc = float(cross_val_score(LogisticRegression(C=params["C"], max_iter=500), X, y, cv=3).mean())
    major, minor, patch = (int(p) for p in sklearn.__version__.split(".")[:3])
    return {"accuracy": acc, "sklearn_version": float(major * 10000 + minor * 100 + patch)}
'''


def xrun(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=900, env={**os.environ, "COLUMNS": "200"})  # fmt: skip


def test_docker_sweep_imports_the_pinned_env_and_reproduces_bit_identically(docker_client, worker_image, tmp_path: Path) -> None:
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "ver.py").write_text(TRIAL)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""
xrun: 1
name: {TEST_IMAGE_NAME}
environment: {{pip: {DATA / "worker-env.in"}}}
image: {{base: {REPO / "Dockerfile.base"}, build_args: {json.dumps(BASE_ARGS)}}}
code: {{include: ["experiments/*.py"]}}
trial: {{function: "experiments.ver:train", timeout: 2m}}
sweep: {{parameters: {{C: [0.5, 1.0, 2.0]}}, objective: {{metric: accuracy}}}}
cluster: {{backend: docker, workers: 2, memory_limit: 1GiB}}
output: runs
""")
    built = xrun("build", spec, "--json", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    info = json.loads(built.stdout)
    assert info["cached"] is True and info["env_layer_digest"] == worker_image.env_layer_digest

    res = xrun("run", spec, "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    bundle = Path(res.stdout.strip().splitlines()[-1])
    records = [json.loads(line) for line in (bundle / "trials.jsonl").read_text().splitlines()]
    major, minor, patch = (int(p) for p in PINNED_SKLEARN.split("."))
    assert {r["metrics"]["sklearn_version"] for r in records} == {float(major * 10000 + minor * 100 + patch)}
    image = json.loads((bundle / "image.json").read_text())
    assert image["env_layer_digest"] == worker_image.env_layer_digest and "FROM" in image["dockerfile"]
    host = json.loads((bundle / "host.json").read_text())
    assert host["backend"] == "docker" and len(host["workers"]) == 2
    assert all(w["packages"]["scikit-learn"] == PINNED_SKLEARN for w in host["workers"].values())

    rep = xrun("reproduce", bundle, "--trials", "all", cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert "bit-identical" in rep.stderr and "verdict: match" in rep.stderr
    reproduced = json.loads((Path(rep.stdout.strip().splitlines()[-1]) / "reproduce.json").read_text())
    assert reproduced["env_identical"] is True and reproduced["verdict"] == "match"

    left = docker_client.containers.list(all=True, filters={"label": MANAGED_LABEL})
    assert left == [], [c.name for c in left]
    assert docker_client.networks.list(filters={"label": MANAGED_LABEL}) == []
