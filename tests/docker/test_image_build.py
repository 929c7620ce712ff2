"""Hermetic, reproducible, cached image builds against a real Docker daemon."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.env import LockedEnv
from runner.errors import InfraError
from runner.image import ImageInfo, build_image

from .conftest import BASE_ARGS, PINNED_SKLEARN, REPO, TEST_IMAGE_NAME

pytestmark = pytest.mark.docker


def test_unchanged_lock_is_a_cache_hit(worker_image: ImageInfo, worker_env: LockedEnv, monkeypatch):
    # A hit must not build at all (its speed is a benchmark figure, bench/RESULTS.md).
    import docker.api.build

    def no_build(*args, **kwargs):
        raise AssertionError("a cache hit must not run docker build")

    monkeypatch.setattr(docker.api.build.BuildApiMixin, "build", no_build)
    again = build_image(
        name=TEST_IMAGE_NAME,
        locked=worker_env,
        dockerfile_base=REPO / "Dockerfile.base",
        build_args=BASE_ARGS,
    )
    assert again.cached is True
    assert (again.image, again.image_id, again.env_layer_digest) == (
        worker_image.image,
        worker_image.image_id,
        worker_image.env_layer_digest,
    )


def test_image_records_what_it_is_built_from(
    worker_image: ImageInfo, worker_env: LockedEnv, docker_client
):
    assert worker_image.image.startswith(f"xrun-env/{TEST_IMAGE_NAME}:{worker_env.lock_hash[:12]}-")
    assert worker_image.base == "xrun-base:bookworm"
    assert worker_image.base_id == docker_client.images.get("xrun-base:bookworm").id
    assert worker_image.build_args == BASE_ARGS
    assert (
        "--network" not in worker_image.dockerfile
    )  # network is a build option, not an instruction
    image = docker_client.images.get(worker_image.image_id)
    assert image.labels["xrun.lock-hash"] == worker_env.lock_hash
    assert image.attrs["RootFS"]["Layers"][-1] == worker_image.env_layer_digest
    out = docker_client.containers.run(
        worker_image.image_id,
        [
            worker_image.python,
            "-c",
            "import sklearn, distributed; print(sklearn.__version__, distributed.__version__)",
        ],
        remove=True,
        network_mode="none",
    )
    assert out.decode().split() == [PINNED_SKLEARN, worker_env.packages["distributed"]]


@pytest.mark.slow
def test_two_no_cache_builds_give_the_same_env_layer(
    worker_image: ImageInfo, worker_env: LockedEnv
):
    # Another name, so the session image keeps its tag for the other tests.
    builds = [
        build_image(
            name=f"{TEST_IMAGE_NAME}-repro",
            locked=worker_env,
            dockerfile_base=REPO / "Dockerfile.base",
            build_args=BASE_ARGS,
            no_cache=True,
        )
        for _ in range(2)
    ]
    assert not builds[0].cached and not builds[1].cached
    assert builds[0].image_id != builds[1].image_id  # the config records the build time
    assert builds[0].env_layer_digest == builds[1].env_layer_digest == worker_image.env_layer_digest


def test_build_runs_with_the_network_disabled(tmp_path: Path, tiny_env: LockedEnv, docker_client):
    # Every RUN step of the build (the base's too) sees only a loopback interface.
    base = tmp_path / "Dockerfile.base"
    base.write_text(
        "ARG BASE_IMAGE\n"
        "FROM ${BASE_IMAGE}\n"
        'RUN python3 -c "import socket, sys; names = sorted(n for _, n in socket.if_nameindex()); '
        "sys.exit(0 if names == ['lo'] else 'build has a network: %s' % names)\"\n"
    )
    info = build_image(
        name="xrun-docker-test-offline",
        locked=tiny_env,
        dockerfile_base=base,
        build_args=BASE_ARGS,
        no_cache=True,
    )
    assert info.cached is False
    out = docker_client.containers.run(
        info.image_id,
        [info.python, "-c", "import toolz; print(toolz.__version__)"],
        remove=True,
        network_mode="none",
    )
    assert out.decode().strip() == tiny_env.packages["toolz"]


def test_missing_base_image_is_an_infra_error_with_the_build_log(
    tiny_env: LockedEnv, docker_client
):
    with pytest.raises(InfraError) as caught:
        build_image(
            name="xrun-docker-test-nobase",
            locked=tiny_env,
            dockerfile_base=REPO / "Dockerfile.base",
            build_args={"BASE_IMAGE": "xrun-test-no-such-base:v0"},
        )
    message = str(caught.value)
    assert caught.value.exit_code == 3
    assert "docker build of xrun-env/xrun-docker-test-nobase:" in message
    assert "Step 2/" in message  # the tail of the build log
    assert "xrun-test-no-such-base:v0 is not on this Docker daemon" in message


def test_failing_build_step_is_an_infra_error_with_the_build_log(
    tmp_path: Path, tiny_env: LockedEnv
):
    base = tmp_path / "Dockerfile.base"
    base.write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo xrun-marker-before-failure && false\n"
    )
    with pytest.raises(InfraError) as caught:
        build_image(
            name="xrun-docker-test-fail",
            locked=tiny_env,
            dockerfile_base=base,
            build_args=BASE_ARGS,
        )
    assert "xrun-marker-before-failure" in str(caught.value)
    assert "returned a non-zero code: 1" in str(caught.value)


def test_conda_environment_is_installed_by_rattler_offline_and_reproducibly(
    tmp_path: Path, docker_client
):
    from runner.env import lock_env
    from tests.env.condachannel import (
        DISTRIBUTED,
        PLACEHOLDER,
        conda_spec,
        index_channel,
        make_package,
        write_env_yml,
    )

    # A tiny channel. Its `python` is a venv of the base image's interpreter, so
    # the environment runs in the container without a real conda Python.
    channel = tmp_path / "channel"
    cfg = b"home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.2\n"
    make_package(
        channel,
        "linux-64",
        "python",
        "3.11.2",
        files={"pyvenv.cfg": cfg},
        links={"bin/python": "/usr/bin/python3"},
    )
    module = {"lib/python3.11/site-packages/liba.py": b"VALUE = 42\n"}
    make_package(channel, "noarch", "liba", "1.0", files=module)
    conf = {"etc/libp.conf": f"prefix={PLACEHOLDER}\n".encode()}
    make_package(channel, "noarch", "libp", "1.0", text_with_prefix=conf)
    make_package(channel, "noarch", "dask-core", DISTRIBUTED, depends=("python",))
    deps = ("python", f"dask-core {DISTRIBUTED}.*")
    make_package(channel, "noarch", "distributed", DISTRIBUTED, depends=deps)
    index_channel(channel)
    locked = lock_env(
        conda_spec(write_env_yml(tmp_path / "proj", channel, "- python\n- liba\n- libp\n"))
    )

    builds = [
        build_image(
            name="xrun-docker-test-conda",
            locked=locked,
            dockerfile_base=REPO / "Dockerfile.base",
            build_args=BASE_ARGS,
            no_cache=True,
        )
        for _ in range(2)
    ]
    assert builds[0].env_layer_digest == builds[1].env_layer_digest
    assert "install.py /xrun/conda/conda-lock.yml /opt/xrun/env linux-64" in builds[1].dockerfile
    script = "import sys, liba; print(sys.prefix, liba.VALUE, open(sys.prefix + '/etc/libp.conf').read())"
    out = docker_client.containers.run(
        builds[1].image_id, [builds[1].python, "-c", script], remove=True, network_mode="none"
    )
    # Installed at its final prefix: conda's placeholder was replaced by /opt/xrun/env.
    assert out.decode().split() == ["/opt/xrun/env", "42", "prefix=/opt/xrun/env"]


def test_tampered_conda_package_is_refused_before_building(tmp_path: Path):
    from runner.env import lock_env
    from runner.errors import VerifyError
    from tests.env.condachannel import conda_spec, index_channel, make_package, write_env_yml

    channel = tmp_path / "channel"
    package = make_package(channel, "noarch", "liba", "1.0", files={"share/a.txt": b"a\n"})
    for name in ("python", "dask-core", "distributed"):
        make_package(channel, "noarch", name, "2026.8.0" if name != "python" else "3.11.2")
    index_channel(channel)
    locked = lock_env(conda_spec(write_env_yml(tmp_path / "proj", channel, "- liba\n")))
    package.write_bytes(package.read_bytes() + b"tampered")
    with pytest.raises(VerifyError, match="liba does not match the lock"):
        build_image(
            name="xrun-docker-test-conda-bad",
            locked=locked,
            dockerfile_base=REPO / "Dockerfile.base",
            build_args=BASE_ARGS,
        )
