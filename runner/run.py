"""``xrun run``: environment, plan, image step, backend, execute, seal. The one place that wires
the stages of DESIGN §1 together."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import config
from runner import sweep as sweep_mod
from runner._gc import tuned_for_a_run
from runner._redact import scrub
from runner.bundle.glance import GLANCE_ROWS
from runner.bundle.journal import BUNDLE_VERSION
from runner.bundle.ledger import Glance, Ledger
from runner.bundle.write import BundleWriter, driver_info
from runner.cache import TrialCache
from runner.cluster import ClusterInfo, Launch
from runner.cluster._lifecycle import sigint_deferred
from runner.cluster.factory import image_record, make_backend, worker_image
from runner.env import LockedEnv
from runner.errors import InfraError, StageFailed, TrialsFailed, UsageError, XrunError
from runner.execute import Event, Executor, Options, Outcome
from runner.execute.preflight import (
    WORKERS_TIMEOUT,
    check_workers,
    despite_lost_workers,
    pin_volume_data,
    preflight,
)
from runner.plan import Plan, make_plan, new_run_id
from runner.report.data import new_scan
from runner.report.scan import Scan
from runner.seal import seal
from runner.spec import LoadedSpec
from runner.stage_run import StageRunner

log = logging.getLogger(__name__)



@dataclass
class RunOptions:
    use_cache: bool = True
    fail_fast: bool = False
    relock: bool = False
    output: Path | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    on_event: Callable[[Event], None] | None = None
    on_status: Callable[[str], None] | None = None  # human progress lines ("starting 2 workers…")


@dataclass
class RunResult:
    run_id: str
    bundle: Path
    status: str  # ok | failed | interrupted | error
    outcome: Outcome
    total: int
    dashboard: str | None = None
    duration: float = 0.0
    glance: Glance | None = None  # the terminal's tables of its trials, GLANCE_ROWS rows each


def load_environment(loaded: LoadedSpec, relock: bool = False) -> LockedEnv:
    from runner.env import load_env  # deferred: imports the environment lockers

    return load_env(loaded.spec.environment, relock=relock)


def secret_values(loaded: LoadedSpec) -> dict[str, str]:
    missing = [n for n in loaded.spec.secrets if n not in os.environ]
    if missing:
        raise UsageError(
            f"{loaded.where('secrets')}: environment variable(s) not set: {', '.join(missing)}; "
            "export them before running (their values are passed to workers, never recorded)"
        )
    return {n: os.environ[n] for n in loaded.spec.secrets}


def run(loaded: LoadedSpec, options: RunOptions | None = None) -> RunResult:
    options = options or RunOptions()
    secrets = secret_values(loaded)
    cache = TrialCache()
    early: Any | None = None
    held = _InterruptsHeld(options) if _start_early(loaded, options, cache) else None
    if held is None:
        _discard_ahead()  # a cluster spawned before the spec was validated is not needed (yet)
    try:
        with held or nullcontext():
            early = _start_cluster_early(loaded, options) if held else None
            env = load_environment(loaded, relock=options.relock)
            plan = make_plan(loaded, env, use_cache=options.use_cache, cache=cache)
            if loaded.spec.sweep.adaptive:
                from runner.search import plan_search  # deferred: imports Optuna

                plan_search(plan, cache)  # the generations the cache answers, and the first it does not
            return run_plan(plan, options, secrets=secrets, cache=cache, cluster=early,
                            interrupts=held.release if held else None)  # fmt: skip
    finally:
        if early is not None:  # not used (planning failed, nothing to run), or already closed by run_plan
            early.close()
        cache.close()  # checkpointed now, not left to the interpreter's exit


class _InterruptsHeld:
    """While the driver plans with a cluster already starting, and until
    ``run_plan`` handles interrupts itself, a second Ctrl-C (which cancels running
    trials: there are none yet) is held and raised there, so the run ends as one
    interrupted while its cluster starts (status ``interrupted``, a bundle,
    exit 130). A third one stops at once."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.previous: Any = None
        self.active = False
        self.held = 0

    def __enter__(self) -> _InterruptsHeld:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
            self.active = True
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        if not self.options.stop.is_set():
            if callable(self.previous):
                self.previous(signum, frame)  # the first: stop (the CLI says so), or KeyboardInterrupt
            self.options.stop.set()
            return
        self.held += 1
        if self.held >= 2:
            raise KeyboardInterrupt

    def release(self) -> None:
        """Called where ``run_plan`` handles a KeyboardInterrupt: a held one is raised there."""
        self.__exit__()
        if self.held:
            raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        if self.active:
            signal.signal(signal.SIGINT, self.previous)
            self.active = False


