"""results.csv and points.csv from a journal: the same files as reading every
record into memory gives, in memory that does not grow with the number of trials."""

from __future__ import annotations

import csv
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from runner.bundle.journal import iter_journal, latest_records, read_journal
from runner.bundle.points import aggregate
from runner.bundle.write import _cell, write_tables


def reference_results(path: Path, journal: Path) -> None:
    """results.csv as it was written holding each trial's last record (the specification)."""
    records = latest_records(read_journal(journal))
    params = sorted({k for _, r in iter_journal(journal) if isinstance(r.get("params"), dict) for k in r["params"]})
    metrics = sorted({k for _, r in iter_journal(journal) if isinstance(r.get("metrics"), dict) for k in r["metrics"]})
    base = ["id", "key", "status", "failure_class", "seed", "repeat", "attempts", "cached", "worker", "start", "end",
            "duration", "error"]  # fmt: skip
    with open(path, "w", newline="", encoding="utf-8", errors="replace") as fh:
        w = csv.writer(fh)
        w.writerow(base + [f"param.{p}" for p in params] + [f"metric.{m}" for m in metrics])
        for r in records:
            duration = (r["end"] - r["start"]) if r.get("end") and r.get("start") else ""
            row = [r.get("id"), r.get("key"), r.get("status"), r.get("failure_class") or "", r.get("seed"),
                   _cell(r.get("repeat")), r.get("attempts"), r.get("cached"), r.get("worker") or "",
                   r.get("start") or "", r.get("end") or "", duration,
                   (r.get("error") or "").splitlines()[0] if r.get("error") else ""]  # fmt: skip
            row += [_cell((r["params"] if isinstance(r.get("params"), dict) else {}).get(p)) for p in params]
            row += [_cell((r["metrics"] if isinstance(r.get("metrics"), dict) else {}).get(m)) for m in metrics]
            w.writerow(row)


def reference_points(path: Path, journal: Path) -> None:
    points = aggregate(latest_records(read_journal(journal, slim=True)))
    p_cols = sorted({k for p in points for k in p.params})
    m_cols = sorted({m for p in points for m in p.values})
    with open(path, "w", newline="", encoding="utf-8", errors="replace") as fh:
        w = csv.writer(fh)
        w.writerow([f"param.{p}" for p in p_cols] + ["n", "trials"]
                   + [f"{m}.{stat}" for m in m_cols for stat in ("mean", "std")])  # fmt: skip
        for p in points:
            row = [_cell(p.params.get(c)) for c in p_cols] + [p.n, " ".join(p.trials)]
            for m in m_cols:
                row += [_cell(p.mean(m)), _cell(p.std(m))]
            w.writerow(row)


_value = st.one_of(st.integers(-3, 3), st.sampled_from([0.5, -0.0, 1.0, 2.5]), st.booleans(), st.none(),
                   st.sampled_from(["a", "b", "é", "\ud800"]), st.just([1, 2]), st.just({"z": 1, "a": [0.5]}))  # fmt: skip
_record = st.fixed_dictionaries(
    {
        "id": st.sampled_from([f"t{i:05d}" for i in range(8)] + ["t100000", "t10001", "t99999", "x", "é", "\ud800"]),
        "status": st.sampled_from(["ok", "ok", "error", "pruned", "timeout"]),
        "params": st.one_of(st.dictionaries(st.sampled_from(["lr", "depth", "name"]), _value, max_size=3),
                            st.just([1]), st.none()),
        "metrics": st.one_of(st.dictionaries(st.sampled_from(["score", "loss"]),
                                             st.one_of(st.floats(-5, 5), st.integers(-5, 5), st.none(), st.just("x"),
                                                       st.booleans()), max_size=2),
                             st.none()),
        "seed": st.integers(0, 5),
        "repeat": st.integers(0, 2),
        "start": st.sampled_from([None, 1.0, 2.5]),
        "end": st.sampled_from([None, 3.0]),
        "error": st.sampled_from([None, "boom\nline two", ""]),
        "cached": st.booleans(),
    }
)


@given(records=st.lists(_record, max_size=25), torn=st.booleans())
def test_tables_match_reading_every_record(tmp_path_factory, records: list[dict[str, Any]], torn: bool) -> None:
    """Property: for any journal (retried ids whose last line wins, repeats of a
    point, odd params and metrics, ids that sort as strings, a torn last line),
    both files are byte for byte those of the in-memory algorithm (which holds
    every record; params or metrics that are no mapping count as none)."""
    d = tmp_path_factory.mktemp("t")
    journal = d / "trials.jsonl"
    text = "".join(json.dumps(r) + "\n" for r in records) + ('{"id": "t0000' if torn else "")
    journal.write_text(text, encoding="utf-8")
    write_tables(d / "results.csv", d / "points.csv", journal)
    reference_results(d / "ref-results.csv", journal)
    reference_points(d / "ref-points.csv", journal)
    assert (d / "results.csv").read_bytes() == (d / "ref-results.csv").read_bytes()
    assert (d / "points.csv").read_bytes() == (d / "ref-points.csv").read_bytes()


PEAK = """
import json, resource, sys
from pathlib import Path
from runner.bundle.write import write_tables
n, d = int(sys.argv[1]), Path(sys.argv[2])
with open(d / "trials.jsonl", "w") as fh:
    for i in range(n):
        fh.write(json.dumps({"id": f"t{(i * 7919) % n:05d}", "status": "ok", "params": {"x": i, "name": "p" * 40},
                             "metrics": {"score": i / n}, "seed": i, "start": 1.0, "end": 2.0}) + "\\n")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
write_tables(d / "results.csv", d / "points.csv", d / "trials.jsonl")
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_tables_of_many_trials_are_written_in_bounded_memory(tmp_path: Path) -> None:
    """100,000 trials, each its own point: writing both tables adds little to the
    process's peak (held in memory, the records alone took hundreds of MB)."""
    n = 100_000
    out = subprocess.run([sys.executable, "-c", PEAK, str(n), str(tmp_path)], capture_output=True, text=True, check=True)
    grown_mb = int(out.stdout.strip())
    assert grown_mb < 60, grown_mb
    with open(tmp_path / "points.csv", newline="") as fh:
        assert sum(1 for _ in fh) == n + 1
    with open(tmp_path / "results.csv", newline="") as fh:
        rows = csv.reader(fh)
        next(rows)
        first = next(rows)
    assert first[0] == "t00000"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0
