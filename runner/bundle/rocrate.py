"""``ro-crate-metadata.json``: a bundle described as an RO-Crate (DESIGN §4).

The crate follows RO-Crate 1.1 and the Process Run Crate profile 0.5: the run
is one ``CreateAction`` whose ``instrument`` is xrun, whose ``object`` is what
went in (spec, environment lock, code snapshot, data inputs) and whose
``result`` is what came out (trials, results table, logs, artifacts, report).

Only files inside the bundle are read, and only the metadata file is written:
the payload is never copied or rewritten. The output is a function of the
bundle's content (no clock, no host lookups), so rewriting it is idempotent.

The crate stays bounded for huge sweeps: trials are described through
``trials.jsonl`` and ``results.csv``, never one entity per trial, and a
directory tree (``logs/``, ``artifacts/``) lists its files only up to
:data:`LIST_LIMIT`; beyond that it is described by its file count alone.
``MANIFEST.sha256`` is listed without a hash, because it is computed after
the crate (and covers it).
"""

from __future__ import annotations

import csv
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from runner._hashing import file_digest
from runner.bundle.manifest import MANIFEST
from runner.errors import UsageError

if TYPE_CHECKING:
    from rocrate.model.entity import Entity
    from rocrate.rocrate import ROCrate

METADATA = "ro-crate-metadata.json"
RO_CRATE_VERSION = "1.1"
PROFILE = "https://w3id.org/ro/wfrun/process/0.5"
# The RO-Crate 1.1 context has no checksum term; schema.org's is the one
# later RO-Crate contexts map ``sha256`` to.
EXTRA_TERMS = {"sha256": "http://schema.org/sha256"}

LIST_LIMIT = 500  # files a directory tree may list before it is summarised
# Files are hashed while this is cheap; beyond it they get contentSize only
# (MANIFEST.sha256 has every hash anyway).
HASH_LIMIT = 64 * 1024 * 1024  # per file
HASH_BUDGET = 512 * 1024 * 1024  # per crate

# Plain strings, as in the profile's examples and the validator's checks.
COMPLETED = "http://schema.org/CompletedActionStatus"
FAILED = "http://schema.org/FailedActionStatus"
ACTIVE = "http://schema.org/ActiveActionStatus"

# What each well-known part of a bundle is.
_DESCRIPTIONS = {
    "bundle.json": "run summary: status, trial counts, best trial, versions",
    "spec.yaml": "the spec exactly as given",
    "spec.resolved.json": "the spec after defaults, overrides and path resolution",
    "env/": "the environment file and its lock, or a freeze of the interpreter that ran the trials",
    "image.json": "worker image: image id, environment layer digest, base reference, Dockerfile",
    "env/env.json": "environment kind, lock hash and the version of every package",
    "env/freeze.txt": "pip freeze of the interpreter that ran the trials",
    "code/": "source snapshot of the trial code and the state of its git checkout",
    "code/source.tar.gz": "source snapshot of the trial code",
    "code/git.json": "git commit, branch, dirty flag and diff of the code root",
    "code/files.json": "sha256 of every file in the source snapshot",
    "data.json": "data inputs: name, path or URL, sha256, size",
    "trials.jsonl": "one JSON record per finished trial: id, key, params, seed, status, metrics, "
    "error, failure class, worker, start, end, attempts, cached",
    "results.csv": "trials.jsonl flattened: one row per trial, param.* and metric.* columns",
    "search.json": "adaptive sweeps: every suggestion of the sampler (generation, trial id, params, seed, key, "
    "early-stopping thresholds), replayable from the recorded results",
    "points.csv": "one row per parameter point: param.* columns, n, <metric>.mean and <metric>.std over its repeats",
    "logs/": "captured stdout and stderr of each trial that printed any, logs/<trial-id>.log",
    "artifacts/": "files each trial wrote to ctx.artifact_dir, artifacts/<trial-id>/",
    "host.json": "driver host, Python, packages, backend and each worker's versions",
    "report.html": "the human report, with plots",
    "stages.json": "the prepare and final stages: key, status, cached, files with their sha256",
    "stages/": "what the stages wrote: stages/prepare/outputs/, stages/final/artifacts/, their logs",
    "final.json": "the final stage: its metrics (on the holdout), the best point it used, the model's sha256",
    MANIFEST: "sha256 of every other file in the bundle (sha256sum format)",
}
# Which parts went into the run (object) and came out of it (result).
_INPUTS = ("spec.yaml", "spec.resolved.json", "env/", "image.json", "code/", "data.json")
_OUTPUTS = ("trials.jsonl", "search.json", "results.csv", "points.csv", "logs/", "artifacts/", "report.html", "bundle.json")
_FORMATS = {
    ".json": "application/json",
    ".jsonl": "application/jsonl",
    ".csv": "text/csv",
    ".html": "text/html",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".txt": "text/plain",
    ".log": "text/plain",
    ".lock": "text/plain",
    ".in": "text/plain",
    ".sha256": "text/plain",
    ".gz": "application/gzip",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}


