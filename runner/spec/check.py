"""Checks across keys that field types cannot express (spec v1 semantics)."""

from __future__ import annotations

import os
from pathlib import Path

from runner import config
from runner.errors import SpecError
from runner.spec import yaml as _yaml
from runner.spec.models import LoadedSpec, SklearnTrial


def _err(loaded: LoadedSpec, what: str, *path: str | int) -> SpecError:
    return SpecError(
        what,
        file=loaded.display,
        line=_yaml.line_for(loaded.lines, path),
        path=_yaml.dotted(path),
    )


def check_semantics(loaded: LoadedSpec) -> list[str]:
    """Raise :class:`SpecError` for the first inconsistency; return warnings."""
    spec = loaded.spec
    sweep = spec.sweep
    dists = [k for k, v in sweep.parameters.items() if not isinstance(v, list)]
    if sweep.method == "grid":
        if dists:
            raise _err(
                loaded,
                "distributions are only allowed with method: random; give a list of values for a grid",
                "sweep", "parameters", dists[0],
            )  # fmt: skip
    if sweep.method == "random" and sweep.samples is None:
        raise _err(loaded, "required when method is random (how many points to draw)", "sweep", "samples")
    if sweep.method != "random" and sweep.samples is not None:
        raise _err(loaded, f"only used with method: random (method is {sweep.method})", "sweep", "samples")
    if sweep.method == "list":
        if not sweep.points:
            raise _err(loaded, "method: list needs a non-empty list of points", "sweep", "points")
        if sweep.parameters:
            raise _err(
                loaded, "method: list takes its values from points; remove parameters", "sweep", "parameters"
            )
    elif sweep.points is not None:
        raise _err(loaded, f"points are only used with method: list (method is {sweep.method})", "sweep", "points")
    from runner.sweep import size_problem

    too_big = size_problem(sweep)  # counted, never expanded
    if too_big:
        raise _err(loaded, too_big[1], "sweep", too_big[0])

    for name, item in spec.data.items():
        if (item.path is None) == (item.url is None):
            raise _err(loaded, "give exactly one of path or url", "data", name)
        if item.url is not None and item.sha256 is None:
            raise _err(loaded, "a url input needs its sha256 so it can be verified", "data", name)
        if item.path is not None and not item.path.exists():
            raise _err(loaded, f"file not found: {item.path}", "data", name, "path")

    if not spec.code.root.is_dir():
        raise _err(loaded, f"directory not found: {spec.code.root}", "code", "root")

    trial = spec.trial
    if isinstance(trial, SklearnTrial):
        sk = trial.sklearn
        if (sk.dataset is None) == (sk.data is None):
            raise _err(loaded, "give exactly one of dataset (an import path) or data (a data entry)", "trial", "sklearn")
        if sk.data is not None:
            if sk.data not in spec.data:
                known = ", ".join(spec.data) or "none defined"
                raise _err(loaded, f"no data entry named {sk.data!r} (data entries: {known})", "trial", "sklearn", "data")
            if sk.target is None:
                raise _err(loaded, "required with data: the column to predict", "trial", "sklearn", "target")
        elif sk.target is not None:
            raise _err(loaded, "target is only used with data", "trial", "sklearn", "target")
        if sk.dataset is not None and not sk.dataset.startswith("sklearn."):
            _check_module(loaded, sk.dataset.split(":")[0], ("trial", "sklearn", "dataset"))
    else:
        _check_module(loaded, trial.function.split(":")[0], ("trial", "function"))

    if spec.sweep.objective is None and isinstance(trial, SklearnTrial):
        pass  # the first scorer is the objective; see runner.plan

    if spec.cluster.backend == "kubernetes" and not spec.image.registry:
        raise _err(
            loaded,
            "the kubernetes backend pulls the worker image from image.registry; set it "
            "(e.g. registry.example.com/me/xrun)",
            "image", "registry",
        )  # fmt: skip

    for name in spec.secrets:
        if name not in os.environ:
            pass  # checked at run time, so `validate` works without secrets set

    return _escape_warnings(loaded)


def _check_module(loaded: LoadedSpec, module: str, path: tuple[str, ...]) -> None:
    root = loaded.spec.code.root
    rel = Path(*module.split("."))
    candidates = [root / rel.with_suffix(".py"), root / rel / "__init__.py"]
    if not any(c.is_file() for c in candidates):
        raise _err(
            loaded,
            f"module {module!r} not found under code.root ({root}): expected {candidates[0]}",
            *path,
        )


def project_root(spec_path: Path) -> Path:
    """The tree a spec's paths are expected to stay in: the nearest ancestor
    holding ``.git`` or ``pyproject.toml``, else the spec's directory."""
    for parent in [spec_path.parent, *spec_path.parent.parents]:
        if (parent / ".git").exists() or (parent / "pyproject.toml").exists():
            return parent
    return spec_path.parent


def _escape_warnings(loaded: LoadedSpec) -> list[str]:
    """Paths that leave the project tree are reported (a spec that reads
    ``/etc`` or a sibling checkout is worth a look) unless explicitly allowed
    with ``XRUN_ALLOW_OUTSIDE_PATHS=1``."""
    if config.allow_outside_paths():
        return []
    root = project_root(loaded.path)
    spec = loaded.spec
    paths: list[tuple[tuple[str, ...], Path]] = [(("code", "root"), spec.code.root), (("output",), spec.output)]
    paths += [(("data", n, "path"), d.path) for n, d in spec.data.items() if d.path is not None]
    for attr in ("conda", "pip"):
        value = getattr(spec.environment, attr, None)
        if value is not None:
            paths.append((("environment", attr), value))
    out = []
    for key, path in paths:
        try:
            path.resolve().relative_to(root.resolve())
        except ValueError:
            out.append(
                f"{loaded.where(*key)}: {path} is outside the project tree {root} "
                "(set XRUN_ALLOW_OUTSIDE_PATHS=1 if that is intended)"
            )
    return out