def _start_early(loaded: LoadedSpec, options: RunOptions, cache: TrialCache) -> bool:
    """Whether to spawn a local cluster's processes before the run is planned,
    so they start (each imports Dask) while the driver hashes, plans and writes
    the bundle's inputs; ``run_plan`` waits for them where it would have started them.

    Only when the run surely needs them: the local backend with the current
    interpreter (a locked environment is materialized by planning first), and
    no cached result to find (``--no-cache``, or a spec this cache never ran)."""
    spec = loaded.spec
    if spec.cluster.backend != "local" or spec.environment.kind != "current" or options.stop.is_set():
        return False
    if not options.use_cache:
        return True
    try:
        return next(cache.run_records(spec.name), None) is None
    except OSError:  # an index that cannot be read: plan first, as without this
        return False


def _start_cluster_early(loaded: LoadedSpec, options: RunOptions) -> Any | None:
    """The started local backend (see :func:`_start_early`), or None. A failure
    to spawn is not reported here: the cluster is started again in its usual
    place, which reports it as it always has."""
    from runner.cluster.local import adopt, for_spec  # deferred: the local backend only

    spec = loaded.spec  # the driver's interpreter, as from_launch gives
    backend = adopt(for_spec(spec, stop=options.stop))
    if options.stop.is_set():
        backend.close()
        return None
    try:
        backend.start()
    except KeyboardInterrupt:  # a Ctrl-C held while a process was spawned: the run stops before it starts
        backend.close()
        options.stop.set()
        return None
    except Exception:
        log.debug("starting the local cluster before planning failed; it is started again later", exc_info=True)
        backend.close()
        return None
    return backend


def _discard_ahead() -> None:
    if "runner.cluster.local" in sys.modules:  # else nothing was spawned ahead
        from runner.cluster.local import discard_ahead  # deferred: the local backend only

        discard_ahead()


# Called after the trials ran, before the bundle is sealed: returns extra JSON
# files for the bundle and extra keys for bundle.json.
Finalizer = Callable[[BundleWriter, Outcome, dict[str, Any]], tuple[dict[str, Any], dict[str, Any]]]


