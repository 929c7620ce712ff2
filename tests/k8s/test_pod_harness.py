"""The rendered pods, run as real containers of the built image, complete a real sweep.

No Kubernetes cluster can be had here. ``pod_harness`` runs the pod specs of
``render_manifests`` as Docker containers with the same command, args, env,
resources, security context, volumes and Service name (a network alias), and
emulates the Job controller's podFailurePolicy. The sweep is a full ``xrun
run`` (plan, Dask plugin shipping code and secrets, executor, bundle) whose
driver connects from the host through the published scheduler port — the
stand-in for the port-forward. Mid-run one worker is killed (counted against
backoffLimit, replaced) and one is preempted (DisruptionTarget: ignored,
replaced); no trial is lost.

What this does not prove: scheduling, image pulls, kubelet details, real
port-forwarding, RBAC — see tests/k8s/test_e2e.py for a real cluster.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from runner.cluster import ClusterInfo
from runner.cluster._k8s_render import render_manifests, resolve_placeholders

from ..docker.conftest import BASE_ARGS, DATA, PINNED_SKLEARN, REPO, TEST_IMAGE_NAME, locked_env
from .k8s_lint import lint
from .pod_harness import PodHarness

pytestmark = pytest.mark.docker

SECRET = "k8s-harness-" + uuid.uuid4().hex
TRIALS = 16


@pytest.fixture(scope="module")
def docker_client() -> Any:
    from runner.image.docker import docker_client as connect

    try:
        client = connect()
        client.images.get(BASE_ARGS["BASE_IMAGE"])
    except Exception as exc:  # no daemon or no base image
        message = f"{exc}\nRun `bash .ci/docker-setup.sh` to install and start Docker."
        if os.environ.get("CI") == "true":
            pytest.fail(f"Docker tests must run in CI: {message}", pytrace=False)
        pytest.skip(message)
    return client


@pytest.fixture(scope="module")
def worker_image(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The docker tests' worker image (distributed + scikit-learn); a cache hit when built already."""
    from runner.image import build_image

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XRUN_CACHE_DIR", str(tmp_path_factory.mktemp("image-cache")))
        return build_image(
            name=TEST_IMAGE_NAME,
            locked=locked_env(DATA / "worker-env.lock"),
            dockerfile_base=REPO / "Dockerfile.base",
            build_args=BASE_ARGS,
        )


PROBE = '''
import os, time

PINNED = "@PINNED@"


def train(params, ctx):
    time.sleep(0.5)
    import sklearn
    token = os.environ.get("XRUN_TEST_TOKEN", "")
    with open("/proc/1/environ", "rb") as f:  # the pod's env, not the plugin's
        pod_env = f.read().split(b"\\0")
    with open(ctx.data["table"]) as f:
        data_ok = f.read() == "x,y\\n1,2\\n"
    return {
        "x": float(params["x"]),
        "uid": float(os.getuid()),
        "root_read_only": float(bool(os.statvfs("/").f_flag & os.ST_RDONLY)),
        "secret_from_pod_env": float(bool(token) and b"XRUN_TEST_TOKEN=" + token.encode() in pod_env),
        "data_ok": float(data_ok),
        "sklearn_pinned": float(sklearn.__version__ == PINNED),
    }
'''.replace("@PINNED@", PINNED_SKLEARN)


def project(root: Path, workers: int = 2, trials: int = TRIALS) -> Path:
    (root / "experiments").mkdir(parents=True)
    (root / "experiments" / "__init__.py").write_text("")
    (root / "experiments" / "probe.py").write_text(PROBE)
    (root / "data").mkdir()
    (root / "data" / "table.csv").write_text("x,y\n1,2\n")
    spec = root / "spec.yaml"
    spec.write_text(
        f"""
xrun: 1
name: k8s-harness
environment: {{pip: {DATA / "worker-env.in"}}}
image: {{registry: registry.invalid/xrun}}
code: {{root: ., include: ["experiments/**/*.py"]}}
data: {{table: {{path: data/table.csv}}}}
trial: {{function: "experiments.probe:train", retries: 1, timeout: 2m}}
sweep:
  method: grid
  parameters: {{x: {list(range(trials))}}}
  objective: {{metric: x, goal: maximize}}
cluster: {{backend: kubernetes, workers: {workers}, threads_per_worker: 1, memory_limit: 768MiB}}
secrets: [XRUN_TEST_TOKEN]
output: runs
"""
    )
    return spec


