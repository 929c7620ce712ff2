"""``prepare`` and ``final`` stages: what they are, their keys, their cache entries.

A run may have a ``prepare`` stage (once before the sweep; its files reach every
trial as ``ctx.inputs["prepare"]``) and a ``final`` stage (once after the sweep,
with the best point). ``trial.sklearn.holdout`` brings a built-in final stage.
Running them is :mod:`runner.stage_run`; this module is what ``xrun plan`` needs.

Keys, like trial keys, are sha256 of canonical JSON of everything a stage's
result depends on:

* prepare: its definition (function and params), code, environment lock, data
  and its seed;
* final: the same, plus the prepare outputs' hash, the best point, the
  objective and a digest of every successful trial's key and metrics.

A trial's key includes the prepare outputs' hash (:func:`runner.sweep.trial_key`'s
``inputs``): new prepare outputs re-run every trial; a prepare whose code changed
but whose outputs did not leaves the trials cached.

Stage results are stored in the trial cache through its public functions
(an entry per stage key, the stage's files as its artifacts). Cache entries are
not trusted: every file is checked against the sha256 the entry records and
the entry's digest; anything else is a miss.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner._safeio import UnsafePath, is_regular, member_path, read_bytes
from runner.cache import TrialCache
from runner.objective import Objective
from runner.spec import SklearnTrial, Spec
from runner.sweep import canonical_json, derive_seed, sha256_hex

log = logging.getLogger(__name__)

STAGES = ("prepare", "final")
STAGE_KEY_VERSION = "xrun-stage-key-v1"
PENDING = "pending"  # the prepare outputs' hash before prepare ran: trial keys made with it are never looked up
# Prepare outputs travel to every worker through the scheduler (a worker plugin),
# so they are bounded; larger inputs belong in object storage (a `data` url).
MAX_INPUT_BYTES = 64 * 1024 * 1024
MAX_STAGE_FILES_BYTES = 512 * 1024 * 1024  # what a final stage's artifacts may hold
BUILTIN_SKLEARN_FINAL = "sklearn-holdout"


def stage_definitions(spec: Spec) -> dict[str, dict[str, Any]]:
    """name -> what the stage computes (no timeout), for the stages the spec has."""
    out: dict[str, dict[str, Any]] = {}
    if spec.prepare is not None:
        out["prepare"] = spec.prepare.model_dump(mode="json", exclude={"timeout"})
    if spec.final is not None:
        out["final"] = spec.final.model_dump(mode="json", exclude={"timeout"})
    elif isinstance(spec.trial, SklearnTrial) and spec.trial.sklearn.holdout is not None:
        sk = spec.trial.model_dump(mode="json", exclude={"timeout", "retries"})["sklearn"]
        out["final"] = {"builtin": BUILTIN_SKLEARN_FINAL, "sklearn": sk}
    return out


def stage_timeout(spec: Spec, name: str) -> float | None:
    stage = getattr(spec, name, None)
    return stage.timeout if stage is not None else None


def stage_seed(master: int, name: str) -> int:
    """A stage's seed: derived from ``sweep.seed`` as trial seeds are, from the stage's name."""
    return derive_seed(master, {"xrun-stage": name}, 0)


def files_digest(files: Mapping[str, str]) -> str:
    """sha256 over relative paths and file digests, as :func:`runner._hashing.dir_digest`
    computes it for a directory holding those files."""
    h = hashlib.sha256()
    for rel in sorted(files, key=lambda r: r.split("/")):  # in path order, as dir_digest walks
        h.update(f"{rel}\0{files[rel]}\n".encode())
    return h.hexdigest()


def results_digest(records: Iterable[Mapping[str, Any]]) -> str:
    """What a final stage knows of the sweep: every successful trial's key and metrics."""
    return results_digest_of(sorted((str(r.get("key")), canonical_json(r.get("metrics") or {}))
                                    for r in records if r.get("status") == "ok"))  # fmt: skip


def results_digest_of(rows: Iterable[tuple[str, str]]) -> str:
    """:func:`results_digest` of the successful trials' ``str(key)`` and the
    canonical JSON of their ``metrics or {}``, given sorted, hashed as they come (none held)."""
    h = hashlib.sha256(b"[")
    sep = b""
    for k, m in rows:
        h.update(sep + b"[" + canonical_json(k).encode() + b"," + m.encode() + b"]")
        sep = b","
    h.update(b"]")
    return h.hexdigest()


def stage_key(name: str, definition: Mapping[str, Any], *, code_hash: str, env_hash: str,
              data_hashes: Mapping[str, str], seed: int, extra: Mapping[str, Any] | None = None) -> str:  # fmt: skip
    doc = {
        "v": STAGE_KEY_VERSION,
        "stage": name,
        "definition": dict(definition),
        "code": code_hash,
        "env": env_hash,
        "data": dict(data_hashes),
        "seed": seed,
        **dict(extra or {}),
    }
    return sha256_hex(canonical_json(doc))


