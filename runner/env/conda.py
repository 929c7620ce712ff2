"""Conda environments: environment.yml → conda-lock v1 file, solved with py-rattler.

The channels come from the environment.yml, so a user with conda-forge and a
test with a local ``file://`` channel take the same code path. The lock is the
file ``conda-lock lock`` would write for the same input: conda-lock's models,
writer and content hash (see :mod:`runner.env._condalock`).

A ``pip:`` section is resolved with uv against PyPI for each platform (python
version from the conda solution): each package is written as a conda-lock
``manager: pip`` entry naming one artifact by URL and sha256. Packages conda
already provides (same name) are constraints of that resolution, not installed
twice; conda-lock maps conda to PyPI names with a downloaded table, xrun assumes
the names are equal.
A relock keeps the pip versions the existing lock pins for each platform while
they still satisfy the section (uv's preferences), like the conda packages.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from runner._hashing import check_package
from runner.config import cache_dir
from runner.env import _envyml, _uv
from runner.env.model import LockedEnv
from runner.env.runtime import driver_distributed_version, normalize, runtime_additions
from runner.errors import EnvFileError, InfraError

log = logging.getLogger(__name__)

T = TypeVar("T")


def lock_path(env_file: Path) -> Path:
    """``sklearn.yml`` → ``sklearn.conda-lock.yml`` beside it."""
    stem = env_file.name
    for suffix in (".yml", ".yaml"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return env_file.with_name(f"{stem}.conda-lock.yml")


def _condalock() -> Any:
    """conda-lock's internals, imported on first use (importing conda-lock takes ~1 s)."""
    try:
        import rattler  # noqa: F401

        from runner.env import _condalock as module  # deferred: imports the environment lockers
    except ImportError as exc:
        raise InfraError(
            f"conda environments need py-rattler and conda-lock ({exc}): pip install 'xrun[conda]'"
        ) from exc
    module.require_pinned_version()
    return module


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a py-rattler coroutine from sync code, even inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="xrun-rattler")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _spec(env_file: Path, platforms: Sequence[str]) -> Any:
    _envyml.validate(env_file)
    try:
        return _condalock().lock_spec(env_file, platforms)
    except Exception as exc:  # conda-lock raises plain ValueError/KeyError/pydantic errors
        raise EnvFileError(f"conda-lock cannot read it: {exc}", file=str(env_file)) from exc


def lock(
    env_file: Path,
    platforms: Sequence[str],
    *,
    upgrade: bool = False,
    upgrade_packages: Sequence[str] = (),
) -> LockedEnv:
    """Solve ``env_file`` for every platform and write its conda-lock file.

    Conda packages pinned by an existing lock are the solver's locked packages
    (py-rattler prefers them while they still satisfy the environment, as
    conda-lock does); ``upgrade`` releases all of them, ``upgrade_packages``
    those named. The ``pip:`` section keeps its pins the same way: the lock's
    pip versions for each platform are uv's preferences.
    """
    platforms = list(dict.fromkeys(platforms))
    release = {normalize(n) for n in upgrade_packages}
    previous, previous_pip = ({}, {}) if upgrade else _previous_pins(lock_path(env_file), release)
    spec = _spec(env_file, platforms)
    channels = _condalock().channel_urls(spec)
    where = str(env_file)
    packages = []
    added: list[str] = []
    for platform in platforms:
        try:
            request = _condalock().request_for(spec, platform)
        except ValueError as exc:
            raise EnvFileError(str(exc), file=where) from exc
        extra = runtime_additions("conda", request.conda_names | request.pip_names)
        added = list(dict.fromkeys(added + extra))
        specs = request.conda + [_conda_pin(req) for req in extra]
        records = _run(_solve(channels, specs, platform, where, previous.get(platform, {})))
        for rec in records:
            packages.append(
                _condalock().conda_dependency(
                    name=rec.name.normalized,
                    version=str(rec.version),
                    platform=platform,
                    depends=list(rec.depends),
                    url=rec.url,
                    md5=rec.md5.hex() if rec.md5 else "",
                    sha256=rec.sha256.hex() if rec.sha256 else None,
                    spec=spec,
                )
            )
        if request.pip:
            packages += _lock_pip_section(
                env_file, platform, request.pip, records, previous_pip.get(platform, {})
            )
        log.info("solved %s for %s: %d packages", env_file.name, platform, len(records))
    lock_file = lock_path(env_file)
    # conda-lock's writer names the file in its comments: write it under its own
    # name in a temporary directory beside it, then move it into place.
    with tempfile.TemporaryDirectory(prefix=".xrun-lock-", dir=lock_file.parent) as tmp:
        staged = Path(tmp) / lock_file.name
        _condalock().write_lock(
            staged,
            spec=spec,
            packages=packages,
            platforms=platforms,
            added=added,
            lock_dir=lock_file.parent,
        )
        os.replace(staged, lock_file)
    _warn_distributed(lock_file)
    return read(env_file)


def _conda_pin(requirement: str) -> str:
    name, _, version = requirement.partition("==")
    return f"{name} =={version}"


