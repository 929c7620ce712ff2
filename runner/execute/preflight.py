"""Before the first trial: the workers' environment checked against the lock,
and the trial imported on one worker, tolerating workers lost meanwhile."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from runner import _yaml
from runner.data import on_workers
from runner.errors import InfraError, SpecError
from runner.plan import Plan, pin_worker_data

from .monitor import shipped

log = logging.getLogger(__name__)

WORKERS_TIMEOUT = 180.0  # seconds to wait for a first worker, or for a worker to answer


LOST_WORKER_TRIES = 4


def despite_lost_workers(client: Any, what: str, step: Callable[[], Any]) -> Any:
    """``step()``, again when a worker was lost while it ran: a worker dying
    while the cluster starts is ordinary (the backend starts it again). Only
    losing workers every time, or having none left, is an infrastructure error."""
    from distributed import KilledWorker  # deferred: imports Dask

    for attempt in range(1, LOST_WORKER_TRIES + 1):
        try:
            return step()
        except (OSError, KilledWorker) as exc:  # CommClosedError is an OSError
            if attempt == LOST_WORKER_TRIES:
                raise InfraError(f"{what} failed {attempt} times as workers were lost: {type(exc).__name__}: {exc}") from None
            log.info("%s: a worker was lost (%s); trying again", what, exc)
            try:
                client.wait_for_workers(1, timeout=WORKERS_TIMEOUT)
            except (TimeoutError, OSError):
                raise InfraError(f"{what}: no Dask worker left to run on ({type(exc).__name__}: {exc})") from None
    raise AssertionError("unreachable")


def preflight(plan: Plan, client: Any) -> list[Any]:
    """The workers import the trial function (or estimator class) in the trial
    environment before anything is submitted: a typo stops the run with one
    message (exit 2), not one failed trial per point.

    Every worker connected now imports it at once, and the first to answer
    decides: the others go on importing while trials start, so no worker
    imports its trial's packages only when its first trial arrives. Returns the
    futures of those imports (hold them until trials run: a released future's
    task may be cancelled before it starts)."""
    from runner import _plugin  # deferred: imports Dask

    check = shipped(_plugin.call_check)
    workers = sorted(client.scheduler_info().get("workers", {}))
    futures = [client.submit(check, plan.definition, pure=False, workers=[w], allow_other_workers=False)
               for w in workers]  # fmt: skip
    futures.append(client.submit(check, plan.definition, pure=False))  # answers even when those workers are gone
    try:
        problem = _first_answer(client, futures, WORKERS_TIMEOUT)
    except TimeoutError:
        raise InfraError(
            f"importing the trial on a worker took longer than {WORKERS_TIMEOUT:.0f}s; "
            "check the trial module for slow work at import time"
        ) from None
    urls = {name: item["url"] for name, item in plan.data.items() if item.get("url")}
    if not problem and urls:  # the workers' environment can read the data URLs
        problem = client.submit(shipped(_plugin.call_check_data), urls, pure=False).result(timeout=WORKERS_TIMEOUT)
    if problem:
        path = tuple(problem.get("path") or ("trial",))
        loaded = plan.loaded
        raise SpecError(
            f"{problem.get('message')} (checked on a worker, before any trial ran)",
            file=loaded.display,
            line=_yaml.line_for(loaded.lines, path),
            path=_yaml.dotted(path),
        )
    return futures


def _first_answer(client: Any, futures: list[Any], timeout: float) -> Any:
    """The result of the first of ``futures`` to finish without error; when
    every one fails, the first one's error (a lost worker: tried again)."""
    from distributed import as_completed  # deferred: imports Dask

    for future in as_completed(futures, loop=client.loop, timeout=timeout):
        if future.status == "finished":
            return future.result()
    return futures[0].result(timeout=0)  # every one failed: raise the first one's error


def hash_volume_data(plan: Plan, client: Any, cache: Any) -> bool:
    """Data on the workers' volume that this machine does not see and the spec
    does not pin: one worker hashes it (as the driver hashes local data), its
    digests are pinned in ``plan.data`` and the trials keyed and looked up with them.
    True when there was such data."""
    from runner import _plugin  # deferred: imports Dask

    paths = on_workers(plan.data)
    if not paths:
        return False
    # No time limit: hashing a large file takes what it takes; a lost worker is retried by the caller.
    hashed = client.submit(shipped(_plugin.call_hash_paths), paths, pure=False).result()
    try:
        pin_worker_data(plan, hashed, cache)
    except SpecError as exc:
        loaded = plan.loaded
        where = tuple(exc.path.split("."))
        raise SpecError(exc.what, file=loaded.display, line=_yaml.line_for(loaded.lines, where), path=exc.path) from None
    return True


def pin_volume_data(plan: Plan, client: Any, executor: Any, status: Callable[[str], None]) -> bool:
    """Before the sweep, with the cluster up: data only the workers see is hashed
    on one of them, pinned in the bundle's data.json and in what workers verify,
    and keys the trials. True when there was such data (the trials were keyed again)."""
    if not on_workers(plan.data):
        return False
    status("hashing data on the workers' volume (on a worker)")
    despite_lost_workers(client, "hashing data on a worker", lambda: hash_volume_data(plan, client, executor.cache))
    executor.data_sha256.update({k: v["sha256"] for k, v in plan.data.items() if v.get("sha256")})
    executor.writer.write_json("data.json", plan.data)
    return True


def check_workers(plan: Plan, reports: dict[str, dict[str, Any]]) -> None:
    """Each worker must have the environment's pinned versions."""
    if plan.env.kind == "current":
        expected = plan.env.packages
        keys = ("dask", "distributed", "scikit-learn", "numpy", "cloudpickle")
        for addr, rep in reports.items():
            diffs = [f"{k}: driver {expected.get(k)}, worker {rep['packages'].get(k)}" for k in keys
                     if expected.get(k) and rep["packages"].get(k) != expected.get(k)]  # fmt: skip
            if diffs:
                raise InfraError(
                    f"worker {addr} does not match the driver's environment: " + "; ".join(diffs)
                    + "; install the same versions on the workers or pin an environment in the spec"
                )
        return
    from runner.env import worker_packages_mismatch  # deferred: imports the environment lockers

    for addr, rep in reports.items():
        diffs = worker_packages_mismatch(plan.env, rep["packages"])
        if diffs:
            raise InfraError(
                f"worker {addr} does not match the lock ({plan.env.lock_file}): " + "; ".join(diffs[:10])
            )
