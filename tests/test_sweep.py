"""Sweep expansion, seeds and trial keys."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from runner.spec import Sweep
from runner.sweep import canonical_json, count, derive_seed, expand, trial_key


def sweep(**kw) -> Sweep:
    return Sweep.model_validate(kw)


def test_grid_is_the_cartesian_product_in_order() -> None:
    s = sweep(method="grid", parameters={"C": [0.1, 1], "kernel": ["linear", "rbf"]})
    pts = [t.params for t in expand(s)]
    assert pts == [
        {"C": 0.1, "kernel": "linear"},
        {"C": 0.1, "kernel": "rbf"},
        {"C": 1, "kernel": "linear"},
        {"C": 1, "kernel": "rbf"},
    ]
    assert count(s) == 4
    assert [t.id for t in expand(s)] == ["t00000", "t00001", "t00002", "t00003"]


def test_seed_derivation_matches_the_documented_formula() -> None:
    params = {"C": 0.1, "kernel": "rbf"}
    text = "xrun-seed-v1\0" + "42" + "\0" + '{"C":0.1,"kernel":"rbf"}' + "\0" + "0"
    expected = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF
    assert derive_seed(42, params, 0) == expected
    # pinned value: machine- and version-independent
    assert derive_seed(42, params, 0) == 201964044


def test_repeats_get_distinct_seeds_and_points_keep_theirs_when_the_grid_widens() -> None:
    small = {t.params["C"]: t.seed for t in expand(sweep(parameters={"C": [1, 2]}))}
    wide = {t.params["C"]: t.seed for t in expand(sweep(parameters={"C": [0.5, 1, 2, 4]}))}
    assert small[1] == wide[1] and small[2] == wide[2]
    reps = list(expand(sweep(parameters={"C": [1]}, repeats=3)))
    assert len(reps) == 3 and len({t.seed for t in reps}) == 3
    assert [t.repeat for t in reps] == [0, 1, 2]


def test_random_sampling_is_reproducible_and_within_bounds() -> None:
    s = sweep(
        method="random",
        samples=200,
        seed=3,
        parameters={
            "lr": {"loguniform": [1e-4, 1e-1]},
            "drop": {"uniform": [0.0, 0.5]},
            "layers": {"int": [1, 4]},
            "act": ["relu", "tanh"],
        },
    )
    a = [t.params for t in expand(s)]
    b = [t.params for t in expand(s)]
    assert a == b and len(a) == 200
    assert all(1e-4 <= p["lr"] <= 1e-1 and 0 <= p["drop"] <= 0.5 for p in a)
    assert {p["layers"] for p in a} == {1, 2, 3, 4}
    assert {p["act"] for p in a} == {"relu", "tanh"}
    other = [t.params for t in expand(s.model_copy(update={"seed": 4}))]
    assert other != a


def test_random_first_draw_is_pinned() -> None:
    # random.Random(seed).random() is stable across Python versions and platforms.
    s = sweep(method="random", samples=1, seed=0, parameters={"x": {"uniform": [0, 1]}})
    assert next(expand(s)).params["x"] == pytest.approx(0.8444218515250481, abs=0)


def test_list_method_takes_points_as_given() -> None:
    s = sweep(method="list", points=[{"C": 1, "kernel": "rbf"}, {"C": 5}])
    assert [t.params for t in expand(s)] == [{"C": 1, "kernel": "rbf"}, {"C": 5}]


def test_trial_key_changes_with_each_input() -> None:
    base = dict(params={"C": 1}, seed=1, definition={"function": "m:f"}, code_hash="c", env_hash="e", data_hashes={"d": "h"})
    k = trial_key(**base)
    assert len(k) == 64 and k == trial_key(**base)
    for field, value in [("params", {"C": 2}), ("seed", 2), ("definition", {"function": "m:g"}),
                         ("code_hash", "c2"), ("env_hash", "e2"), ("data_hashes", {"d": "h2"})]:  # fmt: skip
        assert trial_key(**{**base, field: value}) != k, field


def test_canonical_json_is_order_independent() -> None:
    assert canonical_json({"b": 1, "a": [1.5, "x"]}) == canonical_json({"a": [1.5, "x"], "b": 1})
    assert json.loads(canonical_json({"a": 0.1})) == {"a": 0.1}


# ------------------------------------------------------------------ order-free identity (sweep version 2)

FIXTURES = Path(__file__).resolve().parent / "data" / "bundles"


def test_grid_and_random_points_do_not_depend_on_parameter_order() -> None:
    grid = {"zeta": [1, 2], "alpha": ["a", "b", "c"], "mid": [True]}
    rand = {"zeta": {"uniform": [0, 1]}, "alpha": ["a", "b"], "mid": {"int": [1, 9]}, "beta": {"loguniform": [1e-3, 1]}}
    for method, params, extra in (("grid", grid, {}), ("random", rand, {"samples": 5})):
        reordered = dict(reversed(list(params.items())))
        a = [(t.id, t.params, t.seed) for t in expand(sweep(method=method, parameters=params, seed=9, **extra))]
        b = [(t.id, t.params, t.seed) for t in expand(sweep(method=method, parameters=reordered, seed=9, **extra))]
        assert a == b
        assert all(list(p) == sorted(p) for _, p, _ in a)  # what the trial receives is ordered too


def test_mappings_inside_points_and_values_are_normalized() -> None:
    s1 = sweep(method="list", points=[{"b": 1, "a": {"y": 2, "x": [{"q": 1, "p": 2}]}}])
    s2 = sweep(method="list", points=[{"a": {"x": [{"p": 2, "q": 1}], "y": 2}, "b": 1}])
    (t1,), (t2,) = list(expand(s1)), list(expand(s2))
    assert (t1.params, t1.seed) == (t2.params, t2.seed)
    assert json.dumps(t1.params) == json.dumps(t2.params) == '{"a": {"x": [{"p": 2, "q": 1}], "y": 2}, "b": 1}'


def _recorded(fixture: str) -> tuple[dict, list[dict]]:
    root = FIXTURES / fixture
    rows = [json.loads(line) for line in (root / "trials.jsonl").read_text().splitlines()]
    return json.loads((root / "spec.resolved.json").read_text()), rows


def test_version_1_expansion_and_keys_are_kept_for_old_bundles() -> None:
    """xrun 0.1.0 wrote tests/data/bundles/v1-random-order from `zeta, mid, alpha` in that order."""
    resolved, rows = _recorded("v1-random-order")
    written = {k: resolved["sweep"]["parameters"][k] for k in ("zeta", "mid", "alpha")}
    s = sweep(**{**{k: v for k, v in resolved["sweep"].items() if v is not None}, "parameters": written})
    old = list(expand(s, version=1))
    assert [(t.id, t.params, t.seed) for t in old] == [(r["id"], r["params"], r["seed"]) for r in rows]
    meta = json.loads((FIXTURES / "v1-random-order" / "bundle.json").read_text())
    definition = {k: v for k, v in resolved["trial"].items() if k not in ("timeout", "retries")}
    for t, r in zip(old, rows):
        common = dict(params=t.params, seed=t.seed, definition=definition, code_hash=meta["code_hash"],
                      env_hash=meta["env"]["lock_hash"], data_hashes={})  # fmt: skip
        assert trial_key(**common, version=1) == r["key"]
        assert trial_key(**common) != r["key"]  # version 2 keys are a new format
    assert [t.params for t in expand(s)] != [t.params for t in old]  # version 2 draws in sorted order
