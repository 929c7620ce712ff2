"""A real S3-compatible server (moto in server mode) and a plain HTTP server,
both started by the tests on this machine, as s3fs's own test suite does.

The S3 endpoint reaches the code under test only through the standard
variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...), set for the
test and inherited by the ``xrun`` subprocesses and their workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

from .servers import CREDENTIALS, HTTP, S3, MotoServer, new_bucket, serve_http

__all__ = ["CREDENTIALS", "HTTP", "S3", "MotoServer", "serve_http"]


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    server = MotoServer("127.0.0.1")
    yield server
    server.stop()


@pytest.fixture
def s3(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> S3:
    """A fresh bucket on the test's S3 server; the standard variables point at it."""
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": moto.endpoint}.items():
        monkeypatch.setenv(name, value)
    return new_bucket(moto)


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[HTTP]:
    """Serves a fresh directory on 127.0.0.1 and counts the GET requests it answers."""
    root = tmp_path / "served"
    root.mkdir()
    with serve_http(root) as served:
        yield served


@pytest.fixture
def data_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's per-node data cache (workers inherit it)."""
    root = tmp_path / "node-cache"
    monkeypatch.setenv("XRUN_DATA_CACHE", str(root))
    return root