@dataclass
class StageState:
    """One stage of a plan: its key (when it can be known yet) and its verified cache entry."""

    name: str
    definition: dict[str, Any]
    seed: int
    key: str | None = None
    entry: dict[str, Any] | None = None
    files: list[tuple[str, bytes]] = field(default_factory=list, repr=False)  # the cached entry's files

    @property
    def cached(self) -> bool:
        return self.entry is not None

    @property
    def digest(self) -> str | None:
        return str(self.entry["digest"]) if self.entry is not None else None


@dataclass
class StagePlan:
    prepare: StageState | None = None
    final: StageState | None = None

    def __bool__(self) -> bool:
        return self.prepare is not None or self.final is not None

    def inputs(self) -> dict[str, str]:
        """What trial keys include: the prepare outputs' hash, or :data:`PENDING`."""
        if self.prepare is None:
            return {}
        return {"prepare": self.prepare.digest or PENDING}

    def components(self) -> dict[str, Any]:
        """For explaining later misses (recorded with the run in the cache's run index)."""
        out: dict[str, Any] = {}
        for st in (self.prepare, self.final):
            if st is not None:
                out[st.name] = {"definition": st.definition, "key": st.key, "digest": st.digest}
        return out


def plan_stages(spec: Spec, *, code_hash: str, env_hash: str, data_hashes: Mapping[str, str],
                cache: TrialCache | None, use_cache: bool) -> StagePlan:  # fmt: skip
    """The stages of a spec; prepare's key and cache entry (final's key needs the trials' results)."""
    defs = stage_definitions(spec)
    plan = StagePlan()
    seed = spec.sweep.seed
    if "prepare" in defs:
        st = StageState("prepare", defs["prepare"], stage_seed(seed, "prepare"))
        st.key = stage_key("prepare", st.definition, code_hash=code_hash, env_hash=env_hash,
                           data_hashes=data_hashes, seed=st.seed)  # fmt: skip
        if use_cache and cache is not None:
            found = lookup(cache, st.key, MAX_INPUT_BYTES)
            if found is not None:
                st.entry, st.files = found
        plan.prepare = st
    if "final" in defs:
        plan.final = StageState("final", defs["final"], stage_seed(seed, "final"))
    return plan


def final_key(plan: StagePlan, best: Mapping[str, Any] | None, objective: Objective | None,
              records: Iterable[Mapping[str, Any]] | str, *, code_hash: str, env_hash: str,
              data_hashes: Mapping[str, str]) -> str:  # fmt: skip
    """The final stage's key (``records``: the latest trial records, or their :func:`results_digest`)."""
    assert plan.final is not None
    point = {k: (best or {}).get(k) for k in ("params", "value", "n")}
    return stage_key("final", plan.final.definition, code_hash=code_hash, env_hash=env_hash, data_hashes=data_hashes,
                     seed=plan.final.seed, extra={"inputs": plan.inputs(), "best": point,
                                                  "objective": list(objective) if objective else None,
                                                  "results": records if isinstance(records, str)
                                                  else results_digest(records)})  # fmt: skip


# ------------------------------------------------------------------ cache entries


def store(cache: TrialCache, name: str, key: str, result: Mapping[str, Any], files: list[tuple[str, bytes]],
          run_id: str) -> None:  # fmt: skip
    """A successful stage, as a cache entry (its files as the entry's artifacts)."""
    digests = {rel: hashlib.sha256(blob).hexdigest() for rel, blob in files}
    entry: dict[str, Any] = {
        "key": key,
        "id": name,
        "stage": name,
        "status": "ok",
        "params": {},
        "metrics": dict(result.get("metrics") or {}),
        "extra": dict(result.get("extra") or {}),
        "log": str(result.get("log") or ""),
        "history": [],
        "start": result.get("start"),
        "end": result.get("end"),
        "error": None,
        "traceback": None,
        "worker": result.get("worker"),
        "run_id": run_id,
        "attempts": 1,
        "files": digests,
        "digest": files_digest(digests),
    }
    cache.put(entry, files)


def lookup(cache: TrialCache, key: str, limit: int) -> tuple[dict[str, Any], list[tuple[str, bytes]]] | None:
    """A stage's cache entry and its files, each checked against the entry; None for a miss."""
    entry: dict[str, Any] | None = cache.get(key)
    if entry is None or not isinstance(entry.get("files"), dict) or not isinstance(entry.get("digest"), str):
        return None
    if not isinstance(entry.get("extra", {}), dict):
        return None
    files: dict[str, str] = entry["files"]
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        return None
    if files_digest(files) != entry["digest"]:
        return None
    root = cache.artifacts_dir(key)
    out: list[tuple[str, bytes]] = []
    total = 0
    for rel in sorted(files):
        try:
            path = member_path(root, rel)
            if not is_regular(path):
                return None
            blob = read_bytes(path, limit - total)
        except (UnsafePath, OSError):
            return None
        total += len(blob)
        if hashlib.sha256(blob).hexdigest() != files[rel]:
            log.warning("cached %s stage %s: %s does not match its entry; running the stage again", entry.get("stage"), key[:12], rel)
            return None
        out.append((rel, blob))
    return entry, out


