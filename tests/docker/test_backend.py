"""The docker backend: a real Dask cluster in containers, and nothing left behind."""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path

import pytest

from runner.cluster.docker import NANNY_HEADROOM, DockerBackend, clean
from runner.errors import InfraError, UsageError
from runner.image import ImageInfo, build_image

from .conftest import BASE_ARGS, PINNED_SKLEARN, REPO, run_objects

pytestmark = [
    pytest.mark.docker,
    # The driver's Python (and pandas) differ from the image's; Dask says so, rightly.
    pytest.mark.filterwarnings("ignore:Mismatched versions found"),
]

SECRET = "s3cr3t-" + uuid.uuid4().hex  # a value that must never show up outside the env


def new_run_id() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


def backend(image: ImageInfo, run_id: str, **overrides) -> DockerBackend:
    options = dict(
        run_id=run_id, image=image, workers=2, threads_per_worker=1,
        memory_limit_bytes=768 * 2**20, secrets={}, data_paths=[],
    )  # fmt: skip
    options.update(overrides)
    return DockerBackend(**options)


def test_cluster_runs_the_pinned_environment(
    worker_image: ImageInfo, docker_client, tmp_path: Path
):
    from distributed import Client

    data = tmp_path / "data" / "table.csv"
    data.parent.mkdir()
    data.write_text("x,y\n1,2\n")
    run_id = new_run_id()
    cluster = backend(worker_image, run_id, secrets={"XRUN_TEST_TOKEN": SECRET}, data_paths=[data])
    started = time.monotonic()
    with cluster.open() as info:
        startup = time.monotonic() - started
        assert info.backend == "docker" and info.workers == 2
        assert info.address.startswith("tcp://127.0.0.1:")
        with Client(info.address, set_as_default=False) as client:

            def probe(path: str) -> tuple[str, str | None, str]:
                import os

                import sklearn

                with open(path) as f:
                    return sklearn.__version__, os.environ.get("XRUN_TEST_TOKEN"), f.read()

            futures = client.map(probe, [str(data)] * 4, pure=False)
            assert client.gather(futures) == [(PINNED_SKLEARN, SECRET, "x,y\n1,2\n")] * 4
            assert set(client.nthreads().values()) == {1}

        containers = {c.name: c for c in cluster.containers()}
        assert sorted(containers) == [
            f"xrun-{run_id}-scheduler", f"xrun-{run_id}-worker-0", f"xrun-{run_id}-worker-1",
        ]  # fmt: skip
        for container in containers.values():
            attrs = container.attrs
            assert attrs["Config"]["Labels"]["xrun.managed"] == "1"
            assert attrs["Config"]["Labels"]["xrun.run-id"] == run_id
            assert SECRET not in json.dumps(attrs["Config"]["Cmd"]) + json.dumps(attrs["Args"])
            assert SECRET not in json.dumps(attrs["Config"]["Labels"])
        worker = containers[f"xrun-{run_id}-worker-0"].attrs
        assert worker["HostConfig"]["Memory"] == 768 * 2**20 + NANNY_HEADROOM
        assert "--memory-limit" in worker["Args"]
        assert worker["Args"][worker["Args"].index("--memory-limit") + 1] == str(768 * 2**20)
        assert worker["HostConfig"]["NanoCpus"] == 10**9
        assert any(m["Destination"] == str(data) and not m["RW"] for m in worker["Mounts"])
        published = containers[f"xrun-{run_id}-scheduler"].attrs["NetworkSettings"]["Ports"][
            "8786/tcp"
        ]
        assert [b["HostIp"] for b in published] == ["127.0.0.1"]
        assert docker_client.networks.get(f"xrun-{run_id}").attrs["Labels"]["xrun.run-id"] == run_id
    assert run_objects(docker_client, run_id) == []
    assert startup < 120, f"cluster start took {startup:.1f}s"  # a hang, not speed (bench/ measures that)


