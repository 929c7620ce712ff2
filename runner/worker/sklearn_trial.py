"""Zero-code scikit-learn trials: an estimator class cross-validated on a
dataset loader or a CSV table (scikit-learn and numpy are imported when a trial needs them)."""

from __future__ import annotations

import csv
import importlib
from typing import Any

from .context import TrialContext


def _import(path: str) -> Any:
    if ":" in path:
        module, name = path.split(":")
    else:
        module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def sklearn_trial(sk: dict[str, Any], task: dict[str, Any], ctx: TrialContext) -> dict[str, float]:
    import numpy as np  # deferred: only when drawing or running a trial that needs it
    from sklearn.model_selection import cross_validate

    estimator_cls = _import(sk["estimator"])
    kwargs = {**sk.get("params", {}), **task["params"]}
    if "random_state" in estimator_cls().get_params() and "random_state" not in kwargs:
        kwargs["random_state"] = task["seed"]
    estimator = estimator_cls(**kwargs)
    if sk.get("dataset"):
        X, y = _load_dataset(sk["dataset"])
    else:
        X, y = _load_table(ctx.data[sk["data"]], sk["target"])
    scores = cross_validate(estimator, X, y, cv=sk.get("cv", 5), scoring=list(sk["scoring"]), error_score="raise")
    metrics: dict[str, float] = {}
    for name in sk["scoring"]:
        values = np.asarray(scores[f"test_{name}"], dtype=float)
        metrics[name] = float(values.mean())
        metrics[f"{name}_std"] = float(values.std())
    print(f"{estimator!r}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return metrics


def _load_dataset(path: str) -> tuple[Any, Any]:
    loader = _import(path)
    try:
        loaded = loader(return_X_y=True)
    except TypeError:
        loaded = loader()
    if isinstance(loaded, tuple):
        return loaded[0], loaded[1]
    return loaded.data, loaded.target


def _load_table(path: str, target: str) -> tuple[Any, Any]:
    import numpy as np  # deferred: only when drawing or running a trial that needs it

    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise ValueError(f"{path} is empty")
    header, body = rows[0], rows[1:]
    if target not in header:
        raise ValueError(f"{path} has no column {target!r} (columns: {', '.join(header)})")
    t = header.index(target)
    features = [i for i in range(len(header)) if i != t]
    try:
        X = np.array([[float(r[i]) for i in features] for r in body], dtype=float)
    except ValueError as exc:
        raise ValueError(f"{path}: feature columns must be numeric ({exc})") from None
    y = np.array([r[t] for r in body])
    return X, y


# ------------------------------------------------------------------ worker facts