class HarnessBackend:
    """The Backend protocol over the pod harness: what KubernetesBackend does, minus the API server."""

    def __init__(self, client: Any, spec: Any, run_id: str, image: Any, secrets: dict[str, str], workdir: Path) -> None:
        self.client, self.spec, self.run_id, self.image = client, spec, run_id, image
        self.secrets, self.workdir = secrets, workdir
        self.harness: PodHarness | None = None
        self.ready = threading.Event()

    @contextmanager
    def open(self) -> Iterator[ClusterInfo]:
        from distributed import Client

        manifests = render_manifests(self.spec, run_id=self.run_id, image_ref=self.image.image, python=self.image.python)
        assert lint(manifests) == []
        filled = resolve_placeholders(manifests, owner_uid=f"harness-{uuid.uuid4()}", secrets=self.secrets)
        self.harness = PodHarness(self.client, filled, self.workdir)
        try:
            self.harness.apply()
            address = self.harness.wait_ready()
            with Client(address, timeout=30, set_as_default=False) as client:
                client.wait_for_workers(self.spec.cluster.workers, timeout=60)
            self.ready.set()
            yield ClusterInfo("kubernetes", address, None, self.spec.cluster.workers)
        finally:
            self.harness.settle()
            for pod in self.harness.pods_of("Deployment"):
                self.scheduler_log = pod.container.logs().decode(errors="replace")
            self.harness.teardown()


def run_sweep(client: Any, image: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *,
              trials: int = TRIALS, on_event: Any = None,
              backends: list[HarnessBackend] | None = None) -> tuple[Any, list[HarnessBackend]]:  # fmt: skip
    """``xrun run`` of the probe project, with the harness as its kubernetes backend
    (appended to ``backends`` when it is made)."""
    from runner import run as run_mod
    from runner.spec import load_spec

    monkeypatch.setenv("XRUN_TEST_TOKEN", SECRET)
    loaded = load_spec(project(tmp_path / "proj", trials=trials))
    backends = [] if backends is None else backends

    def make_backend(launch: Any) -> HarnessBackend:
        backends.append(HarnessBackend(client, launch.spec, launch.run_id, image, dict(launch.secrets), tmp_path / "pods"))
        return backends[-1]

    monkeypatch.setattr(run_mod, "worker_image", lambda loaded, env, build_args: None)  # the image is built above
    monkeypatch.setattr(run_mod, "make_backend", make_backend)
    monkeypatch.setattr(run_mod, "load_environment", lambda loaded, relock=False: locked_env(DATA / "worker-env.lock"))
    options = run_mod.RunOptions(output=tmp_path / "runs", on_event=on_event, use_cache=False)
    return run_mod.run(loaded, options), backends


