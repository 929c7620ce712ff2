"""Everything xrun takes from conda-lock's internals, in one place.

xrun writes conda-lock's own v1 lock format with conda-lock's own models, and
computes the content hash with conda-lock's own function, so ``conda-lock lock
--check-input-hash`` skips our files and ``conda-lock render``/``install`` accept
them. These are private conda-lock APIs: conda-lock is pinned exactly
(``conda-lock==4.0.3``) and nothing outside this module may import it.
"""

from __future__ import annotations

import functools
import importlib.metadata
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from conda_lock.conda_solver import _to_match_spec
from conda_lock.content_hash import (
    backwards_compatible_content_hashes,
    compute_content_hashes,
)
from conda_lock.interfaces.vendored_conda import MatchSpec as CondaMatchSpec
from conda_lock.lockfile import parse_conda_lock_file, write_conda_lock_file
from conda_lock.lockfile.v2prelim.models import (
    HashModel,
    LockedDependency,
    Lockfile,
    LockMeta,
)
from conda_lock.models.channel import normalize_url_with_placeholders
from conda_lock.models.lock_spec import LockSpecification, VersionedDependency
from conda_lock.src_parser import make_lock_spec
from conda_lock.virtual_package import FakeRepoData, default_virtual_package_repodata

from runner.errors import InfraError

CONDA_LOCK_VERSION = "4.0.3"
CUSTOM_ADDED = "xrun-added-for-worker-runtime"


@functools.cache
def require_pinned_version() -> None:
    """These are private APIs: only the version they were written against will do."""
    found = importlib.metadata.version("conda-lock")
    if found != CONDA_LOCK_VERSION:
        raise InfraError(
            f"xrun needs conda-lock=={CONDA_LOCK_VERSION} (its lock format and content hash "
            f"are used as is), found {found}: pip install 'xrun[conda]'"
        )


@dataclass(frozen=True)
class CondaRequest:
    """What an environment.yml asks for on one platform, as conda-lock reads it."""

    conda: list[str]  # match specs, as conda-lock would pass them to the solver
    pip: list[str]  # pip requirement strings, as written
    conda_names: set[str]
    pip_names: set[str]


@contextmanager
def _offline_mapping() -> Iterator[str]:
    """An empty PyPI→conda name mapping.

    conda-lock looks up one name while parsing an environment.yml: ``pip``, which
    it adds as a conda dependency when there is a ``pip:`` section. The public
    mapping maps it to itself, which is also what an empty mapping gives, so the
    lock specification (and its content hash) is the same without a download.
    """
    with tempfile.TemporaryDirectory(prefix="xrun-mapping-") as tmp:
        path = Path(tmp) / "mapping.json"
        path.write_text("{}")
        yield str(path)


def lock_spec(env_file: Path, platforms: Sequence[str]) -> LockSpecification:
    """conda-lock's own reading of ``env_file`` for ``platforms``."""
    with _offline_mapping() as mapping:
        return make_lock_spec(
            src_files=[env_file], platform_overrides=list(platforms), mapping_url=mapping
        )


@functools.cache
def _virtual_packages() -> FakeRepoData:
    """The default set `conda-lock lock` uses without --virtual-package-spec/--with-cuda.

    (Only read here: entering it as a context manager would change CONDA_OVERRIDE_*
    variables, which matters to a conda solver, not to us.)
    """
    return default_virtual_package_repodata()


def content_hashes(spec: LockSpecification) -> dict[str, str]:
    """The per-platform content hash conda-lock writes into ``metadata.content_hash``."""
    return compute_content_hashes(spec, _virtual_packages())


def accepted_hashes(spec: LockSpecification, platform: str) -> set[str]:
    """Every hash `conda-lock lock --check-input-hash` accepts as current for ``platform``."""
    return backwards_compatible_content_hashes(spec, _virtual_packages(), platform)


def virtual_packages(platform: str) -> list[tuple[str, str, str]]:
    """(name, version, build string) of the virtual packages conda-lock assumes on ``platform``.

    Solving against the same set as conda-lock keeps our solutions the ones
    conda-lock would produce. Where conda-lock lists two versions of one package
    (``__osx`` on osx-64) the highest wins, as it does in conda.
    """
    subdir = _virtual_packages().all_repodata.get(platform) or {}
    packages = subdir.get("packages", {}) if isinstance(subdir, dict) else {}
    best: dict[str, tuple[str, str, str]] = {}
    for entry in packages.values():
        name, version = str(entry["name"]), str(entry["version"])
        build = str(entry.get("build_string") or entry.get("build") or "0")
        if name not in best or _version_key(version) > _version_key(best[name][1]):
            best[name] = (name, version, build)
    return [best[n] for n in sorted(best)]


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def request_for(spec: LockSpecification, platform: str) -> CondaRequest:
    """The conda match specs and pip requirements of ``spec`` on ``platform``.

    Raises ValueError for dependency kinds xrun does not lock (URL, VCS or path
    dependencies): the caller turns it into an EnvFileError.
    """
    conda: list[str] = []
    pip: list[str] = []
    conda_names: set[str] = set()
    pip_names: set[str] = set()
    for dep in spec.dependencies.get(platform, []):
        if not isinstance(dep, VersionedDependency):
            raise ValueError(
                f"{dep.name}: only versioned requirements can be locked "
                f"(URL, git and path dependencies are not supported)"
            )
        if dep.manager == "conda":
            conda.append(_to_match_spec(dep.name, dep.version, dep.build, dep.conda_channel))
            conda_names.add(dep.name)
        else:
            extras = f"[{','.join(dep.extras)}]" if dep.extras else ""
            version = dep.version if dep.version not in ("", "*") else ""
            marker = f" ; {dep.markers}" if dep.markers else ""
            pip.append(f"{dep.name}{extras}{_pep440(version)}{marker}")
            pip_names.add(dep.name)
    return CondaRequest(conda, pip, conda_names, pip_names)


