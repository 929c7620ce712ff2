"""Remote data on the Docker backend: worker containers fetch `data.<name>.url`
from a real S3 server (moto) and a real HTTP server on the host, verify it and
hand the trial a local path; credentials reach them only through `secrets`."""

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

from .conftest import BASE_ARGS, REPO, bridge_gateway

pytestmark = pytest.mark.docker
pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

from ..storage.servers import CREDENTIALS, MotoServer, new_bucket, serve_http  # noqa: E402

ENV_IN = Path(__file__).resolve().parents[1] / "storage" / "data" / "storage-env.in"  # distributed + s3fs

TRIAL = '''
import hashlib, pathlib, time

def train(params, ctx):
    time.sleep(0.5)  # both workers get trials
    table = pathlib.Path(ctx.data["table"]).read_bytes()
    page = pathlib.Path(ctx.data["page"]).read_bytes()
    return {"digest": int(hashlib.sha256(table + page).hexdigest()[:8], 16), "k": params["k"]}
'''


@pytest.fixture(scope="module")
def host_address(docker_client) -> str:
    return bridge_gateway(docker_client)


@pytest.fixture(scope="module")
def moto_for_containers(host_address: str) -> Iterator[MotoServer]:
    server = MotoServer(host_address)
    yield server
    server.stop()


def test_docker_workers_fetch_and_verify_remote_data(docker_client, moto_for_containers: MotoServer, host_address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s3 = new_bucket(moto_for_containers)
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    table = b"a,b\n" + b"3,4\n" * 500 + uuid.uuid4().hex.encode()  # new to the host's data cache
    s3.put("t/table.csv", table)
    served = tmp_path / "served"
    served.mkdir()
    page = b"from the host " + uuid.uuid4().hex.encode()
    (served / "page.txt").write_bytes(page)
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "remote.py").write_text(TRIAL)
    with serve_http(served, host_address) as web:
        spec = tmp_path / "spec.yaml"
        spec.write_text(f"""
xrun: 1
name: docker-remote-data
environment: {{pip: {ENV_IN}}}
image: {{base: {REPO / "Dockerfile.base"}, build_args: {json.dumps(BASE_ARGS)}}}
code: {{include: ["experiments/*.py"]}}
trial: {{function: "experiments.remote:train", timeout: 2m}}
data:
  table: {{url: "s3://{s3.bucket}/t/table.csv"}}
  page: {{url: "{web.url}/page.txt"}}
sweep: {{parameters: {{k: [1, 2, 3, 4, 5, 6, 7, 8]}}}}
secrets: [AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION]
cluster: {{backend: docker, workers: 2, memory_limit: 1GiB}}
""")
        res = subprocess.run([sys.executable, "-m", "runner.cli", "run", spec, "-q"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=1500, env={**os.environ, "COLUMNS": "200", "XRUN_ALLOW_OUTSIDE_PATHS": "1"})  # fmt: skip
        assert res.returncode == 0, res.stderr
        bundle = Path(res.stdout.strip().splitlines()[-1])
        records = [json.loads(line) for line in (bundle / "trials.jsonl").read_text().splitlines()]
        expected = int(hashlib.sha256(table + page).hexdigest()[:8], 16)
        assert sorted(r["metrics"]["k"] for r in records) == [1, 2, 3, 4, 5, 6, 7, 8]
        assert {r["metrics"]["digest"] for r in records} == {expected}
        host = json.loads((bundle / "host.json").read_text())
        assert host["backend"] == "docker"
        assert {r["worker"] for r in records} <= set(host["workers"])
        # the containers of one host share its data cache (a named volume): the driver read each object
        # once to hash it, and the two workers, which both ran trials, fetched it once between them
        assert len({r["worker"] for r in records}) == 2
        assert s3.downloads("t/table.csv") == 2
        assert web.requests.count("/page.txt") == 2
        everything = b"".join(p.read_bytes() for p in bundle.rglob("*") if p.is_file())
        assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"].encode() not in everything


VOLUME_TRIAL = '''
import os, pathlib

def train(params, ctx):
    path = pathlib.Path(ctx.data["shared"])
    return {"bytes": len(path.read_bytes()), "in_volume": float(os.path.exists("/mnt/shared/table.csv")),
            "writable": float(os.access("/mnt/shared", os.W_OK))}
'''


def test_data_on_a_bind_mounted_volume_is_hashed_through_its_source(docker_client, tmp_path: Path) -> None:
    from .conftest import DATA

    shared = tmp_path / "host-share"
    shared.mkdir()
    (shared / "table.csv").write_bytes(b"v\n" * 1234)
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "vol.py").write_text(VOLUME_TRIAL)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""
xrun: 1
name: docker-volume-data
environment: {{pip: {DATA / "worker-env.in"}}}
image: {{base: {REPO / "Dockerfile.base"}, build_args: {json.dumps(BASE_ARGS)}}}
code: {{include: ["experiments/*.py"]}}
trial: {{function: "experiments.vol:train", timeout: 2m}}
data: {{shared: {{path: /mnt/shared/table.csv}}}}
cluster:
  backend: docker
  workers: 1
  docker: {{volumes: [{{source: host-share, target: /mnt/shared}}]}}
""")
    res = subprocess.run([sys.executable, "-m", "runner.cli", "run", spec, "-q"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=1500, env={**os.environ, "COLUMNS": "200", "XRUN_ALLOW_OUTSIDE_PATHS": "1"})  # fmt: skip
    assert res.returncode == 0, res.stderr
    bundle = Path(res.stdout.strip().splitlines()[-1])
    (record,) = [json.loads(line) for line in (bundle / "trials.jsonl").read_text().splitlines()]
    assert record["metrics"] == {"bytes": 2468, "in_volume": 1.0, "writable": 0.0}  # read-only by default
    data = json.loads((bundle / "data.json").read_text())
    assert data["shared"] == {"path": "/mnt/shared/table.csv", "sha256": hashlib.sha256(b"v\n" * 1234).hexdigest(),
                              "size": 2468, "volume": "/mnt/shared"}  # fmt: skip
    rep = subprocess.run([sys.executable, "-m", "runner.cli", "reproduce", bundle, "--trials", "all"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=1500, env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert rep.returncode == 0, rep.stderr
    assert "verdict: match" in rep.stderr
