"""Fixtures for tests that need a Docker daemon (`@pytest.mark.docker`).

Without a daemon these tests skip locally and FAIL in CI (CI=true), where
`.ci/docker-setup.sh` must have started Docker and built the local base image.
The worker image is built once per session and reused (a cache hit when the
daemon already has it from an earlier session).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.env import LockedEnv
from runner.errors import InfraError
from runner.image import ImageInfo, build_image

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
LOCAL_BASE = "xrun-base:bookworm"  # made by .ci/docker-setup.sh (debootstrap + docker import)
BASE_ARGS = {"BASE_IMAGE": LOCAL_BASE}
PINNED_SKLEARN = "1.5.2"  # in data/worker-env.lock; the driver has another version
TEST_IMAGE_NAME = "xrun-docker-test"


def locked_env(lock: Path) -> LockedEnv:
    """A LockedEnv for a uv-compiled lock, as runner.env would make it."""
    packages = {}
    for line in lock.read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, version = line.split(" ")[0].split("==")
            packages[name] = version
    return LockedEnv(
        kind="pip",
        lock_hash=hashlib.sha256(lock.read_bytes()).hexdigest(),
        packages=packages,
        env_file=lock.with_suffix(".in"),
        lock_file=lock,
    )


def _unavailable(reason: str) -> None:
    message = f"{reason}\nRun `bash .ci/docker-setup.sh` to install and start Docker."
    if os.environ.get("CI") == "true":
        pytest.fail(f"Docker tests must run in CI: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def docker_client():
    """A client for a live daemon that has the local base image."""
    from runner._image_docker import docker_client as connect

    try:
        client = connect()
    except InfraError as exc:
        _unavailable(str(exc))
    try:
        client.images.get(LOCAL_BASE)
    except Exception:
        _unavailable(f"the local base image {LOCAL_BASE} is missing")
    return client


@pytest.fixture(scope="session")
def xrun_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xrun-cache")


@pytest.fixture(autouse=True)
def _shared_image_cache(xrun_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XRUN_CACHE_DIR", str(xrun_cache))


@pytest.fixture(scope="session")
def worker_env() -> LockedEnv:
    return locked_env(DATA / "worker-env.lock")


@pytest.fixture(scope="session")
def tiny_env() -> LockedEnv:
    return locked_env(DATA / "tiny.lock")


@pytest.fixture(scope="session")
def worker_image(docker_client, worker_env: LockedEnv, xrun_cache: Path) -> ImageInfo:
    """The test worker image (distributed + scikit-learn 1.5.2), built once per session."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XRUN_CACHE_DIR", str(xrun_cache))
        return build_image(
            name=TEST_IMAGE_NAME,
            locked=worker_env,
            dockerfile_base=REPO / "Dockerfile.base",
            build_args=BASE_ARGS,
        )


def run_objects(client, run_id: str) -> list[str]:
    """Names of every container and network labelled with ``run_id``."""
    label = {"label": f"xrun.run-id={run_id}"}
    containers = [c.name for c in client.containers.list(all=True, filters=label)]
    return containers + [n.name for n in client.networks.list(filters=label)]


DRIVER_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from runner.cluster.docker import DockerBackend
    from runner.image import ImageInfo

    image = ImageInfo.from_json(json.loads(sys.argv[2]))
    backend = DockerBackend(run_id=sys.argv[1], image=image, workers=1, threads_per_worker=1,
                            memory_limit_bytes=512 * 2**20, secrets={}, data_paths=[])
    with backend.open() as info:
        print("READY", info.address, flush=True)
        time.sleep(120)
    """
)


@pytest.fixture
def driver_process(worker_image: ImageInfo) -> Iterator:
    """Start a driver subprocess that holds a one-worker cluster open until signalled."""
    import json

    procs: list[subprocess.Popen[str]] = []
    started: list[str] = []

    def start(run_id: str) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        proc = subprocess.Popen(
            [sys.executable, "-c", DRIVER_SCRIPT, run_id, json.dumps(worker_image.to_json())],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        procs.append(proc)
        started.append(run_id)
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("READY"):
            proc.kill()
            _, err = proc.communicate(timeout=30)
            raise AssertionError(f"driver did not start: {line!r}\n{err}")
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
    from runner.cluster.docker import clean

    for run_id in started:  # whatever the test left, so the next session starts clean
        clean(run_id)
