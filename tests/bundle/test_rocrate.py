"""``ro-crate-metadata.json``: a Process Run Crate that roc-validator accepts, offline.

The validator resolves the crate's JSON-LD context
(https://w3id.org/ro/crate/1.1/context) over HTTP through a requests-cache
SQLite file. These tests never touch the network: they seed that cache from
``ro-crate-1.1-context.jsonld`` beside this file (the RO-Crate 1.1 context, CC0,
as shipped in ro-crate-py 0.13 ``rocrate/data/ro-crate.jsonld``) and run the
validator with ``offline=True``, which fails when anything is missing from the
cache rather than fetching it.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import rocrate_validator.utils.log  # a dev dependency: validation must never be skipped

from runner.bundle.manifest import MANIFEST, verify, write_manifest
from runner.bundle.rocrate import LIST_LIMIT, PROFILE, crate_metadata, write_crate
from runner.bundle.write import BundleWriter
from runner.errors import UsageError
from runner.seal import seal as seal_bundle

HERE = Path(__file__).resolve().parent
CONTEXT_URL = "https://w3id.org/ro/crate/1.1/context"
COMPLETED = "http://schema.org/CompletedActionStatus"
FAILED = "http://schema.org/FailedActionStatus"


# ------------------------------------------------------------------ validator


@pytest.fixture(scope="session")
def context_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A requests-cache database holding the RO-Crate 1.1 context, as the validator reads it."""
    import requests
    import urllib3
    from requests.structures import CaseInsensitiveDict
    from requests_cache import CachedSession

    body = (HERE / "ro-crate-1.1-context.jsonld").read_bytes()
    name = tmp_path_factory.mktemp("rocrate-validator") / "http_cache"
    headers = {"Content-Type": "application/ld+json"}
    response = requests.Response()
    response.status_code, response.reason, response.url = 200, "OK", CONTEXT_URL
    response._content = body
    response.encoding = "utf-8"
    response.headers = CaseInsensitiveDict(headers)
    response.request = requests.Request("GET", CONTEXT_URL).prepare()
    response.raw = urllib3.HTTPResponse(body=io.BytesIO(body), headers=headers, status=200,
                                        preload_content=False, request_url=CONTEXT_URL)  # fmt: skip
    session = CachedSession(cache_name=str(name), backend="sqlite", expire_after=-1)
    session.cache.save_response(response)
    session.close()
    return name


def validate(bundle: Path, cache: Path) -> list[str]:
    """roc-validator's issues with the bundle's crate: Process Run Crate, REQUIRED level."""
    from rocrate_validator import services
    from rocrate_validator.models import ValidationSettings

    settings = ValidationSettings(
        rocrate_uri=str(bundle.resolve()),
        profile_identifier="process-run-crate",
        requirement_severity="REQUIRED",
        offline=True,
        cache_path=cache,
    )
    result = services.validate(settings)
    issues = [f"{i.check.identifier}: {i.message}" for i in result.get_issues()]
    skipped = [f"{d}" for d in result.skipped_check_details]
    assert not skipped, f"checks were skipped, not passed: {skipped}"
    return issues if issues or result.passed() else ["validation did not pass"]


def process_run_problems(crate: dict[str, Any]) -> list[str]:
    """What the validator does not check at REQUIRED level: the run itself is there
    (with one more action per prepare / final stage), each mentioned by the root.

    The profile's MUST shapes target CreateAction instances, so a crate with no
    action at all passes them; xrun's crates must describe the run.
    """
    graph = {e["@id"]: e for e in crate["@graph"]}
    root = graph.get("./", {})
    actions = [e for e in graph.values() if e.get("@type") == "CreateAction"]
    problems = []
    if "#run" not in {a["@id"] for a in actions}:
        problems.append("no CreateAction for the run")
    if not all(a["@id"] in ("#run", "#stage-prepare", "#stage-final") for a in actions):
        problems.append(f"unexpected actions: {sorted(a['@id'] for a in actions)}")  # the run, then one per stage
    mentions = root.get("mentions")
    mentions = mentions if isinstance(mentions, list) else [mentions]
    for action in actions:
        if {"@id": action["@id"]} not in mentions:
            problems.append(f"the root does not mention the CreateAction {action['@id']}")
    return problems


