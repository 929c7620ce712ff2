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

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from runner._version import __version__
from runner.cluster import DASHBOARD_PORT, SCHEDULER_PORT
from runner.image.render import ENV_PYTHON
from runner.spec.models import KubernetesOptions

# ------------------------------------------------------------------ constants

LABEL_RUN_ID = "xrun.dev/run-id"  # on every object and pod; a label-safe form of the run id
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"  # run | scheduler | worker | secrets | data
MANAGED_BY = "xrun"
ANNOTATION_RUN_ID = "xrun.dev/run-id"  # the run id exactly (label values are capped at 63)
ANNOTATION_SPEC = "xrun.dev/spec"
ANNOTATION_DEADLINE = "xrun.dev/deadline-seconds"  # `xrun clean` removes runs older than this
ANNOTATION_DRIVER = "xrun.dev/driver"  # added at apply time: host|pid|start ticks of the driver

DEFAULT_PYTHON = ENV_PYTHON
DEFAULT_DEADLINE = 24 * 3600.0  # seconds a run's workers may live (Job activeDeadlineSeconds)
WORKER_DEATH_TIMEOUT = 120  # seconds a worker waits for a scheduler before it exits
JOB_TTL_AFTER_FINISHED = 600
TERMINATION_GRACE = 15
RUN_AS = 65532  # any non-root uid works: the image's environment is world-readable
WORK_DIR = "/tmp"  # an emptyDir: the root filesystem is read-only
# The container's memory limit is the worker's memory_limit plus this: Dask
# spills, pauses and restarts the worker by memory_limit, and the nanny and
# interpreter need room above it, so the kernel's OOM killer is only a backstop
# (the same headroom as the docker backend's containers).
NANNY_HEADROOM = 256 * 2**20
# /tmp is an emptyDir (Dask's spill directory, trials' artifact directories):
# bounded, so a runaway trial gets its pod evicted instead of filling the node's disk.
SCHEDULER_TMP_LIMIT = "1Gi"
WORKER_TMP_LIMIT_DEFAULT = "10Gi"  # workers without memory_limit
DATA_CONFIGMAP_LIMIT = 700 * 1024  # bytes; a ConfigMap must stay under 1 MiB in etcd
DATA_MAX_FILES = 200

SCHEDULER_RESOURCES = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}}

