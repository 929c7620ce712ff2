"""A live trial's record is encoded once for both the journal and the cache:
the journal line and the cache entry are exactly what ``json.dumps`` of each gives."""

import json

from hypothesis import given
from hypothesis import strategies as st

from runner.execute.executor import encode_record

text = st.text(max_size=8)  # quotes, backslashes, controls, non-ASCII
scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text)
records = st.fixed_dictionaries({
    "id": text, "key": text,
    "params": st.dictionaries(text, st.one_of(scalar, st.lists(scalar, max_size=2)), max_size=3),
    "seed": st.integers(), "repeat": st.integers(0, 3), "status": st.sampled_from(["ok", "pruned", "error"]),
    "metrics": st.dictionaries(text, st.one_of(st.none(), st.floats(allow_nan=False)), max_size=3),
    "error": st.one_of(st.none(), text), "traceback": st.one_of(st.none(), text),
    "failure_class": st.one_of(st.none(), text), "worker": st.one_of(st.none(), text),
    "start": st.one_of(st.none(), st.floats(allow_nan=False)), "end": st.one_of(st.none(), st.floats(allow_nan=False)),
    "attempts": st.integers(1, 5), "cached": st.booleans(),
    "history": st.lists(st.dictionaries(text, scalar, max_size=3), max_size=3),
})  # fmt: skip


ORDER = ("id", "key", "params", "seed", "repeat", "status", "metrics", "error", "traceback", "failure_class",
         "worker", "start", "end", "attempts", "cached", "history")


@given(record=records, run_id=text, log=text)
def test_journal_line_and_cache_entry_are_the_json_of_each(record, run_id, log) -> None:
    record = {k: record[k] for k in ORDER}  # as Executor._record makes it
    line, body = encode_record(record, run_id, log)
    assert line == json.dumps(record, separators=(",", ":"), default=str)
    entry = {**record, "run_id": run_id, "log": log}
    entry.pop("cached")
    assert body == json.dumps(entry, separators=(",", ":"))
    assert "\n" not in line  # one journal line


@given(record=records, run_id=text, log=text)
def test_a_record_in_another_order_still_ends_with_cached_then_history(record, run_id, log) -> None:
    shuffled = {k: record[k] for k in reversed(ORDER)}  # "history" and "cached" first
    line, body = encode_record(shuffled, run_id, log)
    moved = {**{k: v for k, v in shuffled.items() if k not in ("cached", "history")},
             "cached": record["cached"], "history": record["history"]}  # fmt: skip
    assert line == json.dumps(moved, separators=(",", ":"), default=str)
    entry = {k: v for k, v in moved.items() if k != "cached"}
    assert body == json.dumps({**entry, "run_id": run_id, "log": log}, separators=(",", ":"))
