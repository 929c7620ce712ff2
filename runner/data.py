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
    for name in on_workers(out) if spec.sweep.adaptive else ():
        raise SpecError(
            f"data.{name}.path: {out[name]['path']} is on the workers' volume at {out[name]['volume']}, which "
            "this machine does not see, and an adaptive sweep plans its generations before the cluster starts; "
            "pin its sha256 (`sha256sum` where the volume is mounted), or mount the volume here at the same path"
        )
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
    mounts it too), else taken from the pinned sha256, which workers verify, else
    left for a worker to hash before the sweep (``sha256`` None, ``hashed_on: worker``)."""
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
    if pinned is None:  # hashed on a worker once the cluster is up (see on_workers)
        return {"path": str(path), "sha256": None, "size": None, "volume": target, "hashed_on": "worker"}
    return {"path": str(path), "sha256": pinned, "size": None, "volume": target}


def on_workers(data: dict[str, dict[str, Any]]) -> dict[str, str]:
    """name → path of the data only the workers see and no spec pins: hashed on a
    worker before the sweep; until then the trials have no keys to look up."""
    return {name: v["path"] for name, v in data.items() if v.get("volume") and v.get("sha256") is None}


def pin_hashed(data: dict[str, dict[str, Any]], hashed: dict[str, dict[str, Any]]) -> None:
    """Record what a worker computed for :func:`on_workers`, or a :class:`SpecError`
    naming the data it could not read."""
    for name in on_workers(data):
        got = hashed.get(name) or {"error": "the worker returned nothing for it"}
        digest = got.get("sha256")
        if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise SpecError(
                f"{got.get('error') or 'no sha256 from the worker'} (on the workers' volume at "
                f"{data[name]['volume']}, hashed on a worker before the sweep); check the path and the volume",
                path=f"data.{name}.path",
            )
        size = got.get("size")
        data[name] = {**data[name], "sha256": digest, "size": size if isinstance(size, int) else None}
