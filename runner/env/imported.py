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

Stored in the cache's database (:meth:`TrialCache.remember_imports`): one
row per stored result, ``(scope key, trial key, imported versions)``. Earlier
releases kept ``<cache>/imports/ab/<scope key>/<trial key>.json`` files; they
are still read. Entries are untrusted input: a name that is not a hex key, a
file over :data:`MAX_ENTRY_BYTES`, or a value that is not a str → str map is
ignored, and the result itself is read through :meth:`TrialCache.get`, which
checks it.
"""

from __future__ import annotations

import json
import re
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


_checked: list[Any] = [None]  # the last imported-versions object found valid (held: its id is not reused)


def remember(cache: TrialCache, scope: str, key: str, imported: Any, *, staged: bool = False) -> None:
    """Record what the trial stored under ``key`` imported (best effort: a
    failure costs only future reuse across environment changes); ``staged``:
    with the cache's next :meth:`TrialCache.commit`, with the result itself."""
    if not (_HEX.match(scope) and _HEX.match(key)):
        return
    if imported is not _checked[0]:  # a batch's results share one object: checked once
        if not _valid(imported):
            return
        _checked[0] = imported
    if staged:
        cache.stage_imports(scope, key, imported)
    else:
        cache.remember_imports(scope, key, imported)


def _valid(imported: Any) -> bool:
    return (
        isinstance(imported, dict)
        and bool(imported)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in imported.items())
    )


def _entries(cache: TrialCache, scope: str) -> list[tuple[str, dict[str, str]]]:
    """(trial key, imported versions) stored under a scope key, newest first."""
    found: list[tuple[float, str, dict[str, str]]] = []
    for key, at, body in cache.imports_under(scope, MAX_ENTRIES, MAX_ENTRY_BYTES):
        if not _HEX.match(key):
            continue
        try:
            imported = json.loads(body)
        except ValueError:
            continue
        if _valid(imported):
            found.append((at, key, imported))
    found += _legacy_entries(cache, scope)
    found.sort(key=lambda e: e[0], reverse=True)
    out: list[tuple[str, dict[str, str]]] = []
    for _, key, imported in found:
        if all(key != k for k, _ in out):
            out.append((key, imported))
    return out[:MAX_ENTRIES]


def _legacy_entries(cache: TrialCache, scope: str) -> list[tuple[float, str, dict[str, str]]]:
    """Entries an earlier release stored as files under ``<cache>/imports``."""
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
            out.append((_mtime(path), path.stem, data["imported"]))
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
