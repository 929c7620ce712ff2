"""`cluster.kubernetes.volumes` (PersistentVolumeClaim, NFS): rendered into the
worker pods only, read-only by default, and data on them is read where it is
(not shipped in the ConfigMap), hashed on a worker when the driver cannot see it
and the spec pins no sha256."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.cluster.kubernetes import check_data, manifests_for_spec, render_manifests
from runner.data import hash_inputs
from runner.errors import SpecError, UsageError
from runner.spec import loads_spec

from .conftest import IMAGE, PYTHON, RUN_ID, case_spec, make_spec
from .k8s_lint import lint

VOLUMES = [
    {"name": "training-data", "claim": "filestore-data", "mount_path": "/mnt/data/"},
    {"nfs": {"path": "/exports/x", "server": "nfs.internal"}, "name": "nfs", "mount_path": "/mnt/nfs", "read_only": False},
]


def _pod(ms: list[dict], kind: str) -> dict:
    m = next(m for m in ms if m["kind"] == kind)
    return m["spec"]["template"]["spec"]


def test_volumes_are_mounted_in_workers_only_and_read_only_by_default() -> None:
    ms = render_manifests(case_spec("volumes"), run_id=RUN_ID, image_ref=IMAGE, python=PYTHON)
    assert lint(ms) == []
    worker = _pod(ms, "Job")
    volumes = {v["name"]: v for v in worker["volumes"]}
    assert volumes["vol-training-data"]["persistentVolumeClaim"] == {"claimName": "filestore-data", "readOnly": True}
    assert volumes["vol-scratch"]["nfs"] == {"server": "10.0.0.2", "path": "/exports/scratch", "readOnly": False}
    mounts = {m["name"]: m for m in worker["containers"][0]["volumeMounts"]}
    assert mounts["vol-training-data"] == {"name": "vol-training-data", "mountPath": "/mnt/data", "readOnly": True}
    assert mounts["vol-scratch"]["readOnly"] is False
    assert not any(v["name"].startswith("vol-") for v in _pod(ms, "Deployment")["volumes"])  # not the scheduler
    # data on a volume is not shipped: only the local file is in the data ConfigMap
    shipped = next(m for m in ms if m["kind"] == "ConfigMap" and "binaryData" in m)["binaryData"]
    assert [k for k in shipped if "train" in k] == [] and len(shipped) == 1


def test_operator_mode_mounts_the_volumes_too() -> None:
    spec = make_spec({"cluster": {"kubernetes": {"operator": True, "volumes": VOLUMES}}})
    cluster = next(m for m in manifests_for_spec(spec, run_id=RUN_ID, image_ref=IMAGE, python=PYTHON) if m["kind"] == "DaskCluster")
    worker = cluster["spec"]["worker"]["spec"]
    assert {v["name"] for v in worker["volumes"]} >= {"vol-training-data", "vol-nfs"}
    assert {m["mountPath"] for m in worker["containers"][0]["volumeMounts"]} >= {"/mnt/data", "/mnt/nfs"}


def test_data_on_a_volume_the_driver_cannot_see_is_left_for_a_worker_to_hash() -> None:
    unpinned = make_spec({"cluster": {"kubernetes": {"volumes": VOLUMES}}, "data": {"t": {"path": "/mnt/data/t.csv"}}})
    assert hash_inputs(unpinned)["t"] == {"path": "/mnt/data/t.csv", "sha256": None, "size": None,
                                          "volume": "/mnt/data", "hashed_on": "worker"}  # fmt: skip
    # rendered like pinned data: the volume is mounted, the file is not shipped in the data ConfigMap
    ms = render_manifests(unpinned, run_id=RUN_ID, image_ref=IMAGE, python=PYTHON)
    assert lint(ms) == []
    mounts = {m["mountPath"] for m in _pod(ms, "Job")["containers"][0]["volumeMounts"]}
    assert "/mnt/data" in mounts
    assert not [m for m in ms if m["kind"] == "ConfigMap" and any("t.csv" in k for k in m.get("binaryData", {}))]
    pinned = make_spec({"cluster": {"kubernetes": {"volumes": VOLUMES}},
                        "data": {"t": {"path": "/mnt/data/t.csv", "sha256": "cd" * 32}}})  # fmt: skip
    assert hash_inputs(pinned)["t"] == {"path": "/mnt/data/t.csv", "sha256": "cd" * 32, "size": None, "volume": "/mnt/data"}


def test_a_missing_path_off_any_volume_is_still_a_spec_error(tmp_path: Path) -> None:
    (tmp_path / "e.py").write_text("def f(p, ctx):\n    return {}\n")
    text = f"""
