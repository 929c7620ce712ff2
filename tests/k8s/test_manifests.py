"""Manifests without a cluster: snapshots, strict schema validation, lints.

Snapshots live in tests/snapshots/k8s/<case>.yaml; after an intended change,
refresh them with::

    XRUN_UPDATE_SNAPSHOTS=1 pytest tests/k8s/test_manifests.py

and review the diff like code. Validation is offline: ``kubernetes-validate``
(strict: unknown fields are errors) for the built-in kinds on three Kubernetes
versions, and the DaskCluster CRD schema shipped inside dask-kubernetes for
operator mode. What schemas cannot see is checked by ``k8s_lint``.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.cluster import _k8s_render as render
from runner.cluster.kubernetes import (
    IMAGE_PLACEHOLDER,
    manifests_for_spec,
    render_dask_cluster,
    render_manifests,
    to_yaml,
    write_manifests,
)

from .conftest import CASES, IMAGE, LONG_NAME, LONG_RUN_ID, PYTHON, RUN_ID, case_spec, make_spec
from .k8s_lint import lint

REPO = Path(__file__).resolve().parents[2]
SNAPSHOTS = REPO / "tests" / "snapshots" / "k8s"
K8S_VERSIONS = ("1.29", "1.32", "1.37")


def manifests(case: str, run_id: str = RUN_ID) -> list[dict[str, Any]]:
    return manifests_for_spec(case_spec(case), run_id=run_id, image_ref=IMAGE, python=PYTHON)


def assert_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("XRUN_UPDATE_SNAPSHOTS") == "1" or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, (
        f"{name} changed; rerun with XRUN_UPDATE_SNAPSHOTS=1 if intended and review the diff"
    )


# ------------------------------------------------------------------ snapshots


@pytest.mark.parametrize("case", sorted(CASES))
def test_manifests_match_snapshot(case: str) -> None:
    assert_snapshot(f"{case}.yaml", to_yaml(manifests(case)))


def test_rendering_is_a_pure_function_of_the_spec() -> None:
    assert manifests("full") == manifests("full")
    assert to_yaml(manifests("full")) == to_yaml(manifests("full"))


# ------------------------------------------------------------ schema validation


def _builtin(ms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Built-in objects, plus the DaskCluster's pod specs as Pods (schema-checked too)."""
    out = []
    for m in ms:
        if m["kind"] != "DaskCluster":
            out.append(m)
            continue
        for part in ("scheduler", "worker"):
            section = m["spec"][part]
            out.append({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": f"{m['metadata']['name']}-{part}", **section.get("metadata", {})},
                        "spec": section["spec"]})  # fmt: skip
    return out


def test_schema_versions_are_shipped() -> None:
    import kubernetes_validate.utils as kvu

    shipped = kvu.all_versions()
    for version in K8S_VERSIONS:
        assert any(v.startswith(version + ".") for v in shipped), f"kubernetes-validate lacks {version}: {shipped}"


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_manifests_validate_strictly(case: str, version: str) -> None:
    import kubernetes_validate

    for m in _builtin(manifests(case)):
        assert kubernetes_validate.validate(m, version, strict=True) == version


