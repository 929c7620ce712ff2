"""The Kubernetes objects of one run, as pure functions of the spec.

Nothing here talks to a cluster. :func:`render_manifests` returns plain dicts
(what ``xrun manifests`` writes and what the backend applies);
:func:`render_dask_cluster` returns the ``DaskCluster`` custom resource of
operator mode. Three things are only known at apply time and are rendered as
placeholders (``<xrun:...>``), filled by :func:`resolve_placeholders`:

* the uid in every ``ownerReferences`` entry (the uid of the run's anchor
  ConfigMap, which the API server assigns when it is created);
* secret values in the run's Secret (``xrun manifests`` output never holds them);
* the bytes of data files shipped in the run's data ConfigMap.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner._version import __version__
from runner.cluster import DASHBOARD_PORT, SCHEDULER_PORT
from runner.cluster._k8s_model import (
    _PLACEHOLDER_RE,
    ANNOTATION_DEADLINE,
    ANNOTATION_DRIVER,
    ANNOTATION_RUN_ID,
    DATA_CONFIGMAP_LIMIT,
    DATA_MAX_FILES,
    DEFAULT_PYTHON,
    FATAL_EXIT_CODES,
    IMAGE_PLACEHOLDER,
    JOB_TTL_AFTER_FINISHED,
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_RUN_ID,
    MANAGED_BY,
    Names,
    _deadline,
    _Run,
    data_files,
    file_placeholder,
    k8s_options,
    operator_cluster_name,
    placeholders,
    run_label,
    secret_placeholder,
)
from runner.cluster._k8s_pods import (
    scheduler_pod_spec,
    worker_pod_spec,
)

if TYPE_CHECKING:  # the spec model, for annotations only
    from runner.spec.models import Spec


def _run(spec: Spec, run_id: str, image_ref: str, python: str) -> _Run:
    if not run_id:
        raise ValueError("run_id must not be empty")
    return _Run(spec, run_id, image_ref, python, Names.for_run(run_id), data_files(spec))


def render_manifests(spec: Spec, *, run_id: str, image_ref: str, python: str = DEFAULT_PYTHON) -> list[dict[str, Any]]:
    """The Kubernetes objects of a run, in the order they are applied.

    The anchor ConfigMap comes first: every other object names it as owner,
    so deleting it (``kubectl delete configmap <base>-run``) removes the run.
    Then the Secret (when the spec has secrets), the data ConfigMap (when it
    has data files), the scheduler Service and Deployment, and the worker Job.
    """
    r = _run(spec, run_id, image_ref, python)
    objects = [_anchor(r)]
    if spec.secrets:
        objects.append(_secret(r))
    if r.files:
        objects.append(_data_configmap(r))
    objects += [_service(r), _scheduler_deployment(r), _worker_job(r)]
    return objects


def _anchor(r: _Run) -> dict[str, Any]:
    meta = r.metadata(r.names.anchor, "run", owned=False)
    meta["annotations"][ANNOTATION_DEADLINE] = str(_deadline(r.options))
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "data": {
            "run-id": r.run_id,
            "spec": r.spec.name,
            "xrun-version": __version__,
            "image": r.image_ref,
            "workers": str(r.spec.cluster.workers),
        },
    }


def _secret(r: _Run) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": r.metadata(r.names.secret, "secrets"),
        "type": "Opaque",
        "stringData": {name: secret_placeholder(name) for name in r.spec.secrets},
    }


def _data_configmap(r: _Run) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": r.metadata(r.names.data, "data"),
        "immutable": True,
        "binaryData": {key: file_placeholder(path) for key, path in r.files.items()},
    }


def _service(r: _Run) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": r.metadata(r.names.scheduler, "scheduler"),
        "spec": {
            "type": "ClusterIP",
            "selector": r.selector("scheduler"),
            "ports": [
                {"name": "tcp-comm", "port": SCHEDULER_PORT, "targetPort": "tcp-comm", "protocol": "TCP"},
                {"name": "http-dashboard", "port": DASHBOARD_PORT, "targetPort": "http-dashboard", "protocol": "TCP"},
            ],
        },
    }  # fmt: skip


def _template_metadata(r: _Run, component: str, annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"labels": r.labels(component)}
    meta["annotations"] = {ANNOTATION_RUN_ID: r.run_id, **(annotations or {})}
    return meta


def _scheduler_deployment(r: _Run) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": r.metadata(r.names.scheduler, "scheduler"),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # never two schedulers
            "revisionHistoryLimit": 1,
            "selector": {"matchLabels": r.selector("scheduler")},
            "template": {
                # The cluster autoscaler must not move the scheduler: the run would be lost.
                "metadata": _template_metadata(
                    r, "scheduler", {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
                ),
                "spec": scheduler_pod_spec(r),
            },
        },
    }


def _worker_job(r: _Run) -> dict[str, Any]:
    workers = int(r.spec.cluster.workers)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": r.metadata(r.names.workers, "worker"),
        "spec": {
            "parallelism": workers,
            "completions": workers,
            "completionMode": "NonIndexed",
            # Crashed workers are replaced; a Job that keeps failing stops.
            "backoffLimit": max(6, 3 * workers),
            "activeDeadlineSeconds": _deadline(r.options),
            "ttlSecondsAfterFinished": JOB_TTL_AFTER_FINISHED,
            "podFailurePolicy": {
                "rules": [
                    # Spot reclaim, preemption, eviction and node drain mark the
                    # pod DisruptionTarget: replace it without counting a failure.
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                    # The image cannot run the worker at all: stop at once.
                    {"action": "FailJob", "onExitCodes": {"containerName": "worker", "operator": "In", "values": FATAL_EXIT_CODES}},
                ]
            },
            "template": {
                "metadata": _template_metadata(r, "worker"),
                "spec": worker_pod_spec(r, scheduler_address=f"tcp://{r.names.scheduler}:{SCHEDULER_PORT}"),
            },
        },
    }  # fmt: skip


# --------------------------------------------------------------- operator mode


def render_dask_cluster(spec: Spec, *, run_id: str, image_ref: str, python: str = DEFAULT_PYTHON) -> dict[str, Any]:
    """The ``DaskCluster`` (kubernetes.dask.org/v1) of a run, for the Dask operator.

    Same image, commands, resources, placement, secrets and labels as
    :func:`render_manifests`; the operator makes the scheduler Deployment and
    Service and one Deployment per worker (it injects ``DASK_WORKER_NAME`` and
    ``DASK_SCHEDULER_ADDRESS``). The cluster is owned by the run's anchor
    ConfigMap, so the same single delete removes it.
    """
    r = _run(spec, run_id, image_ref, python)
    name = operator_cluster_name(run_id)
    meta = r.metadata(name, "cluster")
    scheduler = scheduler_pod_spec(r)
    scheduler.pop("restartPolicy")
    worker = worker_pod_spec(
        r, scheduler_address="$(DASK_SCHEDULER_ADDRESS)", name_var="DASK_WORKER_NAME", restart_policy=None
    )
    return {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskCluster",
        "metadata": meta,
        "spec": {
            "idleTimeout": 0,
            "worker": {
                "replicas": int(spec.cluster.workers),
                "metadata": {"labels": r.labels("worker")},
                "spec": worker,
            },
            "scheduler": {
                "metadata": {"labels": r.labels("scheduler")},
                "spec": scheduler,
                "service": {
                    "type": "ClusterIP",
                    # The operator labels the scheduler pod with these.
                    "selector": {"dask.org/cluster-name": name, "dask.org/component": "scheduler"},
                    "ports": [
                        {"name": "tcp-comm", "protocol": "TCP", "port": SCHEDULER_PORT, "targetPort": "tcp-comm"},
                        {"name": "http-dashboard", "protocol": "TCP", "port": DASHBOARD_PORT, "targetPort": "http-dashboard"},
                    ],
                },
            },
        },
    }  # fmt: skip


def operator_support_objects(spec: Spec, *, run_id: str, image_ref: str, python: str = DEFAULT_PYTHON) -> list[dict[str, Any]]:
    """What operator mode applies itself before the DaskCluster: anchor, Secret, data."""
    return [
        m for m in render_manifests(spec, run_id=run_id, image_ref=image_ref, python=python)
        if m["kind"] in ("ConfigMap", "Secret")
    ]  # fmt: skip


# ------------------------------------------------------------ apply-time fill


def resolve_placeholders(
    manifests: Sequence[dict[str, Any]],
    *,
    owner_uid: str,
    secrets: Mapping[str, str],
    files: Mapping[str, bytes] | None = None,
) -> list[dict[str, Any]]:
    """A copy of ``manifests`` with every placeholder filled.

    ``owner_uid`` is the uid of the created anchor ConfigMap; ``secrets`` maps
    each spec secret to its value; ``files`` maps a data file path to its bytes
    (read from disk when absent). Raises ``KeyError`` naming a missing value.
    """
    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        if not isinstance(value, str):
            return value
        m = _PLACEHOLDER_RE.fullmatch(value)
        if m is None:
            return value
        kind, arg = m.groups()
        if kind == "image":
            raise ValueError("the manifests were rendered without an image reference")
        if kind == "uid":
            return owner_uid
        if kind == "secret":
            if arg not in secrets:
                raise KeyError(f"secret {arg}")
            return secrets[arg]
        content = files[arg] if files is not None and arg in files else Path(arg).read_bytes()
        return base64.b64encode(content).decode("ascii")

    out = [fill(m) for m in manifests]
    left = placeholders(out)
    if left:  # a placeholder inside a longer string: a rendering bug
        raise ValueError(f"unfilled placeholders: {', '.join(sorted(set(left)))}")
    return out


# Names the backend and tests import from here (defined in _k8s_model / _k8s_pods).
__all__ = [
    "ANNOTATION_DEADLINE",
    "ANNOTATION_DRIVER",
    "ANNOTATION_RUN_ID",
    "DATA_CONFIGMAP_LIMIT",
    "DATA_MAX_FILES",
    "DEFAULT_PYTHON",
    "IMAGE_PLACEHOLDER",
    "LABEL_COMPONENT",
    "LABEL_MANAGED_BY",
    "LABEL_RUN_ID",
    "MANAGED_BY",
    "Names",
    "data_files",
    "k8s_options",
    "operator_cluster_name",
    "operator_support_objects",
    "placeholders",
    "render_dask_cluster",
    "render_manifests",
    "resolve_placeholders",
    "run_label",
]
