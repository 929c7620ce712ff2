"""Example function trial: a random forest on iris, with a held-out split.

xrun calls ``train(params, ctx)``; it returns metrics and may write files to
``ctx.artifact_dir`` (collected into the bundle) and log intermediate values.
"""

from __future__ import annotations

import json
from pathlib import Path


def train(params: dict, ctx) -> dict[str, float]:
    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    X, y = load_iris(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=ctx.seed, stratify=y)
    model = RandomForestClassifier(
        n_estimators=int(params["n_estimators"]),
        max_depth=params.get("max_depth"),
        random_state=ctx.seed,
    )
    model.fit(X_train, y_train)
    accuracy = float(model.score(X_test, y_test))
    for depth, importance in enumerate(model.feature_importances_):
        ctx.log(feature=depth, importance=float(importance))
    print(f"trial {ctx.trial_id}: accuracy={accuracy:.4f}")
    Path(ctx.artifact_dir, "importances.json").write_text(
        json.dumps({"importances": np.round(model.feature_importances_, 6).tolist()})
    )
    return {"accuracy": accuracy, "train_size": float(len(y_train))}
