"""Writing a provenance bundle (DESIGN §4): inputs, trial records, results tables.

One recorder writes provenance: builders elsewhere return values, and
:class:`BundleWriter` turns them into files. The journal (``trials.jsonl``) is
append-only and fsynced in batches; everything a run computes is in the trial
cache before it is journaled, so a killed driver loses nothing.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import socket
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from runner._safeio import is_regular
from runner._version import __version__
from runner.bundle.journal import (
    BUNDLE_VERSION,
    Journal,
)
from runner.bundle.ledger import Ledger
from runner.bundle.ledger import _cell as _cell
from runner.bundle.liveness import Heartbeat, this_process

log = logging.getLogger(__name__)



def _dump(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class BundleWriter:
    def __init__(self, root: Path, run_id: str) -> None:
        self.root = root
        self.run_id = run_id
        self.created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        root.mkdir(parents=True, exist_ok=False)
        for sub in ("env", "code", "logs", "artifacts"):
            (root / sub).mkdir()
        self.journal = Journal(root / "trials.jsonl")
        self.liveness = this_process()
        self.heartbeat = Heartbeat(root / "bundle.json")

    # ---------------------------------------------------------- inputs

    def write_inputs(
        self,
        *,
        spec_text: str,
        resolved: dict[str, Any],
        env_files: dict[str, bytes],
        env_info: dict[str, Any],
        code_archive: bytes,
        git: dict[str, Any],
        code_files: dict[str, str],
        data: dict[str, Any],
    ) -> None:
        (self.root / "spec.yaml").write_text(spec_text, encoding="utf-8")
        _dump(self.root / "spec.resolved.json", resolved)
        for name, content in env_files.items():
            (self.root / "env" / name).write_bytes(content)
        _dump(self.root / "env" / "env.json", env_info)
        (self.root / "code" / "source.tar.gz").write_bytes(code_archive)
        _dump(self.root / "code" / "git.json", git)
        _dump(self.root / "code" / "files.json", code_files)
        _dump(self.root / "data.json", data)

    def write_json(self, name: str, value: Any) -> None:
        _dump(self.root / name, value)

    def write_status(self, summary: dict[str, Any]) -> None:
        _dump(self.root / "bundle.json", {
            "bundle_version": BUNDLE_VERSION,
            "run_id": self.run_id,
            "xrun_version": __version__,
            "created": self.created,
            "liveness": self.liveness,
            **summary,
        })  # fmt: skip
        if summary.get("status") == "running" and not self.heartbeat.is_alive():
            self.heartbeat.start()

    # ---------------------------------------------------------- trials

    def record_trial(self, record: dict[str, Any], log: str, artifacts: list[tuple[str, bytes]] | None = None,
                     artifacts_from: Path | None = None, *, line: str | None = None, flush: bool = True) -> None:  # fmt: skip
        """Write a finished trial's log and artifacts, then journal it (``line``:
        the record already encoded; ``flush=False``: the caller flushes the journal)."""
        tid = record["id"]
        if log:  # a trial that printed nothing has no log file (100,000 empty files cost seconds)
            (self.root / "logs" / f"{tid}.log").write_text(log, encoding="utf-8", errors="replace")
        if artifacts:
            base = self.root / "artifacts" / tid
            for rel, data in artifacts:
                target = base / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        elif artifacts_from is not None and artifacts_from.is_dir():
            _copy_regular_files(artifacts_from, self.root / "artifacts" / tid)
        self.journal.append(record, line, flush=flush)

    # ---------------------------------------------------------- finish

    def finish(self, summary: dict[str, Any], host: dict[str, Any], extra: dict[str, Any] | None = None,
               ledger: Ledger | None = None) -> None:  # fmt: skip
        """Close the journal, write the tables (from ``ledger``: the finished
        journal's, when one was made) and the final ``bundle.json``."""
        self.heartbeat.stop()
        self.journal.close()
        if ledger is not None:
            ledger.write_tables(self.root / "results.csv", self.root / "points.csv")
        else:
            write_tables(self.root / "results.csv", self.root / "points.csv", self.root / "trials.jsonl")
        _dump(self.root / "host.json", host)
        for name, value in (extra or {}).items():
            _dump(self.root / name, value)
        self.write_status(summary)


def _copy_regular_files(src: Path, dest: Path) -> None:
    """Copy a cache entry's artifacts: regular files only (a cache entry is not
    trusted; a link in it must not bring another file's bytes into the bundle)."""
    for dirpath, _dirs, filenames in os.walk(src):  # does not descend into linked directories
        for name in filenames:
            path = Path(dirpath) / name
            if not is_regular(path):
                log.warning("cached artifact %s skipped: not a regular file", path)
                continue
            target = dest / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def write_results_csv(path: Path, journal: Path) -> None:
    """``trials.jsonl`` flattened, one row per trial in id order."""
    write_tables(path, None, journal)


def write_points_csv(path: Path, journal: Path) -> None:
    """One row per parameter point: its params, ``n`` (successful trials), and
    ``<metric>.mean`` / ``<metric>.std`` over them (std empty when ``n < 2``)."""
    write_tables(None, path, journal)


def write_tables(results: Path | None, points: Path | None, journal: Path) -> None:
    """``results.csv`` (one row per trial, its last line, in id order) and
    ``points.csv`` (one row per parameter point, in order of its first trial id)
    from ``trials.jsonl``, in bounded memory at any number of trials
    (:class:`runner.bundle.ledger.Ledger`)."""
    with Ledger(journal, None) as ledger:
        ledger.write_tables(results, points)


def driver_info() -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "executable": sys.executable,
        "cpus": os.cpu_count(),
        "xrun": __version__,
        "packages": {n: version(n) for n in ("dask", "distributed", "pydantic", "scikit-learn", "numpy", "docker", "py-rattler", "conda-lock")},
    }
