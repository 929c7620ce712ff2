"""Values that used to pass `validate` and then crash a run as `internal error`:
each is refused at validate with file:line and exit 2, and every value a spec
accepts survives planning (canonical JSON, seeds, trial keys)."""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner import sweep as sweep_mod
from runner.cli import main
from runner.errors import SpecError
from runner.spec import loads_spec

GOOD = """\
xrun: 1
name: bounds
trial:
  function: experiments.train:run
sweep:
  method: grid
  parameters:
    C: [0.1, 1]
"""
RANDOM = GOOD.replace("method: grid", "method: random\n  samples: 3")

# (id, spec text, fragments of the message); each was accepted by validate before.
ATTACKS: list[tuple[str, str, list[str]]] = [
    ("5000-digit-workers", GOOD + "cluster:\n  workers: " + "9" * 5000 + "\n", ["spec.yaml:10", "is too large"]),
    ("memory-limit-overflow", GOOD + "cluster:\n  memory_limit: " + "9" * 400 + ".5GiB\n",
     [":10 cluster.memory_limit", "larger than the limit of 1 PiB"]),
    ("memory-limit-huge-int", GOOD + "cluster:\n  memory_limit: " + "9" * 30 + "\n",
     [":10 cluster.memory_limit", "larger than the limit"]),
    ("nan-parameter", GOOD.replace("C: [0.1, 1]", "C: [0.1, .nan]"), [":8 sweep.parameters.C[1]", "not a finite number"]),
    ("inf-in-nested-value", GOOD.replace("C: [0.1, 1]", "C:\n      - [1, {b: -.inf}]"),
     [":9 sweep.parameters.C[0]", "not a finite number"]),
    ("datetime-parameter", GOOD.replace("C: [0.1, 1]", "C: [2024-01-02T03:04:05Z]"),
     [":8 sweep.parameters.C[0]", "datetime", "quote a date"]),
    ("date-in-points", GOOD.replace("method: grid\n  parameters:\n    C: [0.1, 1]", "method: list\n  points:\n    - {day: 2024-01-02}"),
     [":8 sweep.points[0].day", "date"]),
    ("binary-parameter", GOOD.replace("C: [0.1, 1]", "C: [!!binary aGVsbG8=]"), [":8 sweep.parameters.C[0]", "bytes"]),
    ("huge-int-parameter", GOOD.replace("C: [0.1, 1]", "C: [" + "9" * 40 + "]"), [":8 sweep.parameters.C[0]", "64-bit"]),
    ("nan-sklearn-param", "xrun: 1\nname: bounds\ntrial:\n  sklearn:\n    estimator: sklearn.svm.SVC\n"
     "    dataset: 'sklearn.datasets:load_iris'\n    params: {C: .nan}\n", [":7 trial.sklearn.params.C", "not a finite number"]),
    ("uniform-infinite", RANDOM.replace("C: [0.1, 1]", "C: {uniform: [-.inf, .inf]}"),
     ["sweep.parameters.C.uniform[0]", "finite number"]),
    ("uniform-too-wide", RANDOM.replace("C: [0.1, 1]", "C: {uniform: [-1.0e+308, 1.0e+308]}"),
     [":9 sweep.parameters.C", "too wide"]),
    ("int-range-beyond-64-bit", RANDOM.replace("C: [0.1, 1]", "C: {int: [0, " + "9" * 30 + "]}"),
     ["sweep.parameters.C.int[1]"]),
    ("infinite-timeout", GOOD.replace("trial:\n", "trial:\n  timeout: .inf\n"), [":4 trial.timeout", "finite"]),
    ("century-timeout", GOOD.replace("trial:\n", "trial:\n  timeout: 1.0e+300\n"), [":4 trial.timeout", "366 days"]),
    ("absolute-include-glob", GOOD + "code:\n  include: ['/etc/*']\n", [":10 code.include[0]", "is absolute"]),
    ("absolute-exclude-glob", GOOD + "code:\n  exclude: ['/tmp/**']\n", [":10 code.exclude[0]", "is absolute"]),
    ("broken-glob", GOOD + "code:\n  include: ['src/a**b']\n", [":10 code.include[0]", "whole path component"]),
    ("empty-glob", GOOD + "code:\n  exclude: ['.']\n", [":10 code.exclude[0]", "matches nothing"]),
    ("version-true", GOOD.replace("xrun: 1", "xrun: true"), [":1 xrun", "expected the integer 1, got boolean"]),
    ("version-float", GOOD.replace("xrun: 1", "xrun: 1.0"), [":1 xrun", "expected the integer 1"]),
    ("invalid-month", GOOD.replace("C: [0.1, 1]", "C: [2024-13-45]"), ["spec.yaml:8", "invalid timestamp", "quote it"]),
    ("output-is-a-file", GOOD + "output: notes.txt\n", [":9 output", "notes.txt is a file, not a directory"]),
    ("output-below-a-file", GOOD + "output: notes.txt/runs\n", [":9 output", "is a file"]),
]


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "train.py").write_text("def run(params, ctx):\n    return {}\n")
    (tmp_path / "notes.txt").write_text("not a directory\n")
    return tmp_path


