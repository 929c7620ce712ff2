"""Zero-code scikit-learn trials: an estimator class cross-validated on a
dataset loader or a CSV table (scikit-learn and numpy are imported when a trial needs them)."""

from __future__ import annotations

import csv
import importlib
from typing import Any

from .context import TrialContext
from .datasets import load_once


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
    if sk.get("dataset"):  # loaded once per worker, each trial gets a copy
        X, y = load_once(("dataset", sk["dataset"]), lambda: _load_dataset(sk["dataset"]))
    else:
        path, digest = ctx.data[sk["data"]], (task.get("data_sha256") or {}).get(sk["data"])
        if digest:  # verified against its sha256 (ctx.data): the key says what it holds
            X, y = load_once(("table", path, digest, sk["target"]), lambda: _load_table(path, sk["target"]))
        else:
            X, y = _load_table(path, sk["target"])
    if sk.get("holdout") is not None:  # the sweep never sees the holdout: only the final stage scores on it
        X, _, y, _, _ = holdout_split(X, y, sk, estimator)
    scores = cross_validate(estimator, X, y, cv=sk.get("cv", 5), scoring=list(sk["scoring"]), error_score="raise")
    metrics: dict[str, float] = {}
    for name in sk["scoring"]:
        values = np.asarray(scores[f"test_{name}"], dtype=float)
        metrics[name] = float(values.mean())
        metrics[f"{name}_std"] = float(values.std())
    print(f"{estimator!r}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return metrics


def holdout_split(X: Any, y: Any, sk: dict[str, Any], estimator: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
    """``X_train, X_holdout, y_train, y_holdout, facts``: ``train_test_split`` with
    ``test_size=holdout`` and ``random_state=holdout_seed``, stratified by ``y``
    for classifiers. The one split the trials and the final stage share."""
    from sklearn.base import is_classifier  # deferred: scikit-learn only where a trial needs it
    from sklearn.model_selection import train_test_split

    stratified = bool(is_classifier(estimator))
    X_train, X_hold, y_train, y_hold = train_test_split(
        X, y, test_size=sk["holdout"], random_state=sk.get("holdout_seed", 0), stratify=y if stratified else None
    )
    facts = {"fraction": sk["holdout"], "seed": sk.get("holdout_seed", 0), "stratified": stratified,
             "n_train": len(y_train), "n_holdout": len(y_hold)}  # fmt: skip
    return X_train, X_hold, y_train, y_hold, facts


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

