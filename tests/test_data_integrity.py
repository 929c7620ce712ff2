"""A data file changed while trials run: the trial must see exactly the bytes
that were hashed into its key, or fail as `data-changed`, never be cached."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.bundle.journal import read_journal
from runner.cache import TrialCache
from runner.data import hash_inputs
from runner.spec import loads_spec
from runner.worker import context as _worker

# Every trial rewrites the data file before it reads it (as a user regenerating
# the data while the sweep runs would); the second one even catches the error.
TRIAL = '''
import hashlib, pathlib

def train(params, ctx):
    pathlib.Path(params["src"]).write_text("NEW bytes, not the ones hashed\\n")
    try:
        data = pathlib.Path(ctx.data["table"]).read_bytes()
    except BaseException:
        if not params["swallow"]:
            raise
        data = pathlib.Path(params["src"]).read_bytes()
    return {"digest": int(hashlib.sha256(data).hexdigest()[:12], 16)}
'''


def test_data_changed_during_the_run_fails_the_trial_and_is_never_cached(project, run_xrun, tmp_path) -> None:
    data = project.file("inputs/table.csv", "x,y\n1,2\n")
    original = hashlib.sha256(data.read_bytes()).hexdigest()
    project.file("experiments/mutate.py", TRIAL)
    spec = project.spec(f"""
        xrun: 1
        name: mutate
        trial: {{function: "experiments.mutate:train"}}
        data:
          table: {{path: inputs/table.csv}}
        sweep:
          parameters: {{swallow: [false, true], src: ["{data}"]}}
        cluster: {{workers: 1}}
    """)
    res = run_xrun(spec, cwd=tmp_path)  # from another directory
    assert res.code == 1, res.err
    assert "Traceback" not in res.err and "internal error" not in res.err
    records = read_journal(res.bundle / "trials.jsonl")
    assert len(records) == 2
    for rec in records:
        assert rec["status"] == "data-changed" and rec["failure_class"] == "data-changed", rec
        assert "inputs/table.csv changed since the run hashed it" in rec["error"]
        assert rec["metrics"] == {}
    assert json.loads((res.bundle / "data.json").read_text())["table"]["sha256"] == original
    cache = TrialCache()
    assert all(cache.get(rec["key"]) is None for rec in records)  # nothing poisoned the cache
    summary = json.loads((res.bundle / "bundle.json").read_text())
    assert summary["failures"] == {"data-changed": 2}


def test_trials_read_a_verified_read_only_copy_of_files_and_directories(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "exp.py").write_text("def f(p, ctx):\n    return {}\n")
    (tmp_path / "one.csv").write_bytes(b"a,b\n1,2\n")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "b.bin").write_bytes(bytes(range(256)))
    (tree / "sub" / "a.txt").write_text("hello\n")
    loaded = loads_spec(
        "xrun: 1\nname: d\ntrial: {function: 'exp:f'}\ndata:\n  one: {path: one.csv}\n  tree: {path: tree}\n",
        tmp_path / "spec.yaml",
    )
    hashes = hash_inputs(loaded.spec)
    monkeypatch.setattr(_worker, "_data_root", [])
    inputs = _worker.DataInputs({k: v["path"] for k, v in hashes.items()}, {k: v["sha256"] for k, v in hashes.items()})
    one, copy_tree = Path(inputs["one"]), Path(inputs["tree"])
    assert one != tmp_path / "one.csv" and one.read_bytes() == b"a,b\n1,2\n"
    assert (copy_tree / "sub" / "a.txt").read_text() == "hello\n"
    assert _worker._dir_digest(copy_tree) == hashes["tree"]["sha256"]
    assert not one.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    # The same bytes under another name get their own copy.
    (tmp_path / "twin.csv").write_bytes(b"a,b\n1,2\n")
    twin = _worker.DataInputs({"t": str(tmp_path / "twin.csv")}, {"t": hashes["one"]["sha256"]})["t"]
    assert Path(twin).name == "twin.csv" and Path(twin).read_bytes() == b"a,b\n1,2\n"
    # The source changes after this worker copied it: trials keep the hashed bytes.
    (tmp_path / "one.csv").write_bytes(b"changed\n")
    assert Path(inputs["one"]).read_bytes() == b"a,b\n1,2\n"
    # A worker that had not copied it yet refuses the new bytes.
    monkeypatch.setattr(_worker, "_data_root", [])
    fresh = _worker.DataInputs({"one": str(tmp_path / "one.csv")}, {"one": hashes["one"]["sha256"]})
    with pytest.raises(_worker.DataChanged, match="changed since the run hashed it"):
        fresh["one"]
    assert fresh.changed and "data 'one'" in fresh.changed
    assert dict(_worker.DataInputs({"u": "https://example.org/x.csv"}, {})) == {"u": "https://example.org/x.csv"}


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(hashed=st.binary(max_size=2048), seen=st.one_of(st.none(), st.binary(max_size=2048)))
def test_a_trial_sees_the_hashed_bytes_or_fails(tmp_path_factory, hashed: bytes, seen: bytes | None) -> None:
    """Property: whatever the file holds when a worker first uses it, the trial
    gets exactly the bytes that were hashed, or DataChanged."""
    root = tmp_path_factory.mktemp("prop")
    src = root / "input.dat"
    src.write_bytes(hashed if seen is None else seen)
    expected = hashlib.sha256(hashed).hexdigest()
    _worker._data_root[:] = [root / "copies"]
    (root / "copies").mkdir()
    try:
        path = _worker.verified_copy(str(src), expected)
    except _worker.DataChanged:
        assert seen is not None and seen != hashed
        assert not any((root / "copies").iterdir())  # no half-made copy is left to be used
    else:
        assert Path(path).read_bytes() == hashed
    finally:
        _worker._data_root.clear()


@pytest.mark.skipif(not hasattr(os, "setuid") or os.geteuid() != 0, reason="needs root to run a child as another user")
def test_a_data_directory_is_copied_by_a_worker_that_is_not_root(request: pytest.FixtureRequest) -> None:
    """Workers in pods run as a non-root user: a read-only directory cannot be
    renamed into place there (renaming a directory rewrites its '..')."""
    import shutil
    import subprocess
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="xrun-nonroot-"))  # pytest's own temp root is private to root
    request.addfinalizer(lambda: shutil.rmtree(shared, ignore_errors=True))
    tree = shared / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "a.txt").write_text("hello\n")
    for p in [shared, tree, tree / "sub"]:
        p.chmod(0o777)
    expected = _worker._dir_digest(tree)
    # The worker package as workers get it (a copy any user can read), run by an
    # interpreter any user can run: the trial environment has no xrun.
    package = shared / "_xrun_worker"
    package.mkdir()
    for source in Path(_worker.__file__).parent.glob("*.py"):
        (package / source.name).write_text(source.read_text())
    python = shutil.which("python3", path="/usr/bin:/usr/local/bin")
    if python is None:
        pytest.skip("no system python3 for another user")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from _xrun_worker.context import verified_copy\n"
        "print(verified_copy(sys.argv[2], sys.argv[3]))\n"
    )

    def as_nobody() -> None:
        os.setgid(65534)
        os.setuid(65534)

    out = subprocess.run([python, "-c", code, str(shared), str(tree), expected], capture_output=True,
                         text=True, timeout=60, preexec_fn=as_nobody, env={**os.environ, "TMPDIR": str(shared)})  # fmt: skip
    assert out.returncode == 0, out.stderr
    copy = Path(out.stdout.strip())
    assert (copy / "sub" / "a.txt").read_text() == "hello\n"
    assert not copy.stat().st_mode & stat.S_IWUSR  # read-only once in place