def write_crate(bundle_dir: Path) -> Path:
    """Write ``ro-crate-metadata.json`` into a bundle and return its path."""
    bundle_dir = Path(bundle_dir)
    metadata = crate_metadata(bundle_dir)
    path = bundle_dir / METADATA
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def crate_metadata(bundle_dir: Path) -> dict[str, Any]:
    """The JSON-LD of a bundle's crate (read from the bundle, nothing written)."""
    # deferred: ro-crate is slow to import; only when sealing
    from rocrate.model.contextentity import ContextEntity
    from rocrate.rocrate import ROCrate

    root = Path(bundle_dir)
    meta = _read_json(root / "bundle.json")
    if not isinstance(meta, dict):
        raise UsageError(
            f"{root}: not a bundle (no readable bundle.json); cannot describe it as an RO-Crate"
        )
    resolved = _read_json(root / "spec.resolved.json")
    resolved = resolved if isinstance(resolved, dict) else {}
    run_id = str(meta.get("run_id") or root.name)
    start = _parse_time(meta.get("created"))
    end = _end_time(meta, start)

    crate = ROCrate(version=RO_CRATE_VERSION)
    crate.metadata.extra_terms.update(EXTRA_TERMS)
    rde = crate.root_dataset
    name = str(resolved.get("name") or meta.get("spec_name") or run_id)
    rde["name"] = name
    rde["description"] = resolved.get("description") or f"xrun bundle of the spec {name}"
    rde["identifier"] = run_id
    published = end or start
    rde["datePublished"] = _iso(published) if published else "1970-01-01"
    if start:
        rde["dateCreated"] = _iso(start)
    rde["conformsTo"] = crate.add(ContextEntity(crate, PROFILE, properties={
        "@type": "CreativeWork", "name": "Process Run Crate", "version": "0.5"}))  # fmt: skip
    rde["license"] = crate.add(ContextEntity(crate, "#license", properties={
        "@type": "CreativeWork",
        "name": "No license declared",
        "description": "The spec declares no license for this bundle; ask the author of the run "
                       "before redistributing it.",
    }))  # fmt: skip

    # Nested files hang off their directories' hasPart, not the root's.
    rde["hasPart"] = _Payload(crate, root).add_all()
    source = crate.dereference("code/source.tar.gz")
    if source is not None and meta.get("code_hash"):
        source["version"] = meta["code_hash"]  # the content hash xrun keys trials by
    data = _add_data_inputs(crate, _read_json(root / "data.json"))

    app = crate.add(ContextEntity(crate, "#xrun", properties={
        "@type": "SoftwareApplication",
        "name": "xrun",
        "description": "declarative, reproducible experiment runner",
        "softwareVersion": str(meta.get("xrun_version") or "unknown"),
    }))  # fmt: skip
    status = _status(meta)
    action: dict[str, Any] = {
        "@type": "CreateAction",
        "name": f"xrun run {run_id}",
        "description": _action_description(meta, resolved),
        "instrument": app,
        "object": _one_or_many(_inputs(crate) + data),
        "result": _one_or_many(_entities(crate, _OUTPUTS)),
        "actionStatus": status,
    }
    if start:
        action["startTime"] = _iso(start)
    if end:
        action["endTime"] = _iso(end)
    if status == FAILED:
        action["error"] = _error_text(meta)
    run = crate.add(ContextEntity(crate, "#run", properties=action))
    stages = _stage_actions(crate, root, app, _inputs(crate) + data)
    if stages:
        prepared = [r for a in stages if a.id == "#stage-prepare" for r in _as_list(a.get("result"))]
        if prepared:  # the sweep read the prepare outputs
            run["object"] = _one_or_many(_as_list(run.get("object")) + prepared)
    rde["mentions"] = _one_or_many([run, *stages])
    return crate.metadata.generate()


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _stage_actions(crate: ROCrate, root: Path, app: Entity, inputs: list[Entity]) -> list[Entity]:
    """One ``CreateAction`` per stage of ``stages.json``: prepare reads the run's
    inputs and makes its outputs; final reads them, the prepare outputs and the
    trials, and makes its artifacts and ``final.json``."""
    from rocrate.model.contextentity import ContextEntity  # deferred: imports rocrate (slow)

    stages = _read_json(root / "stages.json")
    if not isinstance(stages, dict):
        return []
    actions: list[Entity] = []
    prepared: list[Entity] = []
    for name in ("prepare", "final"):
        rec = stages.get(name)
        if not isinstance(rec, dict):
            continue
        results = _entities(crate, (f"stages/{name}/", f"stages/{name}.log") + (("final.json",) if name == "final" else ()))
        objects = list(inputs) + (prepared + _entities(crate, ("trials.jsonl",)) if name == "final" else [])
        state = {"ok": COMPLETED, "error": FAILED}.get(str(rec.get("status")), FAILED)
        props: dict[str, Any] = {
            "@type": "CreateAction",
            "name": f"{name} stage",
            "description": f"the {name} stage" + (" (taken from the cache)" if rec.get("cached") else ""),
            "instrument": app,
            "object": _one_or_many(objects),
            "actionStatus": state if rec.get("status") != "skipped" else FAILED,
        }
        if results:
            props["result"] = _one_or_many(results)
        if state == FAILED:
            props["error"] = str(rec.get("error") or rec.get("reason") or rec.get("status"))
        for key, field in (("start", "startTime"), ("end", "endTime")):
            if isinstance(rec.get(key), (int, float)) and not isinstance(rec.get(key), bool):
                try:
                    props[field] = _iso(datetime.fromtimestamp(rec[key], tz=timezone.utc))
                except (OverflowError, ValueError, OSError):  # a bundle's file says anything
                    pass
        action = crate.add(ContextEntity(crate, f"#stage-{name}", properties=props))
        actions.append(action)
        if name == "prepare":
            prepared = results[:1]
    return actions