# ------------------------------------------------------------------ explaining


def explain(stages: StagePlan, now: Mapping[str, Any], records: Iterable[Mapping[str, Any]], spec_name: str,
            differences: Any) -> list[str]:  # fmt: skip
    """Why the prepare stage is not cached, against the nearest earlier run that had one.

    ``differences(old_components, new_components)`` is :func:`runner.plan._differences`
    (code, environment, data, seed)."""
    st = stages.prepare
    if st is None or st.cached:
        return []
    nearest: tuple[list[str], Mapping[str, Any]] | None = None
    for record in records:
        old = record.get("components") or {}
        old_stage = (old.get("stages") or {}).get("prepare")
        if not isinstance(old_stage, dict):
            continue
        diffs = []
        if old_stage.get("definition") != st.definition:
            diffs.append("prepare definition changed (function or params)")
        for d in differences(old, now):
            if d.startswith("trial definition"):
                continue
            diffs.append(d.replace("code changed", "prepare code changed", 1) if d.startswith("code changed") else d)
        if nearest is None or len(diffs) < len(nearest[0]):
            nearest = (diffs, record)
        if not diffs:
            break
    if nearest is None:
        return [f"prepare: no earlier run of {spec_name!r} with a prepare stage in the cache"]
    diffs, record = nearest
    if not diffs:
        return [f"prepare: same inputs as run {record.get('run_id')}, but it did not finish there (or its entry was removed)"]
    return [f"prepare (compared with run {record.get('run_id')}): " + d for d in diffs]


# ------------------------------------------------------------------ reproducing


def compare_stages(original: Any, new: Any, tolerance: Mapping[str, float]) -> tuple[list[dict[str, Any]], list[str]]:
    """Each stage that succeeded in ``original`` (a bundle's ``stages.json``) against ``new``:
    by the sha256 of its files when they are identical (a deterministic stage), else by
    its metrics within ``tolerance``; a stage without metrics whose files differ does not match."""
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    original = original if isinstance(original, dict) else {}
    new = new if isinstance(new, dict) else {}
    for name in STAGES:
        old = original.get(name)
        if not isinstance(old, dict) or old.get("status") != "ok":
            continue
        rec = new.get(name)
        if not isinstance(rec, dict) or rec.get("status") != "ok":
            what = rec.get("error") or rec.get("reason") or rec.get("status") if isinstance(rec, dict) else "did not run"
            problems.append(f"{name} stage: {what}")
            continue
        old_files: dict[str, Any] = old["files"] if isinstance(old.get("files"), dict) else {}
        new_files: dict[str, Any] = rec["files"] if isinstance(rec.get("files"), dict) else {}
        if old.get("digest") and old.get("digest") == rec.get("digest"):
            rows.append({"stage": name, "by": "sha256", "match": True, "recorded": old.get("digest"), "reproduced": rec.get("digest")})
            continue
        differ = sorted(k for k in set(old_files) | set(new_files) if old_files.get(k) != new_files.get(k))
        metrics: dict[str, Any] = old["metrics"] if isinstance(old.get("metrics"), dict) else {}
        if not metrics:
            rows.append({"stage": name, "by": "sha256", "match": False, "recorded": old.get("digest"),
                         "reproduced": rec.get("digest"), "differ": differ[:20]})  # fmt: skip
            problems.append(f"{name} stage: its files differ ({', '.join(differ[:5]) or 'digest'}) and it has no metrics to compare")
            continue
        got: dict[str, Any] = rec["metrics"] if isinstance(rec.get("metrics"), dict) else {}
        compared = []
        for metric, value in sorted(metrics.items()):
            tol = float(tolerance.get(metric, 0.0))
            other = got.get(metric)
            if isinstance(value, (int, float)) and isinstance(other, (int, float)):
                delta: float | None = abs(float(other) - float(value))
                ok = delta is not None and delta <= tol
            else:
                delta, ok = None, value == other
            compared.append({"metric": metric, "recorded": value, "reproduced": other, "delta": delta, "tolerance": tol, "match": ok})
        rows.append({"stage": name, "by": "metrics", "match": all(c["match"] for c in compared), "metrics": compared,
                     "differ": differ[:20]})  # fmt: skip
    return rows, problems
