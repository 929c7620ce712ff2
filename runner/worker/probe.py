"""What a worker reports about itself (versions for host.json and lock
checks) and the pre-flight import of the trial before any trial runs."""

from __future__ import annotations

import difflib
import importlib
import os
import pkgutil
import platform
import re
import socket
import sys
from importlib import metadata
from typing import Any


def worker_info() -> dict[str, Any]:
    """Versions a worker reports for host.json and lock checks."""
    packages: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            packages[_normalize(name)] = dist.version
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
        _IMPORTED["owners"] = metadata.packages_distributions()
    owners: Any = _IMPORTED["owners"]
    stdlib: frozenset[str] = getattr(sys, "stdlib_module_names", frozenset())
    tops = {name.partition(".")[0] for name in list(sys.modules)}
    found: dict[str, str] = {}
    for top in sorted(tops - set(stdlib) - set(sys.builtin_module_names)):
        for dist in owners.get(top, ()):
            key = _normalize(dist)
            if key in found:
                continue
            try:
                found[key] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
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
