"""The spec stage: what a valid spec is and how a file becomes one.

- :mod:`~runner.spec.models`: the pydantic models of spec v1 and :class:`LoadedSpec`
- :mod:`~runner.spec.load`: reading a file, ``--set`` overrides, validation
- :mod:`~runner.spec.check`: checks across keys that field types cannot express
- :mod:`~runner.spec.messages`: pydantic errors as ``file:line key.path: what``

Reads YAML with :mod:`runner._yaml` (line numbers for every key, bounded aliases).
Imports from the rest of xrun only modules below it: ``_yaml``, ``_safeio``, ``errors``,
``config`` and ``remote``.
"""

from runner.spec.cluster import BACKENDS, KubernetesOptions
from runner.spec.load import apply_override, load_spec, loads_spec, validate
from runner.spec.models import (
    SPEC_VERSION,
    FunctionTrial,
    IntRange,
    LoadedSpec,
    LogUniform,
    SklearnTrial,
    Spec,
    Sweep,
    Uniform,
    display_path,
    json_schema,
)

__all__ = [
    "BACKENDS",
    "SPEC_VERSION",
    "FunctionTrial",
    "IntRange",
    "KubernetesOptions",
    "LoadedSpec",
    "LogUniform",
    "SklearnTrial",
    "Spec",
    "Sweep",
    "Uniform",
    "apply_override",
    "display_path",
    "json_schema",
    "load_spec",
    "loads_spec",
    "validate",
]
