"""Checks on rendered Kubernetes objects that JSON schemas cannot express.

The OpenAPI schemas (``kubernetes-validate``) check each object's shape. The
API server checks more when objects are created, and some mistakes only show
as a run that never starts. :func:`lint` catches those offline:

* names: RFC 1123 labels of at most 63 characters (Services: RFC 1035), also
  the names Kubernetes and the Dask operator derive from them;
* label keys and values, annotation keys;
* selectors: Deployment/Job selectors and Service selectors match the pod
  template labels they are meant to, and nothing else of the run;
* policies: a ``podFailurePolicy`` needs ``restartPolicy: Never``, a
  Deployment's pods ``Always``; exit-code rules name a real container;
* references: named ports, ``$(VAR)`` in command/args, Secret keys, ConfigMap
  keys, volume names, owner references, one namespace;
* resources: requests never above limits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from runner.cluster._k8s_render import (
    LABEL_MANAGED_BY,
    LABEL_RUN_ID,
    MANAGED_BY,
)

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
ENV_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

# Variables the Dask operator adds to worker containers.
OPERATOR_ENV = frozenset({"DASK_WORKER_NAME", "DASK_SCHEDULER_ADDRESS"})


def lint(manifests: Sequence[Mapping[str, Any]], *, operator: bool = False) -> list[str]:
    """Problems found in a run's objects (empty when there are none).

    With ``operator``, ``manifests`` may contain one ``DaskCluster``; its pod
    specs and the names the operator derives from it are checked too.
    """
    problems: list[str] = []
    by_kind: dict[str, list[Mapping[str, Any]]] = {}
    for m in manifests:
        by_kind.setdefault(m["kind"], []).append(m)
    namespaces = {m["metadata"].get("namespace") for m in manifests}
    if len(namespaces) != 1:
        problems.append(f"objects span namespaces {sorted(map(str, namespaces))}")
    for m in manifests:
        where = f"{m['kind']}/{m['metadata'].get('name')}"
        problems += [f"{where}: {p}" for p in _lint_metadata(m)]
        problems += [f"{where}: {p}" for p in _lint_owner(m, manifests)]
        for path, pod_meta, pod in _pod_templates(m):
            here = f"{where} {path}"
            problems += [f"{here}: {p}" for p in _lint_labels(pod_meta.get("labels") or {}, required=True)]
            problems += [f"{here}: {p}" for p in _lint_pod(pod, manifests, operator=m["kind"] == "DaskCluster")]
    for d in by_kind.get("Deployment", []):
        problems += [f"Deployment/{d['metadata']['name']}: {p}" for p in _lint_deployment(d)]
    for j in by_kind.get("Job", []):
        problems += [f"Job/{j['metadata']['name']}: {p}" for p in _lint_job(j)]
    for s in by_kind.get("Service", []):
        problems += [f"Service/{s['metadata']['name']}: {p}" for p in _lint_service(s, manifests)]
    for c in by_kind.get("DaskCluster", []):
        problems += [f"DaskCluster/{c['metadata']['name']}: {p}" for p in _lint_dask_cluster(c)]
    if operator and not by_kind.get("DaskCluster"):
        problems.append("operator mode without a DaskCluster")
    return problems


# ------------------------------------------------------------------- metadata


def check_name(name: str, *, rfc1035: bool = False) -> list[str]:
    problems = []
    if len(name) > 63:
        problems.append(f"name {name!r} is {len(name)} characters (at most 63)")
    pattern, rule = (DNS_1035, "RFC 1035") if rfc1035 else (DNS_LABEL, "RFC 1123")
    if not pattern.match(name):
        problems.append(f"name {name!r} is not a valid {rule} label")
    return problems


def _lint_metadata(m: Mapping[str, Any]) -> list[str]:
    meta = m["metadata"]
    problems = check_name(str(meta.get("name", "")), rfc1035=m["kind"] == "Service")
    if "generateName" in meta:
        problems.append("generateName is not used: names are derived from the run id")
    problems += _lint_labels(meta.get("labels") or {}, required=True)
    for key in meta.get("annotations") or {}:
        problems += _check_key(key, "annotation")
    return problems


def _check_key(key: str, what: str) -> list[str]:
    prefix, _, name = key.rpartition("/")
    problems = []
    if prefix and (len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix)):
        problems.append(f"{what} key {key!r}: prefix is not a DNS subdomain")
    if not name or len(name) > 63 or not LABEL_NAME.match(name):
        problems.append(f"{what} key {key!r}: name part is invalid or longer than 63")
    return problems


def _lint_labels(labels: Mapping[str, Any], *, required: bool) -> list[str]:
    problems = []
    for key, value in labels.items():
        problems += _check_key(key, "label")
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            problems.append(f"label {key}={value!r}: invalid value (at most 63, alphanumeric ends)")
    if required:
        if LABEL_RUN_ID not in labels:
            problems.append(f"label {LABEL_RUN_ID} is missing")
        if labels.get(LABEL_MANAGED_BY) != MANAGED_BY:
            problems.append(f"label {LABEL_MANAGED_BY}={MANAGED_BY} is missing")
    return problems


def _lint_owner(m: Mapping[str, Any], manifests: Sequence[Mapping[str, Any]]) -> list[str]:
    refs = m["metadata"].get("ownerReferences") or []
    if not refs:
        # Only the anchor (the run's owner) stands alone.
        owners = [r for o in manifests for r in o["metadata"].get("ownerReferences") or []]
        named = {r["name"] for r in owners}
        if m["kind"] == "ConfigMap" and m["metadata"]["name"] in named:
            return []
        return ["has no ownerReferences: deleting the run's anchor would leave it behind"]
    problems = []
    for ref in refs:
        target = [o for o in manifests
                  if o["kind"] == ref.get("kind") and o["metadata"]["name"] == ref.get("name")]  # fmt: skip
        if not target:
            problems.append(f"owner {ref.get('kind')}/{ref.get('name')} is not one of the run's objects")
        elif target[0]["metadata"].get("ownerReferences"):
            problems.append(f"owner {ref.get('name')} is itself owned: one delete must remove the run")
        if not ref.get("uid"):
            problems.append("ownerReference without uid")
    return problems


# ------------------------------------------------------------------------ pods


def _pod_templates(m: Mapping[str, Any]) -> Iterable[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    spec = m.get("spec") or {}
    if m["kind"] in ("Deployment", "Job"):
        template = spec.get("template") or {}
        yield "spec.template", template.get("metadata") or {}, template.get("spec") or {}
    elif m["kind"] == "DaskCluster":
        for part in ("scheduler", "worker"):
            section = spec.get(part) or {}
            yield f"spec.{part}", section.get("metadata") or {}, section.get("spec") or {}


def _lint_pod(pod: Mapping[str, Any], manifests: Sequence[Mapping[str, Any]], *, operator: bool) -> list[str]:
    problems = []
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    containers = list(pod.get("containers") or [])
    if not containers:
        problems.append("no containers")
    for c in containers:
        name = c.get("name", "?")
        problems += [f"container {name}: {p}" for p in check_name(name)]
        ports = [p.get("name") for p in c.get("ports") or []]
        for port in ports:
            if port and (len(port) > 15 or not PORT_NAME.match(port) or not re.search("[a-z]", port)):
                problems.append(f"container {name}: port name {port!r} is not an IANA service name (<= 15)")
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            target = ((c.get(probe) or {}).get("httpGet") or (c.get(probe) or {}).get("tcpSocket") or {}).get("port")
            if isinstance(target, str) and target not in ports:
                problems.append(f"container {name}: {probe} uses port {target!r} it does not declare")
        defined = {e["name"] for e in c.get("env") or []} | (OPERATOR_ENV if operator else set())
        for arg in [*(c.get("command") or []), *(c.get("args") or [])]:
            for ref in ENV_REF.findall(str(arg)):
                if ref not in defined:
                    problems.append(f"container {name}: $({ref}) is not defined in its env, so it stays literal")
        for e in c.get("env") or []:
            ref = ((e.get("valueFrom") or {}).get("secretKeyRef")) or None
            if ref:
                problems += [f"container {name}: {p}" for p in _check_ref(manifests, "Secret", ref["name"], ref["key"], "stringData")]
        for mount in c.get("volumeMounts") or []:
            vol = volumes.get(mount["name"])
            if vol is None:
                problems.append(f"container {name}: mounts unknown volume {mount['name']!r}")
                continue
            if not str(mount.get("mountPath", "")).startswith("/"):
                problems.append(f"container {name}: mountPath {mount.get('mountPath')!r} is not absolute")
            if "configMap" in vol and "subPath" in mount:
                problems += [f"container {name}: {p}" for p in _check_ref(manifests, "ConfigMap", vol["configMap"]["name"], mount["subPath"], "binaryData")]
        paths = [mount.get("mountPath") for mount in c.get("volumeMounts") or []]
        if len(paths) != len(set(paths)):
            problems.append(f"container {name}: two volumes mounted at one path")
        problems += [f"container {name}: {p}" for p in _lint_resources(c.get("resources") or {})]
    return problems  # fmt: skip


def _check_ref(manifests: Sequence[Mapping[str, Any]], kind: str, name: str, key: str, field: str) -> list[str]:
    target = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    if not target:
        return [f"refers to {kind}/{name}, which the run does not create"]
    keys = set(target[0].get(field) or {}) | set(target[0].get("data") or {})
    if key not in keys:
        return [f"refers to key {key!r} that {kind}/{name} does not have"]
    if not CONFIG_KEY.match(key):
        return [f"key {key!r} is not a valid {kind} key"]
    return []


_CPU = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")
_MEM = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_MEM_UNITS = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def quantity(resource: str, value: Any) -> float:
    """A CPU (cores) or memory (bytes) quantity as a number; ValueError if malformed."""
    text = str(value)
    if resource == "cpu":
        m = _CPU.match(text)
        if not m:
            raise ValueError(f"cpu {text!r}")
        return float(m.group(1)) / (1000 if m.group(2) else 1)
    m = _MEM.match(text)
    if not m:
        raise ValueError(f"{resource} {text!r}")
    return float(m.group(1)) * _MEM_UNITS[m.group(2)]


def _lint_resources(resources: Mapping[str, Any]) -> list[str]:
    problems = []
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    for res in set(requests) | set(limits):
        try:
            req = quantity(res, requests[res]) if res in requests else None
            lim = quantity(res, limits[res]) if res in limits else None
        except ValueError as exc:
            problems.append(f"malformed quantity {exc}")
            continue
        if req is not None and lim is not None and req > lim:
            problems.append(f"{res} request {requests[res]} is above its limit {limits[res]}")
    return problems


# ----------------------------------------------------------- workload objects


def _matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _lint_deployment(d: Mapping[str, Any]) -> list[str]:
    spec = d["spec"]
    labels = spec["template"]["metadata"].get("labels") or {}
    problems = []
    match = (spec.get("selector") or {}).get("matchLabels") or {}
    if not _matches(match, labels):
        problems.append(f"selector {match} does not match its pod template labels {labels}")
    policy = spec["template"]["spec"].get("restartPolicy", "Always")
    if policy != "Always":
        problems.append(f"a Deployment's pods need restartPolicy Always, not {policy}")
    return problems


def _lint_job(j: Mapping[str, Any]) -> list[str]:
    spec = j["spec"]
    template = spec["template"]
    labels = template["metadata"].get("labels") or {}
    pod = template["spec"]
    problems = []
    if "selector" in spec:
        if not spec.get("manualSelector"):
            problems.append("a Job selector is generated by Kubernetes unless manualSelector is true")
        match = (spec["selector"] or {}).get("matchLabels") or {}
        if not _matches(match, labels):
            problems.append(f"selector {match} does not match its pod template labels")
    policy = pod.get("restartPolicy")
    if policy not in ("Never", "OnFailure"):
        problems.append(f"a Job's pods need restartPolicy Never or OnFailure, not {policy}")
    pfp = spec.get("podFailurePolicy")
    if pfp:
        if policy != "Never":
            problems.append(f"podFailurePolicy requires restartPolicy Never, not {policy}")
        names = {c["name"] for c in pod.get("containers") or []}
        for rule in pfp.get("rules") or []:
            codes = rule.get("onExitCodes")
            if codes and codes.get("containerName") and codes["containerName"] not in names:
                problems.append(f"podFailurePolicy names container {codes['containerName']!r}, not in the pod")
            if codes and 0 in (codes.get("values") or []) and codes.get("operator") == "In":
                problems.append("podFailurePolicy onExitCodes must not contain 0")
    if spec.get("parallelism") != spec.get("completions"):
        problems.append("parallelism and completions differ: workers would be missing or left over")
    for c in pod.get("topologySpreadConstraints") or []:
        match = (c.get("labelSelector") or {}).get("matchLabels") or {}
        if not _matches(match, labels):
            problems.append(f"topologySpreadConstraints selector {match} does not match the worker pods")
    return problems


def _lint_service(s: Mapping[str, Any], manifests: Sequence[Mapping[str, Any]]) -> list[str]:
    selector = s["spec"].get("selector") or {}
    selected = []
    for m in manifests:
        for path, meta, pod in _pod_templates(m):
            if m["kind"] != "DaskCluster" and _matches(selector, meta.get("labels") or {}):
                selected.append((f"{m['kind']}/{m['metadata']['name']} {path}", pod))
    problems = []
    if len(selected) != 1:
        problems.append(f"selector {selector} matches {len(selected)} pod templates (expected the scheduler's)")
    for _, pod in selected:
        names = {p.get("name") for c in pod.get("containers") or [] for p in c.get("ports") or []}
        for port in s["spec"].get("ports") or []:
            target = port.get("targetPort")
            if isinstance(target, str) and target not in names:
                problems.append(f"targetPort {target!r} is not a port of the selected pods")
    return problems


def _lint_dask_cluster(c: Mapping[str, Any]) -> list[str]:
    name = c["metadata"]["name"]
    problems = []
    # Names the operator derives: the scheduler Service/Deployment, the default
    # worker group, and each worker Deployment (a 10-character suffix).
    for derived in (f"{name}-scheduler", f"{name}-default", f"{name}-default-worker-0123456789"):
        problems += [f"derived {p}" for p in check_name(derived)]
    service = c["spec"]["scheduler"].get("service") or {}
    selector = service.get("selector") or {}
    expected = {"dask.org/cluster-name": name, "dask.org/component": "scheduler"}
    if selector != expected:
        problems.append(f"scheduler service selector {selector} is not the operator's {expected}")
    ports = {p.get("name") for ctr in c["spec"]["scheduler"]["spec"].get("containers") or [] for p in ctr.get("ports") or []}
    for port in service.get("ports") or []:
        if isinstance(port.get("targetPort"), str) and port["targetPort"] not in ports:
            problems.append(f"scheduler service targetPort {port['targetPort']!r} is not a scheduler port")
    policy = c["spec"]["worker"]["spec"].get("restartPolicy", "Always")
    if policy != "Always":
        problems.append("the operator runs workers as Deployments: restartPolicy must be Always")
    return problems  # fmt: skip
