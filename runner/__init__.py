"""xrun: declarative, reproducible experiment runner.

The Python API, for notebooks and scripts (the CLI is a thin layer over it)::

    import runner as xrun

    loaded = xrun.load_spec("specs/quickstart.yaml", overrides=["sweep.repeats=2"])
    result = xrun.run_spec(loaded)                 # a RunResult: run_id, bundle, status
    bundle = xrun.open_bundle(result.bundle)       # trials, meta, the bundle's JSON files
    again = xrun.reproduce_bundle(result.bundle)   # re-runs the best trial, compares

Names are imported on first use: ``import runner`` stays cheap (Dask and
pydantic load only when a function that needs them is called).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from runner._version import __version__
from runner.errors import InfraError, SpecError, TrialsFailed, UsageError, VerifyError, XrunError

if TYPE_CHECKING:
    from runner.bundle.manifest import verify as verify_bundle
    from runner.bundle.read import Bundle, find_bundles, open_bundle
    from runner.plan import Plan, make_plan
    from runner.report import write_report
    from runner.reproduce import Reproduction
    from runner.reproduce import reproduce as reproduce_bundle
    from runner.run import RunOptions, RunResult, load_environment
    from runner.run import run as run_spec
    from runner.spec import LoadedSpec, Spec, load_spec, loads_spec

# public name -> (module, attribute); imported on first access
_LAZY = {
    "load_spec": ("runner.spec", "load_spec"),
    "loads_spec": ("runner.spec", "loads_spec"),
    "LoadedSpec": ("runner.spec", "LoadedSpec"),
    "Spec": ("runner.spec", "Spec"),
    "load_environment": ("runner.run", "load_environment"),
    "make_plan": ("runner.plan", "make_plan"),
    "Plan": ("runner.plan", "Plan"),
    "run_spec": ("runner.run", "run"),
    "RunOptions": ("runner.run", "RunOptions"),
    "RunResult": ("runner.run", "RunResult"),
    "reproduce_bundle": ("runner.reproduce", "reproduce"),
    "Reproduction": ("runner.reproduce", "Reproduction"),
    "open_bundle": ("runner.bundle.read", "open_bundle"),
    "find_bundles": ("runner.bundle.read", "find_bundles"),
    "Bundle": ("runner.bundle.read", "Bundle"),
    "verify_bundle": ("runner.bundle.manifest", "verify"),
    "write_report": ("runner.report", "write_report"),
}

__all__ = [
    "Bundle",
    "InfraError",
    "LoadedSpec",
    "Plan",
    "Reproduction",
    "RunOptions",
    "RunResult",
    "Spec",
    "SpecError",
    "TrialsFailed",
    "UsageError",
    "VerifyError",
    "XrunError",
    "__version__",
    "find_bundles",
    "load_environment",
    "load_spec",
    "loads_spec",
    "make_plan",
    "open_bundle",
    "reproduce_bundle",
    "run_spec",
    "verify_bundle",
    "write_report",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'runner' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
