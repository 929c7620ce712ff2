"""One pass over a finished run's journal (bundle/ledger.Ledger, the report's
scan fed the same lines) gives every output derived from it exactly as the
whole list of latest records does: results.csv, points.csv, the best point, the
terminal's tables, a final stage's results digest and the report's numbers."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from runner._display import trial_rows
from runner.bundle import ledger as ledger_mod
from runner.bundle.journal import latest_records, read_journal
from runner.bundle.ledger import Ledger
from runner.bundle.points import best_point
from runner.cli.progress import glance_tables, points_table, trials_table
from runner.objective import Objective
from runner.report import scan as scan_mod
from runner.report.data import load_run, new_scan
from runner.stages import results_digest, results_digest_of
from tests.report.synth import make_bundle
from tests.report.test_scan import SMALL
from tests.test_bundle_tables import reference_points, reference_results
from tests.test_glance import _text

VALUES = st.one_of(st.sampled_from([0.5, 1.0, 2.0, -1.0, 0.1 + 0.2, -0.0, 1e308]), st.integers(-3, 3), st.none(), st.just("n/a"),
                   st.booleans())  # fmt: skip
RECORD = st.fixed_dictionaries({
    "id": st.sampled_from([f"t{i:05d}" for i in range(12)] + ["t100000", "x", "é"]),
    "key": st.sampled_from(["k1", "k2", "k3", "é"]),
    "params": st.fixed_dictionaries({"x": st.sampled_from([1, 1.0, True, "1", 2, None])},
                                    optional={"y": st.sampled_from([0, 1, "a", [1, 2]])}),
    "status": st.sampled_from(["ok", "ok", "ok", "error", "pruned", "timeout"]),
    "metrics": st.dictionaries(st.sampled_from(["score", "other"]), VALUES, max_size=2),
    "start": st.sampled_from([None, 1.0, 2.5]),
    "end": st.sampled_from([None, 3.0]),
    "worker": st.sampled_from(["tcp://a:1", None]),
    "cached": st.booleans(),
})  # fmt: skip


def _bundle(tmp: Path, records: list[dict], metric: str | None, goal: str) -> Path:
    root = tmp / f"b{random.getrandbits(64):x}"
    make_bundle(root, 0)
    resolved = json.loads((root / "spec.resolved.json").read_text())
    if metric:
        resolved["sweep"]["objective"] = {"metric": metric, "goal": goal}
    else:
        resolved["sweep"].pop("objective", None)
    (root / "spec.resolved.json").write_text(json.dumps(resolved))
    meta = json.loads((root / "bundle.json").read_text())
    meta.pop("best", None)
    (root / "bundle.json").write_text(json.dumps(meta))
    (root / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def _report_numbers(run) -> dict:
    s = run.scan
    points, n_points, repeats = run.top_points(5)
    return {
        "objective": run.objective, "counts": (s.total, s.n_ok, s.n_failed, s.n_pruned, s.n_cached, s.n_scored),
        "ranked": [r["id"] for r in run.ranked(5)], "plot": [r["id"] for r in run.plot_trials],
        "trials": [r["id"] for r in run.trials], "failed": [r["id"] for r in run.failed],
        "best": s.best_record, "points": [(p.params, p.trials, p.ok) for p in points], "n_points": (n_points, repeats),
        "median": s.median_duration(), "values": json.dumps(list(s.columns.value)),
    }  # fmt: skip


def _same(i: str) -> dict:
    return {"id": i, "key": "k1", "params": {"x": 1}, "status": "ok", "metrics": {}, "start": None, "end": None,
            "worker": "tcp://a:1", "cached": False}  # fmt: skip


@settings(max_examples=30, deadline=None)
@given(records=st.lists(RECORD, max_size=50), metric=st.sampled_from([None, "score"]),
       goal=st.sampled_from(["maximize", "minimize"]))  # fmt: skip
# Once, the whole list's trials table sized its id column for a trial it did not show (t100000, past the 3 shown).
@example(records=[_same("t00000")] * 11 + [_same("t00001"), _same("t00002"), _same("t100000")], metric=None,
         goal="maximize")  # fmt: skip
# A point of one trial has its value as mean: math.fsum gives 0.0 for -0.0.
@example(records=[{**_same("t00000"), "metrics": {"score": -0.0}}], metric="score", goal="minimize")
def test_one_pass_gives_what_every_latest_record_gives(tmp_path_factory, records, metric, goal) -> None:
    tmp = tmp_path_factory.mktemp("ledger")
    root = _bundle(tmp, records, metric, goal)
    journal = root / "trials.jsonl"
    objective = Objective(metric, goal) if metric else None
    latest = latest_records(read_journal(journal))
    with mock.patch.multiple(scan_mod, **SMALL):
        scanned = new_scan(root, objective)
        with Ledger(journal, objective, each=scanned.add) as ledger:
            best = ledger.best()
            assert best == (best_point(latest, metric, goal) if metric else None)
            if best is not None:  # the bundle records it, as a run does, before its report is made
                meta = json.loads((root / "bundle.json").read_text())
                (root / "bundle.json").write_text(json.dumps({**meta, "best": best}))
            ledger.write_tables(tmp / "results.csv", tmp / "points.csv")
            glanced = ledger.glance(best and metric, goal, 3)
            ok = [r for r in latest if r.get("status") == "ok"]
            try:
                expected_digest = results_digest(latest)
            except TypeError:  # one key, different metrics: the whole list cannot be sorted
                expected_digest = None
                assert len({r["key"] for r in ok}) < len(ok)
            if expected_digest is not None:
                assert results_digest_of(ledger.ok_results()) == expected_digest
        fed = load_run(root, scanned)
        alone = load_run(root)
    reference_results(tmp / "ref-results.csv", journal)
    reference_points(tmp / "ref-points.csv", journal)
    assert (tmp / "results.csv").read_bytes() == (tmp / "ref-results.csv").read_bytes()
    assert (tmp / "points.csv").read_bytes() == (tmp / "ref-points.csv").read_bytes()
    whole = [trials_table(trial_rows(latest), best and metric, goal, 3)]
    points = points_table(latest, best and metric, goal, 3)
    if points is not None:
        whole.append(points)
    assert _text(glance_tables(journal, best and metric, goal, 3, glanced=glanced)) == _text(whole)
    assert json.dumps(_report_numbers(fed), default=repr) == json.dumps(_report_numbers(alone), default=repr)


@settings(max_examples=30, deadline=None)
@given(records=st.lists(RECORD, max_size=50), metric=st.sampled_from([None, "score"]),
       held=st.sampled_from([0, 1, 3, 20_000]))  # fmt: skip
def test_points_are_the_same_whether_repeated_ones_are_held_or_grouped_by_sqlite(tmp_path_factory, records, metric,
                                                                                  held) -> None:  # fmt: skip
    """points.csv holds the points with more than one trial (up to ``held`` trials in them) while
    it writes the others in id order; with more, SQLite groups every point. Either way the
    same bytes as the whole list gives, and the terminal's points are those of a ledger that
    counted its points itself."""
    tmp = tmp_path_factory.mktemp("held")
    root = _bundle(tmp, records, metric, "maximize")
    journal = root / "trials.jsonl"
    objective = Objective(metric) if metric else None
    with mock.patch.object(ledger_mod, "REPEATED_TRIALS_HELD", held):
        with Ledger(journal, objective) as ledger:
            ledger.write_tables(tmp / "results.csv", tmp / "points.csv")
            glanced = ledger.glance(metric, "maximize", 3)
    with Ledger(journal, objective) as alone:
        expected = alone.glance(metric, "maximize", 3)
    reference_points(tmp / "ref-points.csv", journal)
    assert (tmp / "points.csv").read_bytes() == (tmp / "ref-points.csv").read_bytes()
    assert (glanced.n_points, glanced.points) == (expected.n_points, expected.points)
    assert glanced == expected


@settings(max_examples=30, deadline=None)
@given(records=st.lists(RECORD, max_size=50))
def test_the_objective_inferred_in_one_pass_is_that_of_a_second(tmp_path_factory, records) -> None:
    """No objective recorded: the report ranks by the first numeric metric name;
    found during its one pass, it ranks as a pass told that objective does."""
    tmp = tmp_path_factory.mktemp("infer")
    root = _bundle(tmp, records, None, "maximize")
    journal = root / "trials.jsonl"
    with mock.patch.multiple(scan_mod, **SMALL):
        inferred = scan_mod.scan(journal, None, None, None)
        objective = Objective(sorted(inferred.numeric_ok)[0]) if inferred.numeric_ok else None
        told = scan_mod.scan(journal, objective, None, None)
    assert inferred.objective == objective
    for name in ("n_scored", "total", "n_ok"):
        assert getattr(inferred, name) == getattr(told, name)
    assert [r["id"] for r in inferred.ranked(5)] == [r["id"] for r in told.ranked(5)]
    assert [r["id"] for r in inferred.plot_trials()] == [r["id"] for r in told.plot_trials()]
    assert json.dumps(list(inferred.columns.value)) == json.dumps(list(told.columns.value))


def test_a_final_stage_s_digest_streams_in_key_order(tmp_path: Path) -> None:
    """Keys that sort as strings (not as their bytes' length), metrics with
    their keys in any order: the streamed digest is the whole list's."""
    journal = tmp_path / "trials.jsonl"
    recs = [{"id": f"t{i}", "key": k, "status": "ok", "metrics": m} for i, (k, m) in enumerate(
        [("b", {"z": 1, "a": 2.5}), ("a9", {}), ("a10", {"x": [1, {"q": None}]}), ("é", {"s": "\u2603"})])]  # fmt: skip
    recs.append({"id": "t9", "key": "c", "status": "error", "metrics": {"x": 1}})
    journal.write_text("".join(json.dumps(r) + "\n" for r in recs))
    with Ledger(journal, None) as ledger:
        assert results_digest_of(ledger.ok_results()) == results_digest(recs)


_PEAK = r"""
import json, os, resource, sys
from pathlib import Path
from runner.bundle import ledger as ledger_mod
from runner.bundle.ledger import Ledger
from runner.objective import Objective
root = Path(sys.argv[1])
with open("/proc/self/statm") as fh:  # resident now, after the imports (KiB)
    base = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
with Ledger(root / "trials.jsonl", Objective("score")) as ledger:
    ledger.best()
    ledger.write_tables(root / "results.csv", root / "points.csv")
    ledger.glance("score", "maximize", 20)
    for _ in ledger.ok_results():  # streamed, not held
        pass
print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024))
"""


def _ledger_growth_mb(tmp: Path, n: int) -> float:
    root = make_bundle(tmp / f"b{n}", n=n, workers=2)
    out = subprocess.run([sys.executable, "-c", _PEAK, str(root)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], check=True, timeout=600)  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads the resident size from /proc")
def test_the_ledger_s_memory_does_not_grow_with_the_trials(tmp_path: Path) -> None:
    """The pass, the best point, both tables, the terminal's tables and a final
    stage's rows (each in a fresh process: its peak RSS above what it had before)
    take about as much memory for 100,000 lines as for 20,000: SQLite's page
    cache and sorts are bounded, no row is held in Python."""
    small = _ledger_growth_mb(tmp_path, 20_000)
    large = _ledger_growth_mb(tmp_path, 100_000)
    assert large - small < 5, (small, large)  # 8 MB more with a 16 MB page cache
