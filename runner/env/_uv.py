"""Resolving and installing PyPI packages with uv.

Used for pip environments (``uv pip compile --generate-hashes``) and for the
``pip:`` section of a conda environment.yml (``uv pip compile --format
pylock.toml``, which names the one artifact each package installs from).
"""

from __future__ import annotations

import json
import logging
import os
import platform as _platform
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.tags import Tag, compatible_tags, cpython_tags, mac_platforms
from packaging.utils import canonicalize_name, parse_wheel_filename

from runner import _proc
from runner.errors import EnvFileError, InfraError, ProcessError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)

# Workers run in linux x86_64 containers; glibc 2.28 is also what conda-lock
# assumes for linux-64 (its default __glibc virtual package).
LINUX_X86_64 = "x86_64-manylinux_2_28"

# conda platform -> (uv --python-platform, wheel platform tags best first)
_MANYLINUX_X86 = [f"manylinux_2_{m}_x86_64" for m in range(28, 4, -1)]
_MANYLINUX_ARM = [f"manylinux_2_{m}_aarch64" for m in range(28, 16, -1)]
CONDA_TO_UV: dict[str, tuple[str, list[str]]] = {
    "linux-64": (
        LINUX_X86_64,
        [
            *_MANYLINUX_X86,
            "manylinux2014_x86_64",
            "manylinux2010_x86_64",
            "manylinux1_x86_64",
            "linux_x86_64",
        ],
    ),
    "linux-aarch64": (
        "aarch64-manylinux_2_28",
        [*_MANYLINUX_ARM, "manylinux2014_aarch64", "linux_aarch64"],
    ),
    "osx-64": ("x86_64-apple-darwin", list(mac_platforms((13, 0), "x86_64"))),
    "osx-arm64": ("aarch64-apple-darwin", list(mac_platforms((13, 0), "arm64"))),
    "win-64": ("x86_64-pc-windows-msvc", ["win_amd64"]),
}

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")


def uv() -> str:
    """The uv executable: the one installed with xrun's ``pip`` extra, else PATH."""
    try:
        from uv import find_uv_bin  # deferred: the optional pip extra

        found: str | None = str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
    if found is None:
        raise InfraError("uv is needed for pip environments: pip install 'xrun[pip]'")
    return found


def local_uv_platform() -> str | None:
    """uv's name for this machine, or None when it is linux x86_64 (already covered)."""
    machine = _platform.machine().lower()
    if sys.platform.startswith("linux"):
        if machine in ("x86_64", "amd64"):
            return None
        if machine in ("aarch64", "arm64"):
            return "aarch64-manylinux_2_28"
    if sys.platform == "darwin":
        return "aarch64-apple-darwin" if machine == "arm64" else "x86_64-apple-darwin"
    if sys.platform == "win32":
        return "x86_64-pc-windows-msvc"
    return "linux"


