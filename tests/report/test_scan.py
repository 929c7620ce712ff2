"""The report reads the journal in one streaming pass and keeps only what it
shows: what it keeps equals what the whole list of records gives, whatever the
order of the journal's lines, and its memory does not grow with the trials."""

from __future__ import annotations

import json
import random
import tracemalloc
from pathlib import Path
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.bundle.journal import SLIM_FIELDS, latest_records
from runner.bundle.points import aggregate, top
from runner.objective import Objective
from runner.report import scan as scan_mod
from runner.report.data import load_run
from runner.report.timeplots import merge_bars
from tests.report.synth import make_bundle

record = st.fixed_dictionaries({
    "id": st.integers(0, 40).map(lambda i: f"t{i:05d}"),
    "params": st.dictionaries(st.sampled_from("ab"), st.one_of(st.integers(0, 2), st.sampled_from([0.5, -0.0, "x"])),
                              max_size=2),
    "status": st.sampled_from(["ok", "ok", "ok", "error", "timeout", "pruned"]),
    "metrics": st.dictionaries(st.sampled_from(["score", "loss"]),
                               st.one_of(st.none(), st.integers(0, 3).map(float), st.just(float("nan"))), max_size=2),
    "cached": st.booleans(),
    "start": st.floats(0, 50),
    "end": st.floats(50, 100),
    "worker": st.sampled_from(["tcp://a:1", "tcp://b:2", None]),
})  # fmt: skip

SMALL = {"FIRST_TRIALS": 7, "FIRST_FAILED": 5, "BEST_TRIALS": 3, "SAMPLE_TRIALS": 6}  # trims happen at 40 lines


