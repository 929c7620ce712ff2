"""Shared fixtures: an isolated trial cache, tiny projects, and the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]

# Hypothesis: `ci` (the default) keeps example counts small; `--hypothesis-profile=long` (or
# HYPOTHESIS_PROFILE=long) soaks the same properties. Tests that fix max_examples keep it;
# slow property tests scale theirs from the profile's.
settings.register_profile("ci", max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
settings.register_profile("long", max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.mktemp("xrun-cache")
    monkeypatch.setenv("XRUN_CACHE_DIR", str(cache))
    monkeypatch.setenv("DASK_LOGGING__DISTRIBUTED", "error")
    monkeypatch.delenv("XRUN_DEBUG", raising=False)
    return cache


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def bundle(self) -> Path:
        return Path(self.out.strip().splitlines()[-1])


def xrun(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300) -> Result:
    """Run the real `xrun` command in a subprocess."""
    proc = subprocess.run(
        [sys.executable, "-m", "runner", *map(str, args)],  # as the `xrun` script: runner._entry
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie waiting for its parent does not)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def descendants(pid: int, keep: Callable[[Any], bool]) -> list:
    """The processes under ``pid`` (all generations) that ``keep`` accepts;
    those that exit meanwhile are left out."""
    import psutil

    try:
        procs = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for p in procs:
        try:
            if keep(p):
                found.append(p)
        except psutil.Error:
            pass
    return found


def local_worker_processes(pid: int) -> list:
    """The Dask worker processes of the local clusters under ``pid``: each a
    child of its nanny (a ``dask_worker`` process), whether the nanny forked it
    (the same command line) or spawned it (``spawn_main``)."""

    def is_worker(p: Any) -> bool:
        parent = p.parent()
        return (parent is not None and "dask_worker" in " ".join(parent.cmdline())
                and "resource_tracker" not in " ".join(p.cmdline()))  # fmt: skip

    return descendants(pid, is_worker)


@pytest.fixture
def run_xrun():
    return xrun


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path):
    """A project directory with an `experiments` package; returns a writer."""
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "__init__.py").write_text("")
    (tmp_path / "pyproject.toml").write_text("[project]\nname='demo'\nversion='0'\n")

    class Project:
        root = tmp_path

        def file(self, rel: str, text: str) -> Path:
            return write(tmp_path / rel, text)

        def spec(self, text: str, name: str = "spec.yaml") -> Path:
            return write(tmp_path / name, text)

    return Project()


@pytest.fixture
def dask_cluster(tmp_path_factory: pytest.TempPathFactory):
    """`dask scheduler` + two `dask worker` processes from this interpreter, as a
    user would start them (in a directory of their own); yields (address, procs)."""
    tmp_path = tmp_path_factory.mktemp("home-cluster")
    sched_file = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--scheduler-file", str(sched_file), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]  # fmt: skip
    deadline = time.monotonic() + 60
    while not sched_file.exists():
        assert time.monotonic() < deadline, "scheduler did not start"
        time.sleep(0.1)
    time.sleep(0.3)
    address = json.loads(sched_file.read_text())["address"]
    for i in range(2):
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                       "--name", f"home-{i}", "--no-dashboard"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path))  # fmt: skip
    yield address, procs
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=30)