def crate_of(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / "ro-crate-metadata.json").read_text(encoding="utf-8"))


def graph_of(bundle: Path) -> dict[str, dict[str, Any]]:
    return {e["@id"]: e for e in crate_of(bundle)["@graph"]}


def ids(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return [v["@id"] for v in values]


def seal(bundle: Path) -> None:
    """What BundleWriter.finish does once wired: crate, then manifest."""
    write_crate(bundle)
    write_manifest(bundle)


# ------------------------------------------------------------------ bundles


RESOLVED = {
    "xrun": 1,
    "name": "crate-unit",
    "description": "an SVM over C, for the crate tests",
    "trial": {"function": "experiments.demo:train", "retries": 0, "timeout": 60.0},
    "sweep": {"method": "grid", "parameters": {"C": [1, 2, 3]}, "seed": 1},
}


def make_bundle(root: Path, *, status: str = "ok", logs: int = 3, artifacts: int = 2,
                report: bool = True) -> Path:  # fmt: skip
    """A bundle written by the real BundleWriter, without running anything."""
    writer = BundleWriter(root, "crate-unit-20260101T000000Z-abc123")
    writer.write_inputs(
        spec_text="xrun: 1\nname: crate-unit\n",
        resolved=RESOLVED,
        env_files={"freeze.txt": b"scikit-learn==1.9.1\n"},
        env_info={"kind": "current", "lock_hash": "ab" * 32},
        code_archive=b"\x1f\x8b not really a tarball",
        git={"commit": None},
        code_files={"experiments/demo.py": "cd" * 32},
        data={"iris": {"path": "/data/iris.csv", "sha256": "ef" * 32, "size": 4551},
              "remote": {"url": "s3://bucket/x.parquet", "sha256": "12" * 32, "size": None}},
    )  # fmt: skip
    for i in range(logs):
        tid = f"t{i:05d}"
        ok = status == "ok" or i > 0
        record = {"id": tid, "key": f"{i:064x}", "params": {"C": i}, "seed": i,
                  "status": "ok" if ok else "error", "metrics": {"accuracy": 0.9} if ok else None,
                  "error": None if ok else "ValueError: boom", "failure_class": None if ok else "error",
                  "start": 1.0, "end": 2.0, "attempts": 1, "cached": False}  # fmt: skip
        arts = [("model.txt", f"model {i}".encode())] if i < artifacts else None
        writer.record_trial(record, log=f"trial {tid}\n", artifacts=arts)
    failed = 0 if status == "ok" else 1
    summary = {
        "status": status,
        "spec_name": "crate-unit",
        "backend": "local",
        "counts": {"total": logs, "ok": logs - failed, "failed": failed, "cached": 0, "not_run": 0},
        "failures": {"error": failed} if failed else {},
        "best": {"trial": "t00001", "metric": "accuracy", "goal": "maximize", "value": 0.9},
        "duration_seconds": 12.4,
        "code_hash": "c0de" * 16,
        "sweep": {"method": "grid", "seed": 1, "trials": logs},
    }
    image = {"image": "xrun-env/crate-unit:ab-cd", "image_id": "sha256:" + "9" * 64}
    writer.finish(summary, host={"driver": {}, "backend": "local", "workers": {}},
                  extra={"image.json": image})  # fmt: skip
    seal_bundle(root)
    if report:
        (root / "report.html").write_text("<html></html>\n", encoding="utf-8")
    return root


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "b")


DEMO = """
from pathlib import Path


def train(params, ctx):
    if params["x"] == 2:
        raise ValueError("x=2 is not allowed")
    Path(ctx.artifact_dir, "out.txt").write_text(str(params["x"]))
    print("x is", params["x"])
    return {"score": float(params["x"])}
"""