def _previous_pins(lock_file: Path, release: set[str]) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """What an existing lock pins, without the names in ``release``, read once:
    platform -> {name: url} of its conda packages and platform -> {name: version}
    of its pip packages (well-formed names and versions only); empty when there
    is no readable lock."""
    conda: dict[str, dict[str, str]] = {}
    pip: dict[str, dict[str, str]] = {}
    if not lock_file.is_file():
        return conda, pip
    try:
        entries = _condalock().read_lock(lock_file).entries
    except Exception:  # an unreadable lock is relocked from scratch
        return conda, pip
    for e in entries:
        if normalize(e.name) in release:
            continue
        if e.manager == "conda":
            conda.setdefault(e.platform, {})[e.name] = e.url
        elif e.manager == "pip" and _pep508_name(e.name) and _pep440(e.version):
            pip.setdefault(e.platform, {})[e.name] = e.version
    return conda, pip


async def _locked_records(gateway: Any, channels: list[Any], platforms: list[Any], previous: dict[str, str]) -> list[Any]:
    """The repodata records of the previously locked packages that the channels still have."""
    if not previous:
        return []
    found = await gateway.query(channels, platforms, sorted(previous), recursive=False)
    urls = set(previous.values())
    return [rec for group in found for rec in group if rec.url in urls]


async def _solve(
    channels: list[str], specs: list[str], platform: str, where: str, previous: dict[str, str] | None = None
) -> list[Any]:
    from rattler import (  # deferred: py-rattler, only when solving or installing conda packages
        BuildString,
        Channel,
        Gateway,
        GenericVirtualPackage,
        MatchSpec,
        PackageName,
        Subdir,
        Version,
        solve,
    )
    from rattler.exceptions import (  # deferred: py-rattler, only when solving or installing conda packages
        FetchRepoDataError,
        GatewayError,
        InvalidMatchSpecError,
        SolverError,
    )

    try:
        # Lenient parsing, as conda reads environment.yml ("numpy 1.26" means 1.26.*).
        match_specs = [MatchSpec(s) for s in specs]
    except InvalidMatchSpecError as exc:
        raise EnvFileError(f"invalid package spec: {exc}", file=where) from exc

    virtual = [
        GenericVirtualPackage(PackageName(n), Version(v), BuildString(b))
        for n, v, b in _condalock().virtual_packages(platform)
    ]
    gateway = Gateway()
    sources = [Channel(c) for c in channels]
    subdirs = [Subdir(platform), Subdir("noarch")]
    try:
        return await solve(
            sources,
            match_specs,
            gateway=gateway,
            platforms=subdirs,
            locked_packages=await _locked_records(gateway, sources, subdirs, previous or {}),
            virtual_packages=virtual,
        )
    except SolverError as exc:
        raise EnvFileError(
            f"cannot solve the environment for {platform}:\n{_indent(str(exc))}", file=where
        ) from exc
    except (FetchRepoDataError, GatewayError) as exc:
        raise InfraError(
            f"{where}: cannot fetch repodata for {platform} from {', '.join(channels)}: {exc}\n"
            "Locking a conda environment needs its channels reachable."
        ) from exc


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.strip().splitlines())


def _lock_pip_section(
    env_file: Path,
    platform: str,
    requirements: list[str],
    records: list[Any],
    previous: dict[str, str] | None = None,
) -> list[Any]:
    versions = {rec.name.normalized: str(rec.version) for rec in records}
    python = versions.get("python")
    if python is None:
        raise EnvFileError(
            f"the pip: section needs python among the conda dependencies ({platform})",
            file=str(env_file),
        )
    constraints = {
        name: version
        for name, version in versions.items()
        if _pep508_name(name) and _pep440(version) and name != "python"
    }
    artifacts = _uv.resolve_artifacts(
        requirements,
        conda_platform=platform,
        python_version=python,
        constraints=constraints,
        cwd=env_file.parent,
        what=str(env_file),
        preferences=previous,
    )
    return [
        _condalock().pip_dependency(a.name, a.version, a.url, a.sha256, platform) for a in artifacts
    ]


