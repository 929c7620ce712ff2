"""Aggregating trials into points keys them cheaply, telling apart exactly
what the canonical JSON key tells apart."""

from hypothesis import example, given
from hypothesis import strategies as st

from runner.bundle.points import _key, point_key

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
