"""Aggregating trials into points keys them cheaply, telling apart exactly
what the canonical JSON key tells apart."""

from hypothesis import example, given
from hypothesis import strategies as st

from runner.bundle.points import _key, aggregate, point_key, rank, successful, top

scalar = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=2))  # fmt: skip
value = st.one_of(scalar, st.lists(scalar, max_size=2), st.dictionaries(st.text(max_size=1), scalar, max_size=2))
points = st.dictionaries(st.sampled_from("abc"), value, max_size=3)


@given(a=points, b=points)
@example(a={"a": 0.0}, b={"a": -0.0})
@example(a={"a": 1}, b={"a": True})
@example(a={"a": 1}, b={"a": 1.0})
@example(a={"a": float("nan")}, b={"a": float("nan")})
def test_the_fast_key_tells_points_apart_as_the_json_key_does(a, b) -> None:
    assert (_key(a) == _key(b)) == (point_key(a) == point_key(b))


trial = st.fixed_dictionaries({
    "id": st.integers(0, 30).map(lambda i: f"t{i:05d}"),
    "params": st.dictionaries(st.sampled_from("ab"), st.integers(0, 2), max_size=2),
    "status": st.sampled_from(["ok", "ok", "error"]),
    "metrics": st.dictionaries(st.sampled_from(["score", "loss"]), st.one_of(st.none(), st.integers(0, 3).map(float)), max_size=2),
})  # fmt: skip


@given(records=st.lists(trial, max_size=25, unique_by=lambda r: r["id"]), metric=st.sampled_from([None, "score"]),
       goal=st.sampled_from(["maximize", "minimize"]), k=st.integers(1, 6))  # fmt: skip
def test_the_top_points_are_the_first_of_the_ranking(records, metric, goal, k) -> None:
    """The report takes the best points without ranking them all, and the
    successful points from the points of all trials without grouping again.
    (Trial ids are unique, as in a bundle's latest records: one id, one point.)"""
    points = aggregate(records)
    assert top(points, metric, goal, k) == rank(points, metric, goal)[:k]
    ok = [r for r in records if r["status"] == "ok"]
    assert successful(points) == aggregate(ok)
    assert top(points, metric, goal, k, successful=True) == rank(aggregate(ok), metric, goal)[:k]
