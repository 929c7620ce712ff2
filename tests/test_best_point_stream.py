"""bundle.json's best point, computed in bounded memory from the journal,
is exactly what ranking every latest record gives."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from runner.bundle.journal import latest_records, read_journal
from runner.bundle.points import best_point, best_point_of

VALUES = st.one_of(
    st.sampled_from([0.5, 1.0, 2.0, -1.0, 0.1 + 0.2, 0.3]),  # repeated values: ties between points
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.integers(-3, 3),
    st.none(),
    st.just("n/a"),
    st.booleans(),
)
PARAMS = st.fixed_dictionaries({"x": st.sampled_from([1, 1.0, True, "1", 2, None])},
                               optional={"y": st.sampled_from([0, 1, "a"])})  # fmt: skip
RECORDS = st.lists(
    st.tuples(st.integers(0, 30), PARAMS, st.sampled_from(["ok", "ok", "ok", "error", "pruned"]),
              st.dictionaries(st.sampled_from(["score", "other"]), VALUES, max_size=2)),
    max_size=60,
)


def _write(path: Path, rows: list[tuple[int, dict, str, dict]]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i, params, status, metrics in rows:  # an id may come back: its last line wins
            fh.write(json.dumps({"id": f"t{i:04d}", "params": params, "status": status, "metrics": metrics}) + "\n")


@given(rows=RECORDS, goal=st.sampled_from(["maximize", "minimize"]), candidates=st.sampled_from([1, 2, 50]))
def test_the_streamed_best_point_is_the_ranking_s_best(tmp_path_factory, rows, goal, candidates) -> None:
    path = tmp_path_factory.mktemp("j") / "trials.jsonl"
    _write(path, rows)
    expected = best_point(latest_records(read_journal(path)), "score", goal)
    assert best_point_of(path, "score", goal, candidates=candidates) == expected


def test_no_objective_no_best(tmp_path: Path) -> None:
    path = tmp_path / "trials.jsonl"
    _write(path, [(1, {"x": 1}, "ok", {"score": 1.0})])
    assert best_point_of(path, None) is None
    assert best_point_of(tmp_path / "absent.jsonl", "score") is None


def test_memory_does_not_grow_with_the_trials(tmp_path: Path) -> None:
    """Every trial a point of its own (a random sweep): the records are not held."""

    def peak(n: int) -> int:
        path = tmp_path / f"t{n}.jsonl"
        _write(path, [(i, {"x": i, "y": "a" * 40}, "ok", {"score": float(i % 997)}) for i in range(n)])
        tracemalloc.start()
        try:
            best = best_point_of(path, "score", "maximize")
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            assert best is not None and best["value"] == 996.0

    small, large = peak(5_000), peak(40_000)
    assert large - small < 35_000 * 50, (small, large)  # < 50 bytes per extra trial (records: ~1 kB each)
