"""Is the driver that writes a ``running`` bundle still alive?

A bundle's ``bundle.json`` records, from the start of the run, the driver
process that writes it (``liveness``: host, pid and the process's start time),
and while the run lasts the driver touches ``bundle.json`` every
:data:`HEARTBEAT_SECONDS`. A bundle still ``running`` is *abandoned* when:

- on the same host: no process has that pid, or the pid now belongs to a
  process started at another time (the pid was reused);
- on another host (or with nothing recorded): no heartbeat for
  :data:`STALE_AFTER_SECONDS` (the newest of ``bundle.json`` and
  ``trials.jsonl``'s modification times).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

HEARTBEAT_SECONDS = 30.0
STALE_AFTER_SECONDS = 10 * HEARTBEAT_SECONDS


def _start_time(pid: int) -> float | None:
    import psutil  # deferred: only when memory or processes are watched

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError, ValueError, OverflowError):
        return None


def this_process() -> dict[str, Any]:
    """What ``bundle.json`` records about the driver."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_started": _start_time(pid),
            "heartbeat_seconds": HEARTBEAT_SECONDS}  # fmt: skip


def abandoned(meta: dict[str, Any], root: Path, now: float | None = None) -> str | None:
    """Why a ``running`` bundle's driver is gone, or ``None`` when it may be alive."""
    if meta.get("status") != "running":
        return None
    raw = meta.get("liveness")
    info: dict[str, Any] = raw if isinstance(raw, dict) else {}
    host, pid, started = info.get("host"), info.get("pid"), info.get("pid_started")
    if host == socket.gethostname() and isinstance(pid, int) and not isinstance(pid, bool) and pid > 0:
        actual = _start_time(pid)
        if actual is None:
            return f"its driver (pid {pid} on {host}) is gone"
        if isinstance(started, (int, float)) and abs(actual - float(started)) > 1.0:
            return f"its driver (pid {pid} on {host}) is gone; the pid now belongs to another process"
        return None
    now = time.time() if now is None else now
    beats = []
    for name in ("bundle.json", "trials.jsonl"):
        try:
            beats.append((root / name).stat().st_mtime)
        except OSError:
            continue
    if not beats:
        return "no heartbeat"
    quiet = now - max(beats)
    if quiet > STALE_AFTER_SECONDS:
        where = f" on {host}" if host else ""
        return f"no heartbeat from its driver{where} for {quiet / 60:.0f} min"
    return None


class Heartbeat:
    """Touches ``bundle.json`` every :data:`HEARTBEAT_SECONDS` until stopped."""

    def __init__(self, path: Path, every: float = HEARTBEAT_SECONDS) -> None:
        self.path = path
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="xrun-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                os.utime(self.path)
            except OSError:
                pass  # the bundle was moved or removed: nothing to keep alive
