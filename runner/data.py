"""Hashing a spec's data inputs (DESIGN §4 ``data.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner import remote
from runner._hashing import dir_digest, file_digest
from runner.errors import SpecError
from runner.spec import Spec

CHUNK = 1024 * 1024


def hash_inputs(spec: Spec) -> dict[str, dict[str, Any]]:
    """name → {path|url, sha256, size}; a directory hashes its sorted files."""
    out: dict[str, dict[str, Any]] = {}
    for name, item in spec.data.items():
        if item.url is not None:
            out[name] = _hash_url(name, item.url, item.sha256)
            continue
        assert item.path is not None
        path = item.path
        mount = spec.volume_for(path)
        if mount is not None:
            out[name] = _hash_on_volume(name, path, item.sha256, *mount)
            continue
        if path.is_dir():
            digest = dir_digest(path)
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        elif path.is_file():
            digest, size = file_digest(path), path.stat().st_size
        else:
            raise SpecError(f"data.{name}.path: file not found: {path}")
        if item.sha256 is not None and item.sha256 != digest:
            raise SpecError(
                f"data.{name}: sha256 of {path} is {digest}, but the spec pins {item.sha256}; "
                "the data changed: update the pin or restore the file"
            )
        out[name] = {"path": str(path), "sha256": digest, "size": size}
    return out


def _hash_url(name: str, url: str, pinned: str | None) -> dict[str, Any]:
    """A pinned URL is recorded as pinned (whoever runs a trial verifies it when
    fetching); an unpinned one is hashed here, once, and the digest is pinned
    in ``data.json`` and the trial keys."""
    if pinned is not None:
        return {"url": url, "sha256": pinned, "size": None}
    digest, size = remote.hash_url(url)
    return {"url": url, "sha256": digest, "size": size}


def _hash_on_volume(name: str, path: Path, pinned: str | None, target: str, source: Path | None) -> dict[str, Any]:
    """Data on a workers' volume: hashed here through this machine's view of the
    volume (a Docker bind mount's source, or the same path when this machine
    mounts it too), else taken from the pinned sha256, which workers verify."""
    local = source / Path(path).relative_to(target) if source is not None else Path(path)
    if local.exists():
        digest = dir_digest(local) if local.is_dir() else file_digest(local)
        if pinned is not None and pinned != digest:
            raise SpecError(
                f"data.{name}: sha256 of {path} (on the volume at {target}) is {digest}, but the spec pins "
                f"{pinned}; the data changed: update the pin or restore the file"
            )
        size = sum(f.stat().st_size for f in local.rglob("*") if f.is_file()) if local.is_dir() else local.stat().st_size
        return {"path": str(path), "sha256": digest, "size": size, "volume": target}
    if pinned is None:
        raise SpecError(
            f"data.{name}.path: {path} is on the workers' volume at {target}, which this machine does not "
            "see; pin its sha256 (e.g. `sha256sum` where the volume is mounted) so workers can verify it, "
            "or mount the volume here at the same path"
        )
    return {"path": str(path), "sha256": pinned, "size": None, "volume": target}
