"""Gradient boosting on the breast-cancer data shipped with scikit-learn, trained
in steps so an adaptive sweep can stop unpromising trials early
(specs/adaptive.yaml, bench/adaptive.py)."""

from __future__ import annotations

import warnings

STEPS = 9  # ctx.log(step=…) calls of a trial run to the end
TREES_PER_STEP = 10


def train(params, ctx):
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import accuracy_score, log_loss
    from sklearn.model_selection import train_test_split

    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    model = HistGradientBoostingClassifier(
        learning_rate=params["learning_rate"],
        max_leaf_nodes=params["max_leaf_nodes"],
        min_samples_leaf=params["min_samples_leaf"],
        l2_regularization=params["l2_regularization"],
        early_stopping=False,
        warm_start=True,  # each step adds TREES_PER_STEP trees to the same model
        random_state=ctx.seed,
    )
    loss = accuracy = None
    for step in range(1, STEPS + 1):
        model.set_params(max_iter=step * TREES_PER_STEP)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X_train, y_train)
        proba = model.predict_proba(X_val)
        loss = float(log_loss(y_val, proba))
        accuracy = float(accuracy_score(y_val, proba.argmax(axis=1)))
        ctx.log(step=step, val_loss=loss, accuracy=accuracy)  # may stop the trial here (early_stop)
    return {"val_loss": loss, "accuracy": accuracy}
