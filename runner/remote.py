"""Object storage and http(s) on the driver: hashing data URLs, moving bundles
and artifacts (fsspec for ``s3://``, ``gs://``, ``az://``; urllib for http(s)).

The reading and hashing itself is :mod:`runner.worker.fetch`, the code workers run,
so the driver and the workers agree on every digest. This module adds what
only the driver needs: xrun's errors, a progress hook the CLI fills in, and
bounded downloads to temporary files.
"""

from __future__ import annotations

import contextlib
import contextvars
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from runner.errors import InfraError, UsageError, VerifyError
from runner.worker import fetch as _fetch

# (label, total bytes or None) -> a callable taking bytes read, and a close callable.
ProgressFactory = Callable[[str, "int | None"], tuple[Callable[[int], None], Callable[[], None]]]
progress_factory: contextvars.ContextVar[ProgressFactory | None] = contextvars.ContextVar(
    "xrun_transfer_progress", default=None
)
PROGRESS_MIN_BYTES = 32 * 1024 * 1024  # smaller objects are hashed without a progress bar

MAX_BUNDLE_BYTES = 4 * 1024**3  # an archive fetched from a URL is refused past this size

is_url = _fetch.is_url
is_prefix = _fetch.is_prefix


def check_url(url: str) -> str | None:
    """Why ``url`` cannot name data or a store, or ``None``."""
    proto = _fetch.scheme(url)
    if "://" not in url or proto not in _fetch.SCHEMES:
        return f"unsupported URL {url!r}: expected one of " + ", ".join(f"{s}://" for s in _fetch.SCHEMES)
    rest = url.split("://", 1)[1]
    if not rest or rest.startswith("/"):
        return f"{url!r} names no bucket or host"
    return None


def writable(url: str) -> str | None:
    """Why ``url`` cannot be written to (http(s) is read-only here), or ``None``."""
    if _fetch.scheme(url) in ("http", "https"):
        return f"{url!r}: xrun writes only to object storage (s3://, gs://, az://), not to http(s)"
    return None


@contextlib.contextmanager
def _progress(label: str, total: int | None) -> Iterator[Callable[[int], None] | None]:
    factory = progress_factory.get()
    if factory is None or (total is not None and total < PROGRESS_MIN_BYTES):
        yield None
        return
    advance, close = factory(label, total)
    try:
        yield advance
    finally:
        close()


def _translate(url: str, exc: Exception) -> InfraError:
    if isinstance(exc, _fetch.FetchUnavailable):
        return InfraError(f"{url}: {exc}")
    return InfraError(str(exc) if url in str(exc) else f"{url}: {exc}")


def hash_url(url: str) -> tuple[str, int]:
    """(sha256, size) of an object or of a prefix's sorted manifest, streamed."""
    try:
        total = None if _fetch.is_prefix(url) else _fetch.object_size(url)
        with _progress(f"hashing {url}", total) as advance:
            return _fetch.hash_url(url, advance)
    except _fetch.FetchError as exc:
        raise _translate(url, exc) from None


def upload(path: Path, url: str) -> None:
    try:
        _fetch.upload(path, url)
    except _fetch.FetchError as exc:
        raise _translate(url, exc) from None


@contextlib.contextmanager
def downloaded(url: str, *, limit: int = MAX_BUNDLE_BYTES, suffix: str = "") -> Iterator[Path]:
    """The object at ``url`` in a private temporary file, removed afterwards.

    The file's name is xrun's own (nothing from the URL chooses where it is
    written) and a download past ``limit`` bytes is refused."""
    if _fetch.is_prefix(url):
        raise UsageError(f"{url}: expected one object, not a prefix")
    with tempfile.TemporaryDirectory(prefix="xrun-download-") as tmp:
        target = Path(tmp) / f"download{suffix}"
        try:
            with _progress(f"downloading {url}", _fetch.object_size(url)) as advance:
                _fetch.download(url, target, advance, limit)
        except _fetch.FetchError as exc:
            raise _translate(url, exc) from None
        yield target


def verify_object(url: str, sha256: str, size: int | None = None) -> None:
    """:class:`VerifyError` unless the object at ``url`` has this sha256 (and size)."""
    actual, actual_size = hash_url(url)
    if actual != sha256 or (size is not None and actual_size != size):
        raise VerifyError(
            f"{url}: sha256 {actual[:12]}… ({actual_size:,} bytes), the bundle records "
            f"{sha256[:12]}…" + (f" ({size:,} bytes)" if size is not None else "")
        )


@dataclass(frozen=True)
class CacheCleaning:
    root: Path
    removed: list[tuple[Path, int]]  # entries removed (or, dry run, to remove) and their bytes
    in_use: list[Path]  # entries a running trial holds, or a worker is fetching: left alone


def clean_data_cache(dry_run: bool = False) -> CacheCleaning:
    """Empty this machine's data cache (the local backend's workers share it) of
    every entry not in use; with ``dry_run``, only say what would go."""
    try:
        root = _fetch.cache_root()
    except _fetch.FetchError as exc:
        raise UsageError(f"data cache: {exc}") from None
    removed, busy = _fetch.evict(root, 0, dry_run=dry_run)
    return CacheCleaning(root, removed, busy)
