"""Pod specs of a run's scheduler and workers (pure, like the other renderers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.cluster import DASHBOARD_PORT, SCHEDULER_PORT
from runner.cluster._k8s_model import (
    DATA_CACHE_MOUNT,
    NANNY_HEADROOM,
    RUN_AS,
    SCHEDULER_RESOURCES,
    SCHEDULER_TMP_LIMIT,
    SPOT_NODE_LABELS,
    SPOT_TOLERATIONS,
    TERMINATION_GRACE,
    WORK_DIR,
    WORKER_DEATH_TIMEOUT,
    WORKER_TMP_DEFAULT_BYTES,
    WORKER_TMP_LIMIT_DEFAULT,
    _Run,
    _tolerations,
    memory_quantity,
)

if TYPE_CHECKING:  # the spec model, for annotations only
    from runner.spec.models import Spec

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


def tmp_size_limit(spec: Spec, worker: bool) -> str:
    """The ``sizeLimit`` of a pod's ``/tmp``: room for a worker to spill its whole
    memory twice over, plus 1 GiB of artifacts and logs."""
    if not worker:
        return SCHEDULER_TMP_LIMIT
    memory = spec.cluster.memory_limit
    return memory_quantity(2 * int(memory) + 2**30) if memory else WORKER_TMP_LIMIT_DEFAULT


def _pod_data_cache_max(spec: Spec) -> int:
    """A cache kept in a worker pod's own ``/tmp`` holds at most half of that
    volume's size limit: fetched data must not get the pod evicted."""
    memory = spec.cluster.memory_limit
    return (2 * int(memory) + 2**30) // 2 if memory else WORKER_TMP_DEFAULT_BYTES // 2


def _data_cache_env(r: _Run) -> list[dict[str, Any]]:
    cache = getattr(r.options, "data_cache", None)
    if cache is None:
        return [{"name": "XRUN_DATA_CACHE_MAX", "value": str(_pod_data_cache_max(r.spec))}]
    env = [{"name": "XRUN_DATA_CACHE", "value": DATA_CACHE_MOUNT}]
    if cache.max:
        env.append({"name": "XRUN_DATA_CACHE_MAX", "value": str(int(cache.max))})
    return env


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
    cache = getattr(r.options, "data_cache", None)
    if with_data and cache is not None:  # fetched data, shared by the pods that mount the claim
        volumes.append({"name": "data-cache", "persistentVolumeClaim": {"claimName": cache.claim, "readOnly": False}})
        mounts.append({"name": "data-cache", "mountPath": DATA_CACHE_MOUNT, "readOnly": False})
    if with_data:  # the spec's own volumes (shared data): workers only
        for v in r.options.volumes:
            name = f"vol-{v.name}"
            if v.claim is not None:
                volumes.append({"name": name, "persistentVolumeClaim": {"claimName": v.claim, "readOnly": v.read_only}})
            else:
                assert v.nfs is not None
                volumes.append({"name": name, "nfs": {"server": v.nfs.server, "path": v.nfs.path, "readOnly": v.read_only}})
            mounts.append({"name": name, "mountPath": v.mount_path, "readOnly": v.read_only})
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


def _worker_resources(spec: Spec) -> dict[str, Any]:
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
    env += _data_cache_env(r)
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