@pytest.mark.parametrize("case", ATTACKS, ids=[c[0] for c in ATTACKS])
def test_value_that_crashed_later_is_refused_at_validate(case, proj: Path, capsys, monkeypatch) -> None:
    name, text, fragments = case
    monkeypatch.chdir(proj)
    (proj / "spec.yaml").write_text(text)
    with pytest.raises(SystemExit) as exc:
        main(["validate", "spec.yaml"])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert err.startswith("error: spec.yaml"), err
    assert "internal error" not in err and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"


def test_output_that_is_a_file_from_the_command_line_is_a_clean_error(proj: Path, run_xrun) -> None:
    (proj / "spec.yaml").write_text(GOOD.replace("C: [0.1, 1]", "C: [1]"))
    (proj / "experiments" / "train.py").write_text("def run(params, ctx):\n    return {'x': 1.0}\n")
    r = run_xrun("run", "spec.yaml", "--output", "notes.txt", cwd=proj)
    assert r.code == 2, r.err
    assert "notes.txt" in r.err and "not a directory" in r.err
    assert "internal error" not in r.err and "Traceback" not in r.err


def test_a_legitimate_250000_item_list_is_accepted(proj: Path) -> None:
    items = ",".join(str(i % 7) for i in range(250_000))
    loaded = loads_spec(GOOD.replace("C: [0.1, 1]", f"C: [{items}]"), proj / "spec.yaml")
    assert len(loaded.spec.sweep.parameters["C"]) == 250_000


def test_an_alias_bomb_is_still_refused_however_small(proj: Path) -> None:
    levels = ["a: &a [x,x,x,x,x,x,x,x,x,x]"]
    for i, name in enumerate("bcdefg"):
        prev = "abcdefg"[i]
        levels.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]")
    text = GOOD + "\n".join(levels) + "\n"  # 10^7 values from 400 bytes
    with pytest.raises(SpecError, match="alias bomb"):
        loads_spec(text, proj / "spec.yaml")


def test_aliases_and_merge_keys_within_budget_still_work() -> None:
    from runner import _yaml

    text = "base: &base {a: [1, 2], b: 3}\npoints:\n" + "".join(f"  - {{<<: *base, i: {i}}}\n" for i in range(2000))
    value, lines = _yaml.load(text, "spec.yaml")
    assert value["points"][1999] == {"a": [1, 2], "b": 3, "i": 1999}
    assert lines[("points", 1999)] == 2002


def test_bundle_json_that_is_a_list_does_not_break_ls(proj: Path, capsys) -> None:
    runs = proj / "runs"
    (runs / "evil").mkdir(parents=True)
    (runs / "evil" / "bundle.json").write_text("[1, 2, 3]")
    with pytest.raises(SystemExit) as exc:
        main(["ls", str(runs)])
    captured = capsys.readouterr()
    assert exc.value.code in (0, None), captured.err
    assert "internal error" not in captured.err
    with pytest.raises(SystemExit) as exc:
        main(["show", str(runs / "evil")])
    captured = capsys.readouterr()
    assert exc.value.code == 2 and "not a bundle" in captured.err, captured.err


# ---------------------------------------------------------------- property

_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.dates(), st.datetimes(timezones=st.just(datetime.timezone.utc)), st.binary(max_size=8),
)  # fmt: skip
_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(values=st.lists(_value, min_size=1, max_size=4), as_points=st.booleans())
def test_any_parameter_value_is_refused_or_plans(proj: Path, values: list, as_points: bool) -> None:
    """Property: a generated parameter value (dates, bytes, nan, huge ints, nested)
    is either refused with a SpecError or yields JSON-clean trial keys."""
    doc: dict = {"xrun": 1, "name": "prop", "trial": {"function": "experiments.train:run"}}
    if as_points:
        doc["sweep"] = {"method": "list", "points": [{"p": v} for v in values]}
    else:
        doc["sweep"] = {"method": "grid", "parameters": {"p": values}}
    text = yaml.safe_dump(doc, allow_unicode=True)
    try:
        loaded = loads_spec(text, proj / "spec.yaml")
    except SpecError as exc:
        assert exc.file is not None and exc.file.endswith("spec.yaml") and exc.line, exc.message
        return
    for point in sweep_mod.expand(loaded.spec.sweep):
        key = sweep_mod.trial_key(params=point.params, seed=point.seed, definition={}, code_hash="c",
                                  env_hash="e", data_hashes={})  # fmt: skip
        assert len(key) == 64
        # What the bundle journals reads back as the same value.
        assert json.loads(json.dumps(point.params, allow_nan=False)) == point.params
        for leaf in _leaves(point.params):
            assert not isinstance(leaf, float) or math.isfinite(leaf)


def _leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value
