"""KubernetesBackend and clean() through the real kr8s client against a FAKE endpoint.

There is no Kubernetes API server here (DESIGN §5). ``fake_apiserver`` answers
the REST calls kr8s makes (create, list, delete, Status errors) so these tests
check xrun's side: what it creates and in which order, the owner uid and
secret values filled at apply time, the error messages for a missing
kubeconfig, an unreachable server, RBAC 403 and pods that never start, and
that everything is deleted on success, failure and Ctrl-C. The fake cannot
port-forward, so the success path swaps the connection for a local Dask
scheduler; the real port-forward is exercised only by tests/k8s/test_e2e.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from runner.cluster import kubernetes as k8s
from runner.cluster._k8s_api import ClusterApi
from runner.cluster._k8s_render import LABEL_RUN_ID, run_label
from runner.cluster.kubernetes import KubernetesBackend, clean
from runner.errors import InfraError, UsageError

from .conftest import IMAGE, RUN_ID, make_spec
from .fake_apiserver import FakeApiServer

SECRET = "s3cr3t-value-for-k8s-tests"


def backend(fake: FakeApiServer, spec: Any = None, run_id: str = RUN_ID, cls: type = KubernetesBackend, **kw: Any) -> Any:
    spec = spec or make_spec(secrets=["XRUN_TEST_TOKEN"])
    kw.setdefault("secrets", {"XRUN_TEST_TOKEN": SECRET})
    kw.setdefault("start_timeout", 3)
    kw.setdefault("workers_timeout", 20)
    return cls(spec=spec, run_id=run_id, image_ref=IMAGE, kubeconfig=fake.kubeconfig_path, **kw)


@pytest.fixture(scope="module")
def local_dask() -> Iterator[Any]:
    """A real local scheduler with two workers, standing in for the pods behind a port-forward."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        yield cluster


def connected_to(address: str) -> type[KubernetesBackend]:
    class Backend(KubernetesBackend):
        @contextmanager
        def _connect(self, api: ClusterApi) -> Iterator[str]:
            yield address

    return Backend


# --------------------------------------------------------------- no cluster


def test_no_kubeconfig_is_an_infra_error_that_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    missing = str(tmp_path / "no-such-kubeconfig")
    monkeypatch.setenv("KUBECONFIG", missing)
    assert k8s.kubeconfig_available() is False
    b = KubernetesBackend(spec=make_spec(), run_id=RUN_ID, image_ref=IMAGE, kubeconfig=missing)
    with pytest.raises(InfraError) as err, b.open():
        pass
    assert err.value.exit_code == 3
    assert "no Kubernetes cluster is configured" in str(err.value) and "kubeconfig" in str(err.value)


def test_unreachable_api_server_is_an_infra_error(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n"
    )
    with pytest.raises(InfraError, match="cannot reach the Kubernetes API server") as err:
        clean(kubeconfig=str(config))
    assert err.value.exit_code == 3


def test_unknown_context_names_it(fake_api: FakeApiServer) -> None:
    spec = make_spec({"cluster": {"kubernetes": {"context": "prod-typo"}}})
    with pytest.raises(InfraError, match="prod-typo"), backend(fake_api, spec, secrets={}).open():
        pass


# ------------------------------------------------------------------ success


def test_run_creates_owned_objects_and_deletes_them_after(fake_api: FakeApiServer, local_dask: Any) -> None:
    b = backend(fake_api, cls=connected_to(local_dask.scheduler_address))
    with b.open() as info:
        assert (info.backend, info.address, info.workers) == ("kubernetes", local_dask.scheduler_address, 2)
        names = fake_api.names()
        base = b.names.base
        assert f"ConfigMap/{base}-run" in names and f"Job/{base}-workers" in names
        assert f"Deployment/{base}-scheduler" in names and f"Service/{base}-scheduler" in names
        (anchor,) = [o for o in fake_api.kinds("configmaps") if o["metadata"]["name"] == f"{base}-run"]
        uid = anchor["metadata"]["uid"]
        assert "|" in anchor["metadata"]["annotations"]["xrun.dev/driver"]  # host|pid|start of this driver
        for plural in ("secrets", "services", "deployments", "jobs"):
            for obj in fake_api.kinds(plural):
                assert obj["metadata"]["ownerReferences"][0]["uid"] == uid
        (secret,) = fake_api.kinds("secrets")
        assert secret["stringData"] == {"XRUN_TEST_TOKEN": SECRET}
    # Creation order: the anchor first (its uid is needed), then the rest.
    posts = [p.rsplit("/", 1)[-1] for m, p, _ in fake_api.requests if m == "POST"]
    assert posts == ["configmaps", "secrets", "services", "deployments", "jobs"]
    # The secret value went only into the Secret's body.
    bodies = [str(body) for m, p, body in fake_api.requests if m == "POST" and not p.endswith("secrets")]
    assert not any(SECRET in b for b in bodies)
    assert fake_api.names() == []


