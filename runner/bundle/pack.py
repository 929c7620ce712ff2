"""``xrun pack``: a bundle as one deterministic ``.tar.gz``, and reading it back.

Same bundle, same bytes: members sorted, times set to the bundle's creation
time, owners zeroed, modes normalized, gzip header without a timestamp.
Archives are extracted with :func:`runner._plugin.safe_extract` (no absolute
paths, no ``..``, no links) into the cache, keyed by the archive's sha256.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import tempfile
from datetime import datetime
from pathlib import Path

from runner import config
from runner._hashing import file_digest
from runner._plugin import UnsafeArchive, safe_extract
from runner._safeio import entry_kind, read_bytes
from runner.bundle.manifest import MANIFEST, scan
from runner.errors import UsageError

SUFFIXES = (".tar.gz", ".tgz")
MAX_MEMBER_BYTES = 4 * 1024**3


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith(SUFFIXES)


def pack(bundle_dir: Path, out_file: Path, *, created: str | None = None) -> Path:
    bundle_dir = Path(bundle_dir)
    mtime = 0
    if created:
        try:  # bundle.json is not trusted: anything but a date means time 0
            mtime = int(datetime.fromisoformat(str(created)).timestamp())
        except (ValueError, OverflowError, OSError):
            mtime = 0
    files, unsafe = scan(bundle_dir)
    if unsafe:  # a link would embed its target's bytes; a FIFO or device would hang or never end
        shown = ", ".join(f"{rel} ({entry_kind(bundle_dir / rel)})" for rel in unsafe[:10])
        raise UsageError(f"{bundle_dir}: refusing to pack links or special files: {shown}")
    files.append(MANIFEST)
    raw = io.BytesIO()
    top = bundle_dir.name
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({str(Path(rel).parent) for rel in files} - {"."})
        for d in ["", *dirs]:
            info = tarfile.TarInfo(f"{top}/{d}".rstrip("/"))
            info.type = tarfile.DIRTYPE
            info.mode, info.mtime = 0o755, mtime
            tar.addfile(info)
        for rel in files:
            path = bundle_dir / rel
            if not path.is_file():
                continue
            try:
                data = read_bytes(path, MAX_MEMBER_BYTES)
            except OSError as exc:
                raise UsageError(f"{bundle_dir}: cannot pack {rel}: {exc}") from None
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size, info.mode, info.mtime = len(data), 0o644, mtime
            tar.addfile(info, io.BytesIO(data))
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(out_file.name + ".tmp")
    with open(tmp, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz:
        gz.write(raw.getvalue())
    os.replace(tmp, out_file)
    return out_file


def unpack(archive: Path, display: str | None = None) -> Path:
    """Extract (once) and return the bundle directory inside ``archive``
    (``display`` names it in messages when it is a download)."""
    name = display or str(archive)
    target = config.cache_dir() / "unpacked" / file_digest(archive)[:20]
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpack-"))
        try:
            safe_extract(archive, tmp)
        except UnsafeArchive as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise UsageError(f"{name}: unsafe archive, not extracted: {exc}") from None
        except (tarfile.TarError, OSError, EOFError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise UsageError(f"{name}: not a readable .tar.gz ({exc})") from None
        try:
            os.rename(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    tops = [p for p in target.iterdir() if p.is_dir()]
    if len(tops) != 1 or not (tops[0] / "bundle.json").is_file():
        raise UsageError(f"{name}: does not hold exactly one bundle")
    return tops[0]
