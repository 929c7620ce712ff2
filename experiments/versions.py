"""Example trial that reports which scikit-learn it imported: with a pinned
environment, workers import the lock's versions, not the driver's."""

from __future__ import annotations


def train(params: dict, ctx) -> dict[str, float]:
    import sklearn
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    X, y = load_digits(return_X_y=True)
    model = LogisticRegression(C=params["C"], max_iter=200)
    score = float(cross_val_score(model, X / 16.0, y, cv=3).mean())
    major, minor, patch = (int(p) for p in sklearn.__version__.split(".")[:3])
    print(f"scikit-learn {sklearn.__version__} from {sklearn.__file__}")
    return {"accuracy": score, "sklearn_version": major * 10000 + minor * 100 + patch}
