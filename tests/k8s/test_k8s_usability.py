"""Kubernetes specs: what validate accepts, run can run; a run without cluster
access pushes nothing; push failures say what went wrong; the docs describe
the spec as it is."""

from __future__ import annotations

from pathlib import Path

from runner.image import push_hint
from runner.spec import KubernetesOptions
from tests.conftest import xrun

REPO = Path(__file__).resolve().parents[2]


def _project(tmp_path: Path, image: str) -> Path:
    (tmp_path / "exp").mkdir(exist_ok=True)
    (tmp_path / "exp" / "f.py").write_text("def f(params, ctx):\n    return {'x': 1.0}\n")
    spec = tmp_path / "k.yaml"
    spec.write_text(
        "cluster:\n  backend: kubernetes\n  workers: 1\n"
        f"{image}trial: {{function: exp.f:f}}\nname: kube\nxrun: 1\n"
        "code: {include: ['exp/*.py']}\n"
    )
    return spec


def test_validate_rejects_a_kubernetes_spec_without_registry(tmp_path: Path) -> None:
    spec = _project(tmp_path, "")
    res = xrun("validate", spec, cwd=tmp_path)
    assert res.code == 2, res.err
    assert "image.registry" in res.err and "kubernetes backend pulls" in res.err
    assert "Traceback" not in res.err
    ok = _project(tmp_path, "image: {registry: registry.example.com/me/xrun}\n")
    assert xrun("validate", ok, cwd=tmp_path).code == 0


def test_run_checks_cluster_access_before_building_or_pushing(tmp_path: Path) -> None:
    """No kubeconfig: the run stops on that (exit 3) before the image step, which
    for this spec would fail differently (a current environment has no image)."""
    spec = _project(tmp_path, "image: {registry: registry.example.com/me/xrun}\n")
    env = {"KUBECONFIG": str(tmp_path / "missing-kubeconfig"), "HOME": str(tmp_path),
           "DOCKER_HOST": "unix:///nonexistent/docker.sock"}  # fmt: skip
    res = xrun(spec, cwd=tmp_path, env=env)
    assert res.code == 3, res.err
    assert "no Kubernetes cluster is configured" in res.err
    assert "cannot be built into an image" not in res.err and "docker" not in res.err.lower()


def test_push_failures_tell_unreachable_from_unauthorized() -> None:
    dns = "Get \"https://regsitry.example.com/v2/\": dial tcp: lookup regsitry.example.com: no such host"
    assert "cannot be reached" in push_hint(dns, "regsitry.example.com/me/xrun")
    assert "docker login" not in push_hint(dns, "regsitry.example.com/me/xrun")
    denied = "denied: requested access to the resource is denied"
    assert "docker login registry.example.com" in push_hint(denied, "registry.example.com/me/xrun")
    assert "unauthorized" not in push_hint("unknown blob", "r.example.com/x")


def test_kubernetes_docs_describe_every_option_as_part_of_the_spec() -> None:
    text = (REPO / "docs" / "kubernetes.md").read_text()
    assert "not yet in the spec" not in text.lower()
    for name in KubernetesOptions.model_fields:
        assert f"{name}:" in text, name
    assert "sizeLimit" in text and "256 MiB" in text
