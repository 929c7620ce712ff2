"""What the report reads from a bundle, and the small facts derived from it.

Only files inside the bundle are read. Missing optional files (``image.json``,
``reproduce.json``, …) are ``None``; an unreadable one is left out with a
warning rather than failing the report.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from runner._safeio import open_regular
from runner.bundle.journal import SLIM_FIELDS, iter_journal
from runner.bundle.points import Point, aggregate
from runner.bundle.read import read_meta
from runner.errors import UsageError
from runner.objective import Objective, is_number, recorded_objective
from runner.report import html as h
from runner.report.plots import Param

log = logging.getLogger(__name__)


@dataclass
class Run:
    """A bundle as the report sees it: its files, parsed, and what follows from them."""

    root: Path
    meta: dict[str, Any]
    resolved: dict[str, Any]
    trials: list[dict[str, Any]]
    env: dict[str, Any]
    host: dict[str, Any]
    image: dict[str, Any] | None
    git: dict[str, Any] | None
    data: dict[str, Any] | None
    reproduce: dict[str, Any] | None
    code_files: int | None
    objective: Objective | None = None
    params: list[Param] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=dict)  # trial id -> byte offset of its last journal line

    @property
    def name(self) -> str:
        return str(self.meta.get("spec_name") or self.resolved.get("name") or self.root.name)

    # Cached: sections ask for these inside loops over every trial.
    @cached_property
    def ok(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t.get("status") == "ok"]

    @cached_property
    def failed(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t.get("status") not in ("ok", "pruned")]

    @cached_property
    def pruned(self) -> list[dict[str, Any]]:
        """Trials an adaptive sweep stopped early (not failures)."""
        return [t for t in self.trials if t.get("status") == "pruned"]

    def value(self, trial: dict[str, Any]) -> float | None:
        """The trial's objective, when it is a finite number."""
        if self.objective is None:
            return None
        return self.objective.value(trial)

    def ranked(self) -> list[dict[str, Any]]:
        """Successful trials, best objective first (by id when there is none)."""
        return list(self._ranked)

    @cached_property
    def _ranked(self) -> list[dict[str, Any]]:
        if self.objective is None:
            return sorted(self.ok, key=lambda t: str(t.get("id")))
        return self.objective.rank(self.ok)  # type: ignore[return-value]  # the records themselves, not copies

    @cached_property
    def points(self) -> list[Point]:
        """Trials grouped into parameter points, once per report."""
        return aggregate(self.trials)

    @cached_property
    def best_id(self) -> str | None:
        best = self.meta.get("best") or {}
        if best.get("trial"):
            return str(best["trial"])
        ranked = self.ranked()
        return str(ranked[0]["id"]) if ranked and self.value(ranked[0]) is not None else None


    def histories(self, ids: set[str]) -> dict[str, list[dict[str, Any]]]:
        """The ``ctx.log`` history of the trials ``ids`` (their last record each),
        read back from where the first pass over the journal saw their lines."""
        out: dict[str, list[dict[str, Any]]] = {}
        wanted = sorted((self.offsets[t], t) for t in ids if t in self.offsets)
        if not wanted:
            return out
        try:
            fh = open_regular(self.root / "trials.jsonl")
        except OSError:
            return out
        with fh:
            for offset, tid in wanted:
                fh.seek(offset)
                try:
                    rec = json.loads(fh.readline())
                except ValueError:
                    continue
                if isinstance(rec, dict) and str(rec.get("id")) == tid and isinstance(rec.get("history"), list):
                    out[tid] = [e for e in rec["history"] if isinstance(e, dict)]
        return out


def load_run(root: Path) -> Run:
    meta = _read_meta(root)
    offsets: dict[str, int] = {}
    by_id: dict[str, dict[str, Any]] = {}
    for offset, rec in iter_journal(root / "trials.jsonl"):  # one pass: the last record of each trial, slim
        by_id[rec["id"]] = {k: rec[k] for k in SLIM_FIELDS if k in rec}
        offsets[rec["id"]] = offset
    run = Run(
        root=root,
        meta=meta,
        resolved=_read_json(root, "spec.resolved.json") or {},
        trials=[by_id[k] for k in sorted(by_id)],  # as latest_records(read_journal(…, slim=True))
        offsets=offsets,
        env=_read_json(root, "env/env.json") or {},
        host=_read_json(root, "host.json") or {},
        image=_read_json(root, "image.json"),
        git=_read_json(root, "code/git.json"),
        data=_read_json(root, "data.json"),
        reproduce=_read_json(root, "reproduce.json"),
        code_files=_count(_read_json(root, "code/files.json")),
    )
    run.objective = _objective(run)
    run.params = _params(run)
    return run


def _read_meta(root: Path) -> dict[str, Any]:
    if not root.is_dir():
        raise UsageError(f"{root}: not a bundle directory (unpack an archive first)")
    return read_meta(root)


def _read_json(root: Path, name: str) -> Any:
    path = root / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("report: %s is unreadable (%s); leaving it out", path, exc)
        return None


def _count(value: Any) -> int | None:
    return len(value) if isinstance(value, (dict, list)) else None


def _objective(run: Run) -> Objective | None:
    """The bundle's objective; a bundle without one is ranked by its first numeric metric."""
    objective = recorded_objective(run.meta.get("best"), run.resolved)
    if objective is not None:
        return objective
    names = sorted({m for t in run.ok for m, v in (t.get("metrics") or {}).items() if is_number(v)})
    return Objective(names[0]) if names else None


def _params(run: Run) -> list[Param]:
    declared = (run.resolved.get("sweep") or {}).get("parameters") or {}
    names = sorted({k for t in run.trials for k in (t.get("params") or {})} | set(declared))
    out = []
    for name in names:
        values = [t["params"][name] for t in run.trials if name in (t.get("params") or {})]
        decl = declared.get(name)
        numeric = bool(values) and all(is_number(v) for v in values)
        if numeric:
            log_scale = isinstance(decl, dict) and "loguniform" in decl
            if isinstance(decl, list) and all(is_number(v) for v in decl):
                lo, hi = min(decl), max(decl)
                log_scale = lo > 0 and hi / lo >= 100
            out.append(Param(name, categorical=False, log=log_scale))
            continue
        labels = [h.param_label(v) for v in decl] if isinstance(decl, list) else []
        seen = set(labels)
        extra = sorted({h.param_label(v) for v in values} - seen, key=natural_key)
        out.append(Param(name, categorical=True, categories=list(dict.fromkeys(labels + extra))))
    return out


def natural_key(label: str) -> tuple[int, float, str]:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def trial_duration(t: dict[str, Any]) -> float | None:
    s: Any = t.get("start")
    e: Any = t.get("end")
    return float(e - s) if is_number(s) and is_number(e) and e >= s else None


def worker_label(address: Any) -> str:
    """A worker address without its ``tcp://``."""
    if address is None:
        return "(no worker)"
    s = str(address)
    return s.split("://", 1)[1] if "://" in s else s


def params_text(t: dict[str, Any]) -> str:
    def show(v: Any) -> str:
        return f"{v:.6g}" if isinstance(v, float) else h.param_label(v)

    return "  ".join(f"{k}={show(v)}" for k, v in sorted((t.get("params") or {}).items()))


def metric_names(trials: list[dict[str, Any]], obj: Objective | None, limit: int = 5) -> list[str]:
    names = sorted({m for t in trials for m in (t.get("metrics") or {})})
    if obj and obj.metric in names:
        names.remove(obj.metric)
        names.insert(0, obj.metric)
    return names[:limit]
