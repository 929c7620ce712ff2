"""`data.<name>.url` end to end with the real `xrun` command and a local Dask
cluster: fetched by the workers from a real S3 server (moto) and a real HTTP
server, verified, cached once per node, and a changed object detected."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from runner.bundle.journal import read_journal
from runner.cache import TrialCache

TRIAL = '''
import hashlib, os, pathlib

def train(params, ctx):
    table = pathlib.Path(ctx.data["table"])
    assert table.is_file() and not os.access(table, os.W_OK) or os.getuid() == 0
    shards = sorted(p.relative_to(ctx.data["shards"]).as_posix()
                    for p in pathlib.Path(ctx.data["shards"]).rglob("*") if p.is_file())
    page = pathlib.Path(ctx.data["page"]).read_bytes()
    return {"rows": len(table.read_bytes().splitlines()) * params["k"],
            "shards": len(shards), "page": len(page)}
'''


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_urls_are_fetched_verified_and_cached_once_per_node(project, run_xrun, s3, http_server, data_cache: Path, tmp_path: Path) -> None:
    table = b"x,y\n" + b"1,2\n" * 999
    s3.put("inputs/table.csv", table)
    s3.put("shards/b/2.txt", b"two")
    s3.put("shards/1.txt", b"one")
    (http_server.root / "page.html").write_bytes(b"<p>served</p>")
    project.file("experiments/remote.py", TRIAL)
    # keys in another order, the secrets carry the endpoint and credentials
    spec = project.spec(f"""
        name: remote-data
        xrun: 1
        secrets: [AWS_SECRET_ACCESS_KEY, AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL]
        sweep:
          parameters: {{k: [1, 2, 3, 4, 5, 6]}}
        data:
          shards: {{url: "s3://{s3.bucket}/shards/"}}
          table: {{url: "s3://{s3.bucket}/inputs/table.csv"}}
          page: {{url: "{http_server.url}/page.html", sha256: "{sha(b'<p>served</p>')}"}}
        trial: {{function: "experiments.remote:train"}}
        cluster: {{workers: 2}}
    """)
    res = run_xrun(spec, cwd=tmp_path)
    assert res.code == 0, res.err
    records = read_journal(res.bundle / "trials.jsonl")
    assert sorted(r["metrics"]["rows"] for r in records) == [1000 * k for k in range(1, 7)]
    assert {r["metrics"]["shards"] for r in records} == {2} and {r["metrics"]["page"] for r in records} == {13}
    data = json.loads((res.bundle / "data.json").read_text())
    # hashed by the driver and pinned (a prefix as a manifest), the bytes' own digests
    assert data["table"] == {"url": f"s3://{s3.bucket}/inputs/table.csv", "sha256": sha(table), "size": len(table)}
    manifest = sha(f"1.txt\0{sha(b'one')}\nb/2.txt\0{sha(b'two')}\n".encode())
    assert data["shards"]["sha256"] == manifest
    # one node: the driver read the object once to hash it, the workers once between them
    assert s3.downloads("inputs/table.csv") == 2
    assert http_server.requests.count("/page.html") == 1
    assert sorted(p.name for p in data_cache.iterdir() if p.is_dir() and not p.name.startswith(".")) == sorted(
        [sha(table), manifest, sha(b"<p>served</p>")]
    )
    # nothing of the credentials is recorded
    everything = b"".join(p.read_bytes() for p in res.bundle.rglob("*") if p.is_file())
    assert b"xrun-test-secret" not in everything and b"xrun-test-key" not in everything


def test_a_changed_object_fails_its_trials_as_data_changed_and_nothing_is_cached(project, run_xrun, s3, data_cache: Path, tmp_path: Path) -> None:
    s3.put("t.csv", b"changed since it was pinned\n")
    pinned = sha(b"the bytes that were pinned\n")
    project.file("experiments/remote.py", "def train(params, ctx):\n    return {'n': len(open(ctx.data['t']).read())}\n")
    spec = project.spec(f"""
        xrun: 1
        name: changed
        trial: {{function: "experiments.remote:train", retries: 2}}
        data:
          t: {{url: "s3://{s3.bucket}/t.csv", sha256: "{pinned}"}}
        sweep: {{parameters: {{i: [1, 2]}}}}
        secrets: [AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL]
        cluster: {{workers: 1}}
    """)
    res = run_xrun(spec, cwd=tmp_path)
    assert res.code == 1, res.err
    assert "Traceback" not in res.err
    records = read_journal(res.bundle / "trials.jsonl")
    assert [r["failure_class"] for r in records] == ["data-changed", "data-changed"]
    assert all(r["attempts"] == 1 for r in records)  # never retried
    assert all(f"s3://{s3.bucket}/t.csv changed since the run hashed it" in r["error"] for r in records)
    assert TrialCache().get(records[0]["key"]) is None
    assert [p for p in data_cache.iterdir() if p.is_dir() and not p.name.startswith(".")] == []


def test_a_missing_object_is_a_clear_error_at_plan_time(project, run_xrun, s3, tmp_path: Path) -> None:
    project.file("experiments/remote.py", "def train(params, ctx):\n    return {'n': 1}\n")
    spec = project.spec(f"""
        xrun: 1
        name: gone
        trial: {{function: "experiments.remote:train"}}
        data: {{t: {{url: "s3://{s3.bucket}/nope.csv"}}}}
    """)
    res = run_xrun("plan", spec, cwd=tmp_path)
    assert res.code == 3, res.err
    assert f"s3://{s3.bucket}/nope.csv: no such object" in res.err and "Traceback" not in res.err


def test_an_unsupported_url_is_a_spec_error(project, run_xrun, tmp_path: Path) -> None:
    project.file("experiments/remote.py", "def train(params, ctx):\n    return {'n': 1}\n")
    spec = project.spec("""
        xrun: 1
        name: ftp
        trial: {function: "experiments.remote:train"}
        data:
          t: {url: "ftp://example.org/t.csv"}
    """)
    res = run_xrun("validate", spec, cwd=tmp_path)
    assert res.code == 2
    assert "data.t.url: unsupported URL 'ftp://example.org/t.csv'" in res.err


def test_workers_without_the_store_package_stop_the_run_before_any_trial(project, run_xrun, s3, tmp_path: Path) -> None:
    # an environment without s3fs: importing it fails (the driver does not need it: the URL is pinned)
    shadow = tmp_path / "no-s3fs" / "s3fs"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('s3fs is not installed here')\n")
    project.file("experiments/remote.py", "def train(params, ctx):\n    return {'n': 1}\n")
    spec = project.spec(f"""
        xrun: 1
        name: no-s3fs
        trial: {{function: "experiments.remote:train"}}
        data:
          t: {{url: "s3://{s3.bucket}/t.csv", sha256: "{"ab" * 32}"}}
        cluster: {{workers: 1}}
    """)
    res = run_xrun(spec, cwd=tmp_path, env={"PYTHONPATH": str(shadow.parent)})
    assert res.code == 2, res.err
    assert "data.t.url: reading s3:// needs fsspec and s3fs in the environment that runs the trial" in res.err
    assert "add `s3fs` to the spec's environment" in res.err and "before any trial ran" in res.err
    assert "Traceback" not in res.err


def test_verify_remote_rehashes_the_data_urls_the_bundle_pinned(project, run_xrun, s3, data_cache: Path, tmp_path: Path) -> None:
    s3.put("v/t.csv", b"a,b\n1,2\n")
    s3.put("v/dir/x.txt", b"x")
    s3.put("v/dir/y/z.txt", b"zz")
    project.file("experiments/remote.py", "def train(params, ctx):\n    return {'n': len(open(ctx.data['t']).read())}\n")
    spec = project.spec(f"""
        trial: {{function: "experiments.remote:train"}}
        data:
          t: {{url: "s3://{s3.bucket}/v/t.csv"}}
          d: {{url: "s3://{s3.bucket}/v/dir/"}}
        cluster: {{workers: 1}}
        secrets: [AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY]
        name: verify-data
        xrun: 1
    """)
    res = run_xrun(spec, cwd=tmp_path)
    assert res.code == 0, res.err
    plain = run_xrun("verify", res.bundle)
    assert plain.code == 0 and "2 data URL(s) are kept where they are; `--remote` re-hashes them there" in plain.err
    ok = run_xrun("verify", res.bundle, "--remote")
    assert ok.code == 0, ok.err
    assert "2 data URL(s) match their sha256 where they are kept" in ok.err
    # An object under the prefix changes, and the file is removed: only --remote sees it, and says which.
    s3.put("v/dir/y/z.txt", b"changed")
    s3.fs().rm(f"{s3.bucket}/v/t.csv")
    assert run_xrun("verify", res.bundle).code == 0
    bad = run_xrun("verify", res.bundle, "--remote")
    assert bad.code == 1, bad.err
    assert "2 data URL(s) do not match the bundle" in bad.err
    assert "changed: data 'd'" in bad.err and "unreadable: data 't'" in bad.err and "Traceback" not in bad.err
    # A data.json that is not a record (someone else's bundle, sealed again): the files verify, --remote refuses it.
    from runner.seal import seal

    (res.bundle / "data.json").write_text('{"t": {"url": "file:///etc/passwd", "sha256": "' + "a" * 64 + '"}}')
    seal(res.bundle)
    assert run_xrun("verify", res.bundle).code == 0
    forged = run_xrun("verify", res.bundle, "--remote")
    assert forged.code == 1 and "data.json: 't': not a data URL record" in forged.err and "Traceback" not in forged.err


def test_verify_remote_refuses_a_data_json_that_is_not_a_record(tmp_path: Path) -> None:
    from runner.bundle.stored import data_urls
    from runner.errors import VerifyError

    for body in ('{"t": {"url": "file:///etc/passwd", "sha256": "' + "a" * 64 + '"}}',
                 '{"t": {"url": "s3://b/k", "sha256": "../../x"}}', '{"t": {"url": "s3://b/k", "sha256": "' + "a" * 64
                 + '", "size": -1}}', "[1, 2]", "not json"):  # fmt: skip
        (tmp_path / "data.json").write_text(body)
        with pytest.raises(VerifyError, match=r"^data\.json: "):
            data_urls(tmp_path)
    (tmp_path / "data.json").write_text('{"p": {"path": "/x", "sha256": null}, "u": {"url": "https://h/k", "sha256": "'
                                        + "b" * 64 + '", "size": null}}')  # fmt: skip
    assert [(d.name, d.url, d.size) for d in data_urls(tmp_path)] == [("u", "https://h/k", None)]
