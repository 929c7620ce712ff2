"""runner._json: the encoders made once and the journal line reader give exactly
what ``json.JSONEncoder(**options).encode`` and ``json.loads`` give (the same
text, the same value, the same error) for any value, including odd floats,
unicode (lone surrogates too), nested params and circular values."""

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner._json import encoder, loads
from runner.bundle.journal import encode as journal_encode
from runner.bundle.points import point_key
from runner.sweep import canonical_json

text = st.text(max_size=8)  # quotes, backslashes, controls, non-ASCII, lone surrogates
odd_floats = st.sampled_from([0.0, -0.0, 1e-320, 5e-324, 1e308, -1e308, 0.1 + 0.2, 1 / 3, 2.0**53 + 1, 1e16,
                              math.nan, math.inf, -math.inf])  # fmt: skip
scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63, max_value=2**200),
                   st.floats(), odd_floats, text)  # fmt: skip
values = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner),
                                                      st.dictionaries(text, inner, max_size=3)), max_leaves=12)  # fmt: skip

OPTIONS = [
    {"separators": (",", ":"), "default": str},  # the journal's
    {"sort_keys": True, "separators": (",", ":"), "ensure_ascii": True, "allow_nan": False},  # canonical_json
    {"sort_keys": True, "separators": (",", ":"), "default": str},  # point_key
    {"ensure_ascii": False},
    {"skipkeys": True, "sort_keys": True},
]


def _outcome(fn, value):
    try:
        return "ok", fn(value)
    except Exception as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("options", OPTIONS, ids=[str(i) for i in range(len(OPTIONS))])
@given(value=values)
def test_an_encoder_made_once_writes_what_a_new_encoder_writes(options, value) -> None:
    assert _outcome(encoder(**options), value) == _outcome(json.JSONEncoder(**options).encode, value)


@given(value=st.dictionaries(st.one_of(text, st.integers(), st.booleans(), st.none(), st.floats()), scalar, max_size=4))
def test_keys_that_are_not_strings_are_written_or_refused_alike(value) -> None:
    for options in OPTIONS:
        assert _outcome(encoder(**options), value) == _outcome(json.JSONEncoder(**options).encode, value)


def test_the_per_trial_encoders_are_the_ones_json_dumps_would_make() -> None:
    record = {"id": "t00001", "params": {"b": [1.5, -0.0], "a": {"z": "é\ud800", "y": None}}, "x": object.__name__}
    assert journal_encode(record) == json.dumps(record, separators=(",", ":"), default=str)
    assert canonical_json(record) == json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False)
    assert point_key(record["params"]) == json.dumps(record["params"], sort_keys=True, separators=(",", ":"))
    assert journal_encode({"v": {1, 2} and frozenset()}) == '{"v":"frozenset()"}'  # default=str, as before


def test_a_circular_value_fails_as_json_dumps_fails() -> None:
    loop: list = []
    loop.append(loop)
    cyc: dict = {"a": 1}
    cyc["self"] = cyc
    for options in OPTIONS:
        for value in (loop, cyc, {"params": [cyc]}):
            with pytest.raises(ValueError, match="Circular reference detected"):
                encoder(**options)(value)
    with pytest.raises(ValueError, match="Circular reference detected"):
        canonical_json({"p": cyc})


def test_an_encoder_made_once_serves_threads_at_once() -> None:
    from concurrent.futures import ThreadPoolExecutor

    enc = encoder(separators=(",", ":"), default=str)
    docs = [{"id": f"t{i:05d}", "v": [i, i / 7, {"k": "x" * (i % 50)}]} for i in range(2000)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(enc, docs))
    assert got == [json.dumps(d, separators=(",", ":"), default=str) for d in docs]


lines = st.one_of(
    values.map(lambda v: json.dumps(v, separators=(",", ":"))),  # any JSON value, compact
    values.map(lambda v: json.dumps(v, separators=(",", ":")) + "\n"),  # a journal line
    values.map(lambda v: json.dumps({"id": "t1", "v": v}, ensure_ascii=False) + "\n"),  # spaces, raw unicode
    st.text(max_size=30).map(lambda s: "{" + s),  # garbage after a brace
    st.text(max_size=30),
)
tails = st.sampled_from(["", "\n", "\n\n", " ", "\r\n", "x", "\x00", "}"])


@given(line=lines, tail=tails, as_bytes=st.booleans())
def test_reading_a_line_gives_what_json_loads_gives(line, tail, as_bytes) -> None:
    data = (line + tail).encode("utf-8", "surrogatepass") if as_bytes else line + tail
    got, want = _outcome(loads, data), _outcome(json.loads, data)
    if got[0] == "ok" and want[0] == "ok":
        assert json.dumps(got[1]) == json.dumps(want[1])  # NaN is not equal to itself: compared as text
    else:
        assert got == want


@given(raw=st.binary(max_size=40))
def test_reading_any_bytes_gives_what_json_loads_gives(raw) -> None:
    for data in (raw, b"{" + raw, b'{"a":' + raw):
        got, want = _outcome(loads, data), _outcome(json.loads, data)
        if got[0] == "ok" and want[0] == "ok":
            assert json.dumps(got[1]) == json.dumps(want[1])
        else:
            assert got == want


def test_bytes_in_another_encoding_are_read_as_json_loads_reads_them() -> None:
    for data in ('{"a": "é"}'.encode("utf-16-le"), '{"a": 1}'.encode("utf-16"), '{"a": 1}'.encode("utf-32"),
                 b'\xef\xbb\xbf{"a": 1}', b'{"a":1}\n'):  # fmt: skip
        assert _outcome(loads, data) == _outcome(json.loads, data)
