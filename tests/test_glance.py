"""The trials and points tables a terminal shows (after `xrun run`, `xrun show`)
are read from the journal in bounded memory, and show exactly what the whole
list of latest records gives."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from runner._display import trial_rows
from runner.bundle.glance import glance
from runner.bundle.journal import latest_records, read_journal
from runner.cli.progress import glance_tables, points_table, trials_table

VALUES = st.one_of(st.sampled_from([0.5, 1.0, 2.0, -1.0, 0.1 + 0.2, 0.3]), st.floats(allow_nan=True, width=32),
                   st.integers(-3, 3), st.none(), st.just("n/a"), st.booleans())  # fmt: skip
PARAMS = st.fixed_dictionaries({"x": st.sampled_from([1, 1.0, True, "1", 2, None])},
                               optional={"y": st.sampled_from([0, 1, "a"])})  # fmt: skip
ROWS = st.lists(
    st.tuples(st.integers(0, 40), PARAMS, st.sampled_from(["ok", "ok", "ok", "error", "pruned", "timeout"]),
              st.dictionaries(st.sampled_from(["score", "other"]), VALUES, max_size=2),
              st.sampled_from([None, "ValueError: boom", "[red]x[/]"])),
    max_size=80,
)  # fmt: skip


def _write(path: Path, rows: list) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i, params, status, metrics, error in rows:  # an id may come back: its last line wins
            rec = {"id": f"t{i:05d}", "params": params, "status": status, "metrics": metrics}
            if status not in ("ok", "pruned"):
                rec.update(error=error, failure_class=status)
            fh.write(json.dumps(rec) + "\n")


def _text(tables: list) -> str:
    console = Console(record=True, width=200, color_system=None)
    for t in tables:
        console.print(t)
    return console.export_text()


@given(rows=ROWS, metric=st.sampled_from([None, "score"]), goal=st.sampled_from(["maximize", "minimize"]),
       limit=st.sampled_from([1, 3, 10]))  # fmt: skip
def test_the_tables_equal_those_of_every_latest_record(tmp_path_factory, rows, metric, goal, limit) -> None:
    path = tmp_path_factory.mktemp("j") / "trials.jsonl"
    _write(path, rows)
    trials = latest_records(read_journal(path))
    whole = [trials_table(trial_rows(trials), metric, goal, limit)]
    points = points_table(trials, metric, goal, limit)
    if points is not None:
        whole.append(points)
    assert _text(glance_tables(path, metric, goal, limit)) == _text(whole)


def test_memory_does_not_grow_with_the_trials(tmp_path: Path) -> None:
    """A random sweep (every trial its own point) and a few failures: the records are not held."""

    def peak(n: int) -> int:
        path = tmp_path / f"t{n}.jsonl"
        _write(path, [(i, {"x": i, "y": "a" * 40}, "error" if i % 50 == 0 else "ok", {"score": float(i % 997)},
                       "ValueError: boom") for i in range(n)])  # fmt: skip
        tracemalloc.start()
        try:
            g = glance(path, "score", "maximize", 20)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            assert len(g.rows) == 40 and g.n_ok + g.n_failed == n and g.points is None

    small, large = peak(5_000), peak(40_000)
    assert large - small < 35_000 * 50, (small, large)  # < 50 bytes per extra trial (records: ~1 kB each)