xrun: 1
name: v
code: {{root: {tmp_path}}}
image: {{registry: registry.example.com/me}}
trial: {{function: "e:f"}}
data: {{t: {{path: /mnt/elsewhere/t.csv}}}}
cluster: {{backend: kubernetes, kubernetes: {{volumes: [{{name: d, claim: c, mount_path: /mnt/data}}]}}}}
"""
    with pytest.raises(SpecError, match=r"file not found: /mnt/elsewhere/t\.csv"):
        loads_spec(text, tmp_path / "spec.yaml")
    loaded = loads_spec(text.replace("/mnt/elsewhere/", "/mnt/data/"), tmp_path / "spec.yaml")
    assert loaded.spec.volume_for(Path("/mnt/data/t.csv")) == ("/mnt/data", None)


@pytest.mark.parametrize(
    ("volume", "message"),
    [({"name": "a", "mount_path": "/m"}, "exactly one of claim"),
     ({"name": "a", "mount_path": "/m", "claim": "c", "nfs": {"server": "s", "path": "/p"}}, "exactly one of claim"),
     ({"name": "a", "mount_path": "relative", "claim": "c"}, "absolute path"),
     ({"name": "a", "mount_path": "/m/../etc", "claim": "c"}, "without '..'"),
     ({"name": "Bad_Name", "mount_path": "/m", "claim": "c"}, "pattern")],
)  # fmt: skip
def test_bad_volumes_are_spec_errors(volume: dict, message: str) -> None:
    with pytest.raises(Exception, match=message):
        make_spec({"cluster": {"kubernetes": {"volumes": [volume]}}})


def test_duplicate_volume_names_are_refused() -> None:
    with pytest.raises(Exception, match="volume names must be distinct: 'x'"):
        make_spec({"cluster": {"kubernetes": {"volumes": [{"name": "x", "claim": "a", "mount_path": "/a"},
                                                          {"name": "x", "claim": "b", "mount_path": "/b"}]}}})  # fmt: skip


def test_the_configmap_limit_points_to_url_and_volumes(tmp_path: Path) -> None:
    from runner.cluster import _k8s_render as render

    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * (render.DATA_CONFIGMAP_LIMIT + 1))
    with pytest.raises(UsageError) as info:
        check_data(make_spec(data={"big": {"path": str(big)}}))
    assert "`url:`" in str(info.value) and "cluster.kubernetes.volumes" in str(info.value)
    assert 'docs/kubernetes.md, "Data"' in str(info.value)


def _env(container: dict) -> dict:
    return {e["name"]: e.get("value") for e in container["env"]}


def test_a_pod_s_own_data_cache_is_bounded_below_its_tmp_volume() -> None:
    """Without a shared claim each worker pod caches fetched data in its /tmp, an
    emptyDir with a size limit: the cache's bound keeps it from getting the pod evicted."""
    for memory, tmp_bytes in ((None, 10 * 2**30), ("2GiB", 5 * 2**30)):
        spec = make_spec({"cluster": {"memory_limit": memory}})
        ms = render_manifests(spec, run_id=RUN_ID, image_ref=IMAGE, python=PYTHON)
        assert lint(ms) == []
        worker = _pod(ms, "Job")
        tmp = next(v for v in worker["volumes"] if v["name"] == "tmp")["emptyDir"]["sizeLimit"]
        env = _env(worker["containers"][0])
        assert "XRUN_DATA_CACHE" not in env and int(env["XRUN_DATA_CACHE_MAX"]) == tmp_bytes // 2
        assert tmp in ("10Gi", "5Gi")
        assert not any(v["name"] == "data-cache" for v in worker["volumes"])


def test_a_data_cache_claim_is_shared_by_the_worker_pods_read_write() -> None:
    spec = make_spec({"cluster": {"kubernetes": {"volumes": VOLUMES, "data_cache": {"max": "50GiB", "claim": "xrun-cache"}}}})
    ms = render_manifests(spec, run_id=RUN_ID, image_ref=IMAGE, python=PYTHON)
    assert lint(ms) == []  # every supported Kubernetes version's schema
    worker = _pod(ms, "Job")
    volumes = {v["name"]: v for v in worker["volumes"]}
    assert volumes["data-cache"]["persistentVolumeClaim"] == {"claimName": "xrun-cache", "readOnly": False}
    container = worker["containers"][0]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["data-cache"] == {"name": "data-cache", "mountPath": "/var/cache/xrun-data", "readOnly": False}
    env = _env(container)
    assert env["XRUN_DATA_CACHE"] == "/var/cache/xrun-data" and env["XRUN_DATA_CACHE_MAX"] == str(50 * 2**30)
    assert "data-cache" not in {v["name"] for v in _pod(ms, "Deployment")["volumes"]}  # not the scheduler
    operator = make_spec({"cluster": {"kubernetes": {"operator": True, "data_cache": {"claim": "xrun-cache"}}}})
    cluster = next(m for m in manifests_for_spec(operator, run_id=RUN_ID, image_ref=IMAGE, python=PYTHON)
                   if m["kind"] == "DaskCluster")  # fmt: skip
    pod = cluster["spec"]["worker"]["spec"]
    assert "data-cache" in {v["name"] for v in pod["volumes"]}
    env = _env(pod["containers"][0])
    assert env["XRUN_DATA_CACHE"] == "/var/cache/xrun-data" and "XRUN_DATA_CACHE_MAX" not in env  # the workers' default


@pytest.mark.parametrize("cache, where", [
    ({"claim": "Not_A_Name"}, "cluster.kubernetes.data_cache.claim"),
    ({"claim": "c", "max": "lots"}, "cluster.kubernetes.data_cache.max"),
    ({"max": "1GiB"}, "cluster.kubernetes.data_cache.claim"),
    ({"claim": "c", "size": "1GiB"}, "cluster.kubernetes.data_cache"),
])  # fmt: skip
def test_a_bad_data_cache_is_a_spec_error_at_its_line(tmp_path: Path, cache: dict, where: str) -> None:
    import yaml

    (tmp_path / "e.py").write_text("def f(p, ctx):\n    return {}\n")
    text = (f"xrun: 1\nname: v\ncode: {{root: {tmp_path}}}\nimage: {{registry: registry.example.com/me}}\n"
            f"trial: {{function: 'e:f'}}\ncluster:\n  backend: kubernetes\n  kubernetes:\n"
            f"    data_cache: {yaml.safe_dump(cache, default_flow_style=True).strip()}\n")  # fmt: skip
    with pytest.raises(SpecError) as err:
        loads_spec(text, tmp_path / "s.yaml")
    assert where in str(err.value) and "s.yaml:" in str(err.value)
