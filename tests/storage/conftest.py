"""A real S3-compatible server (moto in server mode) and a plain HTTP server,
both started by the tests on this machine, as s3fs's own test suite does.

The S3 endpoint reaches the code under test only through the standard
variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...), set for the
test and inherited by the ``xrun`` subprocesses and their workers.
"""

from __future__ import annotations

import collections
import functools
import http.server
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "xrun-test-key",
    "AWS_SECRET_ACCESS_KEY": "xrun-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class MotoServer:
    """moto's S3 in server mode on ``host`` (a real HTTP server in a thread),
    counting the GET requests it answers per path."""

    def __init__(self, host: str) -> None:
        from werkzeug.serving import make_server

        app = moto_server.DomainDispatcherApplication(moto_server.create_backend_app)
        self.gets: collections.Counter[str] = collections.Counter()

        def counting(environ: dict, start_response):  # type: ignore[no-untyped-def]
            if environ.get("REQUEST_METHOD") == "GET" and not environ.get("QUERY_STRING"):
                self.gets[environ.get("PATH_INFO", "")] += 1
            return app(environ, start_response)

        self.server = make_server(host, 0, counting, threaded=True)
        self.endpoint = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


@dataclass
class S3:
    endpoint: str
    bucket: str
    server: MotoServer

    def downloads(self, key: str) -> int:
        """How many times the object was read whole (GET without a query)."""
        return self.server.gets[f"/{self.bucket}/{key}"]

    def env(self) -> dict[str, str]:
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def fs(self):
        import s3fs

        return s3fs.S3FileSystem(
            key=CREDENTIALS["AWS_ACCESS_KEY_ID"], secret=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            endpoint_url=self.endpoint, skip_instance_cache=True, use_listings_cache=False,
        )  # fmt: skip

    def put(self, key: str, data: bytes) -> str:
        self.fs().pipe(f"{self.bucket}/{key}", data)
        return f"s3://{self.bucket}/{key}"

    def get(self, key: str) -> bytes:
        return self.fs().cat(f"{self.bucket}/{key}")

    def keys(self, prefix: str = "") -> list[str]:
        fs = self.fs()
        return sorted(k.split("/", 1)[1] for k in fs.find(f"{self.bucket}/{prefix}"))


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
    bucket = f"xrun-{uuid.uuid4().hex[:12]}"
    s = S3(moto.endpoint, bucket, moto)
    s.fs().mkdir(bucket)
    return s


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class HTTP:
    root: Path
    url: str
    requests: list[str]


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[HTTP]:
    """Serves ``root`` on 127.0.0.1 and counts the GET requests it answers."""
    root = tmp_path / "served"
    root.mkdir()
    requests: list[str] = []

    class Handler(_QuietHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield HTTP(root, f"http://127.0.0.1:{server.server_address[1]}", requests)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def data_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's per-node data cache (workers inherit it)."""
    root = tmp_path / "node-cache"
    monkeypatch.setenv("XRUN_DATA_CACHE", str(root))
    return root

