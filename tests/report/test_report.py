"""report.html: every section, failures, the reproduction verdict, self-containment,
escaping, determinism and speed."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from runner.bundle.manifest import verify, write_manifest
from runner.errors import UsageError
from runner.report import REPORT_FILE, render_report, write_report
from tests.report.synth import SECTIONS, make_bundle


def section(page: str, anchor: str) -> str:
    """The HTML of one ``<section id=anchor>``."""
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
    assert match, f"no section {anchor!r}"
    return match.group(1)


def plots(text: str) -> int:
    return len(re.findall(r'<svg [^>]*class="plot"', text))


def assert_self_contained(page: str) -> None:
    # No attribute or CSS rule points anywhere: no src/href but in-page anchors
    # and data: URIs, no url(...) but data:, no @import.
    for attr, value in re.findall(r'\b(src|href|xlink:href)\s*=\s*["\']([^"\']*)["\']', page):
        assert value.startswith(("#", "data:")), f"{attr}={value!r}"
    assert not re.search(r"url\(\s*['\"]?(?!data:|#)", page)
    assert "@import" not in page
    assert not re.search(r"<(link|iframe|object|embed)\b", page, re.I)
    assert not re.search(r"<script[^>]*\bsrc=", page, re.I)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_quickstart_report_has_every_section(quickstart_bundle: Path, copy_bundle) -> None:
    bundle = copy_bundle(quickstart_bundle)
    path = write_report(bundle)
    assert path == bundle / REPORT_FILE
    page = path.read_text(encoding="utf-8")
    meta = json.loads((bundle / "bundle.json").read_text())
    for anchor in SECTIONS:
        section(page, anchor)
    assert "could not be rendered" not in page
    run = section(page, "run")
    assert meta["run_id"] in run and "local" in run and ">6<" in run
    assert "sklearn.svm.SVC" in run
    best = section(page, "best")
    assert meta["best"]["trial"] in best and "accuracy" in best
    assert best.count("<tr") == 1 + 6  # header + the 6 trials, best first
    assert re.search(
        r'<tr class="best"><td[^>]*>1</td><td class="mono">' + meta["best"]["trial"], best
    )
    # C (numeric, log axis) and kernel (categorical) each get a plot.
    objective = section(page, "objective")
    assert plots(objective) == 2
    assert 'aria-label="accuracy against C"' in objective and "C (log)" in objective
    assert 'aria-label="accuracy against kernel"' in objective
    assert plots(section(page, "parallel")) == 1
    timeline = section(page, "timeline")
    assert plots(timeline) == 1 and "6 trials on 2 workers" in timeline
    assert "No trial failed." in section(page, "failures")
    env = section(page, "environment")
    lock = json.loads((bundle / "env" / "env.json").read_text())["lock_hash"]
    assert lock in env and "current" in env and "scikit-learn" in env
    assert "2</td>" in env  # both workers, grouped
    assert "not a reproduction" in section(page, "reproduction")
    assert plots(page) == 4
    assert_self_contained(page)


def test_failed_trials_are_listed_with_their_messages(failing_bundle: Path, copy_bundle) -> None:
    page = render_report(copy_bundle(failing_bundle))
    failures = section(page, "failures")
    # Both messages, escaped, grouped by class and message, and per trial.
    assert "ValueError: bad &lt;value&gt; &amp; 2 for the demo" in failures
    assert "ZeroDivisionError: division by zero" in failures
    assert "bad <value>" not in page
    assert failures.count('class="badge s-error">error<') >= 2
    assert "t00001" in failures and "t00003" in failures
    assert "Traceback" in failures  # the traceback, under each failed trial
    assert "mode=raise" in failures
    tiles = section(page, "run")
    assert re.search(r'<div class="tile bad"><div class="k">failed</div><div class="v">2<', tiles)
    # Failed trials are marked on the objective plots, and drawn on the timeline.
    assert "× in the shaded band a failed trial (2)" in section(page, "objective")
    assert 'class="badge s-error"' in section(page, "trials")
    assert "could not be rendered" not in page
    assert_self_contained(page)


def test_failure_classes_and_restarted_timeouts(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "synth", 60, fail_every=5)
    records = [json.loads(line) for line in (bundle / "trials.jsonl").read_text().splitlines()]
    # A timeout whose worker was restarted: no start, no worker (as execute records it).
    records[4].update(start=None, worker=None, status="timeout", failure_class="timeout")
    (bundle / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    page = render_report(bundle)
    failures = section(page, "failures")
    for cls in ("error", "timeout", "oom", "worker-lost"):
        assert f'class="badge s-{cls}">{cls}<' in failures
    assert "(restarted worker)" in section(page, "timeline")
    assert "t00004" in section(page, "timeline")


def test_reproduction_verdict_is_shown(tmp_path: Path) -> None:
    rows = [
        {"trial": "t00000", "metric": "score", "recorded": 0.91, "reproduced": 0.91, "delta": 0.0,
         "tolerance": 0.0, "match": True},
        {"trial": "t00000", "metric": "loss", "recorded": 0.09, "reproduced": 0.0901, "delta": 1e-4,
         "tolerance": 0.0, "match": False},
    ]  # fmt: skip
    mismatch = {
        "verdict": "mismatch",
        "rows": rows,
        "env_identical": False,
        "original_run_id": "synth-20260101T000000Z-000000",
        "environment": "rebuilt from the bundle's pip lock <hash>",
        "problems": ["t00007: the sweep no longer yields its recorded params and seed"],
    }
    page = render_report(make_bundle(tmp_path / "a", 10, reproduce=mismatch))
    rep = section(page, "reproduction")
    assert 'class="badge s-mismatch">mismatch<' in rep and "1 of 2 values match" in rep
    assert 'class="badge s-differs">differs<' in rep
    assert "synth-20260101T000000Z-000000" in rep and "&lt;hash&gt;" in rep
    assert "no longer yields" in rep and "✗ differs" in rep and "✓ match" in rep
    assert 'class="badge s-mismatch">mismatch<' in section(page, "run")  # a header tile too

    match = {"verdict": "match", "rows": rows[:1], "env_identical": True}
    rep = section(render_report(make_bundle(tmp_path / "b", 10, reproduce=match)), "reproduction")
    assert 'class="badge s-match">match<' in rep and 'class="badge s-identical">identical<' in rep
    assert "1 of 1 values match" in rep

    bare = {"verdict": "error", "rows": [], "env_identical": None}
    rep = section(render_report(make_bundle(tmp_path / "c", 10, reproduce=bare)), "reproduction")
    assert ">error<" in rep and "not compared" in rep


def test_user_text_is_escaped(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "synth", 20, fail_every=3)
    page = render_report(bundle)
    assert "<script>alert" not in page and "<i>for tests</i>" not in page
    assert "&lt;i&gt;for tests&lt;/i&gt;" in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    # The only script is the report's own, allowed by its hash in the CSP.
    assert page.count("<script") == 1
    assert_self_contained(page)


def test_output_is_deterministic(quickstart_bundle: Path, copy_bundle, tmp_path: Path) -> None:
    bundle = copy_bundle(quickstart_bundle)
    first = render_report(bundle)
    assert render_report(bundle) == first
    code = "import sys; from runner.report import render_report; sys.stdout.write(render_report(sys.argv[1]))"
    out = subprocess.run(
        [sys.executable, "-c", code, str(bundle)], capture_output=True, text=True, check=True
    )
    assert out.stdout == first


def test_write_report_then_manifest_keeps_the_bundle_verifiable(
    quickstart_bundle: Path, copy_bundle
) -> None:
    bundle = copy_bundle(quickstart_bundle)
    write_report(bundle)
    write_manifest(bundle)
    result = verify(bundle)
    assert result.ok, result
    assert REPORT_FILE in (bundle / "MANIFEST.sha256").read_text()
    assert not list(bundle.glob("*.tmp"))


def test_a_thousand_trials_render_completely(tmp_path: Path) -> None:
    # Render speed is a benchmark figure (bench/RESULTS.md), not asserted here.
    bundle = make_bundle(tmp_path / "big", 1000, workers=8, cached_every=25)
    page = render_report(bundle)
    assert plots(page) == 4 + 1 + 1  # 4 parameters, parallel coordinates, timeline
    assert "1000 trials" in section(page, "trials")
    assert "36 trials came from the cache" in section(page, "timeline")
    assert len(page) < 3_000_000


def test_very_large_sweeps_rasterize_dense_layers(tmp_path: Path) -> None:
    page = render_report(make_bundle(tmp_path / "huge", 3000, workers=16, fail_every=0))
    # Dense layers become one embedded PNG each instead of thousands of SVG elements.
    assert page.count("data:image/png;base64,") >= 4
    assert len(page) < 6_000_000
    assert_self_contained(page)


@pytest.mark.parametrize(
    "case",
    ["no-trials", "all-failed", "one-trial", "no-objective", "odd-params", "no-times"],
)
def test_unusual_bundles_still_render(tmp_path: Path, case: str) -> None:
    n = {"no-trials": 0, "one-trial": 1}.get(case, 12)
    bundle = make_bundle(tmp_path / case, n, fail_every=1 if case == "all-failed" else 4)
    records = [json.loads(line) for line in (bundle / "trials.jsonl").read_text().splitlines()]
    if case == "no-objective":
        meta = json.loads((bundle / "bundle.json").read_text())
        meta["best"] = None
        (bundle / "bundle.json").write_text(json.dumps(meta))
        resolved = json.loads((bundle / "spec.resolved.json").read_text())
        resolved["sweep"]["objective"] = None
        (bundle / "spec.resolved.json").write_text(json.dumps(resolved))
    if case == "odd-params":  # method: list points can hold anything
        values = [None, True, {"a": [1, 2]}, "x" * 80, 3, 2.5, "$5 & <b>", "a $x^{$ b"]
        for i, r in enumerate(records):
            r["params"] = {"mixed": values[i % len(values)], **({"only_some": i} if i % 2 else {})}
    if case == "no-times":
        for r in records:
            r.update(start=None, end=None, worker=None)
    (bundle / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    page = render_report(bundle)
    for anchor in SECTIONS:
        section(page, anchor)
    assert "could not be rendered" not in page
    if case == "no-objective":
        assert plots(section(page, "objective")) > 0  # falls back to the first metric
    if case == "all-failed":
        assert "No trial succeeded." in section(page, "best")
    assert_self_contained(page)


def test_not_a_bundle_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a bundle"):
        render_report(tmp_path)
    (tmp_path / "bundle.json").write_text(json.dumps({"bundle_version": 99}))
    with pytest.raises(UsageError, match="bundle version 99 is not supported"):
        write_report(tmp_path)
    assert not (tmp_path / REPORT_FILE).exists()


def test_importing_the_report_module_is_cheap() -> None:
    code = "import sys, runner.report; print(sorted(m for m in ('matplotlib', 'numpy', 'distributed') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_escaping_helpers_cover_attributes() -> None:
    from runner.report import html as h

    assert h.esc('"><img src=x>') == "&quot;&gt;&lt;img src=x&gt;"
    assert html.unescape(h.mono("a" * 50, 10)).count("a") == 60


def test_without_matplotlib_the_report_still_has_its_tables(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from runner.report import render_report\n"
        "sys.stdout.write(render_report(sys.argv[1]))"
    )
    bundle = make_bundle(tmp_path / "synth", 12)
    out = subprocess.run(
        [sys.executable, "-c", code, str(bundle)], capture_output=True, text=True, check=True
    )
    page = out.stdout
    assert "Plots need matplotlib" in section(page, "objective")
    assert "t00000" in section(page, "trials") and plots(page) == 0


def test_final_model_section_shows_holdout_metrics_and_hash_escaped(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", n=6)
    evil = "<script>alert('x')</script>"
    sha = "ab" * 32
    (bundle / "stages.json").write_text(json.dumps({
        "prepare": {"status": "ok", "cached": True, "cached_from": evil, "key": "k" * 64, "files": {"t.json": "1" * 64}, "digest": "d" * 64},
        "final": {"status": "ok", "cached": False, "key": "f" * 64, "files": {"model.skops": sha}, "digest": "e" * 64},
    }))  # fmt: skip
    (bundle / "final.json").write_text(json.dumps({
        "status": "ok", "metrics": {"accuracy": 0.9375, evil: 1.0}, "files": {"model.skops": sha},
        "best": {"params": {"C": 1}, "metric": "accuracy", "value": 0.91, "n": 2},
        "model": {"path": "stages/final/artifacts/model.skops", "sha256": sha, "format": "skops", "untrusted_types": [evil]},
        "holdout": {"fraction": 0.2, "n_holdout": 32, "n_train": 128, "stratified": True, "seed": 0},
    }))  # fmt: skip
    page = render_report(bundle)
    part = section(page, "stages")
    assert "Final model" in part and sha in part and "0.9375" in part and "32 held out" in part
    assert evil not in page and html.escape(evil, quote=True) in part
    assert "could not be rendered" not in page
    # without stages: a short note, no error
    plain = render_report(make_bundle(tmp_path / "plain", n=3))
    assert "no prepare or final stage" in section(plain, "stages")