def test_objects_are_deleted_when_the_run_fails(fake_api: FakeApiServer, local_dask: Any) -> None:
    with pytest.raises(RuntimeError, match="trial blew up"):
        with backend(fake_api, cls=connected_to(local_dask.scheduler_address)).open():
            raise RuntimeError("trial blew up")
    assert fake_api.names() == []


def test_objects_are_deleted_on_ctrl_c(fake_api: FakeApiServer, local_dask: Any) -> None:
    with pytest.raises(KeyboardInterrupt):
        with backend(fake_api, cls=connected_to(local_dask.scheduler_address)).open():
            raise KeyboardInterrupt
    assert fake_api.names() == []


def test_in_cluster_driver_uses_cluster_dns(fake_api: FakeApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    b = backend(fake_api, make_spec({"cluster": {"kubernetes": {"namespace": "ml"}}}), secrets={})
    with b._connect(b.api()) as address:
        assert address == f"tcp://{b.names.base}-scheduler.ml.svc:8786"


def test_missing_secret_value_is_a_usage_error_before_anything_is_created(fake_api: FakeApiServer) -> None:
    with pytest.raises(UsageError, match="XRUN_TEST_TOKEN"):
        backend(fake_api, secrets={})
    assert fake_api.requests == []


# ------------------------------------------------------------------ failures


def test_rbac_forbidden_names_the_verb_resource_and_the_fix(fake_api: FakeApiServer) -> None:
    fake_api.forbidden.add(("create", "deployments"))
    with pytest.raises(InfraError) as err, backend(fake_api).open():
        pass
    text = str(err.value)
    assert "403 Forbidden" in text and "deployments" in text and "namespace 'default'" in text
    assert "docs/kubernetes.md" in text
    assert fake_api.names() == []  # what was created before the 403 is gone again


def test_missing_namespace_says_so(fake_api: FakeApiServer) -> None:
    spec = make_spec({"cluster": {"kubernetes": {"namespace": "nope"}}})
    with pytest.raises(InfraError, match="namespace 'nope' does not exist"), backend(fake_api, spec, secrets={}).open():
        pass


def _pending_unschedulable(pod: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    message = "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available"
    status = {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]}
    return status, [{"reason": "FailedScheduling", "message": message}]  # fmt: skip


def test_scheduler_that_never_schedules_times_out_naming_the_events(fake_api: FakeApiServer) -> None:
    fake_api.pod_script = _pending_unschedulable
    started = time.monotonic()
    with pytest.raises(InfraError) as err, backend(fake_api, start_timeout=2).open():
        pass
    assert time.monotonic() - started < 15
    text = str(err.value)
    assert f"the scheduler of run {RUN_ID} was not ready within 2s" in text
    assert "PodScheduled=Unschedulable: 0/3 nodes are available: 3 Insufficient cpu" in text
    assert "FailedScheduling (pod/" in text
    assert "hint: no node can take the pod" in text
    assert f"kubectl -n default describe pods -l {LABEL_RUN_ID}={run_label(RUN_ID)}" in text
    assert fake_api.names() == []


def _bad_image(pod: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    message = 'Failed to pull image "registry.example.com/me/xrun/iris-svm@sha256:3333": 403 Forbidden'
    status = {"phase": "Pending", "containerStatuses": [
        {"name": "scheduler", "state": {"waiting": {"reason": "InvalidImageName", "message": message}}}]}
    return status, [{"reason": "Failed", "message": message}]  # fmt: skip


def test_image_that_cannot_be_pulled_fails_fast_with_advice(fake_api: FakeApiServer) -> None:
    fake_api.pod_script = _bad_image
    started = time.monotonic()
    with pytest.raises(InfraError) as err, backend(fake_api, start_timeout=60).open():
        pass
    assert time.monotonic() - started < 10  # did not wait for the timeout
    text = str(err.value)
    assert "cannot start (InvalidImageName)" in text and "Failed to pull image" in text
    assert "xrun build SPEC --push" in text


def test_operator_mode_without_the_crd_says_to_install_the_operator(fake_api: FakeApiServer) -> None:
    spec = make_spec({"cluster": {"kubernetes": {"operator": True}}})
    with pytest.raises(InfraError, match="install the Dask operator"), backend(fake_api, spec, secrets={}).open():
        pass
    assert fake_api.names() == []


# --------------------------------------------------------------------- clean


def _leftover(fake: FakeApiServer, run_id: str, driver: str, age_s: float = 0, deadline: int = 86400) -> list[str]:
    from datetime import datetime, timedelta, timezone

    from runner.cluster._k8s_render import render_manifests

    ms = render_manifests(make_spec(), run_id=run_id, image_ref=IMAGE)
    anchor = ms[0]
    anchor["metadata"]["annotations"].update({"xrun.dev/driver": driver, "xrun.dev/deadline-seconds": str(deadline)})
    created = (datetime.now(timezone.utc) - timedelta(seconds=age_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
    anchor["metadata"]["creationTimestamp"] = created
    uid = fake.put("configmaps", "default", anchor)["metadata"]["uid"]
    for m in ms[1:]:
        m["metadata"]["ownerReferences"][0]["uid"] = uid
        fake.put(m["kind"].lower() + "s", "default", m)
    return [f"{m['kind'].lower()}/{m['metadata']['name']}" for m in ms]


def test_clean_removes_runs_of_dead_or_expired_drivers_and_spares_live_ones(fake_api: FakeApiServer) -> None:
    import socket

    from runner.cluster._lifecycle import driver_id as _driver_id

    dead = _leftover(fake_api, "dead-20261123T150102Z-000001", f"{socket.gethostname()}|999999999|1")
    expired = _leftover(fake_api, "old-20261123T150102Z-000002", "elsewhere|1|1", age_s=7200, deadline=3600)
    alive = _leftover(fake_api, "alive-20261123T150102Z-000003", _driver_id(os.getpid()))
    remote = _leftover(fake_api, "remote-20261123T150102Z-000004", "elsewhere|1|1")
    removed = clean(kubeconfig=fake_api.kubeconfig_path)
    assert sorted(removed) == sorted(dead + expired)
    left = fake_api.names()
    assert len(left) == len(alive) + len(remote)
    assert clean(kubeconfig=fake_api.kubeconfig_path) == []


def test_clean_by_run_id_removes_that_run_whatever_its_driver(fake_api: FakeApiServer) -> None:
    from runner.cluster._lifecycle import driver_id as _driver_id

    run_id = "alive-20261123T150102Z-000005"
    objects = _leftover(fake_api, run_id, _driver_id(os.getpid()))
    assert sorted(clean(run_id=run_id, kubeconfig=fake_api.kubeconfig_path)) == sorted(objects)
    assert fake_api.names() == []


def test_clean_removes_objects_whose_anchor_is_gone(fake_api: FakeApiServer) -> None:
    from runner.cluster._lifecycle import driver_id as _driver_id

    objects = _leftover(fake_api, "orphan-20261123T150102Z-000006", _driver_id(os.getpid()))
    anchor = objects[0].split("/", 1)[1]
    del fake_api.objects[("configmaps", "default", anchor)]  # deleted with --cascade=orphan
    assert sorted(clean(kubeconfig=fake_api.kubeconfig_path)) == sorted(objects[1:])


def test_port_forward_listens_locally_and_stops(fake_api: FakeApiServer) -> None:
    """kr8s PortForward wiring: a local listener for the Service, closed afterwards.
    The fake cannot carry the traffic (no websocket), so no bytes go through."""
    import socket

    from runner.cluster._k8s_render import render_manifests

    service = next(m for m in render_manifests(make_spec(), run_id=RUN_ID, image_ref=IMAGE) if m["kind"] == "Service")
    fake_api.put("services", "default", service)
    api = ClusterApi(namespace="default", kubeconfig=fake_api.kubeconfig_path)
    with api.port_forward(service["metadata"]["name"], 8786, timeout=10) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    assert ("GET", f"/api/v1/namespaces/default/services/{service['metadata']['name']}", None) in fake_api.requests
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"local port {port} still accepts connections after the forward stopped")


def test_a_ready_scheduler_that_cannot_be_reached_points_at_the_port_forward(
    fake_api: FakeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(k8s, "CONNECT_TIMEOUT", 1.0)
    with pytest.raises(InfraError, match=r"pods/portforward"):
        with backend(fake_api, cls=connected_to("tcp://127.0.0.1:9")).open():
            pass
    assert fake_api.names() == []


def test_operator_mode_refuses_a_context_it_cannot_honour(fake_api: FakeApiServer) -> None:
    spec = make_spec({"cluster": {"kubernetes": {"operator": True, "context": "other"}}})
    with pytest.raises(UsageError, match="current context"):
        backend(fake_api, spec, secrets={})
    assert fake_api.requests == []
