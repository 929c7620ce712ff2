"""Checks across keys that field types cannot express (spec v1 semantics)."""

from __future__ import annotations

import ast
import difflib
import importlib.util
import math
import os
from pathlib import Path

from runner import _yaml, config, remote
from runner.errors import SpecError
from runner.spec.models import ADAPTIVE_METHODS, LoadedSpec, SklearnTrial, Sweep


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
    if sweep.adaptive:
        _check_adaptive(loaded)
    else:
        for key in ("objectives", "batch", "early_stop"):
            if getattr(sweep, key) is not None:
                raise _err(loaded, f"only used with an adaptive method (tpe, cmaes, nsga2, qmc; method is {sweep.method})", "sweep", key)
    if sweep.method == "grid":
        if dists:
            raise _err(
                loaded,
                "distributions are only allowed with method: random; give a list of values for a grid",
                "sweep", "parameters", dists[0],
            )  # fmt: skip
    if sweep.method == "random" and sweep.samples is None:
        raise _err(loaded, "required when method is random (how many points to draw)", "sweep", "samples")
    if sweep.method not in ("random", *ADAPTIVE_METHODS) and sweep.samples is not None:
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
    too_big = size_problem(sweep)  # counted, never expanded
    if too_big:
        raise _err(loaded, too_big[1], "sweep", too_big[0])

    for name, item in spec.data.items():
        if (item.path is None) == (item.url is None):
            raise _err(loaded, "give exactly one of path or url", "data", name)
        if item.url is not None and (problem := remote.check_url(item.url)):
            raise _err(loaded, problem, "data", name, "url")
        if item.path is not None and not item.path.exists() and spec.volume_for(item.path) is None:
            raise _err(loaded, f"file not found: {item.path}", "data", name, "path")

    store = spec.artifacts.store
    if store is not None and (problem := remote.check_url(store) or remote.writable(store)):
        raise _err(loaded, problem, "artifacts", "store")

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
            _check_function(loaded, sk.dataset, ("trial", "sklearn", "dataset"))
    else:
        _check_function(loaded, trial.function, ("trial", "function"))

    if spec.sweep.objective is None and isinstance(trial, SklearnTrial):
        pass  # the first scorer is the objective; see runner.plan
    _check_stages(loaded)

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


def _check_stages(loaded: LoadedSpec) -> None:
    """``prepare`` and ``final`` name functions under code.root; ``final`` needs
    an objective to pick the best point; a holdout brings its own final stage."""
    spec = loaded.spec
    for name in ("prepare", "final"):
        stage = getattr(spec, name)
        if stage is not None:
            _check_function(loaded, stage.function, (name, "function"))
    if spec.prepare is not None and spec.sweep.adaptive:
        raise _err(
            loaded,
            f"a prepare stage cannot yet be combined with an adaptive sweep (method: {spec.sweep.method}); "
            "prepare the data in a separate run, or use grid, random or list",
            "prepare",
        )
    holdout = isinstance(spec.trial, SklearnTrial) and spec.trial.sklearn.holdout is not None
    if spec.final is not None and holdout:
        raise _err(
            loaded,
            "trial.sklearn.holdout runs a built-in final stage (refit the best estimator, score it on the "
            "holdout, save it with skops); remove final, or remove holdout to run your own",
            "final",
        )
    if spec.final is not None and spec.sweep.objective is None and not isinstance(spec.trial, SklearnTrial):
        raise _err(loaded, "final receives the best point: set sweep.objective (metric and goal) to rank points by", "final")
def _check_adaptive(loaded: LoadedSpec) -> None:
    """An adaptive sweep (tpe, cmaes, nsga2, qmc): what Optuna's sampler can take."""
    sweep = loaded.spec.sweep
    method = sweep.method
    try:
        found = importlib.util.find_spec("optuna") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise _err(
            loaded,
            f"method: {method} needs Optuna, which is not installed: pip install 'xrun[adaptive]'",
            "sweep", "method",
        )  # fmt: skip
    if sweep.samples is None:
        raise _err(loaded, f"required when method is {method} (the trial budget)", "sweep", "samples")
    if not sweep.parameters:
        raise _err(loaded, f"method: {method} needs parameters to search over", "sweep", "parameters")
    if sweep.points is not None:
        raise _err(loaded, f"points are only used with method: list (method is {method})", "sweep", "points")
    if sweep.repeats != 1:
        raise _err(loaded, f"method: {method} suggests one trial per point; repeats must be 1", "sweep", "repeats")
    if sweep.objectives is not None:
        if method != "nsga2":
            raise _err(loaded, f"several objectives need method: nsga2 (method is {method}); give one objective", "sweep", "objectives")
        if sweep.objective is not None:
            raise _err(loaded, "give objective or objectives, not both", "sweep", "objectives")
        metrics = [o.metric for o in sweep.objectives]
        if len(set(metrics)) != len(metrics):
            raise _err(loaded, "each objective needs its own metric", "sweep", "objectives")
    elif sweep.objective is None and not isinstance(loaded.spec.trial, SklearnTrial):
        raise _err(loaded, f"method: {method} needs an objective to optimize (metric and goal)", "sweep", "objective")
    choices = [k for k, v in sweep.parameters.items() if isinstance(v, list)]
    if method == "cmaes":
        if choices:
            raise _err(
                loaded,
                "cmaes samples numbers only; give a range ({uniform: …}, {loguniform: …}, {int: …}) or use tpe or nsga2 for choice lists",
                "sweep", "parameters", choices[0],
            )  # fmt: skip
    stop = sweep.early_stop
    if stop is not None:
        if sweep.objectives is not None:
            raise _err(loaded, "early stopping needs a single objective", "sweep", "early_stop")
        if isinstance(loaded.spec.trial, SklearnTrial):
            raise _err(loaded, "early stopping needs a function trial that logs steps with ctx.log(step=…, <metric>=…)", "sweep", "early_stop")
        if stop.metric is None and sweep.objective is None:
            raise _err(loaded, "give the metric the trial logs with ctx.log(step=…, <metric>=…)", "sweep", "early_stop", "metric")
        if stop.rule == "halving" and stop.max_steps is None:
            raise _err(loaded, "required with rule: halving (a trial's full length in steps)", "sweep", "early_stop", "max_steps")
        if stop.max_steps is not None and stop.max_steps <= stop.min_steps:
            raise _err(loaded, f"must be more than min_steps ({stop.min_steps})", "sweep", "early_stop", "max_steps")