def test_strict_validation_rejects_an_unknown_field() -> None:
    """A negative control: strict mode is really on (a typo would not pass)."""
    import kubernetes_validate

    job = copy.deepcopy(manifests("basic")[-1])
    job["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # typo of resources
    with pytest.raises(kubernetes_validate.ValidationError, match="resource"):
        kubernetes_validate.validate(job, "1.32", strict=True)


def _crd_schema() -> dict[str, Any]:
    """The DaskCluster openAPIV3Schema from dask-kubernetes, made strict.

    The API server prunes fields a structural schema does not declare, so an
    unknown field would be silently dropped: here it is an error instead.
    apiVersion/kind/metadata are checked by the API server (metadata below).
    """
    import dask_kubernetes

    crd_dir = Path(dask_kubernetes.__file__).parent / "operator/deployment/helm/dask-kubernetes-operator/crds"
    crd = yaml.safe_load((crd_dir / "daskcluster.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])

    def strict(node: Any) -> None:
        if isinstance(node, dict):
            if (node.get("type") == "object" and "properties" in node
                    and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):  # fmt: skip
                node["additionalProperties"] = False
            for value in node.values():
                strict(value)
        elif isinstance(node, list):
            for value in node:
                strict(value)

    strict(schema)
    schema["properties"].update(
        apiVersion={"const": "kubernetes.dask.org/v1"}, kind={"const": "DaskCluster"}, metadata={"type": "object"}
    )
    return schema


def _object_meta_schema() -> dict[str, Any]:
    """ObjectMeta from kubernetes-validate's strict 1.32 definitions (refs are local)."""
    import json

    import kubernetes_validate

    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / "v1.32.0-local-strict"
    defs = json.loads((root / "_definitions.json").read_text())["$defs"]
    return {"$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "$defs": defs}


def test_dask_cluster_validates_against_the_operator_crd() -> None:
    import jsonschema

    (cluster,) = [m for m in manifests("operator") if m["kind"] == "DaskCluster"]
    schema = _crd_schema()
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(cluster)]
    assert errors == []
    meta = jsonschema.Draft202012Validator(_object_meta_schema())
    meta.validate(cluster["metadata"])
    assert list(meta.iter_errors({**cluster["metadata"], "label": {}}))  # negative control
    # Negative control: the strict CRD schema does reject a misplaced field.
    bad = copy.deepcopy(cluster)
    bad["spec"]["worker"]["spec"]["containers"][0]["resource"] = {}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(bad))


def test_operator_mode_uses_the_same_image_resources_labels_and_secrets() -> None:
    spec = case_spec("operator")
    cluster = render_dask_cluster(spec, run_id=RUN_ID, image_ref=IMAGE, python=PYTHON)
    plain = {m["kind"]: m for m in render_manifests(spec, run_id=RUN_ID, image_ref=IMAGE, python=PYTHON)}
    job_pod = plain["Job"]["spec"]["template"]["spec"]
    worker = cluster["spec"]["worker"]["spec"]
    assert cluster["spec"]["worker"]["replicas"] == spec.cluster.workers
    (c_job,), (c_op,) = job_pod["containers"], worker["containers"]
    assert c_op["image"] == c_job["image"] == IMAGE
    assert c_op["command"] == c_job["command"]
    assert c_op["resources"] == c_job["resources"]
    assert c_op["args"][0] == "$(DASK_SCHEDULER_ADDRESS)" and "$(DASK_WORKER_NAME)" in c_op["args"]
    assert [e for e in c_op["env"] if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]] == [
        e for e in c_job["env"] if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    ]
    assert "restartPolicy" not in worker  # the operator's Deployments restart workers
    labels = cluster["metadata"]["labels"]
    assert labels[render.LABEL_RUN_ID] == RUN_ID and labels[render.LABEL_MANAGED_BY] == "xrun"
    assert cluster["metadata"]["ownerReferences"][0]["name"] == plain["ConfigMap"]["metadata"]["name"]


# ----------------------------------------------------------------------- lints


@pytest.mark.parametrize("case", sorted(CASES))
def test_manifests_pass_the_lints(case: str) -> None:
    ms = manifests(case)
    assert lint(ms, operator=case == "operator") == []


def _job(ms: list[dict[str, Any]]) -> dict[str, Any]:
    return next(m for m in ms if m["kind"] == "Job")


def _kind(ms: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(m for m in ms if m["kind"] == kind)


BREAKAGES = {
    "restart policy": (
        lambda ms: _job(ms)["spec"]["template"]["spec"].update(restartPolicy="OnFailure"),
        "podFailurePolicy requires restartPolicy Never",
    ),
    "service selector": (
        lambda ms: _kind(ms, "Service")["spec"]["selector"].update({"app.kubernetes.io/component": "schedular"}),
        "matches 0 pod templates",
    ),
    "deployment selector": (
        lambda ms: _kind(ms, "Deployment")["spec"]["selector"]["matchLabels"].update(extra="x"),
        "does not match its pod template labels",
    ),
    "job selector": (
        lambda ms: _job(ms)["spec"].update(manualSelector=True, selector={"matchLabels": {"a": "b"}}),
        "does not match its pod template labels",
    ),
    "name too long": (
        lambda ms: _kind(ms, "Service")["metadata"].update(name="x" * 64),
        "at most 63",
    ),
    "uppercase name": (
        lambda ms: _job(ms)["metadata"].update(name="xrun-Run"),
        "not a valid RFC 1123 label",
    ),
    "undefined env ref": (
        lambda ms: _job(ms)["spec"]["template"]["spec"]["containers"][0]["args"].append("$(NOPE)"),
        "$(NOPE) is not defined",
    ),
    "missing owner": (
        lambda ms: _job(ms)["metadata"].pop("ownerReferences"),
        "has no ownerReferences",
    ),
    "missing run label": (
        lambda ms: _job(ms)["spec"]["template"]["metadata"]["labels"].pop(render.LABEL_RUN_ID),
        "xrun.dev/run-id is missing",
    ),
    "request above limit": (
        lambda ms: _job(ms)["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"].update(cpu="8"),
        "above its limit",
    ),
    "probe port": (
        lambda ms: _kind(ms, "Deployment")["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"].update(port="dash"),
        "does not declare",
    ),
    "secret key": (
        lambda ms: _kind(ms, "Secret")["stringData"].pop("HF_TOKEN"),
        "does not have",
    ),
    "exit code rule": (
        lambda ms: _job(ms)["spec"]["podFailurePolicy"]["rules"][1]["onExitCodes"].update(containerName="wrker"),
        "names container 'wrker'",
    ),
}  # fmt: skip


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_lints_catch_what_schemas_miss(breakage: str) -> None:
    """Negative controls: each lint fires on a manifest broken on purpose."""
    import kubernetes_validate

    ms = manifests("full")
    break_it, message = BREAKAGES[breakage]
    break_it(ms)
    problems = lint(ms)
    assert any(message in p for p in problems), problems
    if breakage in ("restart policy", "service selector", "missing owner", "undefined env ref", "secret key"):
        # ...and the schemas alone accept it: this is why the lints exist.
        for m in ms:
            kubernetes_validate.validate(m, "1.32", strict=True)


def test_long_names_fit_and_stay_unique() -> None:
    assert len(LONG_RUN_ID) == 64 and len(LONG_NAME) == 40
    ms = manifests_for_spec(make_spec(name=LONG_NAME), run_id=LONG_RUN_ID, image_ref=IMAGE)
    assert lint(ms) == []
    names = [m["metadata"]["name"] for m in ms]
    assert all(len(n) <= 63 for n in names), names
    label = ms[0]["metadata"]["labels"][render.LABEL_RUN_ID]
    assert len(label) <= 63 and label != LONG_RUN_ID
    assert ms[0]["metadata"]["annotations"][render.ANNOTATION_RUN_ID] == LONG_RUN_ID  # exact run id kept
    other = manifests_for_spec(make_spec(name=LONG_NAME), run_id=LONG_RUN_ID[:-1] + "0", image_ref=IMAGE)
    assert {m["metadata"]["name"] for m in other}.isdisjoint(names)
    operator = manifests_for_spec(make_spec({"cluster": {"kubernetes": {"operator": True}}}, name=LONG_NAME),
                                  run_id=LONG_RUN_ID, image_ref=IMAGE)  # fmt: skip
    assert lint(operator, operator=True) == []


@settings(max_examples=150, deadline=None)
@given(
    name=st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,39}\Z"),
    stamp=st.datetimes().map(lambda d: d.strftime("%Y%m%dT%H%M%SZ")),
    suffix=st.text("0123456789abcdef", min_size=6, max_size=6),
)
def test_every_spec_name_and_run_id_gives_valid_names(name: str, stamp: str, suffix: str) -> None:
    run_id = f"{name}-{stamp}-{suffix}"
    names = render.Names.for_run(run_id)
    for n in (names.anchor, names.secret, names.data, names.scheduler, names.workers):
        assert len(n) <= 63 and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", n), n
    label = render.run_label(run_id)
    assert len(label) <= 63 and re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", label), label
    cluster = render.operator_cluster_name(run_id)
    assert len(f"{cluster}-default-worker-0123456789") <= 63


# --------------------------------------------------------------- placeholders


def test_manifests_never_hold_secret_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "s3cr3t-value")
    ms = manifests("full")
    assert "s3cr3t-value" not in to_yaml(ms)
    (secret,) = [m for m in ms if m["kind"] == "Secret"]
    assert secret["stringData"] == {"WANDB_API_KEY": "<xrun:secret WANDB_API_KEY>", "HF_TOKEN": "<xrun:secret HF_TOKEN>"}
    # Values reach workers as secretKeyRefs, never as literal env values or args.
    worker = _job(ms)["spec"]["template"]["spec"]["containers"][0]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in worker["env"] if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]}
    assert set(refs) == {"WANDB_API_KEY", "HF_TOKEN"}
    paths = write_manifests(ms, tmp_path / "out")
    assert all("s3cr3t-value" not in p.read_text() for p in paths)


