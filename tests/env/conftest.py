"""Fixtures of the environment tests: an isolated xrun cache and a local conda channel."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.env.condachannel import build_channel


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "xrun-cache"
    monkeypatch.setenv("XRUN_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(scope="session")
def _pristine_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_channel(tmp_path_factory.mktemp("pristine") / "channel")


@pytest.fixture
def channel(tmp_path: Path, _pristine_channel: Path) -> Path:
    """A private copy of the test channel (tests may tamper with it)."""
    return Path(shutil.copytree(_pristine_channel, tmp_path / "channel"))
