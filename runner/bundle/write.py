"""Writing a provenance bundle (DESIGN §4): inputs, trial records, results tables.

One recorder writes provenance: builders elsewhere return values, and
:class:`BundleWriter` turns them into files. The journal (``trials.jsonl``) is
append-only and fsynced in batches; everything a run computes is in the trial
cache before it is journaled, so a killed driver loses nothing.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import marshal
import os
import platform
import shutil
import socket
import sqlite3
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from runner._safeio import is_regular
from runner._version import __version__
from runner.bundle.journal import (
    BUNDLE_VERSION,
    Journal,
    iter_journal,
)
from runner.bundle.liveness import Heartbeat, this_process
from runner.bundle.points import Point, point_key
from runner.objective import is_number as _number

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

    def finish(self, summary: dict[str, Any], host: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        self.heartbeat.stop()
        self.journal.close()
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


_RESULT_BASE = ["id", "key", "status", "failure_class", "seed", "repeat", "attempts", "cached", "worker", "start", "end",
                "duration", "error"]  # fmt: skip


def write_tables(results: Path | None, points: Path | None, journal: Path) -> None:
    """``results.csv`` (one row per trial, its last line, in id order) and
    ``points.csv`` (one row per parameter point, in order of its first trial id)
    from ``trials.jsonl``, in bounded memory at any number of trials.

    Three streamed passes: the first finds the columns and each trial's last
    line; the second reads those lines back in id order, writes the results
    rows and files each trial under its point; the third reads the points back
    grouped. What must be sorted or grouped goes to private temporary SQLite
    databases on disk (deleted when closed), not into memory.
    """
    last = sqlite3.connect("")  # id -> offset of its last line
    pts = sqlite3.connect("")  # (point, position in id order, trial id, metrics if successful)
    try:
        last.execute("CREATE TABLE last (id BLOB PRIMARY KEY, off INTEGER NOT NULL)")
        pts.execute("CREATE TABLE pts (pk TEXT NOT NULL, seq INTEGER NOT NULL, tid BLOB NOT NULL, metrics BLOB)")
        params: set[str] = set()
        metrics: set[str] = set()

        def offsets() -> Iterator[tuple[bytes, int]]:
            for offset, r in iter_journal(journal):
                if isinstance(r.get("params"), dict):
                    params.update(r["params"])
                if isinstance(r.get("metrics"), dict):
                    metrics.update(r["metrics"])
                yield _sortable(r["id"]), offset

        last.executemany("INSERT OR REPLACE INTO last (id, off) VALUES (?, ?)", offsets())
        p_cols, m_cols = sorted(params), sorted(metrics)
        point_params: set[str] = set()
        point_metrics: set[str] = set()
        with contextlib.ExitStack() as files:
            w = None
            if results is not None:
                w = csv.writer(files.enter_context(open(results, "w", newline="", encoding="utf-8", errors="replace")))
                w.writerow(_RESULT_BASE + [f"param.{p}" for p in p_cols] + [f"metric.{m}" for m in m_cols])
            src = files.enter_context(open(journal, "rb"))
            batch: list[tuple[str, int, bytes, bytes | None]] = []
            for seq, (off,) in enumerate(last.execute("SELECT off FROM last ORDER BY id")):
                src.seek(off)
                r = json.loads(src.readline())
                if w is not None:
                    w.writerow(_result_row(r, p_cols, m_cols))
                if points is None:
                    continue
                raw = r.get("params")
                pp: dict[str, Any] = raw if isinstance(raw, dict) else {}
                point_params.update(pp)
                ok = None
                if r.get("status") == "ok":
                    raw_m = r.get("metrics")
                    values = {str(k): float(v) for k, v in (raw_m.items() if isinstance(raw_m, dict) else ()) if _number(v)}
                    point_metrics.update(values)
                    ok = marshal.dumps(values)  # read back by this function only: cheaper than JSON
                batch.append((point_key(pp), seq, _sortable(str(r.get("id"))), ok))
                if len(batch) >= 10_000:
                    pts.executemany("INSERT INTO pts VALUES (?, ?, ?, ?)", batch)
                    batch.clear()
            pts.executemany("INSERT INTO pts VALUES (?, ?, ?, ?)", batch)
        if points is not None:
            _write_points(points, pts, sorted(point_params), sorted(point_metrics))
    finally:
        last.close()
        pts.close()


def _sortable(text: str) -> bytes:
    """``text`` as bytes that sort as Python sorts strings (by code point; JSON may hold lone surrogates)."""
    return text.encode("utf-8", "surrogatepass")


def _result_row(r: dict[str, Any], p_cols: list[str], m_cols: list[str]) -> list[Any]:
    duration = (r["end"] - r["start"]) if r.get("end") and r.get("start") else ""
    row = [r.get("id"), r.get("key"), r.get("status"), r.get("failure_class") or "", r.get("seed"),
           _cell(r.get("repeat")), r.get("attempts"), r.get("cached"), r.get("worker") or "", r.get("start") or "",
           r.get("end") or "", duration, (r.get("error") or "").splitlines()[0] if r.get("error") else ""]  # fmt: skip
    params = r["params"] if isinstance(r.get("params"), dict) else {}
    metrics = r["metrics"] if isinstance(r.get("metrics"), dict) else {}
    row += [_cell(params.get(p)) for p in p_cols]
    row += [_cell(metrics.get(m)) for m in m_cols]
    return row


def _write_points(path: Path, pts: sqlite3.Connection, p_cols: list[str], m_cols: list[str]) -> None:
    """points.csv from the ``pts`` table: one group of rows per point, as :func:`aggregate` makes them."""
    pts.execute("CREATE TABLE firsts (pk TEXT PRIMARY KEY, first INTEGER NOT NULL)")
    pts.execute("INSERT INTO firsts SELECT pk, MIN(seq) FROM pts GROUP BY pk")
    grouped = pts.execute("SELECT pts.pk, tid, metrics FROM pts JOIN firsts ON firsts.pk = pts.pk ORDER BY first, seq")
    with open(path, "w", newline="", encoding="utf-8", errors="replace") as fh:  # a lone surrogate from JSON: "?"
        w = csv.writer(fh)
        w.writerow([f"param.{p}" for p in p_cols] + ["n", "trials"]
                   + [f"{m}.{stat}" for m in m_cols for stat in ("mean", "std")])  # fmt: skip

        def flush(p: Point) -> None:
            row = [_cell(p.params.get(c)) for c in p_cols] + [p.n, " ".join(p.trials)]
            for m in m_cols:
                row += [_cell(p.mean(m)), _cell(p.std(m))]
            w.writerow(row)

        point: Point | None = None
        current = None
        for pk, tid, values in grouped:
            if pk != current:
                if point is not None:
                    flush(point)
                current, point = pk, Point(json.loads(pk))
            assert point is not None
            tid = tid.decode("utf-8", "surrogatepass")
            point.trials.append(tid)
            if values is not None:
                point.ok.append(tid)
                for name, v in marshal.loads(values).items():
                    point.values.setdefault(name, []).append(v)
        if point is not None:
            flush(point)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return value


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
