"""Real-workload baseline: GridSearchCV with joblib's Dask backend on a 2 x 1 LocalCluster."""

import joblib
from distributed import Client, LocalCluster
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC
from svc_common import CV, GRID, SCORING


def main() -> None:
    X, y = load_digits(return_X_y=True)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        Client(cluster),
    ):
        search = GridSearchCV(SVC(), GRID, cv=CV, scoring=SCORING, n_jobs=-1, refit=False)
        with joblib.parallel_backend("dask"):
            search.fit(X, y)
    assert len(search.cv_results_["params"]) == 16


if __name__ == "__main__":
    main()
