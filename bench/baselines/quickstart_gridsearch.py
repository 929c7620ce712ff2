"""Quickstart baseline: GridSearchCV(n_jobs=2, refit=False) over specs/quickstart.yaml's grid.

Same estimator, data set, grid, cv and scoring as the spec; refit=False since
xrun cross-validates each point and does not refit the best one.
"""

from sklearn.datasets import load_iris
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

GRID = {"C": [0.1, 1, 10], "kernel": ["linear", "rbf"]}


def main() -> None:
    X, y = load_iris(return_X_y=True)
    search = GridSearchCV(SVC(), GRID, cv=5, scoring=["accuracy", "f1_macro"], n_jobs=2, refit=False)
    search.fit(X, y)
    assert len(search.cv_results_["params"]) == 6


if __name__ == "__main__":
    main()
