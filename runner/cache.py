"""Content-addressed trial results shared across runs (DESIGN §4).

Layout under ``<cache>/trials``::

    ab/abcdef….json            the result of trial key abcdef… (log inlined)
    ab/abcdef….artifacts/      files the trial wrote, when it wrote any

Only successful trials are cached. Every entry is written to a temporary name
and renamed into place, so a reader sees a whole entry or none, and two runs
writing the same key at once both leave a valid entry. ``<cache>/runs/<spec
name>.jsonl`` records what each run was made of, so ``xrun plan`` can say why a
trial misses (under a file lock, since runs may append at once).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner import config
from runner._safeio import MAX_JSON_BYTES, read_bytes


class TrialCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else config.cache_dir()
        self.trials = self.root / "trials"
        self.runs = self.root / "runs"

    # ------------------------------------------------------------- results

    def _path(self, key: str) -> Path:
        return self.trials / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:  # a regular file of bounded size: an entry linked to /dev/zero or a FIFO is a miss
            entry = json.loads(read_bytes(self._path(key), MAX_JSON_BYTES))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError):
            return None  # an unreadable entry is a miss, and is rewritten
        return entry if isinstance(entry, dict) and entry.get("key") == key and entry.get("status") == "ok" else None

    def contains(self, key: str) -> bool:
        return self._path(key).is_file()

    def artifacts_dir(self, key: str) -> Path:
        return self.trials / key[:2] / f"{key}.artifacts"

    def put(self, entry: dict[str, Any], artifacts: list[tuple[str, bytes]] = ()) -> None:  # type: ignore[assignment]
        """Store a successful trial atomically (artifacts first, then the entry)."""
        key = entry["key"]
        path = self._path(key)
        if path.exists():  # content-addressed: the first result stored for a key stays
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if artifacts:
            final = self.artifacts_dir(key)
            if not final.exists():
                tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{key[:12]}-"))
                for rel, data in artifacts:
                    target = tmp / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                try:
                    os.rename(tmp, final)
                except OSError:  # another run stored it first
                    shutil.rmtree(tmp, ignore_errors=True)
        # A name no other process or thread uses, without mkstemp's extra work.
        tmp = path.with_name(f".{key[:16]}-{os.getpid()}-{threading.get_ident()}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(entry, fh, separators=(",", ":"))
        os.replace(tmp, path)

    # ------------------------------------------------------------- runs index

    def _index(self, name: str) -> Path:
        return self.runs / f"{name}.jsonl"

    def record_run(self, name: str, record: dict[str, Any]) -> None:
        from filelock import FileLock

        self.runs.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n"
        with FileLock(str(self._index(name)) + ".lock", timeout=60):
            with open(self._index(name), "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())

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
