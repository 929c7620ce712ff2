"""The build context of a conda image: every package of the lock, checked on the host.

The builder stage cannot reach a channel (the build has no network), so the host
fetches each package the lock pins for ``linux-64``, checks it against the
lock's sha256 (or md5), and rewrites the lock so that its URLs point into the
build context. py-rattler, installed in the builder from a hash-pinned wheel,
then installs that lock offline (``INSTALL_SCRIPT``). pip entries of the lock
become a wheelhouse and a hash-pinned requirements file, installed after.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from runner import config
from runner._hashing import check_package
from runner.errors import EnvFileError, InfraError, UsageError, VerifyError

PLATFORM = "linux-64"  # what the images run (x86_64 Linux)
CONTEXT_PKGS = "/xrun/conda/pkgs"  # where the packages are inside the builder stage

# Run by the builder stage's tool interpreter: argv = lock, prefix, platform.
INSTALL_SCRIPT = '''\
"""Install one platform of a conda-lock file with py-rattler, offline (written by xrun)."""
import asyncio
import os
import sys

from rattler import LockFile, Subdir, install

lock, prefix, platform = sys.argv[1:4]
env = LockFile.from_path(lock).default_environment()
target = next(p for p in env.platforms() if p.name == platform)
records = env.conda_repodata_records_for_platform(target) or []
asyncio.run(
    install(
        records,
        target_prefix=prefix,
        cache_dir="/xrun/rattler-cache",
        platform=Subdir(platform),
        show_progress=False,
        execute_link_scripts=False,
    )
)
print(f"xrun: installed {len(records)} conda packages into {prefix}", flush=True)
# Leave without interpreter finalization: rattler's runtime threads can still be
# releasing the GIL then, which aborts Python ("PyGILState_Release ... finalizing").
sys.stderr.flush()
os._exit(0)
'''


@dataclass(frozen=True)
class CondaContext:
    lock: bytes  # the lock with URLs into the build context
    packages: dict[str, Path]  # file name -> checked package on the host
    wheels: list[Path]  # pip entries' wheels, checked
    pip_requirements: str  # hash-pinned requirements for those wheels ("" when none)


def conda_context(lock_file: Path) -> CondaContext:
    """Fetch and check every ``linux-64`` package of a conda-lock v1 file."""
    try:
        data: dict[str, Any] = yaml.safe_load(lock_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise EnvFileError(f"cannot read the conda lock: {exc}", file=str(lock_file)) from exc
    platforms = data.get("metadata", {}).get("platforms") or []
    if PLATFORM not in platforms:
        raise UsageError(
            f"{lock_file}: locked for {', '.join(platforms) or 'no platform'}; images run "
            f"{PLATFORM}: add it to environment.platforms and run `xrun lock SPEC`"
        )
    packages: dict[str, Path] = {}
    wheels: list[Path] = []
    pip_lines: list[str] = []
    for entry in data.get("package") or []:
        if entry.get("platform") != PLATFORM:
            continue
        name, url = str(entry["name"]), str(entry["url"])
        hashes = entry.get("hash") or {}
        filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        local = _fetch(url, filename, hashes.get("sha256"), hashes.get("md5"), name)
        if entry.get("manager") == "pip":
            if not hashes.get("sha256"):
                raise EnvFileError(f"pip package {name} has no sha256; relock", file=str(lock_file))
            wheels.append(local)
            pip_lines.append(f"{name}=={entry['version']} --hash=sha256:{hashes['sha256']}\n")
        else:
            packages[filename] = local
            entry["url"] = f"file://{CONTEXT_PKGS}/{filename}"
    lock = yaml.safe_dump(data, sort_keys=False).encode()
    return CondaContext(lock, packages, sorted(wheels), "".join(sorted(pip_lines)))


def _fetch(url: str, filename: str, sha256: str | None, md5: str | None, name: str) -> Path:
    """A local copy of ``url`` whose digest matches the lock (downloads are cached)."""
    want = (sha256 or md5 or "").lower()
    if not want:
        raise VerifyError(f"conda package {name} has no hash in the lock; relock it")
    parts = urlsplit(url)
    if parts.scheme == "file":
        path = Path(unquote(parts.path))
        if not path.is_file():
            raise EnvFileError(f"package {name} is missing: {path}; relock or restore the channel")
    elif parts.scheme in ("http", "https"):
        path = config.cache_dir() / "conda-downloads" / want / filename
        if not path.is_file():
            _download(url, path)
    else:
        raise EnvFileError(f"package {name}: cannot fetch {url} (expected file, http or https)")
    check_package(path, sha256, md5, name, url)
    return path


def _download(url: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=120) as response:
                shutil.copyfileobj(response, tmp)
        except OSError as exc:
            Path(tmp.name).unlink(missing_ok=True)
            raise InfraError(
                f"cannot download {url}: {exc}; check that the channel is reachable"
            ) from exc
    Path(tmp.name).replace(dest)