def test_sweep_runs_through_the_rendered_pods_and_survives_a_killed_and_a_preempted_worker(
    docker_client: Any, worker_image: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backends: list[HarnessBackend] = []
    done: list[str] = []
    disruptions: list[str] = []

    def on_event(event: Any) -> None:
        if event.kind != "done":
            return
        done.append(str(event.record.get("id")))
        harness = backends[0].harness
        assert harness is not None
        (job,) = harness.jobs.values()
        originals = [p for p in harness.pods_of("Job") if p.name not in job.replacements]
        if len(done) == 3:  # a crash: SIGKILL
            disruptions.append(originals[0].name)
            originals[0].killed = True  # before the thread runs: the harness waits for it
            threading.Thread(target=harness.kill, args=(originals[0],)).start()
        if len(done) == 8:  # a spot reclaim: DisruptionTarget, then SIGTERM
            disruptions.append(originals[1].name)
            originals[1].disrupted = True
            threading.Thread(target=harness.preempt, args=(originals[1],)).start()

    result, made = run_sweep(docker_client, worker_image, tmp_path, monkeypatch, on_event=on_event, backends=backends)
    assert result.status == "ok", made[0].scheduler_log[-3000:]
    trials = [json.loads(line) for line in (result.bundle / "trials.jsonl").read_text().splitlines()]
    assert len(trials) == TRIALS and {t["status"] for t in trials} == {"ok"}
    assert sorted(t["metrics"]["x"] for t in trials) == [float(i) for i in range(TRIALS)]
    for key, expected in {"uid": 65532.0, "root_read_only": 1.0, "secret_from_pod_env": 1.0,
                          "data_ok": 1.0, "sklearn_pinned": 1.0}.items():  # fmt: skip
        assert {t["metrics"][key] for t in trials} == {expected}, key
    assert len(disruptions) == 2
    harness = made[0].harness
    assert harness is not None
    (job,) = harness.jobs.values()
    # The crash counted against backoffLimit; the preemption was ignored; both were replaced.
    assert (job.failures, job.ignored, job.failed) == (1, 1, None)
    assert len(job.replacements) == 2
    # The secret never reached the bundle.
    assert SECRET not in "".join(p.read_text(errors="ignore") for p in result.bundle.rglob("*") if p.is_file())
    # Nothing is left behind.
    assert docker_client.containers.list(all=True, filters={"label": f"xrun.k8s-harness={harness.id}"}) == []


def test_a_scheduler_without_xrun_deserializes_the_tasks(docker_client: Any, worker_image: Any, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The image has no xrun: trial calls must travel by value in the task graph."""
    result, made = run_sweep(docker_client, worker_image, tmp_path, monkeypatch, trials=2)
    assert result.status == "ok", made[0].scheduler_log[-1500:]


def test_pod_spec_details_reach_the_containers(docker_client: Any, worker_image: Any, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Command, args, resources, security and the Service alias as the containers got them."""
    from distributed import Client

    from runner.spec import load_spec

    spec = load_spec(project(tmp_path / "proj", workers=1)).spec
    manifests = render_manifests(spec, run_id="k8s-harness-20261123T150102Z-abc123",
                                 image_ref=worker_image.image, python=worker_image.python)  # fmt: skip
    filled = resolve_placeholders(manifests, owner_uid="u", secrets={"XRUN_TEST_TOKEN": SECRET})
    harness = PodHarness(docker_client, filled, tmp_path / "pods")
    try:
        harness.apply()
        address = harness.wait_ready()
        with Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(1, timeout=60)
            (name,) = [w["name"] for w in client.scheduler_info()["workers"].values()]
        (worker,) = harness.pods_of("Job")
        assert name == worker.name  # --name $(XRUN_POD_NAME), expanded from the downward API
        attrs = docker_client.api.inspect_container(worker.container.id)
        assert attrs["Path"] == worker_image.python
        args = attrs["Args"]
        service = harness._of("Service")[0]["metadata"]["name"]
        assert args[:3] == ["-m", "distributed.cli.dask_worker", f"tcp://{service}:8786"]  # the Service name
        assert SECRET not in json.dumps(args) and SECRET not in json.dumps(attrs["Config"]["Labels"])
        host = attrs["HostConfig"]
        # The container has 256 MiB above Dask's --memory-limit (768 MiB): room for the nanny.
        assert (host["Memory"], host["NanoCpus"], host["ReadonlyRootfs"]) == ((768 + 256) * 2**20, 10**9, True)
        assert args[args.index("--memory-limit") + 1] == str(768 * 2**20)
        assert attrs["Config"]["User"] == "65532:65532" and host["CapDrop"] == ["ALL"]
        logs = worker.container.logs().decode()
        assert "Registered to" in logs
    finally:
        harness.teardown()


def test_a_worker_that_cannot_start_fails_the_job_at_once(docker_client: Any, worker_image: Any,
                                                         tmp_path: Path) -> None:  # fmt: skip
    """podFailurePolicy FailJob on exit 127: a broken interpreter path is not retried backoffLimit times."""
    from runner.spec import load_spec

    spec = load_spec(project(tmp_path / "proj", workers=2)).spec
    manifests = render_manifests(spec, run_id="k8s-harness-20261123T150102Z-bad000",
                                 image_ref=worker_image.image, python=worker_image.python)  # fmt: skip
    filled = resolve_placeholders(manifests, owner_uid="u", secrets={"XRUN_TEST_TOKEN": SECRET})
    job = next(m for m in filled if m["kind"] == "Job")
    job["spec"]["template"]["spec"]["containers"][0]["command"][0] = "/opt/xrun/env/bin/no-such-python"
    harness = PodHarness(docker_client, filled, tmp_path / "pods")
    try:
        harness.apply()  # the runtime cannot start the missing executable: exit code 127
        deadline = time.monotonic() + 20
        (state,) = harness.jobs.values()
        while state.failed is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert state.failed == "PodFailurePolicy: exit code 127"
        assert state.replacements == [] and state.failures == 0
    finally:
        harness.teardown()
