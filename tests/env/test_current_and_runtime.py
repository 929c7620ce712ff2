"""The current interpreter as an environment, and comparing what workers run."""

from __future__ import annotations

import hashlib
import importlib.metadata
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from runner.env import (
    LockedEnv,
    check_lock,
    create_env,
    env_kind,
    load_env,
    lock_path_for,
    worker_packages_mismatch,
)
from runner.env.runtime import runtime_additions

CURRENT = SimpleNamespace(kind="current", current=True)


def test_current_env_is_a_freeze_of_this_interpreter() -> None:
    locked = load_env(CURRENT)
    assert locked.kind == "current" and locked.lock_file is None
    assert locked.packages["scikit-learn"] == importlib.metadata.version("scikit-learn")
    assert locked.packages["py-rattler"] == importlib.metadata.version("py-rattler")
    lines = locked.freeze.splitlines()
    assert lines == sorted(lines) and "distributed==" + locked.packages["distributed"] in lines
    assert locked.lock_hash == hashlib.sha256(locked.freeze.encode()).hexdigest()
    assert load_env(CURRENT).lock_hash == locked.lock_hash
    assert check_lock(CURRENT)[0]
    assert create_env(locked) == Path(sys.executable)


def test_env_kind_reads_the_model_or_its_fields() -> None:
    assert env_kind(CURRENT) == "current"
    assert env_kind(SimpleNamespace(conda=Path("/x.yml"), platforms=["linux-64"])) == "conda"
    assert env_kind(SimpleNamespace(pip=Path("/x.in"))) == "pip"


def test_lock_paths() -> None:
    assert lock_path_for(Path("/e/sklearn.yml"), "conda") == Path("/e/sklearn.conda-lock.yml")
    assert lock_path_for(Path("/e/env.yaml"), "conda") == Path("/e/env.conda-lock.yml")
    assert lock_path_for(Path("/e/sklearn.in"), "pip") == Path("/e/sklearn.lock")
    assert lock_path_for(Path("/e/requirements.txt"), "pip") == Path("/e/requirements.lock")


def test_worker_packages_mismatch_normalizes_names() -> None:
    locked = LockedEnv(
        kind="pip",
        lock_hash="0" * 64,
        packages={"scikit-learn": "1.5.2", "numpy": "2.4.6", "dask": "2026.8.0"},
    )
    reported = {"scikit_learn": "1.9.1", "NumPy": "2.4.6", "dask": "2026.08.0", "extra": "1"}
    assert worker_packages_mismatch(locked, reported) == ["scikit-learn: lock 1.5.2, worker 1.9.1"]


@pytest.mark.parametrize(
    ("kind", "named", "added"),
    [
        ("pip", {"scikit-learn"}, ["distributed", "dask"]),
        ("pip", {"Dask"}, ["distributed"]),
        ("pip", {"distributed"}, []),
        ("conda", {"python"}, ["distributed", "dask-core"]),
        ("conda", {"dask-core"}, ["distributed"]),
    ],
)
def test_runtime_additions(kind: str, named: set[str], added: list[str]) -> None:
    version = importlib.metadata.version("distributed")
    assert runtime_additions(kind, named) == [f"{n}=={version}" for n in added]
