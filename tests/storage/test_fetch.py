"""Reading, hashing and caching remote data against a real S3 server and a real
HTTP server (runner._fetch is what workers run; runner.remote is the driver's)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner import remote
from runner._hashing import dir_digest
from runner.errors import InfraError, UsageError
from runner.worker import fetch as _fetch


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_an_object_hashes_as_its_bytes(s3) -> None:
    data = os.urandom(3 * _fetch.CHUNK + 17)  # several chunks, one partial
    url = s3.put("in/train.bin", data)
    assert remote.hash_url(url) == (sha(data), len(data))


def test_a_prefix_hashes_like_the_same_files_in_a_local_directory(s3, tmp_path: Path) -> None:
    files = {"b.csv": b"2\n", "a.csv": b"1\n", "sub/c.csv": b"3\n"}
    local = tmp_path / "dir"
    for rel, content in files.items():
        s3.put(f"ds/{rel}", content)
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_bytes(content)
    s3.put("ds-other/x.csv", b"not under the prefix")
    digest, size = remote.hash_url(f"s3://{s3.bucket}/ds/")
    assert digest == dir_digest(local)
    assert size == sum(map(len, files.values()))


def test_http_needs_no_fsspec(http_server, tmp_path: Path) -> None:
    (http_server.root / "x.csv").write_bytes(b"a,b\n1,2\n")
    code = (
        "import sys; sys.modules['fsspec'] = None\n"  # importing fsspec now fails
        "from runner.worker import fetch as _fetch\n"
        f"print(_fetch.hash_url({http_server.url + '/x.csv'!r})[0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == sha(b"a,b\n1,2\n")


def test_s3_without_fsspec_says_what_to_install(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['fsspec'] = None\n"
        "from runner.worker import fetch as _fetch\n"
        "try:\n    _fetch.hash_url('s3://bucket/key')\n"
        "except _fetch.FetchUnavailable as exc:\n    print(exc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "needs fsspec and s3fs in the environment that runs the trial" in out
    assert "add `s3fs` to the spec's environment" in out


def test_the_worker_side_imports_only_the_standard_library() -> None:
    code = (
        "import sys, importlib.util\n"
        "before = set(sys.modules)\n"
        "spec = importlib.util.spec_from_file_location('_xrun_fetch', sys.argv[1])\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "new = set(sys.modules) - before - {'_xrun_fetch'}\n"
        "bad = sorted(n for n in new if n.split('.')[0] not in sys.stdlib_module_names)\n"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code, _fetch.__file__], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_object_and_missing_bucket_are_clear(s3) -> None:
    with pytest.raises(InfraError, match=r"s3://.*/nope.bin: no such object"):
        remote.hash_url(f"s3://{s3.bucket}/nope.bin")
    with pytest.raises(InfraError, match="no object under this prefix"):
        remote.hash_url(f"s3://{s3.bucket}/empty/")


def test_fetched_once_per_node_then_reverified_per_process(s3, data_cache: Path) -> None:
    data = b"x" * 1000
    url = s3.put("d.bin", data)
    path, fresh = _fetch.fetch_verified(url, sha(data), data_cache)
    assert fresh and Path(path).read_bytes() == data
    assert Path(path).parent == data_cache / sha(data)
    assert not os.access(path, os.W_OK) or os.getuid() == 0
    again, fresh = _fetch.fetch_verified(url, sha(data), data_cache)
    assert (again, fresh) == (path, False)
    # Another process on the node finds the entry, hashes it once, and does not download.
    code = (
        "import sys; from runner.worker import fetch as _fetch\n"
        "p, fresh = _fetch.fetch_verified(sys.argv[1], sys.argv[2], __import__('pathlib').Path(sys.argv[3]))\n"
        "print(fresh)"
    )
    s3.put("d.bin", b"changed meanwhile")  # a download now would fail verification
    out = subprocess.run([sys.executable, "-c", code, url, sha(data), str(data_cache)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_changed_object_is_refused_and_nothing_is_cached(s3, data_cache: Path) -> None:
    url = s3.put("d.bin", b"new bytes")
    with pytest.raises(_fetch.FetchMismatch, match=r"changed since the run hashed it"):
        _fetch.fetch_verified(url, sha(b"old bytes"), data_cache)
    assert [p.name for p in data_cache.iterdir() if not p.name.startswith(".") or p.is_dir()] == []


def test_a_damaged_cache_entry_is_fetched_again(s3, data_cache: Path) -> None:
    data = b"good"
    url = s3.put("d.bin", data)
    entry = data_cache / sha(data)
    entry.mkdir(parents=True)
    (entry / "d.bin").write_bytes(b"evil")  # someone else wrote the cache
    path, fresh = _fetch.fetch_verified(url, sha(data), data_cache)
    assert fresh and Path(path).read_bytes() == data


def test_threads_of_a_worker_share_one_download(http_server, data_cache: Path) -> None:
    data = os.urandom(2 * _fetch.CHUNK)
    (http_server.root / "big.bin").write_bytes(data)
    url = http_server.url + "/big.bin"
    results: list[tuple[str, bool]] = []
    threads = [threading.Thread(target=lambda: results.append(_fetch.fetch_verified(url, sha(data), data_cache))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(fresh for _, fresh in results) == [False, False, False, True]
    assert http_server.requests.count("/big.bin") == 1


def test_prefix_keys_cannot_leave_the_copy(s3, data_cache: Path) -> None:
    s3.put("evil/ok.txt", b"1")
    s3.put("evil/../../escape.txt", b"2")  # a key, not a path, to S3
    data_cache.mkdir()
    with pytest.raises(_fetch.FetchError, match=r"refusing object key|no object"):
        _fetch.download(f"s3://{s3.bucket}/evil/", data_cache / "copy")
    assert not (data_cache.parent / "escape.txt").exists()


def test_bounded_download_to_a_private_file(s3) -> None:
    url = s3.put("run.tar.gz", b"y" * 5000)
    with remote.downloaded(url, limit=10_000) as path:
        assert path.read_bytes() == b"y" * 5000 and path.name == "download"
        tmp = path.parent
    assert not tmp.exists()
    with pytest.raises(InfraError, match="larger than 1,000 bytes"), remote.downloaded(url, limit=1000):
        pass
    with pytest.raises(UsageError, match="not a prefix"), remote.downloaded(f"s3://{s3.bucket}/dir/"):
        pass


@settings(max_examples=20)
@given(st.text(min_size=0, max_size=60))
def test_leaf_names_are_plain_file_names(path: str) -> None:
    name = _fetch.leaf_name("s3://bucket/" + path)
    assert name and "/" not in name and "\\" not in name and not name.startswith(".")
    assert name not in (".", "..")


@pytest.mark.parametrize(
    ("url", "ok"),
    [("s3://b/k", True), ("gs://b/k", True), ("az://c/k", True), ("https://h/x", True),
     ("ftp://h/x", False), ("s3:///k", False), ("/local/path", False), ("s3://", False)],
)  # fmt: skip
def test_check_url(url: str, ok: bool) -> None:
    assert (remote.check_url(url) is None) == ok


_names = st.text(alphabet="abcxyz019_-.", min_size=1, max_size=8).filter(lambda n: n not in (".", ".."))
_trees = st.dictionaries(st.lists(_names, min_size=1, max_size=3).map("/".join), st.binary(max_size=300),
                         min_size=1, max_size=6)  # fmt: skip


@settings(max_examples=10)
@given(tree=_trees)
def test_a_prefix_and_its_download_have_the_local_directory_digest(s3, tmp_path_factory, tree: dict[str, bytes]) -> None:
    # a path may not be both a file and a directory
    tree = {k: v for k, v in tree.items() if not any(o.startswith(k + "/") for o in tree)}
    local = tmp_path_factory.mktemp("tree")
    prefix = f"t-{uuid.uuid4().hex[:8]}/"
    for rel, data in tree.items():
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_bytes(data)
        s3.put(prefix + rel, data)
    url = f"s3://{s3.bucket}/{prefix}"
    assert remote.hash_url(url) == (dir_digest(local), sum(map(len, tree.values())))
    copy = tmp_path_factory.mktemp("copy") / "c"
    assert _fetch.download(url, copy)[0] == dir_digest(local) == _fetch.digest_of(copy)
