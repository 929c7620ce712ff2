"""Content-addressed trial results shared across runs (DESIGN §4).

Layout under ``<cache>/trials``::

    ab/abcdef….json            the result of trial key abcdef… (log inlined)
    ab/abcdef….artifacts/      files the trial wrote, when it wrote any

Only successful trials are cached. Every entry is written to a temporary name
and linked into place, so a reader sees a whole entry or none, and of two runs
writing the same key at once the first valid result stays. ``<cache>/runs/<spec
name>.jsonl`` records what each run was made of, so ``xrun plan`` can say why a
trial misses (under a file lock, since runs may append at once).

Entries are not trusted: anything that is not a regular file holding a
well-formed entry for its key (truncated, garbage, empty, a directory, a link,
too large) is a miss, and the next result for that key replaces it. A cache
that cannot be written (read-only, disk full) never fails a run: the run warns
once and goes on without caching, its results are in the bundle.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner import config
from runner._safeio import read_bytes

log = logging.getLogger(__name__)

MAX_ENTRY_BYTES = 64 * 1024 * 1024  # a trial's log is capped at 5 MiB; the rest is small


class TrialCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else config.cache_dir()
        self.trials = self.root / "trials"
        self.runs = self.root / "runs"
        self.unwritable: str | None = None  # why writes stopped, after the first failure

    # ------------------------------------------------------------- results

    def _path(self, key: str) -> Path:
        return self.trials / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The entry for ``key``, or None for a miss (absent, or anything but a valid entry)."""
        data = _read_regular(self._path(key))
        if data is None:
            return None
        try:
            entry = json.loads(data)
        except (ValueError, RecursionError):  # garbage, truncated, or not UTF-8
            return None
        return entry if valid_entry(entry, key) else None

    def contains(self, key: str) -> bool:
        return self.get(key) is not None

    def artifacts_dir(self, key: str) -> Path:
        return self.trials / key[:2] / f"{key}.artifacts"

    def put(self, entry: dict[str, Any], artifacts: list[tuple[str, bytes]] = ()) -> None:  # type: ignore[assignment]
        """Store a successful trial atomically (artifacts first, then the entry).

        Never raises for the cache's own storage: a read-only or full cache
        turns caching off for this run, with one warning."""
        if self.unwritable is not None:
            return
        try:
            self._put(entry, artifacts)
        except OSError as exc:
            self._give_up(exc)

    def _put(self, entry: dict[str, Any], artifacts: list[tuple[str, bytes]]) -> None:
        key = entry["key"]
        path = self._path(key)
        if self.get(key) is not None:  # content-addressed: the first valid result for a key stays
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        # A name no other process or thread uses, without mkstemp's extra work.
        tmp = path.with_name(f".{key[:16]}-{os.getpid()}-{threading.get_ident()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(entry, fh, separators=(",", ":"))
            if not os.path.lexists(path):
                self._store_artifacts(key, artifacts, replace=False)
                try:
                    os.link(tmp, path)  # atomic, and fails if another run got there first
                    return
                except FileExistsError:
                    if self.get(key) is not None:
                        return
                except OSError as exc:  # no hard links on this file system
                    if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                        raise
            self._repair(key, tmp, artifacts)
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass

    def _repair(self, key: str, tmp: Path, artifacts: list[tuple[str, bytes]]) -> None:
        """Replace whatever is at ``key`` (a corrupt entry) unless a valid one
        appeared meanwhile; one writer at a time, so the first valid result stays."""
        from filelock import FileLock  # deferred: only when the cache is written

        path = self._path(key)
        with FileLock(str(path.with_name(f".{key[:16]}.lock")), timeout=60):
            if self.get(key) is not None:
                return
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            self._store_artifacts(key, artifacts, replace=True)
            os.replace(tmp, path)

    def _store_artifacts(self, key: str, artifacts: list[tuple[str, bytes]], *, replace: bool) -> None:
        final = self.artifacts_dir(key)
        if not artifacts or (final.is_dir() and not final.is_symlink() and not replace):
            return
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{key[:12]}-"))
        for rel, data in artifacts:
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        if replace and os.path.lexists(final):  # left by the corrupt entry: not this result's files
            old = final.with_name(f".{key[:12]}-old-{os.getpid()}-{threading.get_ident()}")
            os.rename(final, old)
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
        try:
            os.rename(tmp, final)
        except OSError:  # another run stored it first
            shutil.rmtree(tmp, ignore_errors=True)

    def _give_up(self, exc: OSError) -> None:
        self.unwritable = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        log.warning(
            "cannot write to the trial cache %s (%s); this run goes on without caching, "
            "its results are in the bundle",
            self.root, self.unwritable,
        )  # fmt: skip

    # ------------------------------------------------------------- runs index

    def _index(self, name: str) -> Path:
        return self.runs / f"{name}.jsonl"

    def record_run(self, name: str, record: dict[str, Any]) -> None:
        from filelock import FileLock  # deferred: only when the cache is written

        if self.unwritable is not None:
            return
        line = json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n"
        try:
            self.runs.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self._index(name)) + ".lock", timeout=60):
                with open(self._index(name), "a", encoding="utf-8") as fh:
                    fh.write(line)
                    fh.flush()
                    os.fsync(fh.fileno())
        except OSError as exc:  # filelock's Timeout is an OSError too
            self._give_up(exc)

    def run_records(self, name: str) -> Iterator[dict[str, Any]]:
        """Records of earlier runs of a spec name, newest first; torn lines skipped."""
        try:
            lines = self._index(name).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return
        for line in reversed(lines):
            try:
                yield json.loads(line)
            except ValueError:
                continue


def _read_regular(path: Path) -> bytes | None:
    """The bytes of a regular file of at most MAX_ENTRY_BYTES, without following
    a link; None for anything else (absent, a directory, a FIFO, a device, too large)."""
    try:
        return read_bytes(path, MAX_ENTRY_BYTES)
    except OSError:  # UnsafePath is one
        return None


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))


def valid_entry(entry: Any, key: str) -> bool:
    """Whether ``entry`` is a well-formed successful result stored for ``key``:
    what the executor and the bundle writer read from it has the right shape."""
    # `pruned`: stopped by an adaptive sweep's early stopping, at thresholds that are part of the key
    if not isinstance(entry, dict) or entry.get("key") != key or entry.get("status") not in ("ok", "pruned"):
        return False
    metrics = entry.get("metrics")
    if not isinstance(metrics, dict) or not all(isinstance(k, str) and _is_number(v) for k, v in metrics.items()):
        return False
    if not isinstance(entry.get("id"), str) or not isinstance(entry.get("params", {}), dict):
        return False
    if not isinstance(entry.get("log", ""), str) or not isinstance(entry.get("history", []), list):
        return False
    if not all(_is_number(entry.get(k)) for k in ("start", "end")):
        return False
    if not all(isinstance(entry.get(k), (str, type(None))) for k in ("error", "traceback", "worker", "run_id")):
        return False
    attempts = entry.get("attempts", 1)
    return isinstance(attempts, int) and not isinstance(attempts, bool) and attempts >= 1