@tuned_for_a_run  # many short-lived objects per trial: see runner._gc
def run_plan(
    plan: Plan,
    options: RunOptions,
    *,
    secrets: dict[str, str],
    cache: TrialCache | None = None,
    finalize: Finalizer | None = None,
    cluster: Any | None = None,
    interrupts: Callable[[], None] | None = None,
) -> RunResult:
    """Execute a plan and write its bundle; shared by ``run`` and ``reproduce``.

    ``cluster``: a local backend already started (:func:`_start_cluster_early`),
    used instead of starting one; the caller closes it if it is not used.
    ``interrupts``: called where a KeyboardInterrupt is handled (raises one the caller held)."""
    status_cb = options.on_status or (lambda s: None)
    started = time.monotonic()
    spec = plan.spec
    cache = cache or TrialCache()
    output = options.output or spec.output
    run_id = new_run_id(spec.name)
    writer = _open_bundle(output, run_id)
    total = _total(plan)
    try:
        # bundle.json first: whatever fails later, there is a file to turn terminal in place.
        writer.write_status({"status": "running", "counts": {"total": total}})
        _write_inputs(writer, plan)
        if plan.search is not None:
            plan.search.write(writer)
    except OSError as exc:
        raise _bundle_failed(writer, exc, {"status": "error", "counts": {"total": total}}, cache) from None
    cache.record_run(spec.name, {"run_id": run_id, "bundle": str(writer.root), "created": writer.created,
                                  "components": plan.components()})  # fmt: skip
    slots = spec.cluster.workers * spec.cluster.threads_per_worker  # worker threads in the cluster
    executor = Executor(
        plan, writer, cache, run_id,
        options=Options(fail_fast=options.fail_fast, max_in_flight=max(4, 2 * slots + 2), slots=slots),
        on_event=options.on_event, stop=options.stop, redact=list(secrets.values()),
    )  # fmt: skip
    redact = list(secrets.values())
    stages = StageRunner(plan, writer, cache, run_id, data_paths=executor.data_paths, data_sha256=executor.data_sha256,
                         scrub=lambda value: scrub(value, redact))  # fmt: skip
    preload = _preload_sealing()
    host: dict[str, Any] = {"driver": driver_info(), "backend": spec.cluster.backend, "workers": {}}
    extra: dict[str, Any] = {}
    info: ClusterInfo | None = None
    error: BaseException | None = None
    closing: list[Callable[[], None]] = []  # waits for a cluster stopping in the background
    try:
        if interrupts is not None:
            interrupts()
        executor.record_cached()
        if (_to_run(plan) or stages.need_cluster()) and not options.stop.is_set():
            image = worker_image(plan.loaded, plan.env, options.build_args)  # the image step
            if image is not None:
                extra["image.json"] = image_record(spec.cluster.backend, image)
            # (data on the workers' own volumes is mounted by the backend's `volumes`)
            data_paths = tuple(Path(v["path"]) for v in plan.data.values() if v.get("path") and not v.get("volume"))
            backend = cluster or make_backend(Launch(spec=spec, run_id=run_id, env=plan.env, secrets=secrets,
                                                     data_paths=data_paths, image=image, stop=options.stop))  # fmt: skip
            in_background = getattr(backend, "teardown_in_background", None)
            if in_background is not None:  # its processes stop while the bundle is sealed
                closing.append(in_background())
            if spec.cluster.backend == "address":
                status_cb(f"connecting to the Dask scheduler at {spec.cluster.address} "  # type: ignore[union-attr]
                          f"(waiting for at least {spec.cluster.workers} workers)")  # fmt: skip
            else:
                status_cb(f"starting {spec.cluster.backend} cluster ({spec.cluster.workers} workers)")
            with backend.open() as info:
                host["scheduler"] = info.address
                host["dashboard"] = info.dashboard
                _execute(plan, info, executor, secrets, host, status_cb, stages)
        elif options.stop.is_set() and (_to_run(plan) or stages.need_cluster()):
            executor.outcome.interrupted = True  # Ctrl-C before the cluster started: no trial starts
        elif plan.trials and not _to_run(plan):
            if cluster is not None:
                cluster.close()
            status_cb(f"all {total} trials cached; no cluster started")
            stages.prepare(None)  # cached, as is final (else need_cluster() would have said so)
            stages.final(None, sweep_ok=not options.stop.is_set())
    except KeyboardInterrupt:
        executor.outcome.interrupted = True
    except BaseException as exc:  # recorded in the bundle, then re-raised
        error = exc
        if isinstance(exc, OSError) and _bundle_storage_error(exc, writer.root):
            error = InfraError(_storage_message(writer.root, exc, cache))
    # From here a Ctrl-C (the second, or one after the trials) would leave the bundle `running`.
    with sigint_deferred():
        outcome = executor.outcome
        done = sum(outcome.counts.values())
        outcome.not_run = total - done
        if isinstance(error, StageFailed) and stages.failed == "prepare":
            status = "prepare-failed"
        elif error is not None:
            status = "error"
        elif outcome.interrupted:
            status = "interrupted"
        elif outcome.counts["failed"] or outcome.not_run:
            status = "failed"
        elif stages.failed == "final":
            status = "final-failed"  # the sweep's results are intact
        else:
            status = "ok"
        summary = _summary(plan, outcome, status, time.monotonic() - started, error)
        if stages.records:
            summary["stages"] = stages.summary()
        if plan.trials and not plan.pending and info is None:  # nothing ran here: say where the results were computed
            summary["cluster_started"] = False
            summary["computed_by"] = plan.computed_by()
        if finalize is not None and error is None:
            files, keys = finalize(writer, outcome, extra)
            extra.update(files)
            summary.update(keys)
        preload.join()  # two threads importing one package at once can break it half-initialized
        ledger: Ledger | None = None
        try:
            ledger, scanned = _one_pass(plan, writer)  # the journal is complete: read once for all derived from it
            summary["best"] = best = ledger.best()
            writer.finish(summary, host, extra, ledger=ledger)
            glanced = ledger.glance(best["metric"] if best else None, (best or {}).get("goal", "maximize"), GLANCE_ROWS)
            ledger.close()  # its scratch database and page cache are not held while the report is made
            seal(writer.root, scanned=scanned)
        except OSError as exc:
            raise _bundle_failed(writer, exc, summary, cache) from None
        finally:
            if ledger is not None:
                ledger.close()
            for wait in closing:  # no cluster process outlives the run
                wait()
    result = RunResult(run_id, writer.root, status, outcome, total,
                       info.dashboard if info else None, time.monotonic() - started, glanced)  # fmt: skip
    if error is not None:
        if isinstance(error, XrunError):
            error.message += f"\n(partial results kept in {writer.root})"
            error.args = (error.message,)
        raise error
    return result


