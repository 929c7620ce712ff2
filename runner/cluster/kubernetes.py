"""``backend: kubernetes``: the same spec on a Kubernetes cluster.

A run is a handful of plain objects (:func:`render_manifests`, pure functions
of the spec, snapshot-tested): an anchor ConfigMap that owns everything else,
a Secret with the spec's secrets, a ConfigMap with small data files, the Dask
scheduler as a Deployment behind a Service, and the workers as one Job. No
operator is needed. With ``cluster.kubernetes.operator: true`` the scheduler and
workers come from a ``DaskCluster`` for the Dask operator instead
(:func:`render_dask_cluster`).

:class:`KubernetesBackend` applies them with kr8s, waits for the scheduler
(explaining a pod that does not start from its status and events), connects
through a port-forward (or cluster DNS when the driver runs in the cluster),
and deletes everything on success, failure and Ctrl-C. :func:`clean` removes
what killed drivers left behind, found by label. See docs/kubernetes.md.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from runner.cluster import ClusterInfo, Launch
from runner.cluster._k8s_api import ClusterApi, pod_ready
from runner.cluster._k8s_render import (
    ANNOTATION_DRIVER,
    DATA_CONFIGMAP_LIMIT,
    DATA_MAX_FILES,
    DEFAULT_PYTHON,
    IMAGE_PLACEHOLDER,
    LABEL_COMPONENT,
    LABEL_RUN_ID,
    SCHEDULER_PORT,
    Names,
    data_files,
    k8s_options,
    operator_cluster_name,
    operator_support_objects,
    render_dask_cluster,
    render_manifests,
    resolve_placeholders,
    run_label,
)
from runner.cluster._lifecycle import driver_id, sigint_deferred
from runner.errors import InfraError, UsageError

if TYPE_CHECKING:
    from runner.image import ImageInfo
    from runner.spec import Spec

from runner.cluster._k8s_diagnosis import _hint, _one_line, _pod_summary, _Stuck
from runner.cluster._k8s_tools import (  # the backend's module is where callers find these
    DELETE_ORDER as DELETE_ORDER,
)
from runner.cluster._k8s_tools import check_access as check_access
from runner.cluster._k8s_tools import clean as clean
from runner.cluster._k8s_tools import kubeconfig_available as kubeconfig_available
from runner.cluster._k8s_tools import manifests_for_spec as manifests_for_spec
from runner.cluster._k8s_tools import to_yaml as to_yaml
from runner.cluster._k8s_tools import write_manifests as write_manifests

log = logging.getLogger(__name__)

__all__ = [
    "IMAGE_PLACEHOLDER",
    "LABEL_RUN_ID",
    "KubernetesBackend",
    "clean",
    "image_reference",
    "kubeconfig_available",
    "manifests_for_spec",
    "render_dask_cluster",
    "render_manifests",
    "run_label",
    "write_manifests",
]

START_TIMEOUT = 300.0  # seconds for the scheduler pod to be ready (pulls, autoscaling)
WORKERS_TIMEOUT = 600.0  # seconds for the workers to join (new nodes can take minutes)
CONNECT_TIMEOUT = 60.0  # seconds to reach a ready scheduler (through the port-forward)
POLL = 1.0
# Container states that never fix themselves: stop at once instead of waiting.


def image_reference(image: ImageInfo) -> str:
    """The pushed image by digest (``registry/repo@sha256:…``), as pods must pull it.

    Raises :class:`UsageError` when the image was not pushed to ``image.registry``.
    """
    pushed = getattr(image, "pushed", None)
    if pushed and "@sha256:" in pushed:
        return str(pushed)
    if not pushed:
        raise UsageError(
            "the kubernetes backend pulls the worker image from a registry: set image.registry "
            "in the spec and push the image (`xrun build SPEC --push`)"
        )
    from runner.image.docker import docker_client  # deferred: imports the docker SDK

    repo = pushed.rsplit(":", 1)[0] if ":" in pushed.rsplit("/", 1)[-1] else pushed
    attrs = docker_client().images.get(image.image_id).attrs
    for digest in attrs.get("RepoDigests") or []:
        if digest.split("@", 1)[0] == repo:
            return str(digest)
    raise InfraError(
        f"{pushed} has no registry digest on this Docker daemon; push it again (`xrun build SPEC --push`)"
    )


def check_data(spec: Spec) -> None:
    """Data files travel in a ConfigMap: refuse what cannot fit, saying what to do."""
    files = data_files(spec)
    if len(files) > DATA_MAX_FILES:
        raise UsageError(
            f"data: {len(files)} files are too many to ship to Kubernetes workers (at most "
            f"{DATA_MAX_FILES}); use `url:` data the trials fetch, or pack them into one file"
        )
    total = 0
    for path in files.values():
        try:
            total += Path(path).stat().st_size
        except OSError as exc:
            raise UsageError(f"data: cannot read {path}: {exc.strerror}") from None
    if total > DATA_CONFIGMAP_LIMIT:
        raise UsageError(
            f"data: {total:,} bytes of data files are too large to ship to Kubernetes workers in a "
            f"ConfigMap (at most {DATA_CONFIGMAP_LIMIT:,}); put large data behind `url:` "
            "(object storage the trials read) instead of `path:`"
        )


# -------------------------------------------------------------------- backend


class KubernetesBackend:
    """A Dask cluster on Kubernetes for one run (``cluster.backend: kubernetes``)."""

    name = "kubernetes"

    def __init__(
        self,
        *,
        spec: Spec,
        run_id: str,
        image_ref: str,
        python: str = DEFAULT_PYTHON,
        secrets: Mapping[str, str] | None = None,
        kubeconfig: str | None = None,
        start_timeout: float = START_TIMEOUT,
        workers_timeout: float = WORKERS_TIMEOUT,
        connect: Literal["auto", "port-forward", "dns"] = "auto",
    ) -> None:
        missing = [n for n in spec.secrets if n not in (secrets or {})]
        if missing:
            raise UsageError(f"secrets: no value for {', '.join(missing)}; export them before running")
        check_data(spec)
        options = k8s_options(spec)
        if options.operator and options.context:
            raise UsageError(
                "cluster.kubernetes.context: operator mode uses the kubeconfig's current context "
                "(dask-kubernetes cannot pick another); switch with `kubectl config use-context` "
                "and remove cluster.kubernetes.context"
            )
        self.spec = spec
        self.run_id = run_id
        self.image_ref = image_ref
        self.python = python
        self._secrets = dict(secrets or {})
        self.kubeconfig = kubeconfig
        self.start_timeout = start_timeout
        self.workers_timeout = workers_timeout
        self.connect = connect
        self.options = options
        self.names = Names.for_run(run_id)
        self.workers = int(spec.cluster.workers)

    def __repr__(self) -> str:  # never show secret values
        return f"KubernetesBackend(run_id={self.run_id!r}, secrets={sorted(self._secrets)})"

    def manifests(self) -> list[dict[str, Any]]:
        """The objects this run applies (placeholders unfilled)."""
        return render_manifests(self.spec, run_id=self.run_id, image_ref=self.image_ref, python=self.python)

    def api(self) -> ClusterApi:
        return ClusterApi(namespace=self.options.namespace, context=self.options.context, kubeconfig=self.kubeconfig)

    @contextmanager
    def open(self) -> Iterator[ClusterInfo]:
        """Create the run's objects, yield how to reach its scheduler, delete them whatever happens."""
        api = self.api()
        rendered = self.manifests()
        try:
            if self.options.operator:
                with self._open_operator(api) as info:
                    yield info
                return
            uid = self._create_anchor(api, rendered[0])
            filled = self._fill(rendered[1:], uid)
            for manifest in filled:
                api.create(manifest)
            log.info("kubernetes run %s: created %d objects in %s", self.run_id, len(rendered), api.namespace)
            self._wait_scheduler(api)
            with self._connect(api) as address:
                joined = self._wait_workers(api, address)
                yield ClusterInfo("kubernetes", address, None, joined)
        finally:
            with sigint_deferred():
                self._teardown(api)

    # -------------------------------------------------------------- applying

    def _create_anchor(self, api: ClusterApi, anchor: Mapping[str, Any]) -> str:
        anchor = {**anchor, "metadata": {**anchor["metadata"]}}
        anchor["metadata"]["annotations"] = {**anchor["metadata"]["annotations"], ANNOTATION_DRIVER: driver_id()}
        created = api.create(anchor)
        return str(created["metadata"]["uid"])

    def _fill(self, manifests: Sequence[dict[str, Any]], uid: str) -> list[dict[str, Any]]:
        try:
            return resolve_placeholders(manifests, owner_uid=uid, secrets=self._secrets)
        except KeyError as exc:  # checked in __init__; kept for safety
            raise UsageError(f"no value for {exc.args[0]}") from None
        except OSError as exc:
            raise UsageError(f"data: cannot read {exc.filename}: {exc.strerror}") from None

    @contextmanager
    def _open_operator(self, api: ClusterApi) -> Iterator[ClusterInfo]:
        """Operator mode: the Dask operator makes the scheduler and workers from a DaskCluster.

        dask-kubernetes connects (and port-forwards) with kr8s's default
        configuration: ``KUBECONFIG`` and its current context.
        """
        try:
            # deferred: the operator's client, only for that backend
            from dask_kubernetes.operator import KubeCluster
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise InfraError("operator mode needs dask-kubernetes: pip install 'xrun[kubernetes]'") from exc
        support = operator_support_objects(self.spec, run_id=self.run_id, image_ref=self.image_ref, python=self.python)
        uid = self._create_anchor(api, support[0])
        for manifest in self._fill(support[1:], uid):
            api.create(manifest)
        cluster_spec = self._fill(
            [render_dask_cluster(self.spec, run_id=self.run_id, image_ref=self.image_ref, python=self.python)], uid
        )[0]
        try:
            cluster = KubeCluster(
                custom_cluster_spec=cluster_spec,
                namespace=api.namespace,
                shutdown_on_close=True,
                resource_timeout=int(self.start_timeout),
                quiet=True,
            )
        except Exception as exc:
            text = str(exc)
            if "Custom Resource Definitions" in text or "could not find the requested resource" in text:
                raise InfraError(
                    "the DaskCluster resource type is not installed in this cluster, so operator mode cannot "
                    "run: install the Dask operator (docs/kubernetes.md) or set cluster.kubernetes.operator: false"
                ) from None
            raise InfraError(f"the Dask operator did not start run {self.run_id}: {type(exc).__name__}: {text}") from None
        try:
            yield ClusterInfo("kubernetes", str(cluster.scheduler_address), None, self.workers)
        finally:
            try:
                cluster.close()
            except Exception as exc:  # teardown deletes the DaskCluster anyway
                log.warning("closing the Dask operator cluster of %s: %s", self.run_id, exc)

    # --------------------------------------------------------------- waiting

    def _wait_scheduler(self, api: ClusterApi) -> None:
        """Until the scheduler pod is ready; stop early on a state that never heals."""
        deadline = time.monotonic() + self.start_timeout
        stuck = _Stuck()
        selector = {LABEL_RUN_ID: run_label(self.run_id), LABEL_COMPONENT: "scheduler"}
        while True:
            pods = api.list("Pod", selector)
            if any(pod_ready(p) for p in pods):
                return
            why = stuck.check(pods)
            if why is None and time.monotonic() > deadline:
                why = f"was not ready within {self.start_timeout:g}s"
            if why is not None:
                raise InfraError(self._startup_report(api, "scheduler", pods, why))
            time.sleep(POLL)

    def _wait_workers(self, api: ClusterApi, address: str) -> int:
        """Until every worker joined; after the timeout, go on with those that did."""
        from distributed import Client  # deferred: imports Dask

        started = time.monotonic()
        deadline = started + self.workers_timeout
        selector = {LABEL_RUN_ID: run_label(self.run_id), LABEL_COMPONENT: "worker"}
        stuck = _Stuck()
        client: Client | None = None
        joined = 0
        try:
            while True:
                if client is None:
                    try:
                        with warnings.catch_warnings():  # the executor's Client reports versions
                            warnings.simplefilter("ignore")
                            client = Client(address, timeout=min(10.0, CONNECT_TIMEOUT), set_as_default=False)
                    except (OSError, TimeoutError) as exc:
                        if time.monotonic() - started > CONNECT_TIMEOUT:
                            raise InfraError(
                                f"cannot reach the scheduler of run {self.run_id} at {address} although its pod "
                                f"is ready ({exc}); if the driver connects through a port-forward, check "
                                f"`kubectl auth can-i create pods/portforward -n {api.namespace}`"
                            ) from None
                if client is not None:
                    joined = len(client.nthreads())
                    if joined >= self.workers:
                        return joined
                pods = api.list("Pod", selector)
                why = self._job_failure(api) or stuck.check(pods)
                if why is not None:
                    raise InfraError(self._startup_report(api, "workers", pods, why))
                if time.monotonic() > deadline:
                    if joined:
                        log.warning("only %d of %d workers joined within %gs; going on with them",
                                    joined, self.workers, self.workers_timeout)  # fmt: skip
                        return joined
                    raise InfraError(self._startup_report(api, "workers", pods, f"did not join within {self.workers_timeout:g}s"))  # fmt: skip
                time.sleep(POLL)
        finally:
            if client is not None:
                client.close()

    def _job_failure(self, api: ClusterApi) -> str | None:
        for job in api.list("Job", {LABEL_RUN_ID: run_label(self.run_id)}):
            for cond in (job.get("status") or {}).get("conditions") or []:
                if cond.get("type") == "Failed" and cond.get("status") == "True":
                    return f"failed: the worker Job stopped ({cond.get('reason')}: {cond.get('message')})"
        return None

    def _startup_report(self, api: ClusterApi, what: str, pods: Sequence[Mapping[str, Any]], why: str) -> str:
        """What went wrong, from pod status and Warning events, and how to fix it."""
        lines = [f"the {what} of run {self.run_id} {why} (namespace {api.namespace!r}):"]
        if not pods:
            lines.append("  no pod was created (see the events below: quota, Pod Security admission, RBAC)")
        for pod in pods[:5]:
            lines.append(f"  pod {pod['metadata']['name']}: {_pod_summary(pod)}")
        events = api.warning_events(self.names.base)
        if events:
            lines.append("  events:")
            for e in events[-10:]:
                obj = e.get("involvedObject") or {}
                lines.append(f"    {e.get('reason')} ({str(obj.get('kind', '')).lower()}/{obj.get('name')}): {_one_line(e.get('message'))}")
        hint = _hint(pods, events)
        if hint:
            lines.append(f"hint: {hint}")
        lines.append(f"inspect with: kubectl -n {api.namespace} describe pods -l {LABEL_RUN_ID}={run_label(self.run_id)}")
        return "\n".join(lines)  # fmt: skip

    # ---------------------------------------------------------------- connect

    @contextmanager
    def _connect(self, api: ClusterApi) -> Iterator[str]:
        """The scheduler address as the driver reaches it."""
        mode = self.connect
        if mode == "auto":
            mode = "dns" if os.environ.get("KUBERNETES_SERVICE_HOST") else "port-forward"
        if mode == "dns":  # the driver runs in a pod of this cluster
            yield f"tcp://{self.names.scheduler}.{api.namespace}.svc:{SCHEDULER_PORT}"
            return
        with api.port_forward(self.names.scheduler, SCHEDULER_PORT) as port:
            yield f"tcp://127.0.0.1:{port}"

    # --------------------------------------------------------------- teardown

    def _teardown(self, api: ClusterApi) -> None:
        objects = [(m["kind"], m["metadata"]["name"]) for m in self.manifests()]
        if self.options.operator:
            objects.append(("DaskCluster", operator_cluster_name(self.run_id)))
        objects.sort(key=lambda o: DELETE_ORDER.index(o[0]))
        failed = []
        for kind, name in objects:
            try:
                api.delete(kind, name)
            except InfraError as exc:
                failed.append(f"{kind}/{name}: {exc}")
        if failed:
            log.warning(
                "could not delete every object of run %s (remove them with `xrun clean`):\n%s",
                self.run_id, "\n".join(failed),
            )  # fmt: skip
        else:
            log.info("kubernetes run %s removed", self.run_id)


def from_launch(launch: Launch) -> KubernetesBackend:
    if launch.image is None:
        raise UsageError("cluster.backend kubernetes: no worker image was built and pushed")
    return KubernetesBackend(spec=launch.spec, run_id=launch.run_id, image_ref=image_reference(launch.image),
                             python=launch.image.python, secrets=launch.secrets)  # fmt: skip