SPEC = """
xrun: 1
name: crate-demo
description: a sweep with one failing trial
environment: {current: true}
code: {root: ., include: ["experiments/**/*.py"]}
data:
  table: {path: data/table.csv}
trial:
  function: experiments.demo:train
  timeout: 1m
  retries: 0
sweep:
  method: grid
  parameters: {x: [1, 2, 3]}
  seed: 1
  objective: {metric: score, goal: maximize}
cluster: {backend: local, workers: 1}
"""


@pytest.fixture
def real_failed_bundle(project, run_xrun, tmp_path: Path) -> Path:
    """A real run through the `xrun` command: one of three trials raises."""
    project.file("experiments/demo.py", DEMO)
    project.file("data/table.csv", "a,b\n1,2\n")
    spec = project.spec(SPEC)
    result = run_xrun(spec, "-o", tmp_path / "runs")
    assert result.code == 1, result.err
    return result.bundle


# ------------------------------------------------------------------ tests


def test_a_real_run_with_a_failed_trial_is_a_valid_process_run_crate(
    real_failed_bundle: Path, context_cache: Path
) -> None:
    bundle = real_failed_bundle
    seal(bundle)
    assert validate(bundle, context_cache) == []
    crate = crate_of(bundle)
    assert process_run_problems(crate) == []
    graph = graph_of(bundle)
    root, run = graph["./"], graph["#run"]
    assert root["name"] == "crate-demo" and root["description"] == "a sweep with one failing trial"
    assert ids(root["conformsTo"]) == [PROFILE]
    assert run["actionStatus"] == FAILED
    assert run["error"] == "1 of 3 trials failed (error: 1)"
    assert graph[run["instrument"]["@id"]]["@type"] == "SoftwareApplication"
    assert {"spec.yaml", "code/source.tar.gz", "data.json", "#data-table"} <= set(
        ids(run["object"])
    )
    assert ids(run["result"])[:5] == ["trials.jsonl", "results.csv", "points.csv", "logs/", "artifacts/"]
    data = json.loads((bundle / "data.json").read_text())
    assert graph["#data-table"]["sha256"] == data["table"]["sha256"]
    # each artifact is listed, reachable from the root through hasPart
    assert ids(graph["artifacts/"]["hasPart"]) == ["artifacts/t00000/", "artifacts/t00002/"]
    assert ids(graph["artifacts/t00000/"]["hasPart"]) == ["artifacts/t00000/out.txt"]
    assert verify(bundle).ok


def test_a_completed_run_is_valid_and_says_so(bundle: Path, context_cache: Path) -> None:
    seal(bundle)
    assert validate(bundle, context_cache) == []
    assert process_run_problems(crate_of(bundle)) == []
    graph = graph_of(bundle)
    run = graph["#run"]
    assert run["actionStatus"] == COMPLETED and "error" not in run
    created = json.loads((bundle / "bundle.json").read_text())["created"]
    assert run["startTime"] == created
    assert graph["./"]["datePublished"] == run["endTime"] > run["startTime"]
    assert graph["./"]["name"] == "crate-unit"
    assert graph["./"]["description"] == RESOLVED["description"]
    assert "report.html" in ids(run["result"])
    assert ids(run["object"]) == ["spec.yaml", "spec.resolved.json", "env/env.json", "env/freeze.txt",
                                  "image.json", "code/files.json", "code/git.json", "code/source.tar.gz",
                                  "data.json", "#data-iris", "#data-remote"]  # fmt: skip
    assert graph["results.csv"]["variableMeasured"] == ["accuracy"]
    assert (
        graph["#xrun"]["softwareVersion"]
        == json.loads((bundle / "bundle.json").read_text())["xrun_version"]
    )