# Errors of the file system a bundle or the cache lives on, not of xrun.
STORAGE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG})


def _bundle_storage_error(exc: OSError, root: Path) -> bool:
    """A write to the bundle failed (a journal flush names no file)."""
    if exc.errno not in STORAGE_ERRORS:
        return False
    return exc.filename is None or str(exc.filename).startswith(str(root))


def _open_bundle(output: Path, run_id: str) -> BundleWriter:
    try:
        return BundleWriter(output / run_id, run_id)
    except (NotADirectoryError, FileExistsError):
        raise UsageError(f"output {output}: not a directory (or below a file); bundles are written below it") from None
    except OSError as exc:
        raise InfraError(f"cannot create the bundle directory in {output}: {exc.strerror}") from None


def _storage_message(root: Path, exc: OSError, cache: TrialCache) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    message = f"cannot write the bundle {root}: {exc.strerror}{where}"
    if cache.unwritable is None:
        message += "; trials that finished are kept in the trial cache: free space (or fix permissions) and run again to reuse them"
    else:
        message += f"; the trial cache could not be written either ({cache.unwritable})"
    return message


def _bundle_failed(writer: BundleWriter, exc: OSError, summary: dict[str, Any], cache: TrialCache) -> XrunError:
    """Mark the bundle ``error`` even on a full disk, and say what was kept."""
    message = _storage_message(writer.root, exc, cache)
    status = {**summary, "status": "error", "error": message}
    try:
        writer.write_status(status)
    except OSError:
        _overwrite_status(writer, status)
    return InfraError(message)


def _overwrite_status(writer: BundleWriter, summary: dict[str, Any]) -> None:
    """Rewrite bundle.json in place: on a full disk, writing a new file fails,
    but the blocks of the ``running`` status written at the start are ours."""
    path = writer.root / "bundle.json"
    base = {"bundle_version": BUNDLE_VERSION, "run_id": writer.run_id, "created": writer.created}
    minimal = {**base, "status": "error", "error": summary.get("error"), "counts": summary.get("counts")}
    for doc in ({**base, **summary}, minimal):
        try:
            with open(path, "r+b", buffering=0) as fh:
                fh.write(json.dumps(doc, sort_keys=True, default=str).encode() + b"\n")
                fh.truncate()
                os.fsync(fh.fileno())
            break
        except OSError:
            log.debug("could not mark %s as failed", path, exc_info=True)
    try:
        os.unlink(path.with_name("bundle.json.tmp"))
    except OSError:
        pass


def _preload_sealing() -> threading.Thread:
    """Import what sealing the bundle needs (matplotlib, rocrate) while trials
    run: the driver mostly waits then, and a short sweep saves about a second."""

    def work() -> None:
        try:
            import matplotlib.backends.backend_svg
            import matplotlib.figure  # noqa: F401
            import rocrate.rocrate  # noqa: F401
        except Exception:  # sealing imports them again and reports any problem
            pass

    config.quiet_dependency_warnings()  # the imports below race this thread's catch_warnings() blocks
    thread = threading.Thread(target=work, name="xrun-preload", daemon=True)
    thread.start()
    return thread


