"""Test helpers: a local conda channel made on the fly (tiny packages, two platforms,
indexed by py-rattler) and stand-ins for the spec's environment models."""

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

DISTRIBUTED = importlib.metadata.version("distributed")
PYTHON_VERSION = ".".join(map(str, sys.version_info[:3]))
FAKE_PYTHON = b"#!/bin/sh\necho fake-python\n"
PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"  # conda's build-time prefix placeholder


def make_package(
    channel: Path,
    subdir: str,
    name: str,
    version: str,
    depends: tuple[str, ...] = (),
    files: dict[str, bytes] | None = None,
    links: dict[str, str] | None = None,
    text_with_prefix: dict[str, bytes] | None = None,
) -> Path:
    """A .tar.bz2 conda package with info/index.json, info/paths.json, ``files`` and
    symbolic ``links`` (path -> target)."""
    links = links or {}
    text_with_prefix = text_with_prefix or {}
    files = {**(files or {}), **text_with_prefix}
    folder = channel / subdir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-0.tar.bz2"
    index = {
        "name": name,
        "version": version,
        "build": "0",
        "build_number": 0,
        "depends": list(depends),
        "subdir": subdir,
        "timestamp": 1700000000000,
    }
    if subdir == "noarch":
        index["noarch"] = "generic"
    paths = {
        "paths_version": 1,
        "paths": [
            {
                "_path": p,
                "path_type": "hardlink",
                "sha256": hashlib.sha256(c).hexdigest(),
                "size_in_bytes": len(c),
            }
            for p, c in files.items()
        ],
    }
    for entry in paths["paths"]:
        if entry["_path"] in text_with_prefix:
            entry.update(prefix_placeholder=PLACEHOLDER, file_mode="text")
    paths["paths"] += [{"_path": p, "path_type": "softlink"} for p in links]
    with tarfile.open(path, "w:bz2") as tar:
        for member, data in [
            ("info/index.json", json.dumps(index).encode()),
            ("info/paths.json", json.dumps(paths).encode()),
            *files.items(),
        ]:
            info = tarfile.TarInfo(member)
            info.size, info.mtime = len(data), 0
            info.mode = 0o755 if member.startswith("bin/") else 0o644
            tar.addfile(info, io.BytesIO(data))
        for member, target in links.items():
            info = tarfile.TarInfo(member)
            info.type, info.linkname, info.mtime = tarfile.SYMTYPE, target, 0
            tar.addfile(info)
    return path


def venv_python_package(channel: Path) -> Path:
    """A linux-64 ``python`` package that is a real interpreter: a venv of the one
    running the tests (``pyvenv.cfg`` + ``bin/python`` symlink), so pip packages
    can be installed into a prefix made from it without touching this interpreter."""
    base = Path(sys._base_executable).resolve()  # type: ignore[attr-defined]
    version = ".".join(map(str, sys.version_info[:3]))
    cfg = f"home = {base.parent}\ninclude-system-site-packages = false\nversion = {version}\n"
    return make_package(
        channel,
        "linux-64",
        "python",
        PYTHON_VERSION,
        files={"pyvenv.cfg": cfg.encode()},
        links={"bin/python": str(base)},
    )


def index_channel(channel: Path) -> None:
    # In a subprocess: py-rattler's index_fs can crash the interpreter at exit (DESIGN §5).
    code = (
        "import asyncio, sys\nfrom rattler.index import index_fs\n"
        "asyncio.run(index_fs(sys.argv[1], write_zst=False, write_shards=False))\n"
        "import os; os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(channel)], check=True, capture_output=True)


def build_channel(channel: Path) -> Path:
    venv_python_package(channel)
    make_package(channel, "osx-arm64", "python", PYTHON_VERSION, files={"bin/python": FAKE_PYTHON})
    for subdir in ("linux-64", "osx-arm64"):
        depends = ("libb",) if subdir == "linux-64" else ("libb", "__osx >=11")
        make_package(channel, subdir, "libc", "3.0", depends=depends)
    make_package(channel, "noarch", "liba", "1.0", files={"share/liba.txt": b"hello from liba\n"})
    make_package(channel, "noarch", "liba", "0.9")
    make_package(channel, "noarch", "libb", "2.0", depends=("liba >=1",))
    make_package(
        channel,
        "noarch",
        "libp",
        "1.0",
        text_with_prefix={"etc/libp.conf": f"prefix={PLACEHOLDER}\n".encode()},
    )
    make_package(channel, "noarch", "pip", "24.0", depends=("python",))
    make_package(channel, "noarch", "dask-core", DISTRIBUTED, depends=("python",))
    make_package(
        channel,
        "noarch",
        "distributed",
        DISTRIBUTED,
        depends=("python", f"dask-core {DISTRIBUTED}.*"),
    )
    index_channel(channel)
    return channel


def write_env_yml(folder: Path, channel: Path, deps: str, name: str = "env.yml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(
        textwrap.dedent(f"""\
        name: test
        channels:
          - {channel.as_uri()}
        dependencies:
        """)
        + textwrap.indent(textwrap.dedent(deps), "  ")
    )
    return path


def conda_spec(env_file: Path, platforms: list[str] | None = None) -> SimpleNamespace:
    return SimpleNamespace(kind="conda", conda=env_file, platforms=platforms or ["linux-64"])


def pip_spec(env_file: Path) -> SimpleNamespace:
    return SimpleNamespace(kind="pip", pip=env_file)