def test_a_failed_run_is_a_failed_action(tmp_path: Path, context_cache: Path) -> None:
    bundle = make_bundle(tmp_path / "b", status="failed")
    seal(bundle)
    assert validate(bundle, context_cache) == []
    run = graph_of(bundle)["#run"]
    assert run["actionStatus"] == FAILED
    assert run["error"] == "1 of 3 trials failed (error: 1)"


def test_the_validator_rejects_a_broken_crate(bundle: Path, context_cache: Path) -> None:
    seal(bundle)
    good = crate_of(bundle)

    def broken(change) -> list[str]:
        crate = copy.deepcopy(good)
        change({e["@id"]: e for e in crate["@graph"]})
        (bundle / "ro-crate-metadata.json").write_text(json.dumps(crate), encoding="utf-8")
        return validate(bundle, context_cache)

    assert any("instrument" in i for i in broken(lambda g: g["#run"].pop("instrument")))
    assert any("permalink of the profile" in i for i in broken(lambda g: g["./"].pop("conformsTo")))
    assert any("license" in i for i in broken(lambda g: g["./"].pop("license")))
    # Without its action, a crate passes the profile's REQUIRED checks (they
    # apply to actions); our own check catches it.
    without_action = copy.deepcopy(good)
    without_action["@graph"] = [e for e in without_action["@graph"] if e["@type"] != "CreateAction"]
    assert process_run_problems(without_action) == ["no CreateAction for the run"]


def test_validation_fails_when_the_context_is_not_cached(bundle: Path, tmp_path: Path) -> None:
    """Offline means offline: a cache miss is a failure, never a silent pass."""
    seal(bundle)
    with pytest.raises(AssertionError, match="skipped"):
        validate(bundle, tmp_path / "empty" / "http_cache")
    # The validator prints the warnings it captured at interpreter exit; this one was expected.
    captured = getattr(rocrate_validator.utils.log, "__log_stream__", None)
    if captured is not None:
        captured.seek(0)
        captured.truncate()


def test_every_file_entity_has_its_size_and_hash(bundle: Path) -> None:
    seal(bundle)
    graph = graph_of(bundle)
    files = [
        e
        for e in graph.values()
        if "File" in (e["@type"] if isinstance(e["@type"], list) else [e["@type"]])
    ]
    on_disk = [e for e in files if not e["@id"].startswith("#")]
    assert {e["@id"] for e in on_disk} >= {"spec.yaml", "env/freeze.txt", "code/source.tar.gz",
                                           "logs/t00000.log", "artifacts/t00001/model.txt"}  # fmt: skip
    for e in on_disk:
        if e["@id"] == MANIFEST:  # computed after the crate, over it
            assert "sha256" not in e and "contentSize" not in e
            continue
        data = (bundle / e["@id"]).read_bytes()
        assert e["contentSize"] == str(len(data)), e["@id"]
        assert e["sha256"] == hashlib.sha256(data).hexdigest(), e["@id"]
    assert (
        graph["#data-iris"]["sha256"] == "ef" * 32 and graph["#data-iris"]["contentSize"] == "4551"
    )
    assert graph["#data-remote"]["contentUrl"] == "s3://bucket/x.parquet"
    assert graph["code/source.tar.gz"]["@type"] == ["File", "SoftwareSourceCode"]
    assert graph["code/source.tar.gz"]["version"] == "c0de" * 16


def test_writing_touches_nothing_else_and_is_repeatable(bundle: Path) -> None:
    (bundle / "ro-crate-metadata.json").unlink(missing_ok=True)  # sealed bundles have one already
    write_manifest(bundle)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in bundle.rglob("*") if p.is_file()}
    path = write_crate(bundle)
    assert path == bundle / "ro-crate-metadata.json"
    first = path.read_bytes()
    write_crate(bundle)
    assert path.read_bytes() == first
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in bundle.rglob("*") if p.is_file()}
    assert set(after) - set(before) == {path}
    assert all(after[p] == before[p] for p in before)
    assert crate_metadata(bundle) == json.loads(first)