# Labels cloud providers put on spot / preemptible nodes, and the taints some of
# them add. Tolerating a taint that a cluster does not use is harmless, and a
# *preferred* affinity never blocks scheduling on clusters without these labels.
SPOT_NODE_LABELS: tuple[tuple[str, str], ...] = (
    ("cloud.google.com/gke-spot", "true"),  # GKE spot VMs
    ("cloud.google.com/gke-preemptible", "true"),  # GKE preemptible VMs
    ("eks.amazonaws.com/capacityType", "SPOT"),  # EKS managed node groups
    ("karpenter.sh/capacity-type", "spot"),  # Karpenter (EKS and others)
    ("kubernetes.azure.com/scalesetpriority", "spot"),  # AKS spot node pools
)
SPOT_TOLERATIONS: tuple[dict[str, str], ...] = (
    {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"},
    {"key": "cloud.google.com/gke-preemptible", "operator": "Equal", "value": "true", "effect": "NoSchedule"},
    {"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal", "value": "spot", "effect": "NoSchedule"},
)  # fmt: skip

# Exit codes of a container whose command cannot run at all (126/127: not
# executable / not found, as Docker and shells report it; 128: containerd's
# StartError): fail the Job at once instead of retrying a broken image
# backoffLimit times. A killed worker exits 128+signal (137, 143), never these.
FATAL_EXIT_CODES = [126, 127, 128]

# -------------------------------------------------------------- placeholders

_PLACEHOLDER_RE = re.compile(r"<xrun:(uid|secret|file|image) ([^>]+)>")
# Stands for the pushed image in `xrun manifests` output when no --image is given.
IMAGE_PLACEHOLDER = "<xrun:image the pushed image by digest, from `xrun build SPEC --push --json`>"


def uid_placeholder(owner: str) -> str:
    return f"<xrun:uid {owner}>"


def secret_placeholder(name: str) -> str:
    return f"<xrun:secret {name}>"


def file_placeholder(path: str) -> str:
    return f"<xrun:file {path}>"


def placeholders(value: Any) -> list[str]:
    """Every ``<xrun:...>`` placeholder left in a manifest (or list of them)."""
    found: list[str] = []
    if isinstance(value, str):
        found += [m.group(0) for m in _PLACEHOLDER_RE.finditer(value)]
    elif isinstance(value, Mapping):
        for v in value.values():
            found += placeholders(v)
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        for v in value:
            found += placeholders(v)
    return found


# ---------------------------------------------------------------------- names

MAX_NAME = 63  # RFC 1123 label (object names used as DNS names, label values)
_NAME_ROOM = MAX_NAME - len("-scheduler")  # the longest suffix xrun adds
# The operator names worker Deployments "<cluster>-default-worker-<10 hex>".
_OPERATOR_NAME_ROOM = MAX_NAME - len("-default-worker-") - 10
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _digest(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _dns_name(run_id: str, room: int) -> str:
    """``xrun-<run id>`` made a DNS label of at most ``room`` chars.

    Lowercased (run ids carry ``T``/``Z``), invalid characters become ``-``; a
    name too long is cut and ends with a hash of the whole run id, so two long
    run ids never share a name.
    """
    raw = "xrun-" + re.sub(r"[^a-z0-9-]+", "-", run_id.lower()).strip("-")
    raw = re.sub(r"-{2,}", "-", raw).rstrip("-")
    if len(raw) <= room and raw == raw.strip("-"):
        return raw
    return f"{raw[: room - 9].rstrip('-')}-{_digest(run_id)}"


def run_label(run_id: str) -> str:
    """The value of the ``xrun.dev/run-id`` label: the run id when it is a valid
    label value (at most 63 chars), else a cut of it plus a hash of the whole."""
    if len(run_id) <= MAX_NAME and _LABEL_VALUE_RE.match(run_id):
        return run_id
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "-", run_id).strip("-_.")
    return f"{clean[: MAX_NAME - 9].rstrip('-_.')}-{_digest(run_id)}".lstrip("-_.")


@dataclass(frozen=True)
class Names:
    """The object names of one run."""

    base: str

    @classmethod
    def for_run(cls, run_id: str) -> Names:
        return cls(_dns_name(run_id, _NAME_ROOM))

    @property
    def anchor(self) -> str:  # the ConfigMap that owns everything else
        return f"{self.base}-run"

    @property
    def secret(self) -> str:
        return f"{self.base}-secrets"

    @property
    def data(self) -> str:
        return f"{self.base}-data"

    @property
    def scheduler(self) -> str:  # Deployment and Service
        return f"{self.base}-scheduler"

    @property
    def workers(self) -> str:  # Job
        return f"{self.base}-workers"


def operator_cluster_name(run_id: str) -> str:
    """The DaskCluster name: every name the operator derives from it stays <= 63."""
    return _dns_name(run_id, _OPERATOR_NAME_ROOM)


# ------------------------------------------------------------ spec accessors


def k8s_options(spec: Any) -> Any:
    """``cluster.kubernetes`` of a spec, or the defaults for another backend."""
    options = getattr(spec.cluster, "kubernetes", None)
    if options is None:
        options = KubernetesOptions()
    return options


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(mode="json", exclude_none=True, by_alias=True) if dump else value


def _tolerations(options: Any) -> list[dict[str, Any]]:
    # `tolerations` is a proposed KubernetesOptions field; absent means none.
    return [dict(_plain(t)) for t in getattr(options, "tolerations", None) or []]


def _deadline(options: Any) -> int:
    return int(getattr(options, "deadline", None) or DEFAULT_DEADLINE)


def memory_quantity(n: int) -> str:
    """Bytes as the shortest exact Kubernetes quantity: 2147483648 → ``2Gi``."""
    for suffix, size in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n % size == 0:
            return f"{n // size}{suffix}"
    return str(n)


def data_files(spec: Any) -> dict[str, str]:
    """ConfigMap key → absolute path (on the driver and in workers) of each data file.

    A directory contributes every file below it. URL data is fetched by trials
    and needs nothing here. Keys are ``f<index>-<file name>`` made key-safe.
    """
    paths: list[str] = []
    for _, item in sorted(spec.data.items()):
        if item.path is None:
            continue
        path = Path(item.path)
        if path.is_dir():
            paths += [str(p) for p in sorted(path.rglob("*")) if p.is_file()]
        else:
            paths.append(str(path))
    unique = sorted(set(paths))
    out: dict[str, str] = {}
    for i, name in enumerate(unique):
        stem = re.sub(r"[^-._a-zA-Z0-9]+", "-", PurePosixPath(name).name)[:200] or "file"
        out[f"f{i}-{stem}"] = name
    return out


# ----------------------------------------------------------------- rendering


@dataclass(frozen=True)
class _Run:
    """Everything one rendering needs, derived once from the spec."""

    spec: Any
    run_id: str
    image_ref: str
    python: str
    names: Names
    files: dict[str, str]

    @property
    def options(self) -> Any:
        return k8s_options(self.spec)

    @property
    def namespace(self) -> str:
        return str(self.options.namespace)

    def labels(self, component: str) -> dict[str, str]:
        return {
            LABEL_NAME: "xrun",
            LABEL_INSTANCE: self.names.base,
            LABEL_COMPONENT: component,
            LABEL_MANAGED_BY: MANAGED_BY,
            LABEL_RUN_ID: run_label(self.run_id),
        }

    def selector(self, component: str) -> dict[str, str]:
        return {LABEL_RUN_ID: run_label(self.run_id), LABEL_COMPONENT: component}

    def metadata(self, name: str, component: str, *, owned: bool = True) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": name,
            "namespace": self.namespace,
            "labels": self.labels(component),
            "annotations": {ANNOTATION_RUN_ID: self.run_id, ANNOTATION_SPEC: self.spec.name},
        }
        if owned:
            meta["ownerReferences"] = [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": self.names.anchor,
                    "uid": uid_placeholder(self.names.anchor),
                }
            ]
        return meta


