"""What a worker reports about itself (versions for host.json and lock
checks) and the pre-flight import of the trial before any trial runs."""

from __future__ import annotations

import csv
import difflib
import importlib
import inspect
import os
import pkgutil
import platform
import re
import socket
import sys
from importlib import metadata
from pathlib import PurePosixPath
from typing import Any


def worker_info() -> dict[str, Any]:
    """Versions a worker reports for host.json and lock checks."""
    packages = _first_versions(_installed())
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "cpus": os.cpu_count(),
        "packages": dict(sorted(packages.items())),
    }


def _installed() -> list[tuple[str, str, Any]]:
    """(name, version, distribution) of each installed distribution, in
    ``sys.path`` order (as :func:`importlib.metadata.distributions`); the
    same values as its ``metadata["Name"]`` and ``version`` without parsing
    each one's whole metadata file (its long description included): only the
    header lines before the first blank one are read."""
    found = []
    for dist in metadata.distributions():
        name, version = _headers(dist.read_text("METADATA") or dist.read_text("PKG-INFO") or dist.read_text("") or "")
        if name:
            found.append((name, version, dist))
    return found


def _first_versions(installed: list[tuple[str, str, Any]]) -> dict[str, str]:
    """Normalized name -> version of the first distribution of that name on
    ``sys.path``: the one imported (and :func:`importlib.metadata.version`'s)."""
    first: dict[str, str] = {}
    for name, version, _ in installed:
        first.setdefault(_normalize(name), version)
    return first


def _headers(text: str) -> tuple[str, str]:
    """The first ``Name`` and ``Version`` headers of a metadata file."""
    name = version = ""
    for line in text.splitlines():
        if not line.strip():
            break
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key == "name" and not name:
            name = value.strip()
        elif sep and key == "version" and not version:
            version = value.strip()
    return name, version


def _tops(dist: Any) -> set[str]:
    """The top-level import names a distribution provides, as
    :func:`importlib.metadata.packages_distributions` finds them since Python 3.12: its
    ``top_level.txt``, else the first part of each path its ``RECORD`` (or an
    egg's ``SOURCES.txt``) lists, without a ``pathlib`` object per path."""
    declared = (dist.read_text("top_level.txt") or "").split()
    if declared:
        return set(declared)
    record = dist.read_text("RECORD")
    if record:
        paths = [row[0] for row in csv.reader(record.splitlines()) if row]
    else:
        paths = (dist.read_text("SOURCES.txt") or "").splitlines()
    names = {_top_of(path) for path in paths if path}
    return {name for name in names if name and "." not in name}


def _top_of(path: str) -> str:
    """The first part of a listed path, or a lone file's module name."""
    if path[0] in "./" or path[-1] in "./" or "//" in path or "/./" in path:
        parts = PurePosixPath(path).parts  # the uncommon shapes, exactly as the standard library splits them
    else:
        parts = tuple(path.split("/", 1))
    if len(parts) > 1:
        return parts[0]
    return inspect.getmodulename(parts[0]) or parts[0] if parts else ""


def _owners() -> dict[str, list[tuple[str, str]]]:
    """top-level module name -> (normalized distribution name, version) of
    each distribution providing it (see :func:`_first_versions`)."""
    installed = _installed()
    first = _first_versions(installed)
    owners: dict[str, list[tuple[str, str]]] = {}
    for name, _, dist in installed:
        key = _normalize(name)
        for top in _tops(dist):
            owners.setdefault(top, []).append((key, first[key]))
    return owners


_IMPORTED: dict[str, Any] = {"modules": -1, "result": {}, "owners": None}


def imported_distributions() -> dict[str, str]:
    """name -> version of every installed distribution that provides a module
    loaded in this process now: what a trial that just ran could have used (a
    superset: the worker's own modules are in it too). A ``current``
    environment reuses a cached result while these versions are unchanged.

    Recomputed only when modules were loaded since the last call, so batches of
    short trials pay for it once."""
    loaded = len(sys.modules)
    if loaded == _IMPORTED["modules"]:
        return dict(_IMPORTED["result"])
    if _IMPORTED["owners"] is None:
        _IMPORTED["owners"] = _owners()
    owners: Any = _IMPORTED["owners"]
    stdlib: frozenset[str] = getattr(sys, "stdlib_module_names", frozenset())
    tops = {name.partition(".")[0] for name in list(sys.modules)}
    found: dict[str, str] = {}
    for top in sorted(tops - set(stdlib) - set(sys.builtin_module_names)):
        for key, version in owners.get(top, ()):
            found.setdefault(key, version)
    _IMPORTED.update(modules=loaded, result=dict(sorted(found.items())))
    return dict(_IMPORTED["result"])


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ------------------------------------------------------------------ pre-flight


def check_trial(definition: dict[str, Any]) -> dict[str, Any] | None:
    """Import what the trial calls, as a trial would, before any trial runs.

    Returns None when the trial function (or the estimator class and dataset
    loader) can be found, else ``{"path": [...], "message": ...}`` naming the
    spec key and saying what is wrong, with a "did you mean" when a public
    name of the module is close.
    """
    try:
        if "function" in definition:
            return _check_target(definition["function"], ("trial", "function"), "function")
        sk = definition.get("sklearn") or {}
        problem = _check_target(sk.get("estimator", ""), ("trial", "sklearn", "estimator"), "estimator class")
        if problem is None and sk.get("dataset"):
            problem = _check_target(sk["dataset"], ("trial", "sklearn", "dataset"), "dataset loader")
        if problem is None:
            _warm("sklearn.model_selection")  # what every such trial calls (cross_validate)
        return problem
    except Exception as exc:  # the check must report, never fail the run itself
        return {"path": ["trial"], "message": f"checking the trial failed: {type(exc).__name__}: {exc}"}


def _warm(module: str) -> None:
    """Import ``module`` now, so the first trial on this worker does not wait for it."""
    try:
        importlib.import_module(module)
    except Exception:  # the trial imports it again and reports any problem
        pass


def _check_target(target: str, path: tuple[str, ...], what: str) -> dict[str, Any] | None:
    if ":" in target:
        module_name, name = target.split(":", 1)
    else:
        module_name, _, name = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        parent, _, leaf = missing.rpartition(".")
        hint = ""
        if parent and missing != module_name.split(".")[0]:
            try:
                siblings = [m.name for m in pkgutil.iter_modules(importlib.import_module(parent).__path__)]
            except Exception:
                siblings = []
            close = difflib.get_close_matches(leaf, [s for s in siblings if not s.startswith("_")], n=1, cutoff=0.6)
            hint = f"; did you mean '{parent}.{close[0]}'?" if close else ""
        return {"path": list(path), "message": f"cannot import {module_name!r}: no module named {missing!r}{hint}"}
    except BaseException as exc:
        return {"path": list(path), "message": f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"}
    obj = getattr(module, name, None)
    if obj is None:
        public = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
        close = difflib.get_close_matches(name, [str(n) for n in public], n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return {"path": list(path), "message": f"module {module_name!r} has no {what} {name!r}{hint}"}
    if not callable(obj):
        return {"path": list(path), "message": f"{target} is a {type(obj).__name__}, not a {what}"}
    return None