def _execute(plan: Plan, info: ClusterInfo, executor: Executor, secrets: dict[str, str],
             host: dict[str, Any], status_cb: Callable[[str], None], stages: StageRunner) -> None:  # fmt: skip
    from distributed import Client  # deferred: imports Dask

    from runner import _plugin  # deferred: imports Dask

    # A Ctrl-C inside a client's connect or close leaves it half made, and Dask
    # logs about it at exit: both wait for their end, short when the backend
    # has just reached the scheduler (a given address may hang: Ctrl-C stops that).
    verified = info.backend != "address"
    try:
        with sigint_deferred() if verified else nullcontext(), warnings.catch_warnings():
            # Workers' packages are checked against the lock below, precisely.
            warnings.simplefilter("ignore")
            client = Client(info.address, timeout=config.connect_timeout(), set_as_default=False)
    except OSError as exc:
        raise InfraError(f"cannot connect to the Dask scheduler at {info.address}: {exc}") from None
    with _closing(client):
        try:
            # One worker is enough to start; the others join while trials run.
            client.wait_for_workers(1, timeout=WORKERS_TIMEOUT)
        except TimeoutError:
            raise InfraError(
                f"no Dask worker joined the scheduler at {info.address} within {WORKERS_TIMEOUT:.0f}s; "
                "start workers (or check their logs) and run again"
            ) from None
        connected = len(client.scheduler_info().get("workers", {}))
        status_cb(f"{connected} worker{'s' if connected != 1 else ''} connected")
        import cloudpickle  # deferred: comes with Dask

        cloudpickle.register_pickle_by_value(_plugin)
        plugin = _plugin.XrunPlugin(_plugin.worker_sources(), plan.code.archive, plan.code.hash, secrets)
        despite_lost_workers(client, "installing xrun on the workers", lambda: client.register_plugin(plugin))
        from runner.execute import shipped  # deferred: imports Dask

        try:
            # Workers that are lost meanwhile, or join later, are checked and
            # recorded when the trials are done.
            reports = client.run(shipped(_plugin.call_info), on_error="ignore")
            host["workers"] = reports
            check_workers(plan, reports)
            warming = despite_lost_workers(client, "importing the trial on the workers", lambda: preflight(plan, client))
            if pin_volume_data(plan, client, executor, status_cb):  # data only the workers see keys the trials
                executor.record_cached()
            if info.dashboard:
                status_cb(f"dashboard: {info.dashboard}")
            if plan.stages.prepare is not None and not plan.stages.prepare.cached:
                status_cb("running the prepare stage")
            if stages.prepare(client):  # trials were keyed again with its outputs' hash
                executor.record_cached()
            if plan.search is not None:  # an adaptive sweep: generation after generation
                plan.search.run(executor, client, check=info.check)
            else:
                executor.run(client, check=info.check)
            out = executor.outcome
            if not out.interrupted and plan.stages.final is not None:
                stages.final(client, sweep_ok=not (out.counts["failed"] or out.not_run or out.stopped_early),
                             on_status=status_cb)  # fmt: skip
            if not executor.outcome.interrupted:
                try:
                    if len(reports) < info.workers:  # a short run may end while the last workers join
                        try:
                            client.wait_for_workers(info.workers, timeout=3)
                        except TimeoutError:
                            pass
                    late = client.run(shipped(_plugin.call_info), on_error="ignore")
                except Exception:  # what is known is kept
                    log.debug("collecting worker reports failed", exc_info=True)
                    late = {}
                host["workers"] = {**reports, **late}
                check_workers(plan, late)
            del warming  # held while the trials ran (see preflight)
        finally:
            stages.close(client)
            if secrets:  # its teardown takes the secrets out of the workers' environment
                try:
                    client.unregister_worker_plugin(_plugin.PLUGIN_NAME)
                except Exception:
                    log.warning("could not unregister the xrun plugin: the workers may keep the secrets in their environment")


@contextmanager
def _closing(client: Any) -> Iterator[Any]:
    try:
        yield client
    finally:
        with sigint_deferred():
            client.close()