def _run(spec: Any, run_id: str, image_ref: str, python: str) -> _Run:
    if not run_id:
        raise ValueError("run_id must not be empty")
    return _Run(spec, run_id, image_ref, python, Names.for_run(run_id), data_files(spec))


def render_manifests(spec: Any, *, run_id: str, image_ref: str, python: str = DEFAULT_PYTHON) -> list[dict[str, Any]]:
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


# ------------------------------------------------------------------ pod specs


def _security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _pod_common(r: _Run, *, tolerations: list[dict[str, Any]], affinity: dict[str, Any] | None) -> dict[str, Any]:
    options = r.options
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,  # workers never talk to the API server
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE,
        # Meets the "restricted" Pod Security Standard.
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    service_account = getattr(options, "service_account", None)
    if service_account:
        pod["serviceAccountName"] = service_account
    pull_secrets = getattr(options, "image_pull_secrets", None) or []
    if pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in pull_secrets]
    if options.node_selector:
        pod["nodeSelector"] = dict(sorted(options.node_selector.items()))
    if tolerations:
        pod["tolerations"] = tolerations
    if affinity:
        pod["affinity"] = affinity
    return pod


def _spot_affinity(prefer_spot: bool) -> dict[str, Any]:
    operator = "In" if prefer_spot else "NotIn"
    return {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "preference": {"matchExpressions": [{"key": k, "operator": operator, "values": [v]}]}}
                for k, v in SPOT_NODE_LABELS
            ]
        }
    }  # fmt: skip


def tmp_size_limit(spec: Any, worker: bool) -> str:
    """The ``sizeLimit`` of a pod's ``/tmp``: room for a worker to spill its whole
    memory twice over, plus 1 GiB of artifacts and logs."""
    if not worker:
        return SCHEDULER_TMP_LIMIT
    memory = spec.cluster.memory_limit
    return memory_quantity(2 * int(memory) + 2**30) if memory else WORKER_TMP_LIMIT_DEFAULT


def _volumes(r: _Run, with_data: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    size = tmp_size_limit(r.spec, worker=with_data)
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": size}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": WORK_DIR}]
    if with_data and r.files:
        volumes.append({"name": "data", "configMap": {"name": r.names.data, "defaultMode": 0o444}})
        # Each file at the absolute path the driver sees: ctx.data[name] is that path.
        mounts += [
            {"name": "data", "mountPath": path, "subPath": key, "readOnly": True}
            for key, path in r.files.items()
        ]
    return volumes, mounts


