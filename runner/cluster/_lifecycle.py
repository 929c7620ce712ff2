"""What every container or cluster backend needs to own its objects.

Objects are labelled with the driver that made them (host, pid and process
start time, so a reused pid is told apart); ``clean`` removes objects whose
driver is gone. Teardown defers a second Ctrl-C until it is finished.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def driver_id(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}|{pid}|{start_ticks(pid) or ''}"


def start_ticks(pid: int) -> str | None:
    """The process start time (clock ticks since boot): tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def driver_alive(driver: str) -> bool:
    host, _, rest = driver.partition("|")
    pid_text, _, ticks = rest.partition("|")
    if host != socket.gethostname():
        return True  # another machine's run: we cannot tell, so leave it
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return not ticks or start_ticks(pid) == ticks


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Let teardown finish when Ctrl-C is pressed again; re-raise it afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[bool] = []
    previous = signal.signal(signal.SIGINT, lambda *_: pending.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            raise KeyboardInterrupt