def test_resolve_fills_owner_uid_secrets_and_data(tmp_path: Path) -> None:
    data = tmp_path / "data" / "iris.csv"
    data.parent.mkdir()
    data.write_bytes(b"a,b\n1,2\n")
    spec = make_spec({**CASES["full"], "data": {"iris": {"path": str(data)}}})
    ms = render_manifests(spec, run_id=RUN_ID, image_ref=IMAGE)
    filled = render.resolve_placeholders(ms[1:], owner_uid="1234-uid", secrets={"WANDB_API_KEY": "w", "HF_TOKEN": "h"})
    assert render.placeholders(filled) == []
    assert {r["uid"] for m in filled for r in m["metadata"]["ownerReferences"]} == {"1234-uid"}
    secret = _kind(filled, "Secret")
    assert secret["stringData"] == {"WANDB_API_KEY": "w", "HF_TOKEN": "h"}
    import base64

    (content,) = _kind(filled, "ConfigMap")["binaryData"].values()
    assert base64.b64decode(content) == b"a,b\n1,2\n"
    assert render.placeholders(ms), "resolving must not change the rendered manifests"
    with pytest.raises(KeyError, match="HF_TOKEN"):
        render.resolve_placeholders(ms, owner_uid="u", secrets={"WANDB_API_KEY": "w"})