def bundle_with(tmp: Path, records: list[dict], goal: str = "maximize") -> Path:
    root = tmp / f"b{random.getrandbits(64):x}"
    make_bundle(root, 0)
    resolved = json.loads((root / "spec.resolved.json").read_text())
    resolved["sweep"]["objective"]["goal"] = goal
    (root / "spec.resolved.json").write_text(json.dumps(resolved))
    (root / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def same(a: list, b: list) -> bool:
    """Equal, NaN equal to NaN (as JSON)."""
    def as_json(x: list) -> str:
        return json.dumps([vars(p) if hasattr(p, "__dict__") else _point(p) for p in x], sort_keys=True)
    return as_json(a) == as_json(b)


def _point(p: object) -> object:
    slots = getattr(p, "__slots__", None)
    return {k: getattr(p, k) for k in slots} if slots else p


def slim(r: dict) -> dict:
    return {k: r[k] for k in SLIM_FIELDS if k in r}


@settings(max_examples=40)
@given(records=st.lists(record, max_size=60), goal=st.sampled_from(["maximize", "minimize"]),
       k=st.integers(1, 5))  # fmt: skip
def test_what_the_pass_keeps_equals_the_whole_list(tmp_path_factory, records, goal, k) -> None:
    """Duplicated ids (the last line wins), ties, missing and non-finite metrics:
    the best trials, the top points (all and successful), the first trials and
    failures by id and the counts are those of every latest record."""
    tmp = tmp_path_factory.mktemp("scan")
    with mock.patch.multiple(scan_mod, **SMALL):
        run = load_run(bundle_with(tmp, records, goal))
    latest = [slim(r) for r in latest_records(records)]
    ok = [r for r in latest if r["status"] == "ok"]
    obj = Objective("score", goal)
    assert [r["id"] for r in run.ranked(k)] == [r["id"] for r in obj.rank(ok)][:k]
    points = aggregate(latest)
    for successful in (False, True):
        got, n, repeats = run.top_points(k, successful=successful)
        assert same(got, top(points, "score", goal, k, successful=successful))
        assert (n, repeats) == ((len(points), max(len(p.trials) for p in points)) if points else (0, 0))
    assert same(run.trials, latest[:7])
    failed = [r for r in latest if r["status"] not in ("ok", "pruned")]
    assert same(run.failed, failed[:5])
    s = run.scan
    assert (s.total, s.n_ok, s.n_failed, s.n_cached) == (len(latest), len(ok), len(failed),
                                                         sum(1 for r in latest if r["cached"]))  # fmt: skip
    scored = [r for r in ok if obj.value(r) is not None]
    assert s.n_scored == len(scored)
    drawn = {r["id"] for r in run.plot_trials}
    best = {r["id"] for r in obj.rank(scored)[:1]}
    assert best <= drawn  # the plots draw the best trial
    assert drawn == {r["id"] for r in scored} if len(scored) <= 9 else len(drawn) <= 9


@settings(max_examples=25)
@given(records=st.lists(record, min_size=1, max_size=60, unique_by=lambda r: r["id"]), order=st.randoms())
def test_the_plots_sample_is_the_same_whatever_the_journals_order(tmp_path_factory, records, order) -> None:
    tmp = tmp_path_factory.mktemp("order")
    shuffled = list(records)
    order.shuffle(shuffled)
    with mock.patch.multiple(scan_mod, **SMALL):
        a, b = load_run(bundle_with(tmp, records)), load_run(bundle_with(tmp, shuffled))
        assert [r["id"] for r in a.plot_trials] == [r["id"] for r in b.plot_trials]
        assert [r["id"] for r in a.plot_trials] == sorted(r["id"] for r in a.plot_trials)
        assert same(a.trials, b.trials) and same(a.failed, b.failed)


@given(items=st.lists(st.tuples(st.integers(0, 20), st.integers()), unique_by=lambda t: t[1]), k=st.integers(1, 8))
def test_smallest_keeps_the_k_smallest(items, k) -> None:
    keep: scan_mod.Smallest[tuple[int, int]] = scan_mod.Smallest(k)
    for item in items:
        keep.add(item)
        assert len(keep.items) <= 2 * k + 64
    assert keep.result() == sorted(items)[:k]


@given(items=st.lists(st.tuples(st.integers(0, 20), st.integers()), unique_by=lambda t: t[1]), k=st.integers(1, 8))
def test_smallest_says_beforehand_whether_it_keeps_an_item(items, k) -> None:
    """The scan makes a record's slim copy only for a list that keeps it: ``wants``
    of an item's ordering fields says what ``add`` of the whole item does."""
    keep: scan_mod.Smallest[tuple[int, int, dict]] = scan_mod.Smallest(k)
    for a, b in items:
        item = (a, b, {"record": b})  # never compared: (a, b) is unique
        above = keep._above
        assert keep.wants((a, b)) == (above is None or item < above)
        keep.add(item)
    assert keep.result() == sorted((a, b, {"record": b}) for a, b in items)[:k]


bar = st.tuples(st.sampled_from(["w0", "w1"]), st.floats(0, 100), st.floats(0, 5), st.sampled_from(["ok", "error"]))


@given(bars=st.lists(bar, min_size=1, max_size=300))
def test_the_timeline_merged_as_it_grows_is_merged_once_at_the_end(bars) -> None:
    """Merging with the resolution known so far, then again with the final one,
    draws what merging every bar with the final one draws."""
    with mock.patch.multiple(scan_mod, MERGE_ABOVE=5, PIXELS=10):
        tl = scan_mod.Timeline()
        tl.workers = {"w0": None, "w1": None}
        full = []
        for w, start, length, status in bars:
            tl.add(w, start, start + length, status)
            full.append((w, start, start + length, status))
        got = tl.final()
    t0 = min(b[1] for b in full)
    span = max(b[2] for b in full) - t0
    shifted = [(w, s - t0, e - t0, st_) for w, s, e, st_ in full]
    want = merge_bars(shifted, span / 10) if len(full) > 5 else shifted
    assert sorted(got) == sorted(want) or _same_cover(got, want)


def _same_cover(a, b, eps=1e-6) -> bool:
    """Float shifts aside (times are made relative at the end), the same bars."""
    if len(a) != len(b):
        return False
    return all(x[0] == y[0] and x[3] == y[3] and abs(x[1] - y[1]) < eps and abs(x[2] - y[2]) < eps
               for x, y in zip(sorted(a), sorted(b)))  # fmt: skip


def test_memory_does_not_grow_with_the_trials(tmp_path: Path) -> None:
    """A bundle four times larger costs the pass at most a few fixed-size numbers
    per trial more (the arrays), not a record per trial (~1-2 kB each)."""
    peaks = []
    for n in (8000, 32000):
        bundle = make_bundle(tmp_path / f"n{n}", n, workers=2)
        tracemalloc.start()
        run = load_run(bundle)
        run.top_points(20)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    per_trial = (peaks[1] - peaks[0]) / 24000
    assert per_trial < 200, f"{per_trial:.0f} bytes more per trial ({peaks})"