def _inputs(crate: ROCrate) -> list[Entity]:
    out: list[Entity] = []
    for key in _INPUTS:
        if key.endswith("/"):  # the files of env/ and code/ one by one (both are small)
            files = [
                e for e in crate.data_entities if e.id.startswith(key) and not e.id.endswith("/")
            ]
            out += files or _entities(crate, (key,))
        else:
            out += _entities(crate, (key,))
    return out


def _entities(crate: ROCrate, keys: tuple[str, ...]) -> list[Entity]:
    return [e for key in keys if (e := crate.dereference(key)) is not None]


# ------------------------------------------------------------------ payload


class _Payload:
    """Adds the bundle's files and directories to a crate, within bounds."""

    def __init__(self, crate: ROCrate, root: Path) -> None:
        self.crate = crate
        self.root = root
        self.hash_budget = HASH_BUDGET

    def add_all(self) -> list[Entity]:
        """Add every part of the bundle; return the top-level ones."""
        top = []
        for entry in self.entries(self.root):
            if entry.name in (METADATA, METADATA + ".tmp", MANIFEST):
                continue
            if entry.is_dir():
                top.append(self.add_tree(entry))
            elif entry.is_file():
                top.append(self.add_file(entry))
        # The manifest is (re)computed after the crate: listed, never measured.
        top.append(self.crate.add_file(dest_path=MANIFEST, properties={
            "name": MANIFEST, "description": _DESCRIPTIONS[MANIFEST], "encodingFormat": "text/plain"}))  # fmt: skip
        return top

    def add_tree(self, top: Path) -> Entity:
        rel = self.rel(top) + "/"
        props: dict[str, Any] = {
            "name": rel,
            "description": _DESCRIPTIONS.get(rel, f"directory {rel}"),
        }
        if _count_files(top, stop_after=LIST_LIMIT) > LIST_LIMIT:
            props["description"] += (f" ({_count_files(top)} files, not listed one by one: "
                                     f"more than {LIST_LIMIT})")  # fmt: skip
            return self.crate.add_dataset(dest_path=rel, properties=props)
        return self.add_dir(top, props)

    def add_dir(self, path: Path, props: dict[str, Any]) -> Entity:
        dataset = self.crate.add_dataset(dest_path=self.rel(path) + "/", properties=props)
        children = []
        for entry in self.entries(path):
            if entry.is_dir():
                children.append(self.add_dir(entry, {"name": self.rel(entry) + "/"}))
            elif entry.is_file():
                children.append(self.add_file(entry))
        if children:
            dataset["hasPart"] = _one_or_many(children)
        return dataset

    def add_file(self, path: Path) -> Entity:
        rel = self.rel(path)
        size = path.stat().st_size
        props: dict[str, Any] = {"name": rel}
        if rel in _DESCRIPTIONS:
            props["description"] = _DESCRIPTIONS[rel]
        fmt = _FORMATS.get(path.suffix.lower())
        if fmt:
            props["encodingFormat"] = fmt
        if rel == "code/source.tar.gz":
            props["@type"] = ["File", "SoftwareSourceCode"]
        if rel == "results.csv":
            metrics = _metric_columns(path)
            if metrics:
                props["variableMeasured"] = metrics
        props["contentSize"] = str(size)
        if size <= min(HASH_LIMIT, self.hash_budget):
            props["sha256"] = file_digest(path)
            self.hash_budget -= size
        return self.crate.add_file(dest_path=rel, properties=props)

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    @staticmethod
    def entries(path: Path) -> list[Path]:
        # A name that is not valid UTF-8 (a trial may write anything) cannot be
        # an @id; MANIFEST.sha256 still covers the file.
        return sorted((p for p in path.iterdir() if _utf8(p.name)), key=lambda p: p.name)


