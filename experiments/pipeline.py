"""Example pipeline: prepare → sweep → final (specs/pipeline.yaml).

* ``prepare`` runs once, before the sweep: it splits the breast cancer data set
  into a training and a test part, scales both with the training part's
  statistics only, and writes them to ``ctx.output_dir``;
* ``train`` (every trial) reads the training part from ``ctx.inputs["prepare"]``
  and cross-validates a logistic regression on it;
* ``final`` runs once, after the sweep, with the best point as ``ctx.best``:
  it refits on the whole training part, scores the test part it has not seen,
  and saves the model with skops into ``ctx.artifact_dir``.

Files are written with ``numpy.save`` (not ``savez``, whose zip members carry
the time): equal data gives equal bytes, so ``xrun reproduce`` can compare the
prepare outputs by their sha256.
"""

from __future__ import annotations

from pathlib import Path


def prepare(params: dict, ctx) -> dict[str, float]:
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=params["test_size"], stratify=y, random_state=ctx.seed
    )
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    out = Path(ctx.output_dir)
    for name, value in (("X_train", (X_train - mean) / std), ("y_train", y_train),
                        ("X_test", (X_test - mean) / std), ("y_test", y_test)):  # fmt: skip
        np.save(out / f"{name}.npy", value)
    print(f"prepared {len(y_train)} training and {len(y_test)} test rows")
    return {"train_rows": len(y_train), "test_rows": len(y_test)}


def _load(ctx, *names: str) -> list:
    import numpy as np

    return [np.load(Path(ctx.inputs["prepare"]) / f"{name}.npy") for name in names]


def _model(params: dict, seed: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=float(params["C"]), max_iter=2000, random_state=seed)


def train(params: dict, ctx) -> dict[str, float]:
    from sklearn.model_selection import cross_val_score

    X, y = _load(ctx, "X_train", "y_train")
    scores = cross_val_score(_model(params, ctx.seed), X, y, cv=5, scoring="accuracy")
    return {"accuracy": float(scores.mean()), "accuracy_std": float(scores.std())}


def final(params: dict, ctx) -> dict[str, float]:
    import skops.io as sio
    from sklearn.metrics import accuracy_score, f1_score

    X_train, y_train, X_test, y_test = _load(ctx, "X_train", "y_train", "X_test", "y_test")
    model = _model(ctx.best["params"], ctx.seed).fit(X_train, y_train)
    predicted = model.predict(X_test)
    sio.dump(model, Path(ctx.artifact_dir) / "model.skops")
    print(f"best point {ctx.best['params']}: test accuracy {accuracy_score(y_test, predicted):.4f}")
    return {"test_accuracy": float(accuracy_score(y_test, predicted)), "test_f1": float(f1_score(y_test, predicted))}
