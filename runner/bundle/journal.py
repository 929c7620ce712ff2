"""The bundle's format: its version and the journal ``trials.jsonl``, written and read.

``trials.jsonl`` is append-only, one JSON line per finished trial (a retried or
resumed trial appears again; the last line wins), fsynced in batches so a killed
driver loses at most the last fraction of a second. Readers stream it and skip a
torn last line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from runner._json import encoder, loads
from runner._safeio import open_regular

BUNDLE_VERSION = 1
FSYNC_EVERY_SECONDS = 0.5
FSYNC_EVERY_LINES = 256


# A journal line's JSON (without its newline): compact, keys in record order.
# One encoder, made once (json.dumps with these options builds one per call; see runner._json).
encode: Callable[[Any], str] = encoder(separators=(",", ":"), default=str)


class Journal:
    """``trials.jsonl``: one line per finished trial, fsynced in batches."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = open(path, "a", encoding="utf-8")
        self._unsynced = 0
        self._last_sync = time.monotonic()

    def append(self, record: dict[str, Any], line: str | None = None, *, flush: bool = True) -> None:
        """Journal ``record`` (``line``: its JSON, already encoded as :func:`encode`
        does). ``flush=False`` leaves it in this process's buffer until
        :meth:`flush`: a batch of lines costs one write."""
        self._fh.write((line if line is not None else encode(record)) + "\n")
        self._unsynced += 1
        if flush:
            self.flush()

    def flush(self) -> None:
        self._fh.flush()  # in the kernel: survives a SIGKILL of this process
        if self._unsynced >= FSYNC_EVERY_LINES or time.monotonic() - self._last_sync > FSYNC_EVERY_SECONDS:
            self.sync()

    def sync(self) -> None:
        self._fh.flush()
        if self._unsynced:
            os.fsync(self._fh.fileno())
            self._unsynced = 0
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if not self._fh.closed:
            self.sync()
            self._fh.close()


# What the report and the summary table need of a trial; the journal has more
# (tracebacks of successes are empty, histories can be long).
SLIM_FIELDS = ("id", "status", "params", "seed", "repeat", "metrics", "cached", "cached_from", "worker",
               "start", "end", "attempts", "failure_class", "error", "traceback")  # fmt: skip


MAX_LINE_BYTES = 64 * 1024 * 1024  # a journal line longer than this (a trial's log is capped at 5 MiB) is skipped


def iter_journal(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(byte offset, record) for each line of ``trials.jsonl``, streaming;
    a torn last line (killed mid-write), a line that is no trial record, or one
    over :data:`MAX_LINE_BYTES` (never read whole) is skipped.
    A ``trials.jsonl`` that is a link or special file is refused (:class:`runner._safeio.UnsafePath`)."""
    try:
        fh = open_regular(path)
    except FileNotFoundError:
        return
    with fh:
        offset = 0
        while line := fh.readline(MAX_LINE_BYTES + 1):
            start, offset = offset, offset + len(line)
            if len(line) > MAX_LINE_BYTES:  # no record of a trial is this long: skipped, read through in bounded pieces
                while not line.endswith(b"\n") and (line := fh.readline(MAX_LINE_BYTES)):
                    offset += len(line)
                continue
            if not line.strip():
                continue
            try:
                record = loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("id"), str):  # else not a trial record
                yield start, record


def records_at(path: Path, offsets: list[int]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(offset, record) of the lines at ``offsets`` (offsets :func:`iter_journal`
    gave), read back in file order; a line that is no trial record is skipped,
    an unreadable journal gives nothing."""
    try:
        fh = open_regular(path)
    except OSError:
        return
    with fh:
        for offset in sorted(offsets):
            fh.seek(offset)
            try:
                rec = loads(fh.readline(MAX_LINE_BYTES + 1))
            except ValueError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("id"), str):
                yield offset, rec


def read_journal(path: Path, *, slim: bool = False) -> list[dict[str, Any]]:
    """Records of ``trials.jsonl`` (``slim``: only :data:`SLIM_FIELDS`)."""
    if not slim:
        return [rec for _, rec in iter_journal(path)]
    return [{k: rec[k] for k in SLIM_FIELDS if k in rec} for _, rec in iter_journal(path)]


def latest_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per trial id (the last one), in trial order."""
    by_id: dict[str, dict[str, Any]] = {}
    for r in records:
        by_id[r["id"]] = r
    return [by_id[k] for k in sorted(by_id)]
