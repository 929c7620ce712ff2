"""Reading bundles back: summaries for ``xrun show`` and ``xrun ls``."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import remote
from runner._safeio import UnsafePath, entry_kind, is_regular, member_path, read_text
from runner.bundle.journal import BUNDLE_VERSION, latest_records, read_journal
from runner.bundle.liveness import abandoned
from runner.errors import UsageError


@dataclass
class Bundle:
    root: Path
    meta: dict[str, Any]

    @property
    def trials(self) -> list[dict[str, Any]]:
        try:
            return latest_records(read_journal(self.root / "trials.jsonl"))
        except OSError as exc:
            raise UsageError(f"{self.root}: trials.jsonl: {exc}") from None

    def member(self, rel: str, *, directory: str | None = None) -> Path:
        """The regular file ``rel`` of this bundle (with ``directory``: ``rel`` is a
        plain name in that directory), for a ``rel`` that may come from a bundle file.

        The one gate for paths read from a bundle: see :func:`runner._safeio.member_path`.
        """
        try:
            if directory is None:
                path = member_path(self.root, rel)
            else:
                path = member_path(member_path(self.root, directory), rel, name_only=True)
        except UnsafePath as exc:
            raise UsageError(f"{self.root}: refusing the path {rel!r} read from the bundle: {exc}") from None
        if not is_regular(path):
            raise UsageError(f"{self.root}: {path.relative_to(self.root)} is missing or not a regular file ({entry_kind(path)})")
        return path

    def json(self, name: str) -> Any:
        """A JSON object file of the bundle (``None`` when absent); unreadable,
        hostile or non-object ones are a usage error."""
        path = self.root / name
        if not (path.exists() or path.is_symlink()):
            return None
        try:
            value = json.loads(read_text(self.member(name)))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: unreadable ({exc})") from None
        if not isinstance(value, dict):
            raise UsageError(f"{path}: not a JSON object")
        return value


def open_bundle(path: Path | str) -> Bundle:
    """A bundle directory, or a ``xrun pack`` archive (extracted safely once),
    local or at a URL (``s3://…/run.tar.gz``: downloaded to a private temporary
    file, size-bounded, then extracted like a local archive)."""
    from runner.bundle.pack import is_archive, unpack  # deferred: the archive code imports Dask

    if isinstance(path, str) and remote.is_url(path):
        with remote.downloaded(path, suffix=".tar.gz") as archive:
            root = unpack(archive, display=path)
        return Bundle(root, read_meta(root))
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such bundle")
    if is_archive(path):
        path = unpack(path)
    meta = read_meta(path)
    return Bundle(path, meta)


def read_meta(root: Path) -> dict[str, Any]:
    """``bundle.json`` of the bundle directory ``root``, checked: a regular file
    holding a JSON object of a bundle version this xrun reads."""
    meta_path = root / "bundle.json"
    if not is_regular(meta_path):
        raise UsageError(f"{root}: not a bundle (no bundle.json, or not a regular file)")
    try:
        meta = json.loads(read_text(meta_path))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{meta_path}: unreadable ({exc})") from None
    if not isinstance(meta, dict):
        raise UsageError(f"{meta_path}: not a bundle (a JSON {type(meta).__name__}, not an object)")
    version = meta.get("bundle_version")
    if version != BUNDLE_VERSION:
        raise UsageError(f"{root}: bundle version {version!r} is not supported (this xrun reads {BUNDLE_VERSION})")
    return meta


def find_bundles(directory: Path) -> list[Bundle]:
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"{directory}: not a directory")
    out = []
    for child in sorted(directory.iterdir()):
        if (child / "bundle.json").is_file():
            try:
                out.append(open_bundle(child))
            except UsageError:
                continue
    return out


def effective_status(b: Bundle) -> tuple[str, str | None]:
    """``bundle.json``'s status, except that a ``running`` bundle whose driver is
    gone is ``abandoned`` (with the reason)."""
    status = str(b.meta.get("status"))
    why = abandoned(b.meta, b.root)
    return ("abandoned", why) if why else (status, None)


def failed_before_start(b: Bundle) -> bool:
    """A run that ended in error before any trial finished or came from the cache."""
    raw = b.meta.get("counts")
    c: dict[str, Any] = raw if isinstance(raw, dict) else {}
    done = sum(int(v) for k, v in c.items() if k in ("ok", "cached", "pruned", "failed") and isinstance(v, int))
    if b.meta.get("status") != "error" or done:
        return False
    try:
        return (b.root / "trials.jsonl").stat().st_size == 0
    except FileNotFoundError:
        return True
    except OSError:
        return False


def remove_failed_before_start(directory: Path) -> list[Path]:
    """Delete the bundles in ``directory`` of runs that ended in error before any
    trial ran or came from the cache (nothing computed is lost). Only real
    directories directly inside ``directory`` are considered; links are skipped."""
    gone = []
    for b in find_bundles(directory):
        if b.root.is_symlink() or b.root.parent != Path(directory) or not failed_before_start(b):
            continue
        shutil.rmtree(b.root)
        gone.append(b.root)
    return gone


def summary_row(b: Bundle) -> dict[str, Any]:
    m = b.meta
    status, why = effective_status(b)
    return {
        "path": str(b.root),
        "run_id": m.get("run_id"),
        "created": m.get("created"),
        "status": status,
        "abandoned": why,
        "failed_before_start": failed_before_start(b),
        "backend": m.get("backend"),
        "counts": m.get("counts", {}),
        "best": m.get("best"),
        "duration_seconds": m.get("duration_seconds"),
    }
