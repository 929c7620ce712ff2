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
from runner.bundle.points import Point
from runner.bundle.read import read_meta
from runner.errors import UsageError
from runner.objective import Objective, is_number, recorded_objective
from runner.report import html as h
from runner.report.plots import Param
from runner.report.scan import Scan, last_line, scan, superseded, top_points_of
from runner.report.scan import trial_duration as trial_duration
from runner.report.scan import worker_label as worker_label

log = logging.getLogger(__name__)


@dataclass
class Run:
    """A bundle as the report sees it: its small files parsed, and of its journal
    what the sections show (:class:`~runner.report.scan.Scan`: bounded, however
    many trials)."""

    root: Path
    meta: dict[str, Any]
    resolved: dict[str, Any]
    env: dict[str, Any]
    host: dict[str, Any]
    image: dict[str, Any] | None
    git: dict[str, Any] | None
    data: dict[str, Any] | None
    reproduce: dict[str, Any] | None
    code_files: int | None
    scan: Scan
    objective: Objective | None = None
    params: list[Param] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=dict)  # trial id -> byte offset of its last journal line

    @property
    def name(self) -> str:
        return str(self.meta.get("spec_name") or self.resolved.get("name") or self.root.name)

    @property
    def journal(self) -> Path:
        return self.root / "trials.jsonl"

    @cached_property
    def trials(self) -> list[dict[str, Any]]:
        """The first :data:`~runner.report.scan.FIRST_TRIALS` trials by id (all of a smaller sweep)."""
        return [rec for _, _, rec in self.scan.first.result()]

    @cached_property
    def failed(self) -> list[dict[str, Any]]:
        """The first :data:`~runner.report.scan.FIRST_FAILED` failed trials by id (of ``scan.n_failed``)."""
        return [rec for _, _, rec in self.scan.failed.result()]

    def value(self, trial: dict[str, Any]) -> float | None:
        """The trial's objective, when it is a finite number."""
        if self.objective is None:
            return None
        return self.objective.value(trial)

    def ranked(self, k: int) -> list[dict[str, Any]]:
        """The first ``k`` successful trials, best objective first (by id when there is none)."""
        return self.scan.ranked(k)

    @cached_property
    def plot_trials(self) -> list[dict[str, Any]]:
        """The successful trials with an objective that the plots draw, in id order."""
        return self.scan.plot_trials()

    def top_points(self, k: int, *, successful: bool = False) -> tuple[list[Point], int, int]:
        """The best ``k`` parameter points (:func:`runner.bundle.points.top`), how many
        points there are, and the most trials one point has."""
        return top_points_of(self.journal, self.scan, k, successful=successful, offsets=self.offsets)

    @cached_property
    def best_id(self) -> str | None:
        best = self.meta.get("best") or {}
        if best.get("trial"):
            return str(best["trial"])
        ranked = self.ranked(1)
        return str(ranked[0]["id"]) if ranked and self.value(ranked[0]) is not None else None

    def histories(self, ids: set[str]) -> dict[str, list[dict[str, Any]]]:
        """The ``ctx.log`` history of the trials ``ids`` (their last record each),
        read back from where the pass over the journal saw their lines."""
        out: dict[str, list[dict[str, Any]]] = {}
        wanted = sorted((self.offsets[t], t) for t in ids if t in self.offsets)
        if not wanted:
            return out
        try:
            fh = open_regular(self.journal)
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


def new_scan(root: Path, objective: Objective | None) -> Scan:
    """A :class:`Scan` of the bundle at ``root`` for another pass over its
    journal to feed (``Scan.add`` of every line, in journal order), ranking by
    ``objective`` (None: by the first numeric metric, as :func:`load_run` does);
    ``load_run(root, scanned=it)`` then makes no pass of its own."""
    resolved = _read_json(root, "spec.resolved.json") or {}
    return Scan(objective=objective, timeout=_timeout(resolved), infer=objective is None)


def _timeout(resolved: dict[str, Any]) -> Any:
    return (resolved.get("trial") or {}).get("timeout") if isinstance(resolved.get("trial"), dict) else None


def load_run(root: Path, scanned: Scan | None = None) -> Run:
    """The bundle at ``root`` as the report sees it (``scanned``: its journal
    already scanned, see :func:`new_scan`; scanned again when the bundle's
    objective or timeout is not the one it was scanned with)."""
    meta = _read_meta(root)
    resolved = _read_json(root, "spec.resolved.json") or {}
    objective = recorded_objective(meta.get("best"), resolved)
    best: dict[str, Any] = meta["best"] if isinstance(meta.get("best"), dict) else {}
    best_id = str(best["trial"]) if best.get("trial") else None
    timeout = _timeout(resolved)
    journal = root / "trials.jsonl"
    if scanned is not None and scanned.timeout == timeout and (
            objective is None if scanned.infer else scanned.objective == objective):  # fmt: skip
        s = scanned
        s.best_id, s.best_record = best_id, last_line(journal, s, best_id)
    else:
        s = scan(journal, objective, best_id, timeout)
    older = superseded(journal, s)
    if objective is None and s.numeric_ok:  # ranked by the first numeric metric: known only now
        objective = Objective(sorted(s.numeric_ok)[0])
    if older or objective != s.objective:  # a second pass, rarely needed
        s = scan(journal, objective, best_id, timeout, skip=older)
    run = Run(
        root=root,
        meta=meta,
        resolved=resolved,
        env=_read_json(root, "env/env.json") or {},
        host=_read_json(root, "host.json") or {},
        image=_read_json(root, "image.json"),
        git=_read_json(root, "code/git.json"),
        data=_read_json(root, "data.json"),
        reproduce=_read_json(root, "reproduce.json"),
        code_files=_count(_read_json(root, "code/files.json")),
        scan=s,
        objective=objective,
        offsets=s.offsets(),
    )
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


def _params(run: Run) -> list[Param]:
    declared = (run.resolved.get("sweep") or {}).get("parameters") or {}
    names = sorted(set(run.scan.param_numeric) | set(declared))
    out = []
    for name in names:
        seen_values = name in run.scan.param_numeric
        decl = declared.get(name)
        numeric = seen_values and run.scan.param_numeric[name]
        if numeric:
            log_scale = isinstance(decl, dict) and "loguniform" in decl
            if isinstance(decl, list) and all(is_number(v) for v in decl):
                lo, hi = min(decl), max(decl)
                log_scale = lo > 0 and hi / lo >= 100
            out.append(Param(name, categorical=False, log=log_scale))
            continue
        labels = [h.param_label(v) for v in decl] if isinstance(decl, list) else []
        seen = set(labels)
        extra = sorted(run.scan.param_labels(name) - seen, key=natural_key)
        out.append(Param(name, categorical=True, categories=list(dict.fromkeys(labels + extra))))
    return out


def natural_key(label: str) -> tuple[int, float, str]:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def params_text(t: dict[str, Any]) -> str:
    def show(v: Any) -> str:
        return f"{v:.6g}" if isinstance(v, float) else h.param_label(v)

    return "  ".join(f"{k}={show(v)}" for k, v in sorted((t.get("params") or {}).items()))


def metric_names(trials: list[dict[str, Any]] | set[str], obj: Objective | None, limit: int = 5) -> list[str]:
    """The first ``limit`` metric names of ``trials`` (or of a set of names), the objective's first."""
    names = sorted(trials if isinstance(trials, set) else {m for t in trials for m in (t.get("metrics") or {})})
    if obj and obj.metric in names:
        names.remove(obj.metric)
        names.insert(0, obj.metric)
    return names[:limit]
