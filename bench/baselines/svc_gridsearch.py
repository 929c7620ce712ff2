"""Real-workload baseline: scikit-learn GridSearchCV(n_jobs=2) (joblib's loky processes).

refit=False: xrun cross-validates each point and does not refit the best one,
so neither does the baseline.
"""

from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC
from svc_common import CV, GRID, SCORING


def main() -> None:
    X, y = load_digits(return_X_y=True)
    search = GridSearchCV(SVC(), GRID, cv=CV, scoring=SCORING, n_jobs=2, refit=False)
    search.fit(X, y)
    assert len(search.cv_results_["params"]) == 16


if __name__ == "__main__":
    main()
