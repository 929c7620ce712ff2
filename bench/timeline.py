"""A timeline of the xrun driver's phases: ``python bench/timeline.py run SPEC -q ...``.

Wraps the driver's phase functions (planning, cluster start and wait,
pre-flight, the executor, sealing, the cluster's teardown, adaptive
generations) and prints ``[seconds since the process started] > / < phase`` on
stderr, then runs the ``xrun`` command line given. For finding where the
fixed cost of a run goes (bench/profiles/fixedcost-timelines.txt); it measures
one run, with the load of the moment, and is no benchmark.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import time
from typing import Any

import psutil

T0 = psutil.Process().create_time()

PHASES = [
    ("runner.run", "load_environment", None), ("runner.run", "make_plan", None), ("runner.run", "run_plan", None),
    ("runner.run", "_write_inputs", None), ("runner.run", "_execute", None), ("runner.run", "seal", None),
    ("runner.run", "preflight", None), ("runner.cluster.local", "start", "LocalBackend"),
    ("runner.cluster.local", "_wait", "LocalBackend"), ("runner.cluster.local", "_teardown", "LocalBackend"),
    ("runner.cluster.local", "wait_closed", "LocalBackend"), ("runner.execute.executor", "run", "Executor"),
    ("runner.search.driver", "decide", "AdaptiveSearch"),
]  # fmt: skip
# With XRUN_TIMELINE_DETAIL=1: the driver's calls to the cluster before the first trial too.
DETAIL = [
    ("distributed", "__init__", "Client"), ("distributed", "wait_for_workers", "Client"),
    ("distributed", "register_plugin", "Client"), ("distributed", "run", "Client"),
    ("runner.run", "check_workers", None), ("runner.execute.executor", "_handle", "Executor"),
]  # fmt: skip


def stamp(message: str) -> None:
    print(f"[{time.time() - T0:7.2f}] {message}", file=sys.stderr, flush=True)


def wrap(module: str, name: str, owner_name: str | None) -> None:
    owner: Any = importlib.import_module(module)
    if owner_name:
        owner = getattr(owner, owner_name)
    fn = getattr(owner, name, None)
    if fn is None:  # an older xrun without this phase
        return

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        stamp(f"> {name}")
        try:
            return fn(*args, **kwargs)
        finally:
            stamp(f"< {name}")

    setattr(owner, name, timed)


def main() -> None:
    stamp("interpreter up")
    try:  # as the xrun script does first (an older xrun has no such step)
        from runner._entry import spawn_ahead
    except ImportError:
        pass
    else:
        spawn_ahead(sys.argv[1:])
        stamp("spawned ahead")
    detail = DETAIL if os.environ.get("XRUN_TIMELINE_DETAIL") else []
    for module, name, owner in PHASES + detail:
        wrap(module, name, owner)
    stamp("xrun imported")
    from runner.cli.app import main as xrun

    sys.argv = ["xrun", *sys.argv[1:]]
    try:
        xrun()
    finally:
        stamp("xrun returned")


if __name__ == "__main__":
    main()
