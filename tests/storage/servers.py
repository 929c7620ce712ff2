"""Servers the storage tests start on this machine: moto's S3 in server mode and
a plain HTTP server, each a real server in a thread (as s3fs's own tests do)."""

from __future__ import annotations

import collections
import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from moto import server as moto_server

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


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class HTTP:
    root: Path
    url: str
    requests: list[str]


@contextlib.contextmanager
def serve_http(root: Path, host: str = "127.0.0.1") -> Iterator[HTTP]:
    """Serves ``root`` on ``host`` and records the path of each GET it answers."""
    requests: list[str] = []

    class Handler(_QuietHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer((host, 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield HTTP(root, f"http://{host}:{server.server_address[1]}", requests)
    finally:
        server.shutdown()
        server.server_close()


def new_bucket(server: MotoServer) -> S3:
    import uuid

    s3 = S3(server.endpoint, f"xrun-{uuid.uuid4().hex[:12]}", server)
    s3.fs().mkdir(s3.bucket)
    return s3
