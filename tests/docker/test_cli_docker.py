"""`xrun run` and `xrun reproduce` on the Docker backend, through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.image.docker import LABEL_MANAGED as MANAGED_LABEL

from .conftest import BASE_ARGS, DATA, PINNED_SKLEARN, REPO, TEST_IMAGE_NAME, run_objects

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


def test_dockerfile_base_bundle_round_trip_pack_unpack_reproduce_on_docker(docker_client, worker_image, tmp_path: Path) -> None:
    """A spec with a relative Dockerfile base and the base image given on the command
    line; the bundle is packed, the project deleted, and the archive reproduced on
    Docker from another directory, exactly as the tutorial writes it."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    for d in (project / "experiments", project / "envs", project / "specs", elsewhere):
        d.mkdir(parents=True)
    (project / "experiments" / "ver.py").write_text(TRIAL)
    (project / "pyproject.toml").write_text("")
    for name in ("worker-env.in", "worker-env.lock"):
        (project / "envs" / name).write_bytes((DATA / name).read_bytes())
    (project / "Dockerfile.base").write_bytes((REPO / "Dockerfile.base").read_bytes())
    (project / "specs" / "rt.yaml").write_text(f"""
xrun: 1
name: {TEST_IMAGE_NAME}
environment: {{pip: ../envs/worker-env.in}}
image: {{base: ../Dockerfile.base}}
code: {{root: .., include: ["experiments/*.py"]}}
trial: {{function: "experiments.ver:train", timeout: 2m}}
sweep: {{parameters: {{C: [2.0, 0.5]}}, objective: {{metric: accuracy}}}}
cluster: {{backend: docker, workers: 1, memory_limit: 1GiB}}
output: ../runs
""")
    build_args = [a for k, v in BASE_ARGS.items() for a in ("--build-arg", f"{k}={v}")]
    res = xrun("run", "specs/rt.yaml", "-q", "--no-cache", *build_args, cwd=project)
    assert res.returncode == 0, res.stderr
    bundle = Path(res.stdout.strip().splitlines()[-1])
    recorded = json.loads((bundle / "image.json").read_text())
    assert recorded["env_layer_digest"] == worker_image.env_layer_digest
    packed = xrun("pack", bundle, "-o", "run.tar.gz", cwd=elsewhere)
    assert packed.returncode == 0, packed.stderr
    import shutil

    shutil.rmtree(project)

    rep = xrun("reproduce", "run.tar.gz", "--backend", "docker", cwd=elsewhere)
    assert rep.returncode == 0, rep.stderr
    assert "image environment layer bit-identical" in rep.stderr and "verdict: match" in rep.stderr
    new = elsewhere / rep.stdout.strip().splitlines()[-1]
    assert new.is_dir() and new.resolve().parent == (elsewhere / "runs").resolve()
    reproduced = json.loads((new / "reproduce.json").read_text())
    assert reproduced["env_identical"] is True and reproduced["verdict"] == "match"
    image = json.loads((new / "image.json").read_text())
    # rebuilt from what the bundle recorded: the same Dockerfile and build args, so the same image
    assert image["dockerfile"] == recorded["dockerfile"] and image["build_args"] == recorded["build_args"]
    assert image["image"] == recorded["image"] and image["env_layer_digest"] == recorded["env_layer_digest"]
    for run_id in (bundle.name, new.name):  # other runs may share the daemon: only ours must be gone
        assert run_objects(docker_client, run_id) == [], run_id
