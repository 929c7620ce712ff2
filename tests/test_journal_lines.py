"""A journal comes from whoever sent the bundle: a line of any length is never read whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.bundle import journal
from runner.bundle.journal import iter_journal


@pytest.mark.parametrize("extra", [0, 1, 9, 10, 11, 25])
def test_an_oversized_line_is_skipped_and_later_offsets_stay_right(tmp_path: Path, monkeypatch, extra: int) -> None:
    monkeypatch.setattr(journal, "MAX_LINE_BYTES", 40)
    first = json.dumps({"id": "t1", "status": "ok"}).encode() + b"\n"
    huge = b'{"id": "t2", "x": "' + b"a" * (40 + extra) + b'"}\n'
    last = json.dumps({"id": "t3", "status": "ok"}).encode() + b"\n"
    path = tmp_path / "trials.jsonl"
    path.write_bytes(first + huge + last)
    got = list(iter_journal(path))
    assert [r["id"] for _, r in got] == ["t1", "t3"]
    with open(path, "rb") as fh:  # the offsets readers seek to
        for off, rec in got:
            fh.seek(off)
            assert json.loads(fh.readline()) == rec


def test_a_line_at_the_limit_is_read(tmp_path: Path, monkeypatch) -> None:
    line = json.dumps({"id": "t1", "status": "ok"}).encode() + b"\n"
    monkeypatch.setattr(journal, "MAX_LINE_BYTES", len(line))
    path = tmp_path / "trials.jsonl"
    path.write_bytes(line + line.replace(b"t1", b"t2").rstrip(b"\n"))  # the last one torn of its newline
    assert [r["id"] for _, r in iter_journal(path)] == ["t1", "t2"]


def test_memory_reading_a_giant_line_is_bounded(tmp_path: Path, monkeypatch) -> None:
    import tracemalloc

    monkeypatch.setattr(journal, "MAX_LINE_BYTES", 1 << 20)
    path = tmp_path / "trials.jsonl"
    with open(path, "wb") as fh:
        fh.write(b'{"id": "t1", "x": "')
        for _ in range(64):
            fh.write(b"a" * (1 << 20))  # one line of 64 MiB
        fh.write(b'"}\n{"id": "t2"}\n')
    tracemalloc.start()
    try:
        got = [r["id"] for _, r in iter_journal(path)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == ["t2"] and peak < 8 << 20, peak