def test_killed_worker_loses_no_results_and_is_started_again(worker_image: ImageInfo, docker_client):
    """Results held by a killed worker are computed again; tasks it was running
    or had queued fail at once with KilledWorker (the scheduler leaves re-running
    trials to xrun); the container is started again and its worker rejoins."""
    from distributed import Client
    from distributed.scheduler import KilledWorker

    run_id = new_run_id()
    cluster = backend(worker_image, run_id)
    with cluster.open() as info, Client(info.address, set_as_default=False) as client:

        def square(i: int) -> int:
            import time

            time.sleep(0.25)
            return i * i

        futures = client.map(square, range(30), pure=False)
        deadline = time.monotonic() + 60
        while sum(f.done() for f in futures) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        victim = cluster.containers(role="worker")[0]
        victim.kill()  # mid-run: some results are held by it, some tasks are running on it
        assert sum(f.done() for f in futures) < 30
        killed = 0
        for i, f in enumerate(futures):
            try:
                assert f.result(timeout=120) == i * i
            except KilledWorker:
                killed += 1
        # only tasks the victim had: the one it was running and those queued on it
        assert killed <= 4, killed
        deadline = time.monotonic() + 120
        while len(client.nthreads()) < 2:  # the container was started again and rejoined
            assert time.monotonic() < deadline, "the killed worker did not come back"
            time.sleep(0.2)
        victim.reload()
        assert victim.status == "running"
    assert run_objects(docker_client, run_id) == []


def test_nothing_left_after_an_exception(worker_image: ImageInfo, docker_client):
    run_id = new_run_id()
    with pytest.raises(RuntimeError, match="trial blew up"):
        with backend(worker_image, run_id, workers=1).open():
            assert len(run_objects(docker_client, run_id)) == 3  # scheduler, worker, network
            raise RuntimeError("trial blew up")
    assert run_objects(docker_client, run_id) == []


def test_nothing_left_after_ctrl_c_in_the_driver(driver_process, docker_client):
    run_id = new_run_id()
    proc = driver_process(run_id)
    assert len(run_objects(docker_client, run_id)) == 3
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert run_objects(docker_client, run_id) == []


def test_clean_removes_what_a_killed_driver_left_and_spares_live_runs(
    driver_process, worker_image: ImageInfo, docker_client
):
    dead = new_run_id()
    proc = driver_process(dead)
    proc.kill()  # SIGKILL: no teardown runs
    proc.wait(timeout=30)
    leftovers = sorted(run_objects(docker_client, dead))
    assert len(leftovers) == 3

    live = new_run_id()
    with backend(worker_image, live, workers=1).open():
        assert run_objects(docker_client, dead) == []  # opening a run cleans dead ones
        assert len(run_objects(docker_client, live)) == 3
        assert clean() == []  # nothing dead is left, and the live run is spared
        assert len(run_objects(docker_client, live)) == 3
    assert run_objects(docker_client, live) == []


def test_clean_by_run_id_and_leftovers_of_a_dead_driver(driver_process, docker_client):
    run_id = new_run_id()
    proc = driver_process(run_id)
    proc.kill()
    proc.wait(timeout=30)
    expected = sorted(run_objects(docker_client, run_id))
    assert set(expected) <= set(clean())
    assert run_objects(docker_client, run_id) == []
    assert clean(run_id) == []


def test_cluster_that_cannot_start_reports_the_container_log(tiny_env, docker_client):
    # The tiny image has no `distributed`: the scheduler exits at once.
    image = build_image(
        name="xrun-docker-test-offline", locked=tiny_env, dockerfile_base=REPO / "Dockerfile.base",
        build_args=BASE_ARGS,
    )  # fmt: skip
    run_id = new_run_id()
    with pytest.raises(InfraError, match="No module named 'distributed'") as caught:
        with backend(image, run_id, workers=1).open():
            pass
    assert "exited" in str(caught.value)
    assert run_objects(docker_client, run_id) == []


def test_missing_data_path_is_a_usage_error_before_anything_starts(
    worker_image: ImageInfo, docker_client, tmp_path
):
    run_id = new_run_id()
    with pytest.raises(UsageError, match="does not exist"):
        with backend(worker_image, run_id, data_paths=[tmp_path / "missing.csv"]).open():
            pass
    assert run_objects(docker_client, run_id) == []


def test_image_gone_from_the_daemon_is_an_infra_error(worker_image: ImageInfo, docker_client):
    import dataclasses

    gone = dataclasses.replace(worker_image, image_id="sha256:" + "0" * 64)
    run_id = new_run_id()
    with pytest.raises(InfraError, match="not on this Docker daemon any more"):
        with backend(gone, run_id, workers=1).open():
            pass
    assert run_objects(docker_client, run_id) == []
