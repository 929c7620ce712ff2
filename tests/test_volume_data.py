"""Data on the workers' volume that the driver cannot see and the spec does not
pin: planned without a digest, hashed by a worker (a real Dask task) once the
cluster is up, pinned in ``plan.data`` and keying the trials (runner.data.on_workers)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner._hashing import dir_digest, file_digest
from runner.data import hash_inputs, on_workers
from runner.errors import SpecError
from runner.plan import explain_misses, make_plan, pin_worker_data
from runner.run import load_environment
from runner.spec import load_spec
from runner.worker import fetch as worker_fetch

TRIAL = "def train(params, ctx):\n    return {'k': params['k']}\n"


def _spec(tmp_path: Path, data_path: str = "/mnt/xrun-test-vol/shards") -> Path:
    (tmp_path / "exp").mkdir(exist_ok=True)
    (tmp_path / "exp" / "t.py").write_text(TRIAL)
    spec = tmp_path / "s.yaml"
    spec.write_text(f"""
trial: {{function: "exp.t:train"}}
data: {{shards: {{path: {data_path}}}}}
cluster: {{backend: docker, docker: {{volumes: [{{volume: team-data, target: /mnt/xrun-test-vol}}]}}}}
sweep: {{parameters: {{k: [1, 2, 3]}}}}
name: vol
xrun: 1
code: {{include: ["exp/*.py"]}}
""")
    return spec


def _plan(spec: Path):  # type: ignore[no-untyped-def]
    loaded = load_spec(spec)
    return make_plan(loaded, load_environment(loaded))


def test_unpinned_data_on_a_named_volume_waits_for_a_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XRUN_CACHE_DIR", str(tmp_path / "cache"))
    plan = _plan(_spec(tmp_path))
    assert plan.data["shards"] == {"path": "/mnt/xrun-test-vol/shards", "sha256": None, "size": None,
                                   "volume": "/mnt/xrun-test-vol", "hashed_on": "worker"}  # fmt: skip
    assert on_workers(plan.data) == {"shards": "/mnt/xrun-test-vol/shards"}
    assert len(plan.pending) == 3 and not plan.cached
    assert explain_misses(plan) == ["3 trial(s) wait for a worker to hash data on the workers' volume (shards): "
                                    "their keys include its sha256"]  # fmt: skip


def test_a_digest_from_the_worker_keys_the_trials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XRUN_CACHE_DIR", str(tmp_path / "cache"))
    plan = _plan(_spec(tmp_path))
    pin_worker_data(plan, {"shards": {"sha256": "ab" * 32, "size": 7}})
    assert plan.data["shards"]["sha256"] == "ab" * 32 and plan.data["shards"]["size"] == 7
    assert not on_workers(plan.data)
    keys = {t.key for t in plan.trials}
    other = _plan(_spec(tmp_path))
    pin_worker_data(other, {"shards": {"sha256": "cd" * 32, "size": 7}})
    assert len(keys) == 3 and keys.isdisjoint({t.key for t in other.trials})  # the data's digest is in every key
    again = _plan(_spec(tmp_path))
    pin_worker_data(again, {"shards": {"sha256": "ab" * 32, "size": 7}})
    assert {t.key for t in again.trials} == keys  # and only the data's digest


@pytest.mark.parametrize(
    ("answer", "message"),
    [({"shards": {"error": "/mnt/xrun-test-vol/shards: no such file or directory on the worker"}},
      "data.shards.path: /mnt/xrun-test-vol/shards: no such file or directory on the worker (on the workers' volume"),
     ({}, "data.shards.path: the worker returned nothing for it"),
     ({"shards": {"sha256": "../../etc", "size": 1}}, "data.shards.path: no sha256 from the worker"),
     ({"shards": {"sha256": "AB" * 32}}, "no sha256 from the worker")],
)  # fmt: skip
def test_what_a_worker_answers_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: dict, message: str) -> None:
    monkeypatch.setenv("XRUN_CACHE_DIR", str(tmp_path / "cache"))
    plan = _plan(_spec(tmp_path))
    with pytest.raises(SpecError) as info:
        pin_worker_data(plan, answer)
    assert message in str(info.value)
    assert plan.data["shards"]["sha256"] is None


def test_dot_dot_cannot_leave_the_volume(tmp_path: Path) -> None:
    """A data path is normalised first: `..` out of the volume is an ordinary (missing) path, not volume data."""
    _spec(tmp_path, "/mnt/xrun-test-vol/../../etc/xrun-nope")
    res = subprocess.run([sys.executable, "-m", "runner.cli", "plan", "s.yaml"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env=_env(tmp_path))  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert "data.shards.path: file not found: /etc/xrun-nope" in res.stderr and "Traceback" not in res.stderr
    inside = hash_inputs(load_spec(_spec(tmp_path, "/mnt/xrun-test-vol/a/../shards")).spec)
    assert inside["shards"]["path"] == "/mnt/xrun-test-vol/shards"


def _env(tmp_path: Path) -> dict[str, str]:
    import os

    return {**os.environ, "XRUN_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "200"}


def test_xrun_plan_says_the_data_is_hashed_on_a_worker(tmp_path: Path) -> None:
    _spec(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = subprocess.run([sys.executable, "-m", "runner.cli", "plan", str(tmp_path / "s.yaml")], cwd=elsewhere,
                         capture_output=True, text=True, timeout=120, env=_env(tmp_path))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "hashed on a worker before the sweep" in res.stdout
    assert "wait for a worker to hash data on the workers' volume (shards)" in res.stdout


# ------------------------------------------------------------------ on a real Dask worker


def test_a_real_worker_hashes_a_file_and_a_directory_as_the_driver_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from distributed import Client, LocalCluster

    from runner import _plugin
    from runner.execute.preflight import hash_volume_data

    monkeypatch.setenv("XRUN_CACHE_DIR", str(tmp_path / "cache"))
    plan = _plan(_spec(tmp_path))
    shards = tmp_path / "shards"
    (shards / "sub").mkdir(parents=True)
    (shards / "a.bin").write_bytes(b"a" * 1000)
    (shards / "sub" / "b.bin").write_bytes(b"b" * 24)
    plan.data["shards"]["path"] = str(shards)  # where this worker sees "the volume"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:  # fmt: skip
        client.register_plugin(_plugin.XrunPlugin(_plugin.worker_sources(), plan.code.archive, plan.code.hash, {}))
        assert hash_volume_data(plan, client, None) is True
        assert plan.data["shards"]["sha256"] == dir_digest(shards) and plan.data["shards"]["size"] == 1024
        assert hash_volume_data(plan, client, None) is False  # nothing left to hash
        plan.data["shards"] = {**plan.data["shards"], "path": str(tmp_path / "gone"), "sha256": None}
        with pytest.raises(SpecError) as info:
            hash_volume_data(plan, client, None)
    assert f"s.yaml:3 data.shards.path: {tmp_path / 'gone'}: no such file or directory on the worker" in str(info.value)


@given(st.dictionaries(st.from_regex(r"[a-z]{1,6}(/[a-z]{1,6})?", fullmatch=True), st.binary(max_size=64),
                       min_size=1, max_size=5))  # fmt: skip
def test_the_worker_digest_is_the_driver_digest(tmp_path_factory: pytest.TempPathFactory, files: dict[str, bytes]) -> None:
    root = tmp_path_factory.mktemp("d")
    written: dict[str, bytes] = {}
    for rel, body in sorted(files.items()):
        target = root / rel
        clash = target.exists() or any(p.is_file() for p in target.parents if p != root and p.is_relative_to(root))
        if clash:  # a file where a directory is wanted, or the reverse
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
        written[rel] = body
    one = next(p for p in sorted(root.rglob("*")) if p.is_file())
    got = worker_fetch.hash_paths({"d": str(root), "f": str(one)})
    assert got["d"] == {"sha256": dir_digest(root), "size": sum(len(b) for b in written.values())}
    assert got["f"] == {"sha256": file_digest(one), "size": len(one.read_bytes())}
    assert json.loads(json.dumps(got)) == got  # plain JSON travels back through Dask


def test_an_adaptive_sweep_needs_the_digest_before_the_cluster_starts(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    spec.write_text(spec.read_text().replace("sweep: {parameters: {k: [1, 2, 3]}}",
                                             "sweep: {method: tpe, samples: 4, parameters: {k: {uniform: [1, 3]}},"
                                             " objective: {metric: k}}"))  # fmt: skip
    with pytest.raises(SpecError, match=r"adaptive sweep plans its generations before the cluster starts; pin its sha256"):
        hash_inputs(load_spec(spec).spec)


@pytest.mark.parametrize(
    ("volume", "message"),
    [("{target: /mnt/v}", "give exactly one of source (a host directory) or volume (a named Docker volume)"),
     ("{target: /mnt/v, volume: team, source: .}", "give exactly one of source"),
     ("{target: /mnt/v, volume: /etc}", "cluster.docker.volumes[0].volume: "),
     ("{target: /mnt/v, volume: ../x}", "cluster.docker.volumes[0].volume: ")],
)  # fmt: skip
def test_a_docker_volume_is_a_host_directory_or_a_plain_volume_name(tmp_path: Path, volume: str, message: str) -> None:
    spec = _spec(tmp_path)
    spec.write_text(spec.read_text().replace("{volume: team-data, target: /mnt/xrun-test-vol}", volume))
    with pytest.raises(SpecError, match=re.escape(message)):
        load_spec(spec)
