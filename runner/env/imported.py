"""Cache reuse for ``environment: current`` keyed on what trials imported.

A ``current`` environment's lock hash covers the whole interpreter freeze, so
installing an unrelated package would change every trial key. Keys stay as
they are (a trial key is computed before the trial runs and cannot know what
it will import); what changes is the lookup:

1. the exact key is looked up first, as for every environment;
2. on a miss, the trial's *scope key* is looked up: the same key with the
   environment replaced by the Python version (params, seed, trial
   definition, code and data are all still in it). Under it the cache keeps,
   for each stored result, the distributions its worker had loaded when the
   trial finished (name → version, reported by the worker). A result is
   reused when every one of those versions equals this interpreter's.

Locked environments (pip, conda) key on their lock and never take step 2.

Layout under ``<cache>/imports``: ``ab/<scope key>/<trial key>.json`` holding
``{"key", "imported"}``, written to a temporary name and renamed. Entries are
untrusted input: a name that is not a hex key, a file over
:data:`MAX_ENTRY_BYTES`, or a value that is not a str → str map is ignored,
and the result itself is read through :meth:`TrialCache.get`, which checks it.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.cache import TrialCache

MAX_ENTRY_BYTES = 1 << 20
MAX_ENTRIES = 256  # results considered per scope key (newest first)
_HEX = re.compile(r"^[0-9a-f]{64}$")


def scope_env(python_version: str) -> str:
    """What stands for the environment in a scope key."""
    return f"current-imports:{python_version}"


@dataclass
class Reuse:
    """A cached result reused across an environment change."""

    key: str  # the trial key the result is stored under
    entry: dict[str, Any]


@dataclass
class Blocked:
    """A cached result not reused: distributions the trial imported changed."""

    key: str
    changed: list[str]


def _root(cache: TrialCache) -> Path:
    return cache.root / "imports"


def _dir(cache: TrialCache, scope: str) -> Path:
    return _root(cache) / scope[:2] / scope


def remember(cache: TrialCache, scope: str, key: str, imported: Any) -> None:
    """Record what the trial stored under ``key`` imported (best effort: a
    failure costs only future reuse across environment changes)."""
    if not (_HEX.match(scope) and _HEX.match(key)) or not _valid(imported):
        return
    d = _dir(cache, scope)
    try:
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{key}.json"
        if path.exists():
            return
        tmp = d / f".{key[:16]}-{os.getpid()}-{threading.get_ident()}.tmp"
        tmp.write_text(json.dumps({"key": key, "imported": imported}, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        return


def _valid(imported: Any) -> bool:
    return (
        isinstance(imported, dict)
        and bool(imported)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in imported.items())
    )


def _entries(cache: TrialCache, scope: str) -> list[tuple[str, dict[str, str]]]:
    """(trial key, imported versions) stored under a scope key, newest first."""
    d = _dir(cache, scope)
    try:
        files = [p for p in d.iterdir() if p.suffix == ".json" and _HEX.match(p.stem)]
    except OSError:
        return []
    out = []
    for path in sorted(files, key=_mtime, reverse=True)[:MAX_ENTRIES]:
        try:
            if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_ENTRY_BYTES:
                continue
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("key") == path.stem and _valid(data.get("imported")):
            out.append((path.stem, data["imported"]))
    return out


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _changes(imported: dict[str, str], packages: dict[str, str]) -> list[str]:
    return [f"{name} {v} → {packages.get(name) or 'absent'}" for name, v in sorted(imported.items()) if packages.get(name) != v]


def lookup(cache: TrialCache, scope: str, packages: dict[str, str]) -> Reuse | Blocked | None:
    """A result under ``scope`` whose imported versions all match ``packages``
    (:class:`Reuse`), else the nearest one that does not (:class:`Blocked`),
    else ``None``."""
    blocked: Blocked | None = None
    for key, imported in _entries(cache, scope):
        changes = _changes(imported, packages)
        if changes:
            if blocked is None or len(changes) < len(blocked.changed):
                blocked = Blocked(key, changes)
            continue
        entry = cache.get(key)
        if entry is None:
            continue
        return Reuse(key, entry)
    return blocked
