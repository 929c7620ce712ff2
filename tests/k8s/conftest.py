"""Specs and a fake API endpoint for the kubernetes backend tests.

Specs are validated by the real pydantic models with paths resolved under a
fixed ``/project`` (so snapshots do not depend on where tests run); the
semantic checks that look at files are skipped, which rendering does not need.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.spec import Spec

from .fake_apiserver import FakeApiServer

PROJECT = Path("/project")
RUN_ID = "iris-svm-20261123T150102Z-3f9a1c"
IMAGE = "registry.example.com/me/xrun/iris-svm@sha256:" + "3" * 64
PYTHON = "/opt/xrun/env/bin/python"

BASE: dict[str, Any] = {
    "xrun": 1,
    "name": "iris-svm",
    "environment": {"pip": "envs/sklearn.in"},
    "image": {"registry": "registry.example.com/me/xrun"},
    "trial": {"function": "experiments.iris:train"},
    "cluster": {"backend": "kubernetes", "workers": 2, "threads_per_worker": 1, "memory_limit": "2GiB"},
}


def make_spec(raw: dict[str, Any] | None = None, base: Path = PROJECT, **top: Any) -> Spec:
    """A Spec from ``BASE`` deep-merged with ``raw`` and top-level keys."""
    data = copy.deepcopy(BASE)
    _merge(data, copy.deepcopy(raw or {}))
    data.update(top)
    return Spec.model_validate(data, context={"base": base})


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


# The specs whose manifests are snapshot-tested (tests/snapshots/k8s/<case>.yaml).
CASES: dict[str, dict[str, Any]] = {
    "basic": {},
    "full": {
        "cluster": {
            "workers": 3, "threads_per_worker": 2, "memory_limit": "3GiB",
            "kubernetes": {"namespace": "ml", "spot": True, "node_selector": {"pool": "cpu"}},
        },
        "secrets": ["WANDB_API_KEY", "HF_TOKEN"],
        "data": {"iris": {"path": "data/iris.csv"}},
    },
    "operator": {
        "cluster": {"kubernetes": {"namespace": "ml", "operator": True}},
        "secrets": ["WANDB_API_KEY"],
    },
    "no-memory-limit": {"cluster": {"memory_limit": None, "threads_per_worker": 4, "workers": 1}},
    "volumes": {
        "cluster": {"kubernetes": {"volumes": [
            {"name": "training-data", "claim": "filestore-data", "mount_path": "/mnt/data"},
            {"name": "scratch", "nfs": {"server": "10.0.0.2", "path": "/exports/scratch"},
             "mount_path": "/mnt/scratch", "read_only": False},
        ]}},
        "data": {"train": {"path": "/mnt/data/train.parquet", "sha256": "ab" * 32},
                 "iris": {"path": "data/iris.csv"}},
    },
}
LONG_NAME = "a" * 10 + "-very-long-experiment-name-" + "z" * 3  # 40 characters, the maximum
LONG_RUN_ID = f"{LONG_NAME}-20261123T150102Z-abcdef"  # 64 characters: too long for a label


def case_spec(case: str) -> Spec:
    return make_spec(CASES[case])


@pytest.fixture
def fake_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApiServer]:
    """A fake API endpoint and a kubeconfig (via KUBECONFIG) that points at it."""
    server = FakeApiServer().start()
    monkeypatch.setenv("KUBECONFIG", str(server.kubeconfig(tmp_path / "kubeconfig")))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    try:
        yield server
    finally:
        server.stop()