def _check_module(loaded: LoadedSpec, module: str, path: tuple[str, ...]) -> None:
    root = loaded.spec.code.root
    rel = Path(*module.split("."))
    candidates = [root / rel.with_suffix(".py"), root / rel / "__init__.py"]
    if not any(c.is_file() for c in candidates):
        folder = candidates[0].parent
        names = sorted(p.stem for p in folder.glob("*.py")) if folder.is_dir() else []
        close = difflib.get_close_matches(rel.name, names, n=1, cutoff=0.6)
        hint = f"; did you mean {'.'.join([*module.split('.')[:-1], close[0]])!r}?" if close else ""
        raise _err(
            loaded,
            f"module {module!r} not found under code.root ({root}): expected {candidates[0]}{hint}",
            *path,
        )


def _check_function(loaded: LoadedSpec, target: str, path: tuple[str, ...]) -> None:
    """``module:name`` must name a top-level function of a module under
    code.root. The module is parsed, never imported (importing runs user code,
    in the driver's environment rather than the trial's)."""
    module, name = target.split(":")
    _check_module(loaded, module, path)
    root = loaded.spec.code.root
    rel = Path(*module.split("."))
    file = next(c for c in (root / rel.with_suffix(".py"), root / rel / "__init__.py") if c.is_file())
    try:
        tree = ast.parse(file.read_bytes(), filename=str(file))
    except SyntaxError as exc:
        raise _err(loaded, f"module {module!r} does not parse ({file}:{exc.lineno}: {exc.msg})", *path) from None
    except (OSError, ValueError):
        return  # unreadable here; the pre-flight on a worker reports it
    functions, others, star = _top_level_names(tree.body)
    if name in functions or name in others or star:
        return  # bound at top level (or maybe, by `import *`): the worker pre-flight checks it is callable
    close = difflib.get_close_matches(name, sorted(functions), n=1, cutoff=0.6)
    if close:
        hint = f"; did you mean {close[0]!r}?"
    else:
        shown = ", ".join(sorted(functions)[:10])
        hint = f" (its functions: {shown})" if shown else " (it defines no functions)"
    raise _err(loaded, f"module {module!r} ({file.name}) has no top-level function {name!r}{hint}", *path)


def _top_level_names(body: list[ast.stmt]) -> tuple[set[str], set[str], bool]:
    """Functions, other names bound at module level (conditional blocks
    included), and whether a ``from x import *`` could bind anything."""
    functions: set[str] = set()
    others: set[str] = set()
    star = False
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions.add(node.name)
        elif isinstance(node, ast.ClassDef):
            others.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    star = True
                else:
                    others.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            others.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
            blocks = [getattr(node, a, []) for a in ("body", "orelse", "finalbody")]
            blocks += [h.body for h in getattr(node, "handlers", [])]
            for block in blocks:
                f, o, s = _top_level_names(block)
                functions |= f
                others |= o
                star = star or s
    return functions, others, star


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


# ---------------------------------------------------------------- sweep size


def count(sweep: Sweep) -> int:
    if sweep.method == "list":
        n = len(sweep.points or [])
    elif sweep.method == "grid":
        n = math.prod(len(v) for v in sweep.parameters.values())  # type: ignore[arg-type,misc]
    else:
        n = sweep.samples or 0
    return n * sweep.repeats


MAX_TRIALS = 1_000_000  # every trial is journaled (the plan streams them); beyond this, split the sweep


def size_problem(sweep: Sweep) -> tuple[str, str] | None:
    """(sweep key, message) when the sweep has more than :data:`MAX_TRIALS` trials.

    Computed from the sweep's sizes, without expanding it (a 10^12-point grid
    is refused at once instead of filling memory).
    """
    n = count(sweep)
    if n <= MAX_TRIALS:
        return None
    key = {"grid": "parameters", "list": "points"}.get(sweep.method, "samples")
    if n // max(sweep.repeats, 1) <= MAX_TRIALS:
        key = "repeats"
    return key, f"the sweep has {n:,} trials (more than {MAX_TRIALS:,}); make it smaller or split it into several runs"