def _add_data_inputs(crate: ROCrate, data: Any) -> list[Entity]:
    """Data inputs live outside the bundle: contextual ``#data-<name>`` entities."""
    # deferred: ro-crate is slow to import; only when sealing
    from rocrate.model.contextentity import ContextEntity

    out: list[Entity] = []
    if not isinstance(data, dict):
        return out
    for name in sorted(data):
        item = data[name] if isinstance(data[name], dict) else {}
        where = item.get("url") or item.get("path")
        props: dict[str, Any] = {
            "@type": "File",
            "name": name,
            "description": f"data input {name!r}, not stored in the bundle"
            + (f" (was at {where})" if where else ""),
        }
        if item.get("url"):
            props["contentUrl"] = item["url"]
        if item.get("sha256"):
            props["sha256"] = item["sha256"]
        if item.get("size") is not None:
            props["contentSize"] = str(item["size"])
        out.append(
            crate.add(ContextEntity(crate, "#data-" + quote(str(name), safe=""), properties=props))
        )
    return out


# ------------------------------------------------------------------ the run


def _status(meta: dict[str, Any]) -> str:
    status = meta.get("status")
    if status == "ok":
        return COMPLETED
    if status in ("failed", "interrupted", "error", "prepare-failed", "final-failed"):
        return FAILED
    return ACTIVE  # "running": the driver never sealed the bundle


def _error_text(meta: dict[str, Any]) -> str:
    counts = meta.get("counts") or {}
    total = counts.get("total", "?")
    parts = []
    if meta.get("status") == "interrupted":
        parts.append("interrupted")
    if meta.get("error"):
        parts.append(str(meta["error"]))
    if counts.get("failed"):
        classes = ", ".join(f"{k}: {v}" for k, v in sorted((meta.get("failures") or {}).items()))
        parts.append(
            f"{counts['failed']} of {total} trials failed" + (f" ({classes})" if classes else "")
        )
    if counts.get("not_run"):
        parts.append(f"{counts['not_run']} of {total} trials not run")
    if meta.get("stopped"):
        parts.append(f"stopped early ({meta['stopped']})")
    return "; ".join(parts) or f"run status {meta.get('status')!r}"


def _action_description(meta: dict[str, Any], resolved: dict[str, Any]) -> str:
    trial = resolved.get("trial") or {}
    if trial.get("function"):
        what = f"function {trial['function']}"
    elif isinstance(trial.get("sklearn"), dict):
        what = f"cross-validation of {trial['sklearn'].get('estimator')}"
    else:
        what = "trials"
    sweep = meta.get("sweep") or {}
    counts = meta.get("counts") or {}
    text = (f"{sweep.get('method', '?')} sweep of {counts.get('total', '?')} trials of {what} "
            f"on the {meta.get('backend', '?')} backend: "
            + ", ".join(f"{counts.get(k, 0)} {k.replace('_', ' ')}" for k in ("ok", "failed", "cached", "not_run")))  # fmt: skip
    best = meta.get("best")
    if isinstance(best, dict) and best.get("trial"):
        text += f"; best {best.get('metric')} {best.get('value')} ({best['trial']})"
    return text


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def _end_time(meta: dict[str, Any], start: datetime | None) -> datetime | None:
    duration = meta.get("duration_seconds")
    if start is None or _status(meta) == ACTIVE or not isinstance(duration, (int, float)):
        return None
    return start + timedelta(seconds=round(duration))


def _iso(moment: datetime) -> str:
    # whole seconds and a numeric offset: the form the profile's checks expect
    return moment.replace(microsecond=0).isoformat()


# ------------------------------------------------------------------ helpers


def _one_or_many(values: list[Any]) -> Any:
    # RO-Crate 1.1 compacts a single value: no singleton arrays
    return values[0] if len(values) == 1 else values


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _count_files(top: Path, stop_after: int | None = None) -> int:
    n = 0
    for _dirpath, _dirnames, filenames in os.walk(top):
        n += len(filenames)
        if stop_after is not None and n > stop_after:
            break
    return n


def _metric_columns(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        header = next(csv.reader(fh), [])
    return [c[len("metric.") :] for c in header if c.startswith("metric.")]


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
