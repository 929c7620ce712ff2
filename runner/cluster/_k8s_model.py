"""Kubernetes names, labels, placeholders and spec accessors shared by the
renderers (:mod:`runner.cluster._k8s_render`, :mod:`runner.cluster._k8s_pods`)
and the backend. Pure: nothing here talks to a cluster.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from runner.image.render import ENV_PYTHON
from runner.spec.cluster import KubernetesOptions

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
WORKER_TMP_DEFAULT_BYTES = 10 * 2**30  # the same, in bytes
DATA_CACHE_MOUNT = "/var/cache/xrun-data"  # where a data_cache claim is mounted in worker pods
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
        if item.path is None or spec.volume_for(item.path) is not None:  # URLs and volumes: read where they are
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


# ------------------------------------------------------------ one rendering


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
