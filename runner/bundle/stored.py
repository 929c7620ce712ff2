"""Artifacts kept out of band: a trial's file above ``artifacts.inline_max`` is in
the artifact store, and the bundle holds ``<path>.xrun-remote.json`` in its
place (url, sha256, size; covered by MANIFEST.sha256 like any file)."""

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
    problems = []
    for a in artifacts:
        try:
            remote.verify_object(a.url, a.sha256, a.size)
        except VerifyError as exc:
            problems.append(f"changed: {a.trial}/{a.path}: {exc}")
        except Exception as exc:  # missing, unreachable
            problems.append(f"unreadable: {a.trial}/{a.path}: {exc}")
    if problems:
        raise VerifyError(f"{len(problems)} stored artifact(s) do not match the bundle\n  " + "\n  ".join(problems))
    return artifacts
