"""Spec v1 models of ``cluster``: one per backend, told apart by ``backend``, and
the volumes and Kubernetes options they take (see docs/architecture.md, "Adding a backend")."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Discriminator, Field, Tag, model_validator

from runner.spec.strict import StrictModel
from runner.spec.values import ByteSize, Duration, NonEmptyStr, SpecPath


class Toleration(StrictModel):
    """A Kubernetes toleration, spelled as in Kubernetes."""

    key: str | None = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: Annotated[int, Field(ge=0)] | None = None


def _mount_path(value: str) -> str:
    if not value.startswith("/") or ".." in value.split("/") or "\0" in value:
        raise ValueError(f"expected an absolute path without '..', got {value!r}")
    return value.rstrip("/") or "/"


MountPath = Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_mount_path)]


class NfsVolume(StrictModel):
    server: Annotated[str, Field(pattern=r"^[A-Za-z0-9]([-A-Za-z0-9.:\[\]]*[A-Za-z0-9\]])?$", max_length=253)]
    path: MountPath


class KubernetesVolume(StrictModel):
    """A volume every worker pod mounts: a PersistentVolumeClaim or an NFS export."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=50)]
    mount_path: MountPath = Field(description="where workers see it; data.<name>.path may name a file below it")
    read_only: bool = True
    claim: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)] | None = Field(
        None, description="a PersistentVolumeClaim in the run's namespace"
    )
    nfs: NfsVolume | None = None

    @model_validator(mode="after")
    def _one_source(self) -> KubernetesVolume:
        if (self.claim is None) == (self.nfs is None):
            raise ValueError("give exactly one of claim (a PersistentVolumeClaim) or nfs: {server, path}")
        return self


class KubernetesDataCache(StrictModel):
    """Where worker pods keep fetched data (``data.<name>.url``): a
    PersistentVolumeClaim every worker mounts read-write, so an object is
    downloaded once for all the pods that share the claim (a ReadWriteMany
    claim: once for the cluster). Without it each pod keeps its own cache in its
    ``/tmp`` (an ``emptyDir``), bounded to half of that volume's size limit."""

    claim: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)] = Field(
        description="a PersistentVolumeClaim in the run's namespace, mounted read-write"
    )
    max: ByteSize | None = Field(default=None, description="evict least recently used entries above this size (default 20GiB)")


class KubernetesOptions(StrictModel):
    namespace: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)] = "default"
    context: str | None = None
    spot: bool = False
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    image_pull_secrets: list[NonEmptyStr] = Field(default_factory=list)
    service_account: str | None = None
    deadline: Duration = Field(default=86400.0, description="worker Job activeDeadlineSeconds; `xrun clean` removes older runs")
    operator: bool = False
    volumes: list[KubernetesVolume] = Field(default_factory=list, description="mounted read-only (by default) in every worker pod")
    data_cache: KubernetesDataCache | None = Field(
        default=None, description="a claim shared by the worker pods for fetched data (default: a cache per pod in its /tmp)"
    )

    @model_validator(mode="after")
    def _distinct_volumes(self) -> KubernetesOptions:
        _distinct([v.name for v in self.volumes], "volume names")
        _distinct([v.mount_path for v in self.volumes], "volume mount paths")
        return self


def _distinct(values: list[str], what: str) -> None:
    seen = [v for i, v in enumerate(values) if v in values[:i]]
    if seen:
        raise ValueError(f"{what} must be distinct: {seen[0]!r} is given twice")


class DockerVolume(StrictModel):
    """A host directory bind-mounted into every worker container, or a named Docker volume."""

    source: SpecPath | None = Field(None, description="a directory on the Docker host (relative to the spec)")
    volume: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=255)] | None = Field(
        None, description="a named Docker volume (`docker volume create`, e.g. NFS-backed); this machine does not see it"
    )
    target: MountPath = Field(description="where workers see it; data.<name>.path may name a file below it")
    read_only: bool = True

    @model_validator(mode="after")
    def _one_source(self) -> DockerVolume:
        if (self.source is None) == (self.volume is None):
            raise ValueError("give exactly one of source (a host directory) or volume (a named Docker volume)")
        return self


class DockerOptions(StrictModel):
    volumes: list[DockerVolume] = Field(default_factory=list)

    @model_validator(mode="after")
    def _distinct_targets(self) -> DockerOptions:
        _distinct([v.target for v in self.volumes], "volume targets")
        return self


class _ClusterBase(StrictModel):
    workers: Annotated[int, Field(ge=1, le=10_000)] = 2
    threads_per_worker: Annotated[int, Field(ge=1, le=1024)] = 1
    memory_limit: ByteSize | None = None


class LocalCluster(_ClusterBase):
    backend: Literal["local"] = "local"


class DockerCluster(_ClusterBase):
    backend: Literal["docker"]
    docker: DockerOptions = Field(default_factory=DockerOptions)  # type: ignore[arg-type]


class KubernetesCluster(_ClusterBase):
    backend: Literal["kubernetes"]
    kubernetes: KubernetesOptions = Field(default_factory=KubernetesOptions)  # type: ignore[arg-type]


class AddressCluster(_ClusterBase):
    backend: Literal["address"]
    address: Annotated[str, Field(pattern=r"^(tcp|tls|ucx|inproc|ws|wss)://\S+$")]
    workers: Annotated[int, Field(ge=1, le=10_000)] = 1  # wait for at least this many


BACKENDS = ("local", "docker", "kubernetes", "address")


def _backend_tag(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return getattr(value, "backend", None)
    if not isinstance(value, dict):
        return None
    backend = value.get("backend", "local")
    return backend if backend in BACKENDS else None


Cluster = Annotated[
    Annotated[LocalCluster, Tag("local")] | Annotated[DockerCluster, Tag("docker")] | Annotated[KubernetesCluster, Tag("kubernetes")] | Annotated[AddressCluster, Tag("address")],
    Discriminator(
        _backend_tag,
        custom_error_type="backend",
        custom_error_message="unknown backend (expected one of local, docker, kubernetes, address)",
    ),
]


