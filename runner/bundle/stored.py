"""Artifacts kept out of band: a trial's file above ``artifacts.inline_max`` is in
the artifact store, and the bundle holds ``<path>.xrun-remote.json`` in its
place (url, sha256, size; covered by MANIFEST.sha256 like any file). Data URLs
(``data.json``: url, sha256) are likewise kept where they are and re-hashed there."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from runner import remote
from runner._safeio import read_text
from runner.errors import VerifyError
from runner.worker.fetch import REMOTE_SUFFIX

MAX_RECORD_BYTES = 64 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class StoredArtifact:
    trial: str
    path: str  # relative to the trial's artifact directory, as the trial wrote it
    url: str
    sha256: str
    size: int


def stored_artifacts(root: Path) -> list[StoredArtifact]:
    """Every stored-artifact record of the bundle at ``root``; a record that is
    not well formed (the bundle is someone else's) raises :class:`VerifyError`."""
    base = root / "artifacts"
    if not base.is_dir():
        return []
    out = []
    for record in sorted(base.rglob(f"*{REMOTE_SUFFIX}")):
        rel = record.relative_to(base).as_posix()
        try:
            value = json.loads(read_text(record, MAX_RECORD_BYTES))
            url, sha256, size = value["url"], value["sha256"], value["size"]
            ok = isinstance(url, str) and isinstance(sha256, str) and isinstance(size, int) and not isinstance(size, bool)
        except Exception:
            ok = False
        if not ok or not _SHA256.match(sha256) or size < 0 or remote.check_url(url) or remote.writable(url):
            raise VerifyError(f"artifacts/{rel}: not a stored-artifact record (url, sha256, size)")
        trial, _, path = rel.partition("/")
        out.append(StoredArtifact(trial, path[: -len(REMOTE_SUFFIX)], url, sha256, size))
    return out


def verify_stored(root: Path) -> list[StoredArtifact]:
    """Re-hash every stored artifact where it is kept; :class:`VerifyError` listing
    each one that is missing or changed."""
    artifacts = stored_artifacts(root)
    _verify_objects([(f"{a.trial}/{a.path}", a.url, a.sha256, a.size) for a in artifacts], "stored artifact(s)")
    return artifacts


def _verify_objects(objects: list[tuple[str, str, str, int | None]], what: str) -> None:
    """Re-hash each ``(label, url, sha256, size)`` where it is kept; :class:`VerifyError`
    listing each one that is missing or changed."""
    problems = []
    for label, url, sha256, size in objects:
        try:
            remote.verify_object(url, sha256, size)
        except VerifyError as exc:
            problems.append(f"changed: {label}: {exc}")
        except Exception as exc:  # missing, unreachable
            problems.append(f"unreadable: {label}: {exc}")
    if problems:
        raise VerifyError(f"{len(problems)} {what} do not match the bundle\n  " + "\n  ".join(problems))


MAX_DATA_JSON_BYTES = 1024 * 1024


@dataclass(frozen=True)
class DataUrl:
    name: str
    url: str
    sha256: str
    size: int | None


def data_urls(root: Path) -> list[DataUrl]:
    """The data URLs the bundle at ``root`` pinned in ``data.json``; an entry that is
    not well formed (the bundle is someone else's) raises :class:`VerifyError`."""
    path = root / "data.json"
    if not path.is_file():
        return []
    try:
        data = json.loads(read_text(path, MAX_DATA_JSON_BYTES))
    except Exception:
        raise VerifyError("data.json: not a JSON object of data inputs") from None
    if not isinstance(data, dict):
        raise VerifyError("data.json: not a JSON object of data inputs")
    out = []
    for name, entry in sorted(data.items()):
        if not isinstance(entry, dict) or entry.get("url") is None:
            continue
        url, sha256, size = entry.get("url"), entry.get("sha256"), entry.get("size")
        ok = isinstance(url, str) and isinstance(sha256, str) and _SHA256.match(sha256) is not None
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            ok = False
        if not ok or remote.check_url(str(url)):
            raise VerifyError(f"data.json: {str(name)[:80]!r}: not a data URL record (url, sha256, size)")
        out.append(DataUrl(str(name), str(url), str(sha256), size))
    return out


def verify_data_urls(root: Path) -> list[DataUrl]:
    """Re-hash every data URL of the bundle where it is kept (a prefix as its
    sorted manifest); :class:`VerifyError` listing each one missing or changed."""
    urls = data_urls(root)
    _verify_objects([(f"data {d.name!r}", d.url, d.sha256, d.size) for d in urls], "data URL(s)")
    return urls