def _pep508_name(name: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", name) is not None


def _pep440(version: str) -> bool:
    from packaging.version import InvalidVersion, Version  # deferred: only when comparing versions

    try:
        Version(version)
    except InvalidVersion:
        return False
    return True


def _warn_distributed(lock_file: Path) -> None:
    driver = driver_distributed_version()
    for entry in _condalock().read_lock(lock_file).entries:
        if entry.name == "distributed" and entry.version != driver:
            log.warning(
                "%s pins distributed %s but this driver runs %s; workers may not connect",
                lock_file.name,
                entry.version,
                driver,
            )
            return


# --- reading and checking -------------------------------------------------------------


def check(env_file: Path, platforms: Sequence[str]) -> tuple[bool, str]:
    """(fresh?, why) for the lock of ``env_file``."""
    lock_file = lock_path(env_file)
    if not lock_file.exists():
        return False, f"{lock_file.name} does not exist"
    if not env_file.exists():
        return False, f"{env_file} does not exist"
    try:
        read_lock = _condalock().read_lock(lock_file)
    except Exception as exc:
        return False, f"{lock_file.name} is not a conda-lock file ({exc})"
    missing = [p for p in platforms if p not in read_lock.platforms]
    if missing:
        return False, f"{lock_file.name} has no solution for {', '.join(missing)}"
    spec = _spec(env_file, platforms)
    for platform in platforms:
        if read_lock.content_hash.get(platform) not in _condalock().accepted_hashes(spec, platform):
            return False, f"{env_file.name} changed since it was locked (platform {platform})"
    if not any(e.name == "distributed" for e in read_lock.entries):
        return False, f"{lock_file.name} has no distributed, which workers need"
    return True, f"{lock_file.name} is up to date"


def read(env_file: Path, platforms: Sequence[str] | None = None) -> LockedEnv:
    """The LockedEnv of an existing lock (no freshness check)."""
    lock_file = lock_path(env_file)
    try:
        read_lock = _condalock().read_lock(lock_file)
    except FileNotFoundError as exc:
        raise EnvFileError(
            f"no lock file {lock_file.name}; run `xrun lock SPEC`", file=str(env_file)
        ) from exc
    except Exception as exc:
        raise EnvFileError(
            f"not a conda-lock file: {exc}; relock with `xrun lock SPEC`", file=str(lock_file)
        ) from exc
    entries = sorted(
        (e.platform, e.manager, e.name, e.version, e.sha256 or e.md5 or "", _basename(e.url))
        for e in read_lock.entries
    )
    lock_hash = hashlib.sha256(json.dumps(entries, separators=(",", ":")).encode()).hexdigest()
    platform = _packages_platform(read_lock.platforms)
    packages = {normalize(e.name): e.version for e in read_lock.entries if e.platform == platform}
    return LockedEnv(
        kind="conda",
        lock_hash=lock_hash,
        packages=dict(sorted(packages.items())),
        env_file=env_file,
        lock_file=lock_file,
        added=read_lock.added,
        platforms=tuple(platforms) if platforms else read_lock.platforms,
        python_version=packages.get("python"),
    )


def _basename(url: str) -> str:
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


def _packages_platform(platforms: Sequence[str]) -> str:
    """The platform whose versions LockedEnv.packages shows: this machine's, else the first."""
    local = current_platform()
    return local if local in platforms else platforms[0]


def current_platform() -> str:
    # deferred: py-rattler, only when solving or installing conda packages
    from rattler import Subdir

    return str(Subdir.current())


# --- installing -------------------------------------------------------------------------


def install(lock_file: Path, tmp_prefix: Path, final_prefix: Path, platform: str) -> None:
    """Install the conda packages of ``lock_file`` for ``platform`` into ``tmp_prefix``,
    with ``final_prefix`` patched into files, ready to be renamed into place."""
    # deferred: py-rattler, only when solving or installing conda packages
    from rattler import LockFile, Subdir
    from rattler import install as rattler_install


    read_lock = _condalock().read_lock(lock_file)
    if platform not in read_lock.platforms:
        raise EnvFileError(
            f"locked for {', '.join(read_lock.platforms)}, not {platform}; add it to "
            f"environment.platforms and run `xrun lock SPEC`",
            file=str(lock_file),
        )
    env = LockFile.from_path(lock_file).default_environment()
    if env is None:  # pragma: no cover - conda-lock files always have one
        raise EnvFileError("the lock has no environment", file=str(lock_file))
    lock_platform = next((p for p in env.platforms() if p.name == platform), None)
    records = (
        (env.conda_repodata_records_for_platform(lock_platform) or []) if lock_platform else []
    )
    expected = {
        (e.name, e.version): e
        for e in read_lock.entries
        if e.platform == platform and e.manager == "conda"
    }
    for rec in records:
        entry = expected.get((rec.name.normalized, str(rec.version)))
        verify_package(
            rec.url, entry.sha256 if entry else None, entry.md5 if entry else None, rec.file_name
        )
    _run(
        rattler_install(
            records,
            target_prefix=tmp_prefix,
            cache_dir=cache_dir() / "conda-pkgs",
            platform=Subdir(platform),
            show_progress=False,
            alternative_target_prefix=final_prefix,
            execute_link_scripts=False,
        )
    )


def verify_package(url: str, sha256: str | None, md5: str | None, name: str) -> None:
    """Check a local (``file://``) package against the lock before rattler installs it.

    rattler verifies what it downloads over http(s) but trusts local files.
    """
    parts = urlsplit(url)
    if parts.scheme != "file":
        return
    path = Path(unquote(parts.path))
    if not path.exists():
        raise EnvFileError(f"conda package {name} is missing: {path}")
    check_package(path, sha256, md5, name, str(path))



def pip_requirements(lock_file: Path, platform: str) -> list[str]:
    """``name @ url --hash=sha256:…`` lines of the lock's pip entries for ``platform``."""
    return [
        f"{e.name} @ {e.url} --hash=sha256:{e.sha256}"
        for e in _condalock().read_lock(lock_file).entries
        if e.platform == platform and e.manager == "pip" and e.sha256
    ]
