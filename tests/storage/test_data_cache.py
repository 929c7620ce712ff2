"""The node's data cache is bounded (XRUN_DATA_CACHE_MAX): after a download,
least recently used entries are evicted, never one a running trial holds (in
this process or another) nor one being fetched; `xrun clean --data-cache`
empties it (with --dry-run, only lists); entries that are links are removed,
never followed."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.worker import fetch as _fetch


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _serve(http_server, name: str, data: bytes) -> str:
    (http_server.root / name).write_bytes(data)
    return f"{http_server.url}/{name}"


def _cached(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if len(p.name) == 64}


def test_least_recently_used_entries_are_evicted_past_the_bound(http_server, data_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XRUN_DATA_CACHE_MAX", "2500B")
    a, b, c = (bytes([i]) * 1000 for i in (1, 2, 3))
    _fetch.fetch_verified(_serve(http_server, "a", a), sha(a), data_cache)
    _fetch.fetch_verified(_serve(http_server, "b", b), sha(b), data_cache)
    os.utime(data_cache / sha(a), (1, 1))
    os.utime(data_cache / sha(b), (2, 2))
    _, fresh = _fetch.fetch_verified(http_server.url + "/a", sha(a), data_cache)  # used again: now the newest
    assert not fresh
    _fetch.fetch_verified(_serve(http_server, "c", c), sha(c), data_cache)  # 3000 bytes > 2500: one goes
    assert _cached(data_cache) == {sha(a), sha(c)}
    assert http_server.requests.count("/a") == 1


def test_an_entry_a_trial_holds_is_never_evicted(http_server, data_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XRUN_DATA_CACHE_MAX", "0")
    a, b, c = b"held" * 100, b"other" * 100, b"third" * 100
    hold: list = []
    path_a, _ = _fetch.fetch_verified(_serve(http_server, "a", a), sha(a), data_cache, hold=hold)
    _fetch.fetch_verified(_serve(http_server, "b", b), sha(b), data_cache)  # over the bound at once
    assert _cached(data_cache) == {sha(a), sha(b)}  # a is held, b was just fetched
    assert Path(path_a).read_bytes() == a
    _fetch.release(hold)
    _fetch.fetch_verified(_serve(http_server, "c", c), sha(c), data_cache)
    assert _cached(data_cache) == {sha(c)}


def test_an_entry_held_by_another_process_is_never_evicted(http_server, data_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = b"in another worker" * 50, b"new" * 50
    url = _serve(http_server, "a", a)
    code = ("import sys, pathlib; from runner.worker import fetch\n"
            "hold = []; fetch.fetch_verified(sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3]), hold=hold)\n"
            "print('held', flush=True); sys.stdin.readline()")  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", code, url, sha(a), str(data_cache)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "XRUN_DATA_CACHE_MAX": "0"})  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("XRUN_DATA_CACHE_MAX", "0")
        _fetch.fetch_verified(_serve(http_server, "b", b), sha(b), data_cache)
        assert _cached(data_cache) == {sha(a), sha(b)}
        removed, busy = _fetch.evict(data_cache, 0)
        assert [p.name for p, _ in removed] == [sha(b)] and [p.name for p in busy] == [sha(a)]
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    removed, busy = _fetch.evict(data_cache, 0)  # the trial ended: now it may go
    assert [p.name for p, _ in removed] == [sha(a)] and busy == []


def test_the_bound_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XRUN_DATA_CACHE_MAX", raising=False)
    assert _fetch.cache_max() == _fetch.DEFAULT_CACHE_MAX
    for raw, value in {"500MB": 500 * 1000**2, "20GiB": 20 * 1024**3, "1234": 1234, "1.5 KiB": 1536, "0": 0}.items():
        monkeypatch.setenv("XRUN_DATA_CACHE_MAX", raw)
        assert _fetch.cache_max() == value
    for bad in ("lots", "-1GB", "5XB", "nan", "1e400"):
        monkeypatch.setenv("XRUN_DATA_CACHE_MAX", bad)
        with pytest.raises(_fetch.FetchError, match="expected a size like 500MB or 20GiB"):
            _fetch.cache_max()


def test_cache_entries_that_are_links_are_removed_never_followed(http_server, data_cache: Path, tmp_path: Path) -> None:
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_bytes(b"mine")
    data = b"wanted bytes"
    data_cache.mkdir(parents=True, exist_ok=True)
    (data_cache / sha(data)).symlink_to(outside, target_is_directory=True)  # someone planted a link
    path, fresh = _fetch.fetch_verified(_serve(http_server, "w.bin", data), sha(data), data_cache)
    assert fresh and Path(path).read_bytes() == data and not (data_cache / sha(data)).is_symlink()
    assert (outside / "keep.txt").read_bytes() == b"mine" and os.access(outside, os.W_OK)
    # a link inside an entry, and an entry that is a link: eviction removes the links only
    other = b"other"
    (data_cache / sha(other)).symlink_to(outside, target_is_directory=True)
    (data_cache / sha(data) / "planted").symlink_to(outside / "keep.txt")
    removed, busy = _fetch.evict(data_cache, 0)
    assert {p.name for p, _ in removed} == {sha(data), sha(other)} and busy == []
    assert _cached(data_cache) == set()
    assert (outside / "keep.txt").read_bytes() == b"mine"


def test_xrun_clean_data_cache(run_xrun, http_server, data_cache: Path, tmp_path: Path) -> None:
    a, b = b"a" * 300, b"b" * 200
    _fetch.fetch_verified(_serve(http_server, "a", a), sha(a), data_cache)
    _fetch.fetch_verified(_serve(http_server, "b", b), sha(b), data_cache)
    dry = run_xrun("clean", "--data-cache", "--dry-run", cwd=tmp_path)
    assert dry.code == 0, dry.err
    assert f"would remove 2 data cache entries (500 bytes) in {data_cache}" in dry.err
    assert sorted(line.rsplit(" (", 1)[0] for line in dry.out.splitlines()) == sorted(str(data_cache / sha(x)) for x in (a, b))
    assert _cached(data_cache) == {sha(a), sha(b)}
    done = run_xrun("clean", "--data-cache", cwd=tmp_path)
    assert done.code == 0, done.err
    assert "removed 2 data cache entries (500 bytes)" in done.err
    assert _cached(data_cache) == set()
    again = run_xrun("clean", "--data-cache", cwd=tmp_path)
    assert again.code == 0 and "removed 0 data cache entries (0 bytes)" in again.err
    bad = run_xrun("clean", "--dry-run", cwd=tmp_path)
    assert bad.code == 2 and "--dry-run goes with --data-cache" in bad.err and "Traceback" not in bad.err


def test_a_trial_holds_its_data_until_it_ends_however_often_it_reads_it(http_server, data_cache: Path) -> None:
    from runner.worker.context import DataInputs

    data = b"read in a loop" * 10
    inputs = DataInputs({"x": _serve(http_server, "x.bin", data)}, {"x": sha(data)})
    inputs.prefetch()
    assert {inputs["x"] for _ in range(200)} == {str(data_cache / sha(data) / "x.bin")}
    assert len(inputs._held) == 1  # one lock, not one per read
    removed, busy = _fetch.evict(data_cache, 0)
    assert removed == [] and [p.name for p in busy] == [sha(data)]
    inputs.release()
    removed, busy = _fetch.evict(data_cache, 0)
    assert [p.name for p, _ in removed] == [sha(data)] and busy == []
