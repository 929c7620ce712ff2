"""Download, on the host, every wheel a pip lock pins, checked against its hashes.

The image build then runs with the network disabled: the build context carries
the wheelhouse and a pinned pip wheel that installs it. Downloads are cached per
lock (``<cache>/wheelhouse/<key>/``) and re-verified against the lock's hashes
before reuse, so a rebuild of an unchanged lock needs no network at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from runner import _proc, config
from runner._hashing import file_digest as sha256_file
from runner.errors import EnvFileError, InfraError

log = logging.getLogger(__name__)

# Tools the builder stage runs, pinned by hash like everything else. pip runs
# from its wheel (`python pip.whl/pip install ...`) so the environment holds
# exactly the lock: no ensurepip, whose bytecode would differ between builds.
# py-rattler installs conda locks (abi3: any CPython >= 3.10 in the base).
TOOLS = {
    "pip": (
        "pip==25.2",
        "6d67a2b4e7f14d8b31b8b52648866fa717f45a1eb70e83002f4331d07e953717",
        "pip-25.2-py3-none-any.whl",
    ),
    "py-rattler": (
        "py-rattler==0.28.0",
        "4f4ab1d34d5394e7ce130a86e59009c95ace4f5757d9c3af04de1351bcea47eb",
        "py_rattler-0.28.0-cp310-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    ),
}
PIP_TOOL_WHEEL = TOOLS["pip"][2]

# Wheels must run on the base image: Debian bookworm has glibc 2.36, so every
# manylinux tag up to 2.36 fits. pip does not expand `manylinux_2_X` itself.
GLIBC = (2, 36)
ARCH = "x86_64"
TOOL_PYTHON = "3.11"  # tools are pure or abi3 wheels: any CPython >= 3.10 takes them

_MARKER = ".xrun-wheelhouse.json"
_SHA_RE = re.compile(r"--hash=sha256:([0-9a-fA-F]{64})")
# `--python-version 3.11` in uv's own header, `# python-version: 3.11` in xrun's.
_PY_RE = re.compile(r"(?:--python-version[ =]|^# python-version: )(\d+\.\d+)", re.M)


def platform_tags(glibc: tuple[int, int] = GLIBC, arch: str = ARCH) -> list[str]:
    """`--platform` values pip needs to accept any wheel that runs on ``glibc``."""
    major, minor = glibc
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 4, -1)]
    return [*tags, f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]


def lock_hashes(lock_text: str) -> set[str]:
    """Every sha256 a pip lock allows (lower-case hex)."""
    return {h.lower() for h in _SHA_RE.findall(lock_text)}


def lock_python_version(lock_text: str, default: str) -> str:
    """The Python version a lock was compiled for (from its header), else ``default``."""
    match = _PY_RE.search(lock_text)
    return match.group(1) if match else default


def wheelhouse(lock_file: Path, *, python_version: str, lock_hash: str) -> list[Path]:
    """Wheels for every requirement of ``lock_file``, downloaded once and hash-checked.

    Raises :class:`EnvFileError` when the lock has no hashes and
    :class:`InfraError` when pip cannot download (the message has pip's stderr tail).
    """
    text = lock_file.read_text(encoding="utf-8")
    allowed = lock_hashes(text)
    if not allowed:
        raise EnvFileError(
            "the lock has no --hash lines; relock with `xrun lock` "
            "(uv pip compile --generate-hashes)",
            file=str(lock_file),
        )
    key = hashlib.sha256(
        json.dumps([lock_hash, text, python_version, platform_tags()]).encode()
    ).hexdigest()[:24]
    dest = config.cache_dir() / "wheelhouse" / key
    cached = _verified(dest, allowed)
    if cached is not None:
        log.debug("wheelhouse %s reused (%d wheels)", dest, len(cached))
        return cached
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=dest.parent))
    try:
        _pip_download(["-r", str(lock_file)], tmp, python_version=python_version)
        wheels = sorted(tmp.glob("*.whl"))
        manifest = {w.name: sha256_file(w) for w in wheels}
        bad = sorted(name for name, digest in manifest.items() if digest not in allowed)
        if bad:  # pip checked them already; this guards against a pip that did not
            raise InfraError(f"downloaded wheels do not match the lock's hashes: {', '.join(bad)}")
        (tmp / _MARKER).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        shutil.rmtree(dest, ignore_errors=True)
        try:
            tmp.rename(dest)
        except OSError:  # another build of the same lock won the race
            if _verified(dest, allowed) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = _verified(dest, allowed)
    assert result is not None
    return result


def tool_wheel(name: str) -> Path:
    """The pinned wheel of a builder-stage tool (see :data:`TOOLS`), downloaded once."""
    requirement, sha256, filename = TOOLS[name]
    dest = config.cache_dir() / "wheelhouse" / "tools"
    wheel = dest / filename
    if wheel.is_file() and sha256_file(wheel) == sha256:
        return wheel
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        req = Path(tmp) / "tool.txt"
        req.write_text(f"{requirement} --hash=sha256:{sha256}\n")
        out = Path(tmp) / "out"
        _pip_download(["-r", str(req)], out, python_version=TOOL_PYTHON)
        os.replace(out / filename, wheel)
    return wheel


def tool_requirements(name: str) -> str:
    """A hash-pinned requirements line installing tool ``name`` offline."""
    requirement, sha256, _ = TOOLS[name]
    return f"{requirement} --hash=sha256:{sha256}\n"


def _verified(dest: Path, allowed: set[str]) -> list[Path] | None:
    """The wheels in ``dest`` if its manifest is complete and every hash is allowed."""
    try:
        manifest: dict[str, str] = json.loads((dest / _MARKER).read_text())
    except (OSError, ValueError):
        return None
    wheels = [dest / name for name in sorted(manifest)]
    for wheel in wheels:
        if not wheel.is_file() or sha256_file(wheel) not in allowed:
            log.warning("cached wheel %s is missing or altered; downloading again", wheel)
            return None
    return wheels


def _pip_download(args: Iterable[str], dest: Path, *, python_version: str | None) -> None:
    argv = [
        sys.executable, "-m", "pip", "download",
        "--only-binary=:all:", "--require-hashes", "--no-deps",
        "--disable-pip-version-check", "--no-input", "--progress-bar=off",
        "-d", str(dest),
    ]  # fmt: skip
    if python_version is not None:
        argv += ["--python-version", python_version, "--implementation", "cp"]
        argv += ["--abi", "cp" + python_version.replace(".", "")]
        for tag in platform_tags():
            argv += ["--platform", tag]
    argv += list(args)
    try:
        _proc.run(argv, what="pip download", timeout=1800)
    except InfraError as exc:
        raise InfraError(
            f"{exc.message}\nxrun downloads every wheel on the host before a build "
            "that has no network; check that the package index is reachable and that each "
            f"pinned package has a CPython {python_version or ''} manylinux wheel"
        ) from exc
