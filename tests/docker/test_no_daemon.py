"""Without a reachable Docker daemon every entry point fails with InfraError (exit 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.cluster.docker import DockerBackend, clean, docker_client
from runner.errors import InfraError
from runner.image import ImageInfo, build_image

from .conftest import DATA, REPO, locked_env

MESSAGE = "cannot reach a Docker daemon at unix:///nonexistent/xrun/docker.sock"


@pytest.fixture(autouse=True)
def _no_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/xrun/docker.sock")


def test_client_says_to_start_docker():
    with pytest.raises(InfraError, match=MESSAGE) as caught:
        docker_client()
    assert caught.value.exit_code == 3
    assert "Start Docker" in str(caught.value)


def test_build_and_clean_fail_the_same_way():
    with pytest.raises(InfraError, match=MESSAGE):
        build_image(
            name="x",
            locked=locked_env(DATA / "tiny.lock"),
            dockerfile_base=REPO / "Dockerfile.base",
            build_args={},
        )
    with pytest.raises(InfraError, match=MESSAGE):
        clean()


def test_backend_open_fails_before_starting_anything():
    image = ImageInfo(
        image="xrun-env/x:1", image_id="sha256:0", env_layer_digest="sha256:0", cached=True,
        base="b", dockerfile="", build_args={}, python="/opt/xrun/env/bin/python",
    )  # fmt: skip
    backend = DockerBackend(
        run_id="r", image=image, workers=1, threads_per_worker=1, memory_limit_bytes=None,
        secrets={}, data_paths=[Path("/")],
    )  # fmt: skip
    with pytest.raises(InfraError, match=MESSAGE), backend.open():
        pass