def scheduler_pod_spec(r: _Run) -> dict[str, Any]:
    options = r.options
    volumes, mounts = _volumes(r, with_data=False)
    container = {
        "name": "scheduler",
        "image": r.image_ref,
        "imagePullPolicy": "IfNotPresent",
        "command": [r.python, "-m", "distributed.cli.dask_scheduler"],
        "args": ["--host", "0.0.0.0", "--port", str(SCHEDULER_PORT), "--dashboard-address", f":{DASHBOARD_PORT}"],
        "env": [{"name": "HOME", "value": WORK_DIR}, {"name": "XRUN_RUN_ID", "value": r.run_id}],
        "ports": [
            {"name": "tcp-comm", "containerPort": SCHEDULER_PORT, "protocol": "TCP"},
            {"name": "http-dashboard", "containerPort": DASHBOARD_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/health", "port": "http-dashboard"},
            "periodSeconds": 2,
            "failureThreshold": 3,
        },
        "resources": SCHEDULER_RESOURCES,
        "securityContext": _security_context(),
        "volumeMounts": mounts,
    }  # fmt: skip
    # Spot is for workers: a lost scheduler loses the run, so it prefers other nodes.
    affinity = _spot_affinity(prefer_spot=False) if options.spot else None
    pod = _pod_common(r, tolerations=_tolerations(options), affinity=affinity)
    pod.update(restartPolicy="Always", containers=[container], volumes=volumes)
    return pod


def _worker_resources(spec: Any) -> dict[str, Any]:
    cpu = str(spec.cluster.threads_per_worker)
    requests: dict[str, str] = {"cpu": cpu}
    limits: dict[str, str] = {"cpu": cpu}
    if spec.cluster.memory_limit:
        requests["memory"] = limits["memory"] = memory_quantity(int(spec.cluster.memory_limit) + NANNY_HEADROOM)
    return {"requests": requests, "limits": limits}


def worker_container(r: _Run, *, scheduler_address: str, name_var: str) -> dict[str, Any]:
    spec = r.spec
    memory = spec.cluster.memory_limit
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": WORK_DIR},
        {"name": "XRUN_RUN_ID", "value": r.run_id},
    ]
    if name_var == "XRUN_POD_NAME":
        env.insert(0, {"name": "XRUN_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    # Secret values come from the run's Secret: never in argv, the manifest or logs.
    env += [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": r.names.secret, "key": name}}}
        for name in spec.secrets
    ]
    _, mounts = _volumes(r, with_data=True)
    return {
        "name": "worker",
        "image": r.image_ref,
        "imagePullPolicy": "IfNotPresent",
        "command": [r.python, "-m", "distributed.cli.dask_worker"],
        "args": [
            scheduler_address,
            "--name", f"$({name_var})",
            "--nthreads", str(spec.cluster.threads_per_worker),
            "--memory-limit", str(int(memory)) if memory else "auto",
            "--nanny",
            # A worker whose scheduler is gone (run over, driver killed) exits.
            "--death-timeout", str(WORKER_DEATH_TIMEOUT),
            "--local-directory", f"{WORK_DIR}/dask-worker-space",
        ],
        "env": env,
        "resources": _worker_resources(spec),
        "securityContext": _security_context(),
        "volumeMounts": mounts,
    }  # fmt: skip


def worker_pod_spec(r: _Run, *, scheduler_address: str, name_var: str = "XRUN_POD_NAME",
                    restart_policy: str | None = "Never") -> dict[str, Any]:  # fmt: skip
    options = r.options
    tolerations = _tolerations(options)
    affinity = None
    if options.spot:
        tolerations += [dict(t) for t in SPOT_TOLERATIONS if t not in tolerations]
        affinity = _spot_affinity(prefer_spot=True)
    volumes, _ = _volumes(r, with_data=True)
    pod = _pod_common(r, tolerations=tolerations, affinity=affinity)
    if restart_policy:
        pod["restartPolicy"] = restart_policy
    # Spread workers over nodes: one reclaimed node takes few of them.
    pod["topologySpreadConstraints"] = [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": r.selector("worker")},
        }
    ]
    pod["containers"] = [worker_container(r, scheduler_address=scheduler_address, name_var=name_var)]
    pod["volumes"] = volumes
    return pod


# --------------------------------------------------------------- operator mode


def render_dask_cluster(spec: Any, *, run_id: str, image_ref: str, python: str = DEFAULT_PYTHON) -> dict[str, Any]:
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


def operator_support_objects(spec: Any, *, run_id: str, image_ref: str, python: str = DEFAULT_PYTHON) -> list[dict[str, Any]]:
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
    import base64

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
