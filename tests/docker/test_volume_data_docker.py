"""Data on a named Docker volume, which the driver cannot see: a worker hashes
it before the sweep, the digest is pinned in data.json and keys the trials, so
an unchanged volume is a fully cached run and a changed file runs the trials again."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import BASE_ARGS, DATA, LOCAL_BASE, REPO

pytestmark = pytest.mark.docker

TRIAL = '''
import hashlib, pathlib

def train(params, ctx):
    root = pathlib.Path(ctx.data["shards"])
    names = sorted(p.name for p in root.iterdir())
    return {"files": len(names), "bytes": sum((root / n).stat().st_size for n in names), "k": params["k"]}
'''


@pytest.fixture
def named_volume(docker_client) -> Iterator[str]:
    name = f"xrun-test-data-{uuid.uuid4().hex[:8]}"
    docker_client.volumes.create(name)
    try:
        yield name
    finally:
        docker_client.volumes.get(name).remove(force=True)


def _write(docker_client, volume: str, files: dict[str, bytes]) -> None:
    """Write files into the volume from a container: this machine never sees them."""
    script = "; ".join(f"printf '%s' '{body.decode()}' > /v/shards/{name}" for name, body in files.items())
    docker_client.containers.run(LOCAL_BASE, ["sh", "-c", f"mkdir -p /v/shards && {script}"],
                                 volumes={volume: {"bind": "/v", "mode": "rw"}}, remove=True)  # fmt: skip


def _manifest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name}\0{hashlib.sha256(files[name]).hexdigest()}\n".encode())
    return h.hexdigest()


def _run(spec: Path, cwd: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    res = subprocess.run([sys.executable, "-m", "runner.cli", "run", str(spec), "-q"], cwd=cwd, capture_output=True,
                         text=True, timeout=1500, env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert res.returncode == 0, res.stderr
    return res, Path(res.stdout.strip().splitlines()[-1])


def test_data_on_a_named_volume_is_hashed_on_a_worker_and_keys_the_trials(docker_client, named_volume: str,
                                                                         tmp_path: Path) -> None:  # fmt: skip
    files = {"a.txt": b"alpha\n", "b.txt": b"bravo bravo\n"}
    _write(docker_client, named_volume, files)
    project = tmp_path / "proj"
    (project / "exp").mkdir(parents=True)
    (project / "exp" / "shards.py").write_text(TRIAL)
    spec = project / "vol.yaml"
    spec.write_text(f"""
cluster:
  docker: {{volumes: [{{target: /mnt/vol, volume: {named_volume}}}]}}
  workers: 1
  backend: docker
sweep: {{parameters: {{k: [1, 2]}}}}
data: {{shards: {{path: /mnt/vol/shards}}}}
trial: {{timeout: 2m, function: "exp.shards:train"}}
code: {{include: ["exp/*.py"]}}
image: {{base: {REPO / "Dockerfile.base"}, build_args: {json.dumps(BASE_ARGS)}}}
environment: {{pip: {DATA / "worker-env.in"}}}
name: named-volume-data
xrun: 1
""")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    assert not Path("/mnt/vol").exists()  # the driver cannot see the data

    first, bundle = _run(spec.relative_to(tmp_path), tmp_path)
    data = json.loads((bundle / "data.json").read_text())
    assert data["shards"] == {"path": "/mnt/vol/shards", "sha256": _manifest(files), "size": 18,
                              "volume": "/mnt/vol", "hashed_on": "worker"}  # fmt: skip
    records = [json.loads(line) for line in (bundle / "trials.jsonl").read_text().splitlines()]
    assert sorted(r["metrics"]["k"] for r in records) == [1, 2]
    assert all(r["metrics"]["files"] == 2 and r["metrics"]["bytes"] == 18 for r in records)
    assert all(not r.get("cached") for r in records)
    keys = {r["key"] for r in records}

    _, again = _run(spec, elsewhere)  # another working directory, the same spec
    status = json.loads((again / "bundle.json").read_text())
    assert status["counts"]["cached"] == 2 and status["status"] == "ok", status["counts"]
    assert {json.loads(line)["key"] for line in (again / "trials.jsonl").read_text().splitlines()} == keys

    files["b.txt"] = b"bravo changed\n"
    _write(docker_client, named_volume, files)
    _, changed = _run(spec, elsewhere)
    status = json.loads((changed / "bundle.json").read_text())
    assert status["counts"].get("cached", 0) == 0 and status["counts"]["ok"] == 2, status["counts"]
    assert json.loads((changed / "data.json").read_text())["shards"]["sha256"] == _manifest(files)
    new_keys = {json.loads(line)["key"] for line in (changed / "trials.jsonl").read_text().splitlines()}
    assert new_keys.isdisjoint(keys)


def test_a_path_missing_on_the_named_volume_is_a_spec_error(docker_client, named_volume: str, tmp_path: Path) -> None:
    _write(docker_client, named_volume, {"a.txt": b"x"})
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "shards.py").write_text(TRIAL)
    spec = tmp_path / "typo.yaml"
    spec.write_text(f"""
xrun: 1
name: named-volume-typo
environment: {{pip: {DATA / "worker-env.in"}}}
image: {{base: {REPO / "Dockerfile.base"}, build_args: {json.dumps(BASE_ARGS)}}}
code: {{include: ["exp/*.py"]}}
trial: {{function: "exp.shards:train", timeout: 2m}}
data:
  shards: {{path: /mnt/vol/shardz}}
cluster: {{backend: docker, workers: 1, docker: {{volumes: [{{volume: {named_volume}, target: /mnt/vol}}]}}}}
""")
    res = subprocess.run([sys.executable, "-m", "runner.cli", "run", str(spec), "-q"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=1500, env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert "data.shards.path: /mnt/vol/shardz: no such file or directory on the worker" in res.stderr
    assert "typo.yaml:9" in res.stderr