def test_the_manifest_covers_the_crate(bundle: Path) -> None:
    seal(bundle)
    assert "ro-crate-metadata.json" in (bundle / MANIFEST).read_text()
    assert verify(bundle).ok
    # rewriting the crate of a sealed bundle (e.g. after `xrun report`) changes nothing
    before = (bundle / "ro-crate-metadata.json").read_bytes()
    write_crate(bundle)
    assert (bundle / "ro-crate-metadata.json").read_bytes() == before


def test_a_huge_sweep_gives_a_bounded_crate(tmp_path: Path, context_cache: Path) -> None:
    n = 4 * LIST_LIMIT
    bundle = make_bundle(tmp_path / "b", logs=n, artifacts=n, report=False)
    seal(bundle)
    size = (bundle / "ro-crate-metadata.json").stat().st_size
    assert size < 20_000, size
    graph = graph_of(bundle)
    assert not any(i.startswith(("logs/t", "artifacts/t")) for i in graph)
    assert f"({n} files, not listed one by one" in graph["logs/"]["description"]
    assert f"({n} files, not listed one by one" in graph["artifacts/"]["description"]
    assert validate(bundle, context_cache) == []


def test_odd_file_names_are_escaped_or_skipped(bundle: Path, context_cache: Path) -> None:
    weird = bundle / "artifacts" / "t00000"
    (weird / "a file #1.txt").write_text("x")
    (weird / "caf\udcff.bin").write_bytes(b"")  # not UTF-8: cannot be an @id
    write_crate(bundle)  # (write_manifest cannot write such a name yet)
    graph = graph_of(bundle)
    assert "artifacts/t00000/a%20file%20%231.txt" in graph
    assert not any("caf" in i for i in graph)
    assert validate(bundle, context_cache) == []


def test_a_directory_that_is_not_a_bundle_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a bundle"):
        write_crate(tmp_path)
    assert not (tmp_path / "ro-crate-metadata.json").exists()


def test_each_stage_is_an_action_with_its_inputs_and_outputs_linked(bundle: Path, context_cache: Path) -> None:
    (bundle / "stages" / "prepare" / "outputs").mkdir(parents=True)
    (bundle / "stages" / "prepare" / "outputs" / "table.json").write_text("{}")
    (bundle / "stages" / "prepare.log").write_text("prepared\n")
    (bundle / "stages" / "final" / "artifacts").mkdir(parents=True)
    (bundle / "stages" / "final" / "artifacts" / "model.skops").write_bytes(b"PK")
    (bundle / "final.json").write_text(json.dumps({"status": "ok", "metrics": {"accuracy": 0.9}}))
    (bundle / "stages.json").write_text(json.dumps({
        "prepare": {"status": "ok", "cached": True, "start": 1_795_000_000.0, "end": 1e300},  # an end no clock has
        "final": {"status": "error", "error": "the refit diverged"},
    }))  # fmt: skip
    seal(bundle)
    assert validate(bundle, context_cache) == []
    assert process_run_problems(crate_of(bundle)) == []
    graph = graph_of(bundle)
    prepare, final, run = graph["#stage-prepare"], graph["#stage-final"], graph["#run"]
    assert prepare["actionStatus"] == COMPLETED and "endTime" not in prepare and prepare["startTime"]
    assert {"stages/prepare/", "stages/prepare.log"} == set(ids(prepare["result"]))
    assert "spec.yaml" in ids(prepare["object"]) and "stages/prepare/" in ids(run["object"])
    assert final["actionStatus"] == FAILED and final["error"] == "the refit diverged"
    assert {"stages/prepare/", "trials.jsonl", "spec.yaml"} <= set(ids(final["object"]))
    assert {"stages/final/", "final.json"} <= set(ids(final["result"]))
    assert set(ids(graph["./"]["mentions"])) == {"#run", "#stage-prepare", "#stage-final"}