def test_data_files_are_mounted_where_trials_look_for_them(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.csv").write_text("1")
    (tmp_path / "d" / "sub" / "b c.csv").write_text("2")
    (tmp_path / "one.txt").write_text("3")
    spec = make_spec(data={"dir": {"path": str(tmp_path / "d")}, "one": {"path": str(tmp_path / "one.txt")}})
    ms = render_manifests(spec, run_id=RUN_ID, image_ref=IMAGE)
    assert lint(ms) == []
    mounts = _job(ms)["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    by_path = {m["mountPath"]: m["subPath"] for m in mounts if m["name"] == "data"}
    assert set(by_path) == {str(tmp_path / "d" / "a.csv"), str(tmp_path / "d" / "sub" / "b c.csv"), str(tmp_path / "one.txt")}
    assert all(re.fullmatch(r"[-._a-zA-Z0-9]+", key) for key in by_path.values())


def test_too_much_data_is_refused_with_advice(tmp_path: Path) -> None:
    from runner.cluster.kubernetes import check_data
    from runner.errors import UsageError

    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * (render.DATA_CONFIGMAP_LIMIT + 1))
    with pytest.raises(UsageError, match="url:"):
        check_data(make_spec(data={"big": {"path": str(big)}}))


def test_write_manifests_writes_yaml_in_apply_order(tmp_path: Path) -> None:
    ms = manifests("full")
    paths = write_manifests(ms, tmp_path / "out")
    assert [p.name.split("-", 2)[:2] for p in paths] == [
        ["00", "configmap"], ["01", "secret"], ["02", "configmap"], ["03", "service"], ["04", "deployment"], ["05", "job"],
    ]  # fmt: skip
    assert [yaml.safe_load(p.read_text()) for p in paths] == ms
    assert "filled by `xrun run`" in paths[1].read_text()
    with pytest.raises(ValueError, match="holds values"):
        write_manifests(render.resolve_placeholders(ms, owner_uid="u", secrets={"WANDB_API_KEY": "w", "HF_TOKEN": "h"},
                                                    files={"/project/data/iris.csv": b""}), tmp_path / "x")  # fmt: skip


def test_without_an_image_the_manifests_say_how_to_get_one() -> None:
    ms = manifests_for_spec(case_spec("basic"), run_id=RUN_ID)
    assert _job(ms)["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_PLACEHOLDER
    with pytest.raises(ValueError, match="without an image"):
        render.resolve_placeholders(ms, owner_uid="u", secrets={})


def test_resources_and_placement_follow_the_spec() -> None:
    ms = manifests("full")
    pod = _job(ms)["spec"]["template"]["spec"]
    (worker,) = pod["containers"]
    # Dask's limit is memory_limit; the container has 256 MiB more for the nanny
    # and the interpreter, so Dask acts before the kernel's OOM killer does.
    assert worker["resources"] == {"requests": {"cpu": "2", "memory": "3328Mi"}, "limits": {"cpu": "2", "memory": "3328Mi"}}
    assert worker["args"][worker["args"].index("--memory-limit") + 1] == str(3 * 2**30)
    # /tmp (spill directory, artifacts) is bounded: twice the memory plus 1 GiB.
    assert pod["volumes"][0] == {"name": "tmp", "emptyDir": {"sizeLimit": "7Gi"}}
    assert worker["args"][worker["args"].index("--nthreads") + 1] == "2"
    assert "--death-timeout" in worker["args"]
    assert pod["nodeSelector"] == {"pool": "cpu"}
    assert {t["key"] for t in pod["tolerations"]} >= {"cloud.google.com/gke-spot"}
    job = _job(ms)["spec"]
    assert job["parallelism"] == job["completions"] == 3
    assert job["podFailurePolicy"]["rules"][0] == {
        "action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]
    }
    assert job["activeDeadlineSeconds"] > 0 and job["ttlSecondsAfterFinished"] > 0
    scheduler = _kind(ms, "Deployment")["spec"]["template"]["spec"]
    assert scheduler["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
    assert "tolerations" not in scheduler  # the scheduler stays off spot nodes
    prefs = scheduler["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert {p["preference"]["matchExpressions"][0]["operator"] for p in prefs} == {"NotIn"}


def test_tolerations_pull_secrets_service_account_and_deadline_from_the_spec() -> None:
    """These are spec v1 fields (cluster.kubernetes.*), rendered into every pod."""
    toleration = {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
    spec = make_spec({"cluster": {"memory_limit": "1GiB", "kubernetes": {
        "tolerations": [toleration], "image_pull_secrets": ["regcred"],
        "service_account": "xrun-runner", "deadline": "1h"}}})  # fmt: skip
    ms = render_manifests(spec, run_id=RUN_ID, image_ref=IMAGE)
    pod = _job(ms)["spec"]["template"]["spec"]
    assert pod["tolerations"] == [toleration]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["serviceAccountName"] == "xrun-runner"
    assert _job(ms)["spec"]["activeDeadlineSeconds"] == 3600
    assert lint(ms) == []
    import kubernetes_validate

    for m in ms:
        kubernetes_validate.validate(m, "1.37", strict=True)
