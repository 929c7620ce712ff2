"""Kubernetes work outside a run: the manifests ``xrun manifests`` writes, the
access check before a push, and ``xrun clean`` of runs whose driver is gone."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from runner.cluster._k8s_api import ClusterApi
from runner.cluster._k8s_render import (
    ANNOTATION_DEADLINE,
    ANNOTATION_DRIVER,
    ANNOTATION_RUN_ID,
    DEFAULT_PYTHON,
    IMAGE_PLACEHOLDER,
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_RUN_ID,
    MANAGED_BY,
    k8s_options,
    operator_support_objects,
    placeholders,
    render_dask_cluster,
    render_manifests,
    run_label,
)
from runner.cluster._lifecycle import driver_alive
from runner.errors import InfraError

if TYPE_CHECKING:
    from runner.spec import Spec

log = logging.getLogger(__name__)

DELETE_ORDER = ("DaskCluster", "Job", "Deployment", "Service", "Secret", "ConfigMap")


# ------------------------------------------------------------- manifests CLI


def manifests_for_spec(
    spec: Spec, *, run_id: str | None = None, image_ref: str | None = None, python: str = DEFAULT_PYTHON
) -> list[dict[str, Any]]:
    """What ``xrun manifests`` writes: the objects a run of ``spec`` would apply.

    Without ``image_ref`` the image is a placeholder (the pushed digest is only
    known after ``xrun build --push``). Secret values, the owner uid and data
    bytes are always placeholders, filled only when a run applies them.
    """
    from runner.plan import new_run_id  # deferred: imports pydantic

    run_id = run_id or new_run_id(spec.name)
    image_ref = image_ref or IMAGE_PLACEHOLDER
    if k8s_options(spec).operator:
        support = operator_support_objects(spec, run_id=run_id, image_ref=image_ref, python=python)
        return [*support, render_dask_cluster(spec, run_id=run_id, image_ref=image_ref, python=python)]
    return render_manifests(spec, run_id=run_id, image_ref=image_ref, python=python)


def to_yaml(manifests: Sequence[Mapping[str, Any]]) -> str:
    """Manifests as one multi-document YAML text (stable: keys keep their order)."""
    return yaml.safe_dump_all(
        [dict(m) for m in manifests], sort_keys=False, default_flow_style=False, width=4096
    )


def write_manifests(manifests: Sequence[Mapping[str, Any]], out_dir: str | Path) -> list[Path]:
    """Write each object as ``NN-<kind>-<name>.yaml`` in ``out_dir``, in apply order.

    Refuses (``ValueError``) a Secret holding anything but placeholders: values
    of secrets are never written to disk.
    """
    out = Path(out_dir)
    for m in manifests:
        if m["kind"] == "Secret":
            values = [*(m.get("stringData") or {}).values(), *(m.get("data") or {}).values()]
            if any(not placeholders(v) for v in values):
                raise ValueError(f"refusing to write Secret {m['metadata']['name']}: it holds values")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, m in enumerate(manifests):
        path = out / f"{i:02d}-{m['kind'].lower()}-{m['metadata']['name']}.yaml"
        header = [f"# {m['kind']} of xrun run {m['metadata'].get('annotations', {}).get(ANNOTATION_RUN_ID, '?')}"]
        if placeholders(m):
            header.append(
                "# <xrun:...> values (owner uid, secret values, data files, image) are filled by "
                "`xrun run` when it applies this; see docs/kubernetes.md before applying it by hand."
            )
        path.write_text("\n".join(header) + "\n" + to_yaml([m]), encoding="utf-8")
        paths.append(path)
    return paths


# ----------------------------------------------------------------------- clean


def check_access(spec: Spec, kubeconfig: str | None = None) -> None:
    """Reach the cluster and list pods in the run's namespace, or raise
    :class:`InfraError`: run before building and pushing the image, so a run
    without cluster access stops before it pushes anything."""
    options = k8s_options(spec)
    api = ClusterApi(namespace=options.namespace, context=options.context, kubeconfig=kubeconfig)
    api.list("Pod", labels={"xrun.io/access-check": "1"})


def kubeconfig_available() -> bool:
    """Whether a kubeconfig or in-cluster credentials exist (no network call)."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return True
    paths = os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config"))
    return any(Path(p).is_file() for p in paths.split(os.pathsep) if p)


def clean(
    namespace: str | None = None,
    run_id: str | None = None,
    *,
    context: str | None = None,
    kubeconfig: str | None = None,
    api: ClusterApi | None = None,
) -> list[str]:
    """Delete objects xrun left in ``namespace`` (default: the context's); return ``kind/name``s.

    With ``run_id``, delete that run's objects whatever its state. Without,
    delete runs whose driver process is gone (on this host) or which are older
    than their deadline, and objects whose run anchor is gone. Runs of live
    drivers on other hosts are left alone until their deadline.
    """
    api = api or ClusterApi(namespace=namespace, context=context, kubeconfig=kubeconfig)
    if run_id is not None:
        return _remove_run(api, run_label(run_id))

    managed = {LABEL_MANAGED_BY: MANAGED_BY}
    anchors = api.list("ConfigMap", {**managed, LABEL_COMPONENT: "run"})
    live: set[str] = set()
    stale: set[str] = set()
    now = datetime.now(timezone.utc)
    for anchor in anchors:
        meta = anchor["metadata"]
        label = (meta.get("labels") or {}).get(LABEL_RUN_ID, "")
        notes = meta.get("annotations") or {}
        driver = notes.get(ANNOTATION_DRIVER, "")
        expired = _age(meta.get("creationTimestamp"), now) > float(notes.get(ANNOTATION_DEADLINE) or 0) > 0
        if expired or (driver and not driver_alive(driver)):
            stale.add(label)
        else:
            live.add(label)
    for kind in ("Job", "Deployment", "Service", "Secret", "ConfigMap"):
        for obj in api.list(kind, managed):
            label = (obj["metadata"].get("labels") or {}).get(LABEL_RUN_ID)
            if label and label not in live:
                stale.add(label)  # its anchor is gone: nothing will remove it
    removed: list[str] = []
    for label in sorted(stale):
        removed += _remove_run(api, label)
    return removed


def _age(timestamp: str | None, now: datetime) -> float:
    if not timestamp:
        return 0.0
    try:
        created = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return (now - created).total_seconds()


def _remove_run(api: ClusterApi, label: str) -> list[str]:
    selector = {LABEL_RUN_ID: label, LABEL_MANAGED_BY: MANAGED_BY}
    removed = []
    for kind in DELETE_ORDER:
        try:
            objects = api.list(kind, selector)
        except InfraError:
            if kind == "DaskCluster":  # no operator installed: nothing of that kind
                continue
            raise
        for obj in objects:
            name = obj["metadata"]["name"]
            if api.delete(kind, name):
                removed.append(f"{kind.lower()}/{name}")
    return removed
