"""Bundles for the report tests: real ones from the real `xrun`, and synthetic ones."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def pytest_configure(config: pytest.Config) -> None:
    # Also registered in pyproject.toml; repeated here so these tests stand alone.
    config.addinivalue_line("markers", "browser: needs headless chromium (required when CI=true)")


def run_spec(spec: Path, out: Path, cache: Path, *args: str) -> Path:
    """Run the real CLI on ``spec``; returns the bundle it printed last."""
    env = {**os.environ, "XRUN_CACHE_DIR": str(cache), "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "runner.cli", str(spec), "-o", str(out), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.stdout.strip(), proc.stderr
    bundle = Path(proc.stdout.strip().splitlines()[-1])
    assert (bundle / "bundle.json").is_file(), proc.stderr
    return bundle


@pytest.fixture(scope="session")
def quickstart_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quickstart spec as shipped, run once for all report tests (read-only)."""
    return run_spec(
        REPO / "specs" / "quickstart.yaml",
        tmp_path_factory.mktemp("qs-runs"),
        tmp_path_factory.mktemp("qs-cache"),
    )


FAILING_TRIAL = """
def train(params, ctx):
    print("mode", params["mode"])
    if params["mode"] == "raise":
        raise ValueError(f"bad <value> & {params['x']} for the demo")
    if params["mode"] == "zero":
        return {"score": 1 / params["x"]}
    return {"score": float(params["x"]), "other": 2.0}
"""


@pytest.fixture(scope="session")
def failing_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real function-trial run where some trials raise (read-only)."""
    root = tmp_path_factory.mktemp("failing-project")
    (root / "experiments").mkdir()
    (root / "experiments" / "__init__.py").write_text("")
    (root / "experiments" / "flaky.py").write_text(FAILING_TRIAL)
    spec = root / "spec.yaml"
    spec.write_text(
        textwrap.dedent(
            """
            xrun: 1
            name: failing
            code: {include: ["experiments/*.py"]}
            trial: {function: "experiments.flaky:train", retries: 1}
            sweep:
              method: list
              points:
                - {mode: ok, x: 1}
                - {mode: raise, x: 2}
                - {mode: ok, x: 3}
                - {mode: zero, x: 0}
                - {mode: ok, x: 5}
              objective: {metric: score, goal: maximize}
            cluster: {workers: 2}
            """
        )
    )
    return run_spec(spec, root / "runs", tmp_path_factory.mktemp("failing-cache"))


@pytest.fixture
def copy_bundle(tmp_path: Path):
    """A writable copy of a (session-scoped, shared) bundle."""

    def copy(bundle: Path) -> Path:
        target = tmp_path / bundle.name
        shutil.copytree(bundle, target)
        return target

    return copy


CURVES_TRIAL = """
import random


def train(params, ctx):
    rng = random.Random(ctx.seed)
    loss = 1.0
    for epoch in range(6):
        loss = loss * params["decay"] + rng.random() * 0.05
        ctx.log(epoch=epoch, loss=loss)
    return {"loss": loss, "acc": 1 - loss}
"""


@pytest.fixture(scope="session")
def repeats_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real function-trial run with repeats and ctx.log history (read-only)."""
    root = tmp_path_factory.mktemp("repeats-project")
    (root / "experiments").mkdir()
    (root / "experiments" / "__init__.py").write_text("")
    (root / "experiments" / "curves.py").write_text(CURVES_TRIAL)
    spec = root / "spec.yaml"
    spec.write_text(
        textwrap.dedent(
            """
            sweep:
              repeats: 3
              parameters: {decay: [0.5, 0.8]}
              objective: {goal: minimize, metric: loss}
            trial: {function: "experiments.curves:train"}
            code: {include: ["experiments/*.py"]}
            name: repeats
            xrun: 1
            cluster: {workers: 1}
            """
        )
    )
    return run_spec(spec, root / "runs", tmp_path_factory.mktemp("repeats-cache"))