def _pep440(conda_version: str) -> str:
    """conda-lock stores pip versions in conda form (``>=1.0,<2``); turn it back."""
    if not conda_version:
        return ""
    parts = []
    for part in conda_version.split(","):
        part = part.strip()
        if part and part[0].isdigit():
            part = f"=={part}"
        parts.append(part)
    return ",".join(parts)


def channel_urls(spec: LockSpecification) -> list[str]:
    """Channels of the environment.yml, in priority order, env-var placeholders filled in."""
    return [c.env_replaced_url() for c in spec.channels]


def conda_dependency(
    *,
    name: str,
    version: str,
    platform: str,
    depends: Sequence[str],
    url: str,
    md5: str,
    sha256: str | None,
    spec: LockSpecification,
) -> LockedDependency:
    """A conda package entry exactly as conda-lock's conda solver builds it."""
    specs: dict[str, list[CondaMatchSpec]] = {}
    for dep in depends:
        ms = CondaMatchSpec(dep)  # type: ignore[arg-type]
        specs.setdefault(ms.name, []).append(ms)
    dependencies: dict[str, str] = {}
    for dep_name, mss in specs.items():
        merged = mss[0] if len(mss) == 1 else CondaMatchSpec.merge(mss)[0]
        dependencies[dep_name] = merged.version.spec_str if merged.version is not None else ""
    return LockedDependency(
        name=name,
        version=version,
        manager="conda",
        platform=platform,
        dependencies=dependencies,
        url=normalize_url_with_placeholders(url, channels=list(spec.channels)),
        hash=HashModel(md5=md5, sha256=sha256),
        categories={"main"},
    )


def pip_dependency(
    name: str, version: str, url: str, sha256: str, platform: str
) -> LockedDependency:
    """A pip package entry: the one artifact (wheel, else sdist) pip installs from."""
    return LockedDependency(
        name=name,
        version=version,
        manager="pip",
        platform=platform,
        url=url,
        hash=HashModel(sha256=sha256),
        categories={"main"},
    )


def write_lock(
    path: Path,
    *,
    spec: LockSpecification,
    packages: list[LockedDependency],
    platforms: Sequence[str],
    added: Sequence[str],
    lock_dir: Path,
) -> None:
    """Write a conda-lock v1 file with conda-lock's writer (sorted, no timestamp).

    ``lock_dir`` is where the file will live (sources are relative to it).
    """
    custom = {CUSTOM_ADDED: " ".join(added)} if added else None
    hashes = content_hashes(spec)
    lockfile = Lockfile(
        package=packages,
        metadata=LockMeta(
            content_hash={p: hashes[p] for p in platforms},
            channels=list(spec.channels),
            platforms=list(platforms),
            sources=[_relative(src, lock_dir) for src in spec.sources],
            custom_metadata=custom,
        ),
    )
    write_conda_lock_file(lockfile, path, metadata_choices=None)


def _relative(src: Path, base: Path) -> str:
    try:
        return src.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(src.resolve())


@dataclass(frozen=True)
class LockEntry:
    manager: str
    name: str
    version: str
    platform: str
    url: str
    md5: str | None
    sha256: str | None


@dataclass(frozen=True)
class ReadLock:
    platforms: tuple[str, ...]
    content_hash: dict[str, str]
    added: tuple[str, ...]
    entries: tuple[LockEntry, ...]


def read_lock(path: Path) -> ReadLock:
    """Read a conda-lock file (v1 or v2) with conda-lock's parser.

    Raises ValueError (or a yaml/pydantic error) when it is not a conda-lock file.
    """
    lockfile = parse_conda_lock_file(path)
    custom = lockfile.metadata.custom_metadata or {}
    added = tuple(custom.get(CUSTOM_ADDED, "").split())
    entries = tuple(
        LockEntry(
            manager=p.manager,
            name=p.name,
            version=p.version,
            platform=p.platform,
            url=p.url,
            md5=p.hash.md5,
            sha256=p.hash.sha256,
        )
        for p in lockfile.package
    )
    return ReadLock(
        platforms=tuple(lockfile.metadata.platforms),
        content_hash=dict(lockfile.metadata.content_hash),
        added=added,
        entries=entries,
    )