def pins(text: str) -> dict[str, str]:
    """``name -> version`` of every ``name==version`` requirement in a lock/requirements text."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        m = _PIN.match(line.strip())
        if m:
            found[canonicalize_name(m.group(1))] = m.group(3)
    return found


def compile_hashed(
    inputs: Sequence[str],
    *,
    cwd: Path,
    python_version: str,
    python_platform: str | None,
    extra: str = "",
    what: str,
    preferences: str | None = None,
    upgrade: bool = False,
    upgrade_packages: Sequence[str] = (),
) -> str:
    """``uv pip compile --generate-hashes`` of ``inputs`` (paths relative to ``cwd``).

    ``extra`` is more requirements, read from stdin so annotations stay free of
    temporary paths. ``preferences`` is an earlier output (an existing lock):
    uv reads the pins of an existing ``-o`` file as preferences and keeps each
    one that still satisfies the inputs, as ``uv lock`` does; ``upgrade`` and
    ``upgrade_packages`` (``--upgrade``, ``--upgrade-package``) release them.
    Returns the output without uv's header.
    """
    args = [
        uv(),
        "pip",
        "compile",
        *inputs,
        "--generate-hashes",
        "--no-header",
        "--python-version",
        python_version,
        "--quiet",
    ]
    if extra:
        args.append("-")
    if python_platform:
        args += ["--python-platform", python_platform]
    if upgrade:
        args.append("--upgrade")
    for name in upgrade_packages:
        args += ["--upgrade-package", name]
    with tempfile.TemporaryDirectory(prefix="xrun-uv-") as tmp:
        out = Path(tmp) / "out.txt"
        if preferences and not upgrade:
            out.write_text(preferences)
        args += ["-o", str(out)]
        _compile(args, cwd=cwd, stdin=extra or None, what=what)
        return out.read_text()


def _compile(args: list[str], *, cwd: Path, stdin: str | None, what: str) -> None:
    try:
        # Resolving needs no interpreter of the target version: never download one.
        _proc.run(
            args,
            cwd=cwd,
            input=stdin,
            what="uv pip compile",
            env={**os.environ, "UV_NO_PROGRESS": "1", "UV_PYTHON_DOWNLOADS": "never"},
        )
    except ProcessError as exc:
        raise EnvFileError(f"cannot resolve the requirements: {_explain(exc)}", file=what) from exc


def _explain(exc: ProcessError) -> str:
    text = exc.output.strip() or str(exc)
    return "\n" + "\n".join("  " + line for line in _proc.tail(text).splitlines())


@dataclass(frozen=True)
class Artifact:
    name: str
    version: str
    url: str
    sha256: str


def resolve_artifacts(
    requirements: Sequence[str],
    *,
    conda_platform: str,
    python_version: str,
    constraints: dict[str, str],
    cwd: Path,
    what: str,
    preferences: dict[str, str] | None = None,
) -> list[Artifact]:
    """Resolve ``requirements`` for a conda platform; one artifact (URL + sha256) each.

    ``constraints`` (name -> version) are the packages conda provides: the pip
    resolution must agree with them and does not install them again.
    ``preferences`` (name -> version, an existing lock's pins) are written as the
    existing ``pylock.toml`` output, whose pins uv keeps while they still satisfy
    the requirements, as :func:`compile_hashed` does with a requirements output.
    """
    if conda_platform not in CONDA_TO_UV:
        raise EnvFileError(
            f"a pip: section cannot be locked for platform {conda_platform} "
            f"(supported: {', '.join(CONDA_TO_UV)})",
            file=what,
        )
    uv_platform, wheel_platforms = CONDA_TO_UV[conda_platform]
    with tempfile.TemporaryDirectory(prefix="xrun-uv-") as tmp:
        tmpdir = Path(tmp)
        reqs = tmpdir / "requirements.in"
        reqs.write_text("".join(r + "\n" for r in requirements))
        cons = tmpdir / "constraints.txt"
        cons.write_text("".join(f"{n}=={v}\n" for n, v in sorted(constraints.items())))
        out = tmpdir / "pylock.toml"
        if preferences:
            out.write_text(_pylock_preferences(preferences))
        args = [
            uv(),
            "pip",
            "compile",
            str(reqs),
            "--constraint",
            str(cons),
            "--format",
            "pylock.toml",
            "--no-header",
            "--quiet",
            "--python-platform",
            uv_platform,
            "--python-version",
            python_version,
            "-o",
            str(out),
        ]
        _compile(args, cwd=cwd, stdin=None, what=what)
        data = tomllib.loads(out.read_text())
    tags = _tags(python_version, wheel_platforms)
    provided = {canonicalize_name(n) for n in constraints}
    artifacts = []
    for pkg in data.get("packages", []):
        name = canonicalize_name(pkg["name"])
        if name in provided:
            continue
        artifacts.append(_pick(pkg, tags, what))
    return sorted(artifacts, key=lambda a: a.name)


def _pylock_preferences(pins: dict[str, str]) -> str:
    """A pylock.toml naming only ``pins`` (uv reads name and version as preferences).

    Strings are quoted with json.dumps, whose escapes TOML accepts: a name read
    from a lock file cannot add keys or packages."""
    lines = ['lock-version = "1.0"', 'created-by = "xrun"']
    for name, version in sorted(pins.items()):
        lines += ["", "[[packages]]", f"name = {json.dumps(name)}", f"version = {json.dumps(version)}"]
    return "\n".join(lines) + "\n"


def _tags(python_version: str, platforms: list[str]) -> dict[Tag, int]:
    major, minor = (int(p) for p in python_version.split(".")[:2])
    ordered = [
        *cpython_tags((major, minor), platforms=platforms),
        *compatible_tags((major, minor), f"cp{major}{minor}", platforms=platforms),
    ]
    rank: dict[Tag, int] = {}
    for i, tag in enumerate(ordered):
        rank.setdefault(tag, i)
    return rank


def _pick(pkg: dict, tags: dict[Tag, int], what: str) -> Artifact:
    """The wheel pip would choose for these tags, else the sdist."""
    name, version = str(pkg["name"]), str(pkg["version"])
    best: tuple[int, dict] | None = None
    for wheel in pkg.get("wheels", []):
        filename = wheel["url"].rsplit("/", 1)[-1]
        ranks = [tags[t] for t in parse_wheel_filename(filename)[3] if t in tags]
        if ranks and (best is None or min(ranks) < best[0]):
            best = (min(ranks), wheel)
    chosen = best[1] if best else pkg.get("sdist")
    if not chosen or "url" not in chosen or "sha256" not in chosen.get("hashes", {}):
        raise EnvFileError(
            f"pip package {name} {version} is not an index package with a sha256 "
            f"(URL, git and path requirements cannot be locked by xrun)",
            file=what,
        )
    return Artifact(canonicalize_name(name), version, chosen["url"], chosen["hashes"]["sha256"])
