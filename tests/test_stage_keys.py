"""Stage keys, stage cache entries and stage specs, without a cluster.

The end-to-end behaviour (prepare once, caching, holdout, reproduce) is in
tests/test_stages.py with real workers.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from runner._hashing import dir_digest
from runner.cache import TrialCache
from runner.stages import MAX_INPUT_BYTES, compare_stages, files_digest, lookup, store
from runner.sweep import trial_key

KEY_ARGS = {"params": {"x": 1}, "seed": 7, "definition": {"function": "m:f"}, "code_hash": "c", "env_hash": "e",
            "data_hashes": {"d": "0" * 64}}  # fmt: skip


def test_trial_keys_without_stage_inputs_are_the_keys_of_earlier_releases() -> None:
    # sha256 of the canonical JSON a trial key was before stages existed: cached results stay valid
    doc = {"code": "c", "data": {"d": "0" * 64}, "env": "e", "params": {"x": 1}, "seed": 7,
           "trial": {"function": "m:f"}, "v": "xrun-trial-key-v2"}  # fmt: skip
    old = hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert trial_key(**KEY_ARGS) == old
    assert trial_key(**KEY_ARGS, inputs={}) == old


@given(st.lists(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64), min_size=2, max_size=4, unique=True))
def test_every_distinct_prepare_output_gives_distinct_trial_keys(digests: list[str]) -> None:
    keys = {trial_key(**KEY_ARGS, inputs={"prepare": d}) for d in digests}
    assert len(keys) == len(digests)
    assert trial_key(**KEY_ARGS) not in keys


names = st.text(alphabet="abcXYZ_-.0", min_size=1, max_size=8).filter(lambda s: s not in (".", ".."))


@given(st.dictionaries(st.lists(names, min_size=1, max_size=3).map("/".join), st.binary(max_size=64), min_size=1, max_size=6))
def test_outputs_digest_equals_the_directory_digest_workers_and_data_use(tmp_path_factory, files: dict[str, bytes]) -> None:
    root = tmp_path_factory.mktemp("out")
    written: dict[str, str] = {}
    for rel, blob in files.items():
        path = root / rel
        if any(p.is_file() for p in [path, *path.parents] if p != root and p.is_relative_to(root)) or path.is_dir():
            continue  # a name that is both a file and a directory
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
        written[rel] = hashlib.sha256(blob).hexdigest()
    on_disk = {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in root.rglob("*") if p.is_file()}  # fmt: skip
    assert files_digest(on_disk) == dir_digest(root)


def _stored(tmp_path: Path) -> tuple[TrialCache, str]:
    cache = TrialCache(tmp_path / "cache")
    key = "ab" + "0" * 62
    result = {"metrics": {"rows": 3}, "log": "made it\n", "start": 1.0, "end": 2.0, "worker": "tcp://w"}
    store(cache, "prepare", key, result, [("table.json", b'{"offset": 5}'), ("sub/x.bin", b"\x00\x01")], "run-1")
    return cache, key


def test_a_stored_stage_comes_back_with_its_files(tmp_path: Path) -> None:
    cache, key = _stored(tmp_path)
    found = lookup(cache, key, MAX_INPUT_BYTES)
    assert found is not None
    entry, files = found
    assert dict(files) == {"sub/x.bin": b"\x00\x01", "table.json": b'{"offset": 5}'}
    assert entry["run_id"] == "run-1" and entry["metrics"] == {"rows": 3}
    assert entry["digest"] == files_digest({rel: hashlib.sha256(b).hexdigest() for rel, b in files})


def test_a_tampered_stage_file_is_a_miss(tmp_path: Path) -> None:
    cache, key = _stored(tmp_path)
    (cache.artifacts_dir(key) / "table.json").write_bytes(b'{"offset": 6}')
    assert lookup(cache, key, MAX_INPUT_BYTES) is None


def test_a_stage_entry_naming_a_path_outside_its_directory_is_a_miss(tmp_path: Path) -> None:
    cache, key = _stored(tmp_path)
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"not yours")
    entry = cache.get(key)
    assert entry is not None
    entry["files"] = {"../../../secret.txt": hashlib.sha256(b"not yours").hexdigest()}
    entry["digest"] = files_digest(entry["files"])
    with sqlite3.connect(cache.db_path) as conn:  # the entry as someone with write access to the cache left it
        conn.execute("UPDATE results SET body = ? WHERE key = ?", (json.dumps(entry).encode(), key))
    assert lookup(cache, key, MAX_INPUT_BYTES) is None


def test_a_linked_stage_file_is_a_miss(tmp_path: Path) -> None:
    cache, key = _stored(tmp_path)
    target = cache.artifacts_dir(key) / "table.json"
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(target.read_bytes())
    target.unlink()
    target.symlink_to(elsewhere)
    assert lookup(cache, key, MAX_INPUT_BYTES) is None


def test_stage_files_beyond_the_limit_are_a_miss(tmp_path: Path) -> None:
    cache, key = _stored(tmp_path)
    assert lookup(cache, key, 5) is None


def test_reproduced_stages_compare_by_hash_then_by_metrics() -> None:
    old = {"prepare": {"status": "ok", "digest": "a", "files": {"t": "1"}, "metrics": {}},
           "final": {"status": "ok", "digest": "b", "files": {"model.skops": "2"}, "metrics": {"accuracy": 0.9}}}  # fmt: skip
    same = json.loads(json.dumps(old))
    rows, problems = compare_stages(old, same, {})
    assert [(r["stage"], r["by"], r["match"]) for r in rows] == [("prepare", "sha256", True), ("final", "sha256", True)]
    assert problems == []
    new = json.loads(json.dumps(old))
    new["final"].update(digest="c", files={"model.skops": "3"}, metrics={"accuracy": 0.9004})
    rows, _ = compare_stages(old, new, {"accuracy": 0.001})
    assert rows[1]["by"] == "metrics" and rows[1]["match"] and rows[1]["differ"] == ["model.skops"]
    rows, _ = compare_stages(old, new, {})
    assert not rows[1]["match"]
    new["prepare"].update(digest="z", files={"t": "9"})
    rows, problems = compare_stages(old, new, {})
    assert rows[0] == {"stage": "prepare", "by": "sha256", "match": False, "recorded": "a", "reproduced": "z", "differ": ["t"]}
    assert "prepare stage: its files differ (t)" in problems[0]
    _, problems = compare_stages(old, {"final": {"status": "error", "error": "boom"}}, {})
    assert problems == ["prepare stage: did not run", "final stage: boom"]


@given(n=st.integers(20, 200), fraction=st.floats(0.1, 0.5), seed=st.integers(0, 2**32 - 1), classes=st.integers(2, 4))
def test_the_holdout_split_is_disjoint_complete_stratified_and_seeded(n: int, fraction: float, seed: int, classes: int) -> None:
    import numpy as np
    from sklearn.linear_model import LogisticRegression, Ridge

    from runner.worker.sklearn_trial import holdout_split

    X = np.arange(n, dtype=float).reshape(-1, 1)  # the row number: which rows went where
    y = np.array([i % classes for i in range(n)])
    sk = {"holdout": fraction, "holdout_seed": seed}
    X_train, X_hold, y_train, y_hold, facts = holdout_split(X, y, sk, LogisticRegression())
    train, hold = set(X_train[:, 0]), set(X_hold[:, 0])
    assert not train & hold and train | hold == set(range(n))
    assert facts == {"fraction": fraction, "seed": seed, "stratified": True, "n_train": len(train), "n_holdout": len(hold)}
    for c in range(classes):  # each class is held out in proportion (to one row)
        assert abs(int((y_hold == c).sum()) - (y == c).sum() * len(hold) / n) <= 1
    again = holdout_split(X, y, sk, LogisticRegression())
    assert np.array_equal(again[1], X_hold)  # the same rows every time: trials and the final stage agree
    assert holdout_split(X, y.astype(float), sk, Ridge())[4]["stratified"] is False


def test_a_saved_model_has_the_same_bytes_however_often_it_is_saved() -> None:
    import numpy as np
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    from runner.worker.stage import stable_skops

    X = np.random.RandomState(0).rand(60, 4)
    y = np.arange(60) % 3
    models = [RandomForestClassifier(n_estimators=3, random_state=1).fit(X, y) for _ in range(2)]
    raw = [sio.dumps(m) for m in models]
    assert raw[0] != raw[1]  # skops names objects by id(): each save differs
    stable = [stable_skops(b) for b in raw]
    assert stable[0] == stable[1]
    loaded = sio.loads(stable[0], trusted=sio.get_untrusted_types(data=stable[0]))
    assert np.array_equal(loaded.predict(X), models[0].predict(X))
    assert sorted(sio.get_untrusted_types(data=stable[0])) == sorted(sio.get_untrusted_types(data=raw[0]))