def _write_inputs(writer: BundleWriter, plan: Plan) -> None:
    from runner.code import git_info  # deferred: imports pydantic

    loaded = plan.loaded
    env = plan.env
    env_files: dict[str, bytes] = {}
    if env.kind == "current":
        env_files["freeze.txt"] = env.freeze.encode()
        conda_meta = Path(os.environ.get("CONDA_PREFIX", "/nonexistent")) / "conda-meta"
        if conda_meta.is_dir():
            env_files["conda-meta.txt"] = "\n".join(sorted(p.name for p in conda_meta.glob("*.json"))).encode()
    for p in (env.env_file, env.lock_file):
        if p is not None and Path(p).is_file():
            env_files[Path(p).name] = Path(p).read_bytes()
    env_info = {"kind": env.kind, "lock_hash": env.lock_hash, "added": list(env.added),
                "platforms": list(env.platforms), "packages": env.packages,
                "env_file": env.env_file.name if env.env_file else None,
                "lock_file": env.lock_file.name if env.lock_file else None}  # fmt: skip
    resolved = loaded.spec.model_dump(mode="json")
    resolved["_overrides"] = list(loaded.overrides)
    writer.write_inputs(
        spec_text=loaded.text,
        resolved=resolved,
        env_files=env_files,
        env_info=env_info,
        code_archive=plan.code.archive,
        git=git_info(plan.code.root),
        code_files=plan.code.files,
        data=plan.data,
    )


def _summary(plan: Plan, outcome: Outcome, status: str, duration: float, error: BaseException | None) -> dict[str, Any]:
    best = None
    if outcome.best and plan.objective:
        best = {"trial": outcome.best[0], "metric": plan.objective[0], "goal": plan.objective[1],
                "value": outcome.best[1]}  # fmt: skip
    summary: dict[str, Any] = {
        "status": status,
        "spec_name": plan.spec.name,
        "backend": plan.spec.cluster.backend,
        "counts": {"total": _total(plan), **outcome.counts, "not_run": outcome.not_run},
        "failures": outcome.failures,
        "dask_tasks": outcome.tasks,
        "best": best,
        "duration_seconds": round(duration, 3),
        "env": {"kind": plan.env.kind, "lock_hash": plan.env.lock_hash},
        "code_hash": plan.code.hash,
        "sweep": {"method": plan.spec.sweep.method, "seed": plan.spec.sweep.seed, "trials": sweep_mod.count(plan.spec.sweep),
                  "version": plan.sweep_version},
    }
    if plan.search is not None:
        summary["sweep"].update(plan.search.brief())
    if outcome.stopped_early:
        summary["stopped"] = "fail-fast"
    if error is not None:
        summary["error"] = str(error) if isinstance(error, XrunError) else f"{type(error).__name__}: {error}"
    return summary


def _total(plan: Plan) -> int:
    """Trials of the run: an adaptive sweep's budget (decided or not), else the planned ones."""
    return plan.search.budget if plan.search is not None else len(plan.trials)


def _to_run(plan: Plan) -> bool:
    """Whether trials are to run: pending ones, or generations of an adaptive sweep not decided yet."""
    return bool(plan.pending) or (plan.search is not None and not plan.search.finished)


def _one_pass(plan: Plan, writer: BundleWriter) -> tuple[Ledger, Scan]:
    """The finished journal read once: filed for the tables, the best point (the
    point with the best mean objective over its repeats, not the luckiest seed)
    and the terminal's tables, and scanned for the report."""
    writer.journal.sync()
    scanned = new_scan(writer.root, plan.objective)
    return Ledger(writer.root / "trials.jsonl", plan.objective, each=scanned.add), scanned


def check_result(result: RunResult) -> None:
    """Raise for a run whose trials failed (exit 1), after the bundle is written."""
    if result.status == "failed":
        raise TrialsFailed(f"{result.outcome.counts['failed']} of {result.total} trials failed")
    if result.status == "final-failed":
        raise StageFailed(f"the final stage failed; the sweep's {result.total} trials are kept "
                          f"(see {result.bundle / 'stages' / 'final.log'})")  # fmt: skip
