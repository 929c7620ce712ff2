"""A local conda channel made on the fly: tiny packages, two platforms, indexed by py-rattler."""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

DISTRIBUTED = importlib.metadata.version("distributed")
FAKE_PYTHON = b"#!/bin/sh\necho fake-python 3.11.9\n"


def make_package(
    channel: Path,
    subdir: str,
    name: str,
    version: str,
    depends: tuple[str, ...] = (),
    files: dict[str, bytes] | None = None,
) -> Path:
    """A .tar.bz2 conda package with info/index.json, info/paths.json and ``files``."""
    files = files or {}
    folder = channel / subdir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-0.tar.bz2"
    index = {"name": name, "version": version, "build": "0", "build_number": 0,
             "depends": list(depends), "subdir": subdir, "timestamp": 1700000000000}
    if subdir == "noarch":
        index["noarch"] = "generic"
    paths = {"paths_version": 1, "paths": [
        {"_path": p, "path_type": "hardlink", "sha256": hashlib.sha256(c).hexdigest(),
         "size_in_bytes": len(c)} for p, c in files.items()]}
    with tarfile.open(path, "w:bz2") as tar:
        for member, data in [("info/index.json", json.dumps(index).encode()),
                             ("info/paths.json", json.dumps(paths).encode()), *files.items()]:
            info = tarfile.TarInfo(member)
            info.size, info.mtime = len(data), 0
            info.mode = 0o755 if member.startswith("bin/") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def index_channel(channel: Path) -> None:
    # In a subprocess: py-rattler's index_fs can crash the interpreter at exit (DESIGN §5).
    code = ("import asyncio, sys\nfrom rattler.index import index_fs\n"
            "asyncio.run(index_fs(sys.argv[1], write_zst=False, write_shards=False))\n"
            "import os; os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code, str(channel)], check=True, capture_output=True)


def build_channel(channel: Path) -> Path:
    for subdir in ("linux-64", "osx-arm64"):
        make_package(channel, subdir, "python", "3.11.9", files={"bin/python": FAKE_PYTHON})
        depends = ("libb",) if subdir == "linux-64" else ("libb", "__osx >=11")
        make_package(channel, subdir, "libc", "3.0", depends=depends)
    make_package(channel, "noarch", "liba", "1.0", files={"share/liba.txt": b"hello from liba\n"})
    make_package(channel, "noarch", "liba", "0.9")
    make_package(channel, "noarch", "libb", "2.0", depends=("liba >=1",))
    make_package(channel, "noarch", "pip", "24.0", depends=("python",))
    make_package(channel, "noarch", "dask-core", DISTRIBUTED, depends=("python",))
    make_package(channel, "noarch", "distributed", DISTRIBUTED,
                 depends=("python", f"dask-core {DISTRIBUTED}.*"))
    index_channel(channel)
    return channel


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "xrun-cache"
    monkeypatch.setenv("XRUN_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def channel(tmp_path: Path) -> Path:
    return build_channel(tmp_path / "channel")


def write_env_yml(folder: Path, channel: Path, deps: str, name: str = "env.yml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(f"""\
        name: test
        channels:
          - {channel.as_uri()}
        dependencies:
        """) + textwrap.indent(textwrap.dedent(deps), "  "))
    return path


def conda_spec(env_file: Path, platforms: list[str] | None = None) -> SimpleNamespace:
    return SimpleNamespace(kind="conda", conda=env_file, platforms=platforms or ["linux-64"])


def pip_spec(env_file: Path) -> SimpleNamespace:
    return SimpleNamespace(kind="pip", pip=env_file)
