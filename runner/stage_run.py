"""Running the ``prepare`` and ``final`` stages of a run, and recording them.

The driver's side of :mod:`runner.stages`: :class:`StageRunner` is made by
``run_plan`` and called at three points:

* :meth:`StageRunner.prepare` after the cluster is up and before any trial:
  the cached prepare outputs, or prepare run on a worker (a failure raises
  :class:`~runner.errors.StageFailed` with the stage's log, before any trial
  ran); then every trial is keyed with the outputs' hash and looked up again,
  and the outputs are installed on every worker (:class:`InputsPlugin`);
* :meth:`StageRunner.final` after the sweep, when every trial succeeded: the
  cached final result, or final run on a worker with the best point. A failure
  is recorded (status ``final-failed``); the sweep's results stay;
* :meth:`StageRunner.need_cluster`: whether a cluster must start although
  every trial is cached.

Bundle files: ``stages.json`` (one record per stage: key, status, cached,
files with their sha256, digest), ``stages/<stage>.log``,
``stages/prepare/outputs/…``, ``stages/final/artifacts/…`` and ``final.json``
(the final stage's metrics, the best point it used, the model's sha256).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from runner.bundle.ledger import Ledger
from runner.bundle.points import best_point
from runner.bundle.write import BundleWriter
from runner.cache import TrialCache
from runner.errors import InfraError, StageFailed
from runner.plan import Plan, cached_trials, key_trials
from runner.stages import (
    MAX_INPUT_BYTES,
    MAX_STAGE_FILES_BYTES,
    PENDING,
    StageState,
    files_digest,
    final_key,
    lookup,
    results_digest_of,
    stage_timeout,
    store,
)

log = logging.getLogger(__name__)

STAGES_FILE = "stages.json"
FINAL_FILE = "final.json"
LOG_TAIL_LINES = 40
LOST_TRIES = 3


class StageRunner:
    def __init__(self, plan: Plan, writer: BundleWriter, cache: TrialCache, run_id: str, *,
                 data_paths: dict[str, Any], data_sha256: dict[str, str], scrub: Callable[[Any], Any]) -> None:  # fmt: skip
        self.plan = plan
        self.writer = writer
        self.cache = cache
        self.run_id = run_id
        self.data_paths = data_paths
        self.data_sha256 = data_sha256
        self.scrub = scrub
        self.records: dict[str, dict[str, Any]] = {}
        self.failed: str | None = None  # the stage that failed
        self._final_checked = False
        self._best_of: tuple[int, dict[str, Any] | None, str] | None = None  # journal size, best point, results digest

    @property
    def stages(self) -> Any:
        return self.plan.stages

    # ------------------------------------------------------------------ planning

    def need_cluster(self) -> bool:
        """Whether a stage must run on a worker although no trial is pending."""
        st = self.stages
        if st.prepare is not None and not st.prepare.cached:
            return True
        if st.final is None or self.plan.pending:
            return False
        return self._lookup_final() is None

    def _best(self) -> tuple[dict[str, Any] | None, str]:
        """The best point and the digest of the successful trials' results, from
        one bounded pass over the journal (again only when it has grown since)."""
        self.writer.journal.sync()
        journal = self.writer.root / "trials.jsonl"
        size = journal.stat().st_size
        if self._best_of is None or self._best_of[0] != size:
            with Ledger(journal, self.plan.objective) as ledger:
                self._best_of = size, ledger.best(), results_digest_of(ledger.ok_results())
        return self._best_of[1], self._best_of[2]

    def _final_key(self) -> tuple[str, dict[str, Any] | None]:
        best, results = self._best()
        p = self.plan
        key = final_key(self.stages, best, p.objective, results, code_hash=p.code.hash, env_hash=p.env.lock_hash,
                        data_hashes={k: v["sha256"] for k, v in p.data.items()})  # fmt: skip
        return key, best

    def _lookup_final(self) -> tuple[dict[str, Any], list[tuple[str, bytes]]] | None:
        st: StageState = self.stages.final
        st.key, best = self._final_key()
        if not self.plan.use_cache:
            return None
        found = lookup(self.cache, st.key, MAX_STAGE_FILES_BYTES)
        if found is not None:
            st.entry, st.files = found
        return found

    # ------------------------------------------------------------------ prepare

    def prepare(self, client: Any) -> bool:
        """Before any trial: prepare's outputs (cached or computed) recorded and installed
        on the workers; True when it ran here and the trials were keyed again with them."""
        st = self.stages.prepare
        if st is None:
            return False
        ran = not st.cached
        if st.cached:
            assert st.entry is not None
            self._record(st, st.entry, st.files, cached=True)
        else:
            result = self._run(client, st, best=None, inputs={}, max_bytes=MAX_INPUT_BYTES)
            if result["status"] != "ok":
                self.failed = "prepare"
                self._record(st, result, [], cached=False)
                raise StageFailed(_failure_message("prepare", result, "no trial ran"))
            files = [(str(rel), bytes(blob)) for rel, blob in result["files"]]
            if self.plan.use_cache:
                store(self.cache, "prepare", str(st.key), result, files, self.run_id)
            digests = {rel: hashlib.sha256(blob).hexdigest() for rel, blob in files}
            st.entry = {**result, "files": digests, "digest": files_digest(digests), "run_id": self.run_id}
            st.files = files
            self._record(st, st.entry, files, cached=False)
            key_trials(self.plan, self.cache)  # every trial's key holds the outputs' hash
        self._install(client, st)
        return ran

    def _install(self, client: Any, st: StageState) -> None:
        if client is None:  # no cluster: every trial and the final stage are cached
            return
        import cloudpickle  # deferred: with Dask

        from runner import _inputs_plugin  # deferred: imports Dask

        cloudpickle.register_pickle_by_value(_inputs_plugin)
        client.register_plugin(_inputs_plugin.InputsPlugin({st.name: (str(st.digest), st.files)}))
        self._installed = True

    def close(self, client: Any) -> None:
        """The scheduler keeps a plugin's files: a shared scheduler (address backend) should not."""
        if getattr(self, "_installed", False):
            from runner._inputs_plugin import INPUTS_PLUGIN  # deferred: imports Dask

            try:
                client.unregister_worker_plugin(INPUTS_PLUGIN)
            except Exception:
                log.debug("could not unregister the inputs plugin", exc_info=True)

    # ------------------------------------------------------------------ final

    def final(self, client: Any, *, sweep_ok: bool, on_status: Callable[[str], None] | None = None) -> None:
        """After the sweep: the final stage with the best point (only when every trial succeeded)."""
        st = self.stages.final
        if st is None:
            return
        if not sweep_ok:
            self.records["final"] = {"stage": "final", "status": "skipped", "cached": False,
                                     "reason": "the sweep did not finish with every trial ok"}  # fmt: skip
            self._write_records()
            return
        found = self._lookup_final()
        best = self._final_key()[1]
        if best is None:
            self.failed = "final"
            self.records["final"] = {"stage": "final", "status": "error", "cached": False, "key": st.key,
                                     "error": "no trial has a value of the objective: there is no best point"}  # fmt: skip
            self._write_records()
            self._write_final(self.records["final"], best)
            return
        if found is not None:
            entry, files = found
            self._record(st, entry, files, cached=True)
            self._write_final(self.records["final"], best)
            return
        if client is None:
            raise InfraError("the final stage must run but no cluster is up")  # need_cluster() said otherwise
        if on_status is not None:
            on_status(f"running the final stage with the best point {best.get('params')}")
        result = self._run(client, st, best=best, inputs=dict(self.plan.inputs), max_bytes=MAX_STAGE_FILES_BYTES)
        if result["status"] != "ok":
            self.failed = "final"
            self._record(st, result, [], cached=False)
            self._write_final(self.records["final"], best)
            log.error("%s", _failure_message("final", result, "the sweep's results are kept"))
            return
        files = [(str(rel), bytes(blob)) for rel, blob in result["files"]]
        if self.plan.use_cache:
            store(self.cache, "final", str(st.key), result, files, self.run_id)
        digests = {rel: hashlib.sha256(blob).hexdigest() for rel, blob in files}
        entry = {**result, "files": digests, "digest": files_digest(digests), "run_id": self.run_id}
        self._record(st, entry, files, cached=False)
        self._write_final(self.records["final"], best)

    # ------------------------------------------------------------------ on a worker

    def _run(self, client: Any, st: StageState, *, best: dict[str, Any] | None, inputs: dict[str, str],
             max_bytes: int) -> dict[str, Any]:  # fmt: skip
        from runner import _plugin
        from runner.execute import shipped  # deferred: imports Dask

        task = {
            "stage": st.name,
            "definition": st.definition,
            "params": st.definition.get("params") or {},
            "seed": st.seed,
            "timeout": stage_timeout(self.plan.spec, st.name),
            "data": self.data_paths,
            "data_sha256": self.data_sha256,
            "inputs": inputs,
            "best": best,
            "max_bytes": max_bytes,
            "run": self.run_id,
        }
        log.info("running the %s stage", st.name)
        from distributed import KilledWorker  # deferred: imports Dask

        for attempt in range(1, LOST_TRIES + 1):
            key = f"xrun-stage-{st.name}-{attempt}-{self.run_id[-6:]}"
            future = client.submit(shipped(_plugin.call_stage), task, key=key, pure=False)
            try:
                result = future.result()
            except (KilledWorker, OSError) as exc:  # its worker died (CommClosedError is an OSError)
                if attempt == LOST_TRIES:
                    return {"status": "error", "error": f"the {st.name} stage's worker died {attempt} times ({exc})",
                            "log": "", "files": [], "metrics": {}}  # fmt: skip
                log.info("%s stage: its worker was lost; running it again", st.name)
                continue
            finally:
                future.release()
            return dict(self.scrub(result))
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ recording

    def _record(self, st: StageState, result: dict[str, Any], files: list[tuple[str, bytes]], *, cached: bool) -> None:
        root = self.writer.root
        name = st.name
        sub = root / "stages" / name / ("outputs" if name == "prepare" else "artifacts")
        for rel, blob in files:
            target = sub / _safe_rel(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob)
        text = str(result.get("log") or "")
        if text:
            (root / "stages").mkdir(exist_ok=True)
            (root / "stages" / f"{name}.log").write_text(text, encoding="utf-8", errors="replace")
        record = {
            "stage": name,
            "key": st.key,
            "definition": st.definition,
            "seed": st.seed,
            "status": result.get("status", "ok"),
            "cached": cached,
            "cached_from": result.get("run_id") if cached else None,
            "error": result.get("error"),
            "traceback": result.get("traceback"),
            "worker": result.get("worker"),
            "start": result.get("start"),
            "end": result.get("end"),
            "metrics": result.get("metrics") or {},
            "extra": result.get("extra") or {},
            "files": result.get("files") if isinstance(result.get("files"), dict) else {},
            "digest": result.get("digest"),
            "log": f"stages/{name}.log" if text else None,
            "dir": sub.relative_to(root).as_posix() if files else None,
        }
        self.records[name] = record
        self._write_records()

    def _write_records(self) -> None:
        self.writer.write_json(STAGES_FILE, self.records)

    def _write_final(self, record: dict[str, Any], best: dict[str, Any] | None) -> None:
        extra = record.get("extra") or {}
        model = dict(extra.get("model") or {})
        if model.get("file") and record.get("dir"):
            model["path"] = f"{record['dir']}/{model['file']}"
        self.writer.write_json(FINAL_FILE, {
            "status": record.get("status"),
            "cached": record.get("cached"),
            "key": record.get("key"),
            "metrics": record.get("metrics") or {},
            "best": best,
            "model": model or None,
            "holdout": extra.get("holdout"),
            "files": record.get("files") or {},
            "error": record.get("error"),
        })  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """For bundle.json: each stage's status, whether it was cached, and its key."""
        return {n: {"status": r.get("status"), "cached": r.get("cached"), "key": r.get("key")} for n, r in self.records.items()}


