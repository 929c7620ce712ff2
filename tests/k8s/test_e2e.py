"""End to end on a REAL Kubernetes cluster. Opt-in; skipped everywhere else.

No API server can be had on the machine these tests were written on, so they
have never run there. Run them against a disposable namespace:

    export XRUN_K8S_E2E=1
    export KUBECONFIG=~/.kube/config             # any context kubectl can use
    export XRUN_K8S_NAMESPACE=xrun-e2e           # the Role of docs/kubernetes.md granted here
    export XRUN_K8S_IMAGE=registry.example.com/me/xrun-env@sha256:...   # `xrun build SPEC --push --json`
    pytest -m k8s_e2e tests/k8s/test_e2e.py -v

The image must hold an environment with ``distributed`` at its interpreter
(``XRUN_K8S_PYTHON``, default ``/opt/xrun/env/bin/python``), e.g. the docker
tests' worker image built from tests/docker/data/worker-env.lock and pushed.
``XRUN_K8S_OPERATOR=1`` also runs operator mode (the Dask operator installed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.cluster._k8s_api import ClusterApi
from runner.cluster._k8s_render import LABEL_MANAGED_BY, LABEL_RUN_ID, Names, run_label
from runner.cluster.kubernetes import KubernetesBackend, clean, kubeconfig_available
from runner.errors import InfraError

from .conftest import make_spec

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = os.environ.get("XRUN_K8S_NAMESPACE", "default")
IMAGE = os.environ.get("XRUN_K8S_IMAGE", "")
PYTHON = os.environ.get("XRUN_K8S_PYTHON", "/opt/xrun/env/bin/python")

pytestmark = [
    pytest.mark.k8s_e2e,
    pytest.mark.skipif(
        os.environ.get("XRUN_K8S_E2E") != "1" or not kubeconfig_available() or not IMAGE,
        reason="real-cluster test: set XRUN_K8S_E2E=1, XRUN_K8S_IMAGE and a kubeconfig (see module docstring)",
    ),
]


def run_id(tag: str) -> str:
    return f"e2e-{tag}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.urandom(3).hex()}"


def spec(**cluster: object):
    return make_spec({"cluster": {"workers": 2, "memory_limit": "1GiB",
                                  "kubernetes": {"namespace": NAMESPACE}, **cluster}},
                     secrets=["XRUN_E2E_TOKEN"])  # fmt: skip


def leftovers(rid: str) -> list[str]:
    api = ClusterApi(namespace=NAMESPACE)
    selector = {LABEL_RUN_ID: run_label(rid), LABEL_MANAGED_BY: "xrun"}
    return [f"{k}/{o['metadata']['name']}" for k in ("Job", "Deployment", "Service", "Secret", "ConfigMap", "Pod")
            for o in api.list(k, selector) if not o["metadata"].get("deletionTimestamp")]  # fmt: skip


def test_a_cluster_starts_computes_and_is_removed() -> None:
    from distributed import Client

    rid = run_id("basic")
    backend = KubernetesBackend(spec=spec(), run_id=rid, image_ref=IMAGE, python=PYTHON,
                                secrets={"XRUN_E2E_TOKEN": "e2e-secret"})  # fmt: skip
    with backend.open() as info:
        assert info.workers == 2 and info.address.startswith("tcp://")
        with Client(info.address, set_as_default=False) as client:

            def probe(_: int) -> tuple[str | None, int]:
                import os

                return os.environ.get("XRUN_E2E_TOKEN"), os.getuid()

            assert set(client.gather(client.map(probe, range(8)))) == {("e2e-secret", 65532)}
    deadline = time.monotonic() + 120
    while leftovers(rid) and time.monotonic() < deadline:
        time.sleep(2)
    assert leftovers(rid) == []


def test_workers_that_cannot_be_scheduled_are_explained() -> None:
    rid = run_id("huge")
    backend = KubernetesBackend(spec=spec(memory_limit="64TiB"), run_id=rid, image_ref=IMAGE, python=PYTHON,
                                secrets={"XRUN_E2E_TOKEN": "x"}, workers_timeout=60)  # fmt: skip
    with pytest.raises(InfraError, match=r"FailedScheduling|Unschedulable"), backend.open():
        pass


def test_clean_removes_what_a_killed_driver_left() -> None:
    rid = run_id("killed")
    script = (
        "import sys, time\n"
        "from tests.k8s.conftest import make_spec\n"
        "from runner.cluster.kubernetes import KubernetesBackend\n"
        f"spec = make_spec({{'cluster': {{'workers': 1, 'kubernetes': {{'namespace': {NAMESPACE!r}}}}}}})\n"
        f"b = KubernetesBackend(spec=spec, run_id={rid!r}, image_ref={IMAGE!r}, python={PYTHON!r})\n"
        "with b.open():\n    print('READY', flush=True)\n    time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("READY")
    finally:
        proc.kill()
        proc.wait()
    assert leftovers(rid)
    removed = clean(namespace=NAMESPACE)
    assert f"configmap/{Names.for_run(rid).anchor}" in removed
    deadline = time.monotonic() + 120
    while leftovers(rid) and time.monotonic() < deadline:
        time.sleep(2)
    assert leftovers(rid) == []


@pytest.mark.skipif(os.environ.get("XRUN_K8S_OPERATOR") != "1", reason="needs the Dask operator: XRUN_K8S_OPERATOR=1")
def test_operator_mode() -> None:
    from distributed import Client

    rid = run_id("operator")
    backend = KubernetesBackend(spec=spec(kubernetes={"namespace": NAMESPACE, "operator": True}), run_id=rid,
                                image_ref=IMAGE, python=PYTHON, secrets={"XRUN_E2E_TOKEN": "op"})  # fmt: skip
    with backend.open() as info, Client(info.address, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=300)
        assert client.submit(lambda: 1 + 1).result() == 2
