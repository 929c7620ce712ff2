"""Artifacts out of band and bundles in object storage, against a real S3 server:
large artifacts go from the worker to the store (content-addressed) and the
bundle records url, sha256 and size; `verify --remote` re-hashes them; a bundle
packed to s3:// is shown, verified and reproduced from there, and an archive
from the store is extracted as safely as a local one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

TRIAL = '''
import pathlib, random

def train(params, ctx):
    out = pathlib.Path(ctx.artifact_dir)
    (out / "notes.txt").write_text(f"k={params['k']}\\n")
    rng = random.Random(params["k"])  # deterministic: the same bytes on every run
    (out / "models").mkdir()
    (out / "models" / "model.bin").write_bytes(bytes(rng.randrange(256) for _ in range(6000)))
    return {"score": params["k"] / 10}
'''


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def model_bytes(k: int) -> bytes:
    import random

    rng = random.Random(k)
    return bytes(rng.randrange(256) for _ in range(6000))


def spec_for(project, s3) -> Path:
    project.file("experiments/arts.py", TRIAL)
    return project.spec(f"""
        xrun: 1
        name: arts
        trial: {{function: "experiments.arts:train"}}
        sweep: {{parameters: {{k: [1, 2]}}, objective: {{metric: score}}}}
        artifacts: {{inline_max: 4KiB, store: "s3://{s3.bucket}/artifacts/"}}
        secrets: [AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY]
        cluster: {{workers: 1}}
    """)


def test_large_artifacts_go_to_the_store_and_verify_remote_rehashes_them(project, run_xrun, s3, tmp_path: Path) -> None:
    res = run_xrun(spec_for(project, s3), cwd=tmp_path)
    assert res.code == 0, res.err
    for tid, k in (("t00000", 1), ("t00001", 2)):
        arts = res.bundle / "artifacts" / tid
        assert (arts / "notes.txt").read_text() == f"k={k}\n"  # small: in the bundle
        assert not (arts / "models" / "model.bin").exists()
        record = json.loads((arts / "models" / "model.bin.xrun-remote.json").read_text())
        digest = sha(model_bytes(k))
        key = f"artifacts/sha256/{digest[:2]}/{digest}"
        assert record == {"url": f"s3://{s3.bucket}/{key}", "sha256": digest, "size": 6000}
        assert s3.get(key) == model_bytes(k)
    ok = run_xrun("verify", res.bundle, "--remote")
    assert ok.code == 0, ok.err
    assert "2 stored artifact(s) match" in ok.err
    plain = run_xrun("verify", res.bundle)
    assert plain.code == 0 and "`--remote` re-hashes them" in plain.err
    # The stored object is replaced: only --remote can see it, and says which.
    digest = sha(model_bytes(2))
    s3.put(f"artifacts/sha256/{digest[:2]}/{digest}", b"tampered")
    assert run_xrun("verify", res.bundle).code == 0
    bad = run_xrun("verify", res.bundle, "--remote")
    assert bad.code == 1, bad.err
    assert "changed: t00001/models/model.bin" in bad.err and "Traceback" not in bad.err


def test_a_bundle_packed_to_s3_is_shown_verified_and_reproduced_from_there(project, run_xrun, s3, tmp_path: Path) -> None:
    res = run_xrun(spec_for(project, s3), cwd=tmp_path)
    assert res.code == 0, res.err
    url = f"s3://{s3.bucket}/runs/arts.tar.gz"
    packed = run_xrun("pack", res.bundle, "-o", url)
    assert packed.code == 0, packed.err
    assert packed.out.strip().splitlines()[-1] == url
    local = run_xrun("pack", res.bundle, "-o", tmp_path / "arts.tar.gz")
    assert s3.get("runs/arts.tar.gz") == Path(local.out.strip().splitlines()[-1]).read_bytes()  # deterministic
    shown = run_xrun("show", url, "--json")
    assert shown.code == 0, shown.err
    assert json.loads(shown.out)["run_id"] == json.loads((res.bundle / "bundle.json").read_text())["run_id"]
    verified = run_xrun("verify", url, "--remote")
    assert verified.code == 0, verified.err
    other = tmp_path / "elsewhere"
    other.mkdir()
    rep = run_xrun("reproduce", url, "--trials", "all", cwd=other)
    assert rep.code == 0, rep.err
    assert "verdict: match" in rep.err
    assert "stored artifacts: 2 of 2 reproduced with the same sha256" in rep.err
    reproduced = json.loads((Path(rep.out.strip().splitlines()[-1]) / "reproduce.json").read_text())
    assert [(a["trial"], a["path"], a["match"]) for a in reproduced["artifacts"]] == [
        ("t00000", "models/model.bin", True), ("t00001", "models/model.bin", True)]


def test_reproduce_compares_stored_artifacts_of_deterministic_trials(project, run_xrun, s3, tmp_path: Path) -> None:
    salt = tmp_path / "salt.txt"  # outside the code: what the model depends on, unseen by the metrics
    salt.write_text("1")
    project.file("experiments/salted.py", """
import pathlib

def train(params, ctx):
    salt = pathlib.Path(params["salt"]).read_bytes()
    (pathlib.Path(ctx.artifact_dir) / "model.bin").write_bytes(salt * 5000)
    return {"score": 1.0}
""")
    spec = project.spec(f"""
        xrun: 1
        name: salted
        trial: {{function: "experiments.salted:train"}}
        sweep: {{parameters: {{salt: ["{salt}"]}}}}
        artifacts: {{store: "s3://{s3.bucket}/a", inline_max: 100}}
        secrets: [AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY]
        cluster: {{workers: 1}}
    """)
    res = run_xrun(spec, cwd=tmp_path)
    assert res.code == 0, res.err
    salt.write_text("2")
    rep = run_xrun("reproduce", res.bundle, "--trials", "all", cwd=tmp_path)
    assert rep.code == 1, rep.err
    assert "t00000: artifact model.bin: sha256" in rep.err and "verdict: mismatch" in rep.err
    salt.write_text("1")
    rep = run_xrun("reproduce", res.bundle, "--trials", "all", cwd=tmp_path)
    assert rep.code == 0 and "stored artifacts: 1 of 1 reproduced with the same sha256" in rep.err
