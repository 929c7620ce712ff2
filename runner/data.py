"""Hashing a spec's data inputs (DESIGN §4 ``data.json``)."""

from __future__ import annotations

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