def _safe_rel(rel: str) -> PurePosixPath:
    """A stage file's relative path (from a worker or a cache entry) that stays below its directory."""
    path = PurePosixPath(rel)
    if not rel or path.is_absolute() or ".." in path.parts or "\\" in rel:
        raise StageFailed(f"refusing the stage file path {rel!r}")
    return path


def _failure_message(name: str, result: dict[str, Any], consequence: str) -> str:
    lines = str(result.get("log") or "").rstrip().splitlines()[-LOG_TAIL_LINES:]
    message = f"the {name} stage failed ({consequence}): {result.get('error')}"
    if lines:
        message += f"\n--- {name} log (last {len(lines)} lines) ---\n" + "\n".join(lines)
    return message


def stage_dirs(bundle: Path) -> dict[str, Path]:
    """Where a bundle keeps each stage's files."""
    return {"prepare": bundle / "stages" / "prepare" / "outputs", "final": bundle / "stages" / "final" / "artifacts"}


def describe(plan: Plan, cache: TrialCache) -> dict[str, str]:
    """What ``xrun plan`` says of each stage: cached, or when it runs and why."""
    out: dict[str, str] = {}
    st = plan.stages
    if st.prepare is not None:
        if st.prepare.cached:
            out["prepare"] = f"cached (computed by run {st.prepare.entry.get('run_id') if st.prepare.entry else '?'})"
        else:
            out["prepare"] = "runs first, on a worker" + ("" if plan.use_cache else " (--no-cache)")
    if st.final is not None:
        if PENDING in plan.inputs.values():
            out["final"] = "runs after the sweep (the prepare stage runs first)"
        elif plan.pending:
            out["final"] = f"runs after the sweep ({len(plan.pending)} trial(s) to run first: its key holds their results)"
        elif not plan.use_cache:
            out["final"] = "runs after the sweep (--no-cache)"
        else:
            records = [dict(entry, key=t.key, id=t.id, params=t.point.params, status="ok")
                       for t, entry, _ in cached_trials(plan, cache)]  # as the run will journal them
            objective = plan.objective
            best = best_point(records, *objective) if objective else None
            key = final_key(st, best, objective, records, code_hash=plan.code.hash, env_hash=plan.env.lock_hash,
                            data_hashes={k: v["sha256"] for k, v in plan.data.items()})  # fmt: skip
            found = lookup(cache, key, MAX_STAGE_FILES_BYTES)
            if found is not None:
                out["final"] = f"cached (computed by run {found[0].get('run_id')})"
            else:
                out["final"] = "runs after the sweep: no result in the cache for this best point and these trial results"
    return out
