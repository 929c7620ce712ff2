"""Run rendered Kubernetes pod specs as Docker containers (a test harness, not a kubelet).

No cluster can be had here, so this runs what ``render_manifests`` produced as
close to a kubelet as Docker allows, and fails loudly on any pod field it does
not know how to emulate (so a manifest change cannot silently slip past):

* ``command``/``args`` → entrypoint/cmd, with ``$(VAR)`` expanded from the
  container's env the way Kubernetes does (``$$`` escapes);
* ``env`` values, ``fieldRef`` (pod name, namespace) and ``secretKeyRef`` from
  the rendered (filled) Secret;
* ``resources.limits`` → CPU quota and memory limit (no swap);
* ``securityContext`` → user/group, read-only root filesystem, dropped
  capabilities, no-new-privileges;
* ``emptyDir`` → tmpfs; ``configMap`` ``subPath`` mounts → read-only files with
  the ConfigMap's bytes and ``defaultMode``;
* a Service → a container network alias on the pods its selector matches
  (workers resolve the Service name through Docker's DNS), and its ports
  published on 127.0.0.1 (standing in for the port-forward);
* ``readinessProbe`` ``httpGet`` → polled through the published port;
* a Deployment keeps ``replicas`` pods; a Job runs ``parallelism`` pods and a
  tiny Job controller replaces failed ones, applying ``podFailurePolicy`` rules
  (``DisruptionTarget`` → Ignore, exit codes → FailJob, else count against
  ``backoffLimit``).

Scheduling-only fields (node selector, tolerations, affinity, spread
constraints, pull secrets/policy, service account) have no local meaning and
are listed as ignored.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import time
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HARNESS_LABEL = "xrun.k8s-harness"

POD_FIELDS = {"containers", "volumes", "restartPolicy", "securityContext", "terminationGracePeriodSeconds"}
POD_IGNORED = {
    "automountServiceAccountToken", "enableServiceLinks", "nodeSelector", "tolerations", "affinity",
    "topologySpreadConstraints", "imagePullSecrets", "serviceAccountName",
}  # fmt: skip
CONTAINER_FIELDS = {"name", "image", "command", "args", "env", "ports", "resources", "securityContext",
                    "volumeMounts", "readinessProbe"}  # fmt: skip
CONTAINER_IGNORED = {"imagePullPolicy"}


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: defined variables are replaced, ``$$`` is a literal ``$``,
    undefined references stay as they are."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)  # fmt: skip


def cpu_quantity(value: str) -> float:
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def memory_quantity(value: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for suffix, size in units.items():
        if value.endswith(suffix):
            return int(value[: -len(suffix)]) * size
    return int(value)


@dataclass
class Pod:
    name: str
    owner: str  # "Deployment/x" or "Job/x"
    container: Any
    disrupted: bool = False  # marked DisruptionTarget before being stopped (a spot reclaim)
    killed: bool = False  # SIGKILLed by the test (a crash)
    seen: bool = False  # its end was handled by the Job controller


@dataclass
class JobState:
    manifest: dict[str, Any]
    succeeded: int = 0
    failures: int = 0  # counted against backoffLimit
    ignored: int = 0  # failures the podFailurePolicy ignored
    failed: str | None = None  # reason the Job failed
    replacements: list[str] = field(default_factory=list)


class PodHarness:
    """Apply filled manifests as containers on one Docker network."""

    def __init__(self, client: Any, manifests: list[dict[str, Any]], workdir: Path) -> None:
        self.client = client
        self.manifests = manifests
        self.workdir = workdir
        self.id = uuid.uuid4().hex[:8]
        self.network: Any = None
        self.pods: list[Pod] = []
        self.jobs: dict[str, JobState] = {}
        self.published: dict[int, int] = {}  # container port → host port, of Service-selected pods
        self._stop = threading.Event()
        self._controller: threading.Thread | None = None
        self._lock = threading.Lock()

    # --------------------------------------------------------------- objects

    def _of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.manifests if m["kind"] == kind]

    def _services_for(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        return [s for s in self._of("Service")
                if all(labels.get(k) == v for k, v in s["spec"]["selector"].items())]  # fmt: skip

    def _env(self, container: Mapping[str, Any], pod_name: str, namespace: str) -> dict[str, str]:
        env: dict[str, str] = {}
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = expand(item["value"], env)  # refers to earlier entries only
                continue
            source = item["valueFrom"]
            if "fieldRef" in source:
                field_path = source["fieldRef"]["fieldPath"]
                env[item["name"]] = {"metadata.name": pod_name, "metadata.namespace": namespace}[field_path]
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                (secret,) = [s for s in self._of("Secret") if s["metadata"]["name"] == ref["name"]]
                env[item["name"]] = secret["stringData"][ref["key"]]
            else:
                raise AssertionError(f"harness cannot emulate env source {source}")
        return env

    def _mounts(self, pod: Mapping[str, Any], container: Mapping[str, Any], pod_name: str) -> tuple[list[Any], dict[str, str]]:
        from docker.types import Mount

        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        mounts: list[Any] = []
        tmpfs: dict[str, str] = {}
        for m in container.get("volumeMounts") or []:
            vol = volumes[m["name"]]
            if "emptyDir" in vol:
                assert "subPath" not in m
                tmpfs[m["mountPath"]] = "mode=1777"
            elif "configMap" in vol:
                (cm,) = [c for c in self._of("ConfigMap") if c["metadata"]["name"] == vol["configMap"]["name"]]
                files = {k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()}
                files.update({k: v.encode() for k, v in (cm.get("data") or {}).items()})
                source = self.workdir / pod_name / m["subPath"]
                source.parent.mkdir(parents=True, exist_ok=True)
                source.write_bytes(files[m["subPath"]])
                source.chmod(vol["configMap"].get("defaultMode", 0o644))
                mounts.append(Mount(target=m["mountPath"], source=str(source), type="bind", read_only=True))
            else:
                raise AssertionError(f"harness cannot emulate volume {vol}")
        return mounts, tmpfs

    # ------------------------------------------------------------------ pods

    def start_pod(self, owner: dict[str, Any]) -> Pod:
        template = owner["spec"]["template"]
        pod, labels = template["spec"], template["metadata"]["labels"]
        unknown = set(pod) - POD_FIELDS - POD_IGNORED
        assert not unknown, f"harness cannot emulate pod fields {unknown}"
        (container,) = pod["containers"]
        unknown = set(container) - CONTAINER_FIELDS - CONTAINER_IGNORED
        assert not unknown, f"harness cannot emulate container fields {unknown}"
        namespace = owner["metadata"]["namespace"]
        name = f"{owner['metadata']['name']}-{uuid.uuid4().hex[:5]}"
        env = self._env(container, name, namespace)
        mounts, tmpfs = self._mounts(pod, container, name)
        security = {**(pod.get("securityContext") or {}), **(container.get("securityContext") or {})}
        limits = (container.get("resources") or {}).get("limits") or {}
        services = self._services_for(labels)
        aliases = [s["metadata"]["name"] for s in services]
        ports: dict[str, tuple[str]] = {}
        if services:
            by_name = {p["name"]: p["containerPort"] for p in container.get("ports") or []}
            for s in services:
                for port in s["spec"]["ports"]:
                    target = port["targetPort"]
                    ports[f"{by_name.get(target, target)}/tcp"] = ("127.0.0.1",)
        options: dict[str, Any] = {
            "image": container["image"],
            "entrypoint": [expand(a, env) for a in container["command"]],
            "command": [expand(a, env) for a in container.get("args") or []],
            "environment": env,
            "name": f"k8s-{self.id}-{name}",
            "hostname": name[:63],
            "labels": {**labels, HARNESS_LABEL: self.id},
            "network": self.network.name,
            "networking_config": {self.network.name: self.client.api.create_endpoint_config(aliases=aliases)},
            "ports": ports,
            "mounts": mounts,
            "tmpfs": tmpfs,
            "read_only": bool(security.get("readOnlyRootFilesystem")),
            "cap_drop": (security.get("capabilities") or {}).get("drop") or None,
            "security_opt": ["no-new-privileges"] if security.get("allowPrivilegeEscalation") is False else None,
            "detach": True,
        }
        if "runAsUser" in security:
            options["user"] = f"{security['runAsUser']}:{security.get('runAsGroup', security['runAsUser'])}"
        if "fsGroup" in security:
            options["group_add"] = [str(security["fsGroup"])]
        if "cpu" in limits:
            options["nano_cpus"] = int(cpu_quantity(str(limits["cpu"])) * 1e9)
        if "memory" in limits:
            options["mem_limit"] = options["memswap_limit"] = memory_quantity(str(limits["memory"]))
        c = self.client.containers.create(**options)
        try:
            c.start()
        except Exception as exc:  # the runtime could not start it: the pod fails (StartError)
            log.info("pod %s did not start: %s", name, exc)
        record = Pod(name, f"{owner['kind']}/{owner['metadata']['name']}", c)
        with self._lock:
            self.pods.append(record)
        return record

    def pods_of(self, kind: str) -> list[Pod]:
        with self._lock:
            return [p for p in self.pods if p.owner.startswith(kind + "/")]

    # ---------------------------------------------------------------- lifecycle

    def apply(self) -> None:
        self.network = self.client.networks.create(f"k8s-{self.id}", labels={HARNESS_LABEL: self.id})
        for deployment in self._of("Deployment"):
            assert deployment["spec"]["template"]["spec"].get("restartPolicy", "Always") == "Always"
            for _ in range(deployment["spec"].get("replicas", 1)):
                self.start_pod(deployment)
        for job in self._of("Job"):
            self.jobs[job["metadata"]["name"]] = JobState(job)
            for _ in range(job["spec"]["parallelism"]):
                self.start_pod(job)
        self._controller = threading.Thread(target=self._run_job_controller, daemon=True)
        self._controller.start()

    def wait_ready(self, timeout: float = 60) -> str:
        """Until the scheduler pod passes its readinessProbe; return the Service's published address."""
        (deployment,) = self._of("Deployment")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        named = {p["name"]: p["containerPort"] for p in container["ports"]}
        (pod,) = self.pods_of("Deployment")
        pod.container.reload()
        ports = pod.container.attrs["NetworkSettings"]["Ports"]
        self.published = {int(k.split("/")[0]): int(v[0]["HostPort"]) for k, v in ports.items() if v}
        probe = container["readinessProbe"]["httpGet"]
        url = f"http://127.0.0.1:{self.published[named.get(probe['port'], probe['port'])]}{probe['path']}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            pod.container.reload()
            assert pod.container.status == "running", pod.container.logs(tail=30).decode()
            assert time.monotonic() < deadline, f"readiness probe {url} never passed"
            time.sleep(0.2)
        (service,) = self._of("Service")
        target = service["spec"]["ports"][0]["targetPort"]
        return f"tcp://127.0.0.1:{self.published[named.get(target, target)]}"

    def preempt(self, pod: Pod) -> None:
        """A spot reclaim: the pod gets DisruptionTarget, then is stopped (SIGTERM, grace)."""
        pod.disrupted = True
        pod.container.stop(timeout=15)

    def kill(self, pod: Pod) -> None:
        """A crash (OOM kill, node failure): SIGKILL, no condition."""
        pod.killed = True
        pod.container.kill()

    def settle(self, timeout: float = 30) -> None:
        """Wait until the Job controller has handled every pod the test killed or preempted."""
        deadline = time.monotonic() + timeout
        while any((p.killed or p.disrupted) and not p.seen for p in self.pods_of("Job")):
            assert time.monotonic() < deadline, "the Job controller did not see every disrupted pod end"
            time.sleep(0.2)

    def _run_job_controller(self) -> None:
        while not self._stop.is_set():
            for state in self.jobs.values():
                self._reconcile(state)
            time.sleep(0.3)

    def _reconcile(self, state: JobState) -> None:
        """What the Job controller does with a finished pod (restartPolicy Never)."""
        job = state.manifest
        name = job["metadata"]["name"]
        for pod in [p for p in self.pods_of("Job") if p.owner == f"Job/{name}"]:
            if pod.seen or state.failed:
                continue
            pod.container.reload()
            runtime = pod.container.attrs["State"]
            start_error = pod.container.status == "created" and bool(runtime.get("Error"))
            if pod.container.status not in ("exited", "dead") and not start_error:
                continue
            pod.seen = True
            code = runtime["ExitCode"]
            if code == 0 and not pod.disrupted:
                state.succeeded += 1
                continue
            action = "Count"
            for rule in (job["spec"].get("podFailurePolicy") or {}).get("rules") or []:
                conds = rule.get("onPodConditions") or []
                codes = rule.get("onExitCodes")
                if pod.disrupted and any(c["type"] == "DisruptionTarget" and c.get("status", "True") == "True" for c in conds):
                    action = rule["action"]
                    break
                if codes and (codes["operator"] == "In") == (code in codes["values"]):
                    action = rule["action"]
                    break
            if action == "FailJob":
                state.failed = f"PodFailurePolicy: exit code {code}"
                continue
            if action == "Count":
                state.failures += 1
                if state.failures > job["spec"].get("backoffLimit", 6):
                    state.failed = "BackoffLimitExceeded"
                    continue
            else:
                state.ignored += 1
            if not self._stop.is_set():
                state.replacements.append(self.start_pod(job).name)

    def teardown(self) -> None:
        self._stop.set()
        if self._controller is not None:
            self._controller.join(timeout=5)
        for c in self.client.containers.list(all=True, filters={"label": f"{HARNESS_LABEL}={self.id}"}):
            c.remove(force=True)
        if self.network is not None:
            self.network.remove()
