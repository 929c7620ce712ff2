"""Fault injection on the Docker backend: a worker container is killed at a
moment drawn from the whole run (see tests/test_fault_injection.py)."""

from __future__ import annotations

import json
import random

import pytest

from runner.cluster._lifecycle import driver_id
from runner.image.docker import LABEL_DRIVER, LABEL_ROLE
from tests.test_fault_injection import (
    TRIAL,
    check_complete,
    kill_at_random_moment,
    spec_text,
    start,
)

from .conftest import BASE_ARGS, DATA, REPO, TEST_IMAGE_NAME

pytestmark = pytest.mark.docker


@pytest.mark.parametrize("seed", range(2))
def test_docker_worker_container_killed_at_a_random_moment(docker_client, worker_image, project, seed: int) -> None:
    project.file("experiments/faulty.py", TRIAL)
    text = spec_text("{backend: docker, workers: 2, memory_limit: 1GiB}").replace("xrun: 1", f"""xrun: 1
environment: {{pip: {DATA / "worker-env.in"}}}
image: {{base: {REPO / "Dockerfile.base"}, build_args: {json.dumps(BASE_ARGS)}}}""").replace(
        "name: faulty", f"name: {TEST_IMAGE_NAME}")  # the session's image, already built
    spec = project.spec(text)
    rng = random.Random(seed)
    proc = start(spec, project.root)
    mine = f"{LABEL_DRIVER}={driver_id(proc.pid)}"  # this run's containers, not another's

    def containers() -> list:
        return [c for c in docker_client.containers.list(filters={"label": [mine, f"{LABEL_ROLE}=worker"]})
                if c.status == "running"]  # fmt: skip

    def kill(container: object) -> None:
        try:
            container.kill()  # type: ignore[attr-defined]
        except Exception:
            pass

    phase = kill_at_random_moment(proc, project.root / "out", rng, containers, kill, timeout=600)
    check_complete(proc, project.root / "out", f"seed {seed}, {phase}")
    assert docker_client.containers.list(all=True, filters={"label": mine}) == []
