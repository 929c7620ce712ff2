"""Remote data through the rendered Kubernetes pods: the worker pods (run as
containers by the pod harness, read-only root filesystem, secrets from the
rendered Secret) fetch `data.<name>.url` from a real S3 server and an HTTP
server, verify it against the sha256 the driver pinned, and a full `xrun run`
records it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..docker.conftest import BASE_ARGS, REPO, bridge_gateway, locked_env
from .test_pod_harness import HarnessBackend, docker_client  # noqa: F401  (a fixture)

pytestmark = pytest.mark.docker
pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

from ..storage.servers import MotoServer, new_bucket, serve_http  # noqa: E402

STORAGE_ENV = Path(__file__).resolve().parents[1] / "storage" / "data" / "storage-env.lock"

TRIAL = '''
import hashlib, pathlib

def train(params, ctx):
    table = pathlib.Path(ctx.data["table"]).read_bytes()
    shards = sorted(p.name for p in pathlib.Path(ctx.data["shards"]).iterdir())
    page = pathlib.Path(ctx.data["page"]).read_bytes()
    return {"x": params["x"], "digest": int(hashlib.sha256(table + page).hexdigest()[:8], 16), "shards": len(shards)}
'''


@pytest.fixture(scope="module")
def storage_image(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:  # noqa: F811
    from runner.image import build_image

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XRUN_CACHE_DIR", str(tmp_path_factory.mktemp("image-cache")))
        return build_image(name="xrun-storage-test", locked=locked_env(STORAGE_ENV),
                           dockerfile_base=REPO / "Dockerfile.base", build_args=BASE_ARGS)  # fmt: skip


@pytest.fixture(scope="module")
def host_address(docker_client: Any) -> str:  # noqa: F811
    return bridge_gateway(docker_client)


@pytest.fixture(scope="module")
def moto_for_pods(host_address: str) -> Iterator[MotoServer]:
    server = MotoServer(host_address)
    yield server
    server.stop()


def test_worker_pods_fetch_and_verify_remote_data(docker_client: Any, storage_image: Any, moto_for_pods: MotoServer,  # noqa: F811
                                                  host_address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from runner import run as run_mod
    from runner.spec import load_spec

    s3 = new_bucket(moto_for_pods)
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    table = b"p,q\n" + b"5,6\n" * 300
    s3.put("in/table.csv", table)
    s3.put("in/shards/a.txt", b"a")
    s3.put("in/shards/b.txt", b"b")
    served = tmp_path / "served"
    served.mkdir()
    (served / "page.txt").write_bytes(b"page")
    proj = tmp_path / "proj"
    (proj / "experiments").mkdir(parents=True)
    (proj / "experiments" / "remote.py").write_text(TRIAL)
    with serve_http(served, host_address) as web:
        spec = proj / "spec.yaml"
        spec.write_text(f"""
xrun: 1
name: k8s-remote-data
image: {{registry: registry.invalid/xrun}}
code: {{root: ., include: ["experiments/*.py"]}}
data:
  table: {{url: "s3://{s3.bucket}/in/table.csv"}}
  shards: {{url: "s3://{s3.bucket}/in/shards/"}}
  page: {{url: "{web.url}/page.txt", sha256: "{hashlib.sha256(b'page').hexdigest()}"}}
trial: {{function: "experiments.remote:train", timeout: 2m}}
sweep: {{parameters: {{x: [1, 2, 3, 4]}}}}
cluster: {{backend: kubernetes, workers: 2, memory_limit: 768MiB}}
secrets: [AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION]
""")
        loaded = load_spec(spec)
        backends: list[HarnessBackend] = []

        def make_backend(launch: Any) -> HarnessBackend:
            backends.append(HarnessBackend(docker_client, launch.spec, launch.run_id, storage_image,
                                           dict(launch.secrets), tmp_path / "pods"))  # fmt: skip
            return backends[-1]

        monkeypatch.setattr(run_mod, "worker_image", lambda loaded, env, build_args: None)  # built above
        monkeypatch.setattr(run_mod, "make_backend", make_backend)
        monkeypatch.setattr(run_mod, "load_environment", lambda loaded, relock=False: locked_env(STORAGE_ENV))
        result = run_mod.run(loaded, run_mod.RunOptions(output=tmp_path / "runs", use_cache=False))
    assert result.status == "ok", result
    records = [json.loads(line) for line in (result.bundle / "trials.jsonl").read_text().splitlines()]
    assert sorted(r["metrics"]["x"] for r in records) == [1, 2, 3, 4]
    assert {r["metrics"]["digest"] for r in records} == {int(hashlib.sha256(table + b"page").hexdigest()[:8], 16)}
    assert {r["metrics"]["shards"] for r in records} == {2}
    data = json.loads((result.bundle / "data.json").read_text())
    assert data["table"]["sha256"] == hashlib.sha256(table).hexdigest()
    assert s3.downloads("in/table.csv") <= 3  # the driver's hash, then at most one per worker pod
