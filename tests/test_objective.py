"""The objective and ranking have one home (runner/objective.py); every reader agrees."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from runner.bundle.points import aggregate, best_point, rank
from runner.objective import Objective, is_number, is_real, objective_of, recorded_objective
from runner.spec import loads_spec

SKLEARN = """\
name: sk
xrun: 1
trial:
  sklearn: {estimator: sklearn.svm.SVC, dataset: sklearn.datasets:load_iris, scoring: [f1_macro, accuracy]}
sweep: {parameters: {C: [1, 2]}}
"""


def test_a_bundle_without_best_or_declared_objective_uses_the_first_sklearn_scorer(tmp_path):
    loaded = loads_spec(SKLEARN, tmp_path / "s.yaml")
    resolved = loaded.spec.model_dump(mode="json")
    assert objective_of(loaded.spec) == Objective("f1_macro", "maximize")
    # what `xrun diff` and the report read from a bundle agrees with the plan (diff used to say: none)
    assert recorded_objective(None, resolved) == objective_of(loaded.spec)
    assert recorded_objective({"metric": "loss", "goal": "minimize"}, resolved) == Objective("loss", "minimize")


def test_hostile_bundle_values_give_no_objective_rather_than_a_crash():
    assert recorded_objective("x", {"sweep": [1], "trial": {"sklearn": {"scoring": [3]}}}) is None
    assert recorded_objective({"metric": "m", "goal": "up"}, None) == Objective("m", "maximize")


records = st.lists(
    st.fixed_dictionaries({
        "id": st.text("abc", min_size=1, max_size=3),
        "metrics": st.dictionaries(st.just("m"), st.one_of(st.floats(allow_nan=True), st.booleans(), st.none())),
    }),
    max_size=12,
)  # fmt: skip


@given(records, st.sampled_from(["maximize", "minimize"]))
def test_rank_is_best_first_then_valueless_by_id(recs, goal):
    obj = Objective("m", goal)
    ranked = obj.rank(recs)
    assert sorted(map(id, ranked)) == sorted(map(id, recs))
    values = [obj.value(r) for r in ranked]
    scored = [v for v in values if v is not None]
    assert values == scored + [None] * (len(values) - len(scored))  # valueless last
    assert all(math.isfinite(v) for v in scored)  # NaN, inf and booleans are not values
    assert scored == sorted(scored, reverse=goal == "maximize")


def test_points_and_trials_rank_by_the_same_rule():
    recs = [{"id": f"t{i}", "status": "ok", "params": {"x": i % 2}, "metrics": {"m": float(v)}}
            for i, v in enumerate([1, 5, 2, 4])]  # fmt: skip
    assert [p.params["x"] for p in rank(aggregate(recs), "m", "minimize")] == [0, 1]
    best = best_point(recs, "m", "minimize")
    assert best is not None and best["trial"] == "t0" and best["value"] == 1.5
    assert Objective("m", "minimize").rank(recs)[0]["id"] == "t0"


class _Int(int):
    pass


class _Float(float):
    pass


@given(v=st.one_of(st.integers(), st.integers(min_value=2**1024, max_value=2**1100), st.floats(), st.booleans(),
                   st.none(), st.text(max_size=2), st.integers().map(_Int), st.floats().map(_Float)))  # fmt: skip
def test_a_number_is_a_finite_int_or_float_and_not_a_boolean(v) -> None:
    """The type checks made first for plain ints and floats say what the general ones say (an int too
    large for a float raises as math.isfinite does)."""
    real = isinstance(v, (int, float)) and not isinstance(v, bool)
    assert is_real(v) == real
    try:
        want: object = real and math.isfinite(v)
    except OverflowError:
        want = OverflowError
    try:
        got: object = is_number(v)
    except OverflowError:
        got = OverflowError
    assert got == want
