"""Remote data and artifacts on whoever runs the trial (standard library only).

Part of the worker package (shipped as source; workers run in the spec's
environment, where xrun is not installed), and used by the driver too
(:mod:`runner.remote`), so both hash a URL the same way:

* ``http(s)://`` is read with :mod:`urllib` (nothing to install);
* every other scheme (``s3://``, ``gs://``, ``az://``, ...) through fsspec,
  imported when first needed: a worker environment without it gets
  :class:`FetchUnavailable` saying which package to add to the environment.

A URL ending in ``/`` is a prefix: every object under it, hashed as a sorted
manifest exactly like a local data directory (relative path + sha256 of each
file), so ``s3://bucket/dir/`` and a local copy of ``dir/`` have one digest.

Credentials and endpoints come from each store's standard environment
variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``GOOGLE_APPLICATION_CREDENTIALS``,
``AZURE_STORAGE_CONNECTION_STRING``, ...), which the spec's ``secrets`` set on
workers; nothing here records them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

CHUNK = 1 << 20
HTTP_TIMEOUT = 60.0
MAX_PREFIX_OBJECTS = 100_000

# Which package a scheme needs in the workers' environment (besides fsspec).
PACKAGES = {
    "s3": "s3fs", "s3a": "s3fs",
    "gs": "gcsfs", "gcs": "gcsfs",
    "az": "adlfs", "abfs": "adlfs", "abfss": "adlfs",
}  # fmt: skip
SCHEMES = ("http", "https", *PACKAGES)

Progress = Callable[[int], None]  # called with the number of bytes just read


class FetchError(Exception):
    """A remote object could not be read (network, permissions, missing)."""


class FetchMissing(FetchError):
    """The object is not there (any more)."""


class FetchUnavailable(FetchError):
    """The environment lacks the package a URL's scheme needs."""


class FetchMismatch(Exception):
    """What was fetched does not have the sha256 the run recorded."""


def scheme(url: str) -> str:
    return urllib.parse.urlsplit(url).scheme.lower()


def is_url(value: str) -> bool:
    return "://" in value and scheme(value) in SCHEMES


def is_prefix(url: str) -> bool:
    return url.endswith("/")


def leaf_name(url: str) -> str:
    """A file name for a URL's local copy: its last path segment, made safe."""
    path = urllib.parse.urlsplit(url).path.rstrip("/")
    name = path.rsplit("/", 1)[-1]
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip(".")
    return name[:100] or "data"


# ------------------------------------------------------------------ stores


def _fsspec(url: str) -> tuple[Any, str]:
    """(filesystem, path) for a non-http URL, or :class:`FetchUnavailable`."""
    proto = scheme(url)
    package = PACKAGES.get(proto, "fsspec")
    missing = FetchUnavailable(
        f"reading {proto}:// needs fsspec and {package} in the environment that runs the trial; "
        f"add `{package}` to the spec's environment (and relock), or install xrun[{_extra(proto)}] "
        "for the current environment"
    )
    try:
        import fsspec  # deferred: optional, and this package must import with the standard library alone
    except ImportError:
        raise missing from None
    try:
        fs, path = fsspec.core.url_to_fs(url, **_options(proto))
    except ImportError:  # fsspec without the store's package
        raise missing from None
    return fs, path


def _extra(proto: str) -> str:
    return {"s3fs": "s3", "gcsfs": "gcs", "adlfs": "azure"}.get(PACKAGES.get(proto, ""), "s3")


def _options(proto: str) -> dict[str, Any]:
    """Endpoint overrides from the standard variables, for s3fs versions that do not read them."""
    if PACKAGES.get(proto) == "s3fs":
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            return {"endpoint_url": endpoint}
    return {}


def _http_open(url: str) -> BinaryIO:
    request = urllib.request.Request(url, headers={"User-Agent": "xrun"})
    try:
        return urllib.request.urlopen(request, timeout=HTTP_TIMEOUT)  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 410):
            raise FetchMissing(f"{url}: no such object (HTTP {exc.code})") from None
        raise FetchError(f"cannot read {url}: {exc}") from None
    except OSError as exc:  # URLError, timeouts
        raise FetchError(f"cannot read {url}: {exc}") from None


def list_objects(url: str) -> list[tuple[str, str]]:
    """(relative path, URL) of every object under a prefix, sorted by relative path."""
    if scheme(url) in ("http", "https"):
        raise FetchError(f"{url}: an http(s) URL cannot name a directory (a prefix needs s3://, gs://, az://)")
    fs, path = _fsspec(url)
    try:
        found = fs.find(path, detail=False)
    except Exception as exc:
        raise FetchError(f"cannot list {url}: {type(exc).__name__}: {exc}") from None
    base = path.rstrip("/") + "/"
    proto = scheme(url)
    out = []
    for item in found:
        rel = item[len(base):] if item.startswith(base) else None
        if not rel or rel.endswith("/"):
            continue
        parts = rel.split("/")
        if any(p in ("", ".", "..") for p in parts) or "\\" in rel:  # no key may leave the copy's directory
            raise FetchError(f"{url}: refusing object key {rel!r} (not a plain relative path)")
        out.append((rel, f"{proto}://{item}"))
    if len(out) > MAX_PREFIX_OBJECTS:
        raise FetchError(f"{url}: more than {MAX_PREFIX_OBJECTS:,} objects under the prefix")
    if not out:
        raise FetchMissing(f"{url}: no object under this prefix")
    return sorted(out)


@contextlib.contextmanager
def open_object(url: str) -> Iterator[BinaryIO]:
    """A binary stream of one object."""
    if scheme(url) in ("http", "https"):
        with _http_open(url) as fh:
            yield fh
        return
    fs, path = _fsspec(url)
    try:
        fh = fs.open(path, "rb", block_size=8 * CHUNK)
    except FileNotFoundError:
        raise FetchMissing(f"{url}: no such object") from None
    except Exception as exc:
        raise FetchError(f"cannot read {url}: {type(exc).__name__}: {exc}") from None
    with fh:
        yield fh


def object_size(url: str) -> int | None:
    """The size of one object, when the store tells it cheaply."""
    try:
        if scheme(url) in ("http", "https"):
            request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "xrun"})
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as resp:
                length = resp.headers.get("Content-Length")
                return int(length) if length is not None else None
        fs, path = _fsspec(url)
        return int(fs.info(path)["size"])
    except FetchUnavailable:
        raise
    except Exception:
        return None


def check_readable(urls: dict[str, str]) -> dict[str, Any] | None:
    """Before the sweep, on a worker: ``{"path": [...], "message": ...}`` for the
    first data URL this environment has no package to read, else ``None``."""
    for name, url in urls.items():
        if scheme(url) in ("http", "https"):
            continue
        try:
            _fsspec(url)
        except FetchUnavailable as exc:
            return {"path": ["data", name, "url"], "message": str(exc)}
        except Exception:  # anything else shows when the trial fetches it
            continue
    return None


# ------------------------------------------------------------------ hashing


def _copy(src: BinaryIO, dest: BinaryIO | None, digest: Any, progress: Progress | None, limit: int | None) -> int:
    total = 0
    while chunk := src.read(CHUNK):
        total += len(chunk)
        if limit is not None and total > limit:
            raise FetchError(f"larger than {limit:,} bytes")
        digest.update(chunk)
        if dest is not None:
            dest.write(chunk)
        if progress is not None:
            progress(len(chunk))
    return total


def hash_object(url: str, progress: Progress | None = None) -> tuple[str, int]:
    """(sha256, size) of one object, streamed."""
    h = hashlib.sha256()
    with open_object(url) as fh:
        size = _read_all(url, fh, None, h, progress, None)
    return h.hexdigest(), size


def _read_all(url: str, src: BinaryIO, dest: BinaryIO | None, h: Any, progress: Progress | None, limit: int | None) -> int:
    try:
        return _copy(src, dest, h, progress, limit)
    except FetchError as exc:
        raise FetchError(f"{url}: {exc}") from None
    except OSError as exc:
        raise FetchError(f"reading {url} failed: {exc}") from None


def hash_url(url: str, progress: Progress | None = None) -> tuple[str, int]:
    """(sha256, total size) of an object, or of every object under a prefix as a
    sorted manifest (the digest a local directory of the same files has)."""
    if not is_prefix(url):
        return hash_object(url, progress)
    manifest = hashlib.sha256()
    total = 0
    for rel, item in list_objects(url):
        digest, size = hash_object(item, progress)
        manifest.update(f"{rel}\0{digest}\n".encode())
        total += size
    return manifest.hexdigest(), total


def download(url: str, dest: Path, progress: Progress | None = None, limit: int | None = None) -> tuple[str, int]:
    """Copy an object (or every object under a prefix, into directory ``dest``)
    to ``dest``, which must not exist; returns (sha256, size) of what was written."""
    if not is_prefix(url):
        if scheme(url) not in ("http", "https") and progress is None:
            return _get_file(url, dest, limit)
        h = hashlib.sha256()
        with open_object(url) as src, open(dest, "xb") as out:
            size = _read_all(url, src, out, h, progress, limit)
        return h.hexdigest(), size
    objects = list_objects(url)
    dest.mkdir()
    manifest = hashlib.sha256()
    total = 0
    for rel, item in objects:
        target = dest.joinpath(*rel.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        digest, size = download(item, target, progress, None if limit is None else limit - total)
        manifest.update(f"{rel}\0{digest}\n".encode())
        total += size
    return manifest.hexdigest(), total


def _get_file(url: str, dest: Path, limit: int | None) -> tuple[str, int]:
    """The store's own download (one streamed request, as a plain ``fs.get`` does),
    then the hash of what landed on disk."""
    fs, path = _fsspec(url)
    try:
        if limit is not None and int(fs.info(path)["size"]) > limit:
            raise FetchError(f"{url}: larger than {limit:,} bytes")
        open(dest, "xb").close()  # dest is ours, and new
        fs.get_file(path, str(dest))
    except FileNotFoundError:
        raise FetchMissing(f"{url}: no such object") from None
    except FetchError:
        raise
    except Exception as exc:
        raise FetchError(f"cannot read {url}: {type(exc).__name__}: {exc}") from None
    size = dest.stat().st_size
    if limit is not None and size > limit:
        raise FetchError(f"{url}: larger than {limit:,} bytes")
    return digest_of(dest), size


def upload(path: Path, url: str) -> None:
    """Write a local file to ``url`` (an object store; http(s) is read-only here)."""
    if scheme(url) in ("http", "https"):
        raise FetchError(f"{url}: cannot write to an http(s) URL; use s3://, gs:// or az://")
    fs, target = _fsspec(url)
    try:
        fs.put_file(str(path), target)
    except Exception as exc:
        raise FetchError(f"cannot write {url}: {type(exc).__name__}: {exc}") from None


# ------------------------------------------------------------------ artifacts

REMOTE_SUFFIX = ".xrun-remote.json"  # beside where a stored artifact would be in the bundle


def artifact_url(store: str, sha256: str) -> str:
    """Content-addressed: one object per distinct content, whoever stored it."""
    return f"{store.rstrip('/')}/sha256/{sha256[:2]}/{sha256}"


def store_artifact(path: Path, store: str) -> dict[str, Any]:
    """Upload a trial's file to ``store`` (unless that content is there already)
    and return what the bundle records of it: url, sha256, size."""
    digest, size = digest_of(path), path.stat().st_size
    url = artifact_url(store, digest)
    fs, target = _fsspec(url)
    try:
        present = fs.exists(target) and int(fs.info(target)["size"]) == size
    except Exception:
        present = False
    if not present:
        upload(path, url)
    return {"url": url, "sha256": digest, "size": size}


# ------------------------------------------------------------------ the per-node cache


DEFAULT_CACHE_MAX = 20 * 1024**3  # bytes a node's data cache keeps, unless XRUN_DATA_CACHE_MAX says otherwise
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
          "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4}  # fmt: skip


def cache_max() -> int:
    """``XRUN_DATA_CACHE_MAX`` (``500MB``, ``20GiB``, bytes), else :data:`DEFAULT_CACHE_MAX`."""
    raw = os.environ.get("XRUN_DATA_CACHE_MAX", "").strip()
    if not raw:
        return DEFAULT_CACHE_MAX
    number = raw.rstrip("BbIiKkMmGgTt ")
    unit = raw[len(number):].strip().lower().removesuffix("b")
    try:
        value = float(number) * _UNITS[unit]
    except (KeyError, ValueError):
        raise FetchError(f"XRUN_DATA_CACHE_MAX={raw[:40]!r}: expected a size like 500MB or 20GiB") from None
    if not value >= 0 or value > 2**62:
        raise FetchError(f"XRUN_DATA_CACHE_MAX={raw[:40]!r}: expected a size like 500MB or 20GiB")
    return int(value)


def cache_root() -> Path:
    """This node's cache of fetched data: ``XRUN_DATA_CACHE``, else a directory
    of this user's under the temporary directory, shared by the node's workers."""
    configured = os.environ.get("XRUN_DATA_CACHE")
    if configured:
        root = Path(configured)
        root.mkdir(parents=True, exist_ok=True)
        return root
    uid = os.getuid() if hasattr(os, "getuid") else 0
    root = Path(tempfile.gettempdir()) / f"xrun-data-{uid}"
    root.mkdir(mode=0o700, exist_ok=True)
    st = root.lstat()
    if not root.is_dir() or root.is_symlink() or (hasattr(os, "getuid") and st.st_uid != uid):
        raise FetchError(f"{root} is not a directory of this user's; set XRUN_DATA_CACHE to another place")
    return root


_verified: set[str] = set()  # cache entries this process has hashed itself
_process_lock = threading.Lock()


@contextlib.contextmanager
def _node_lock(path: Path) -> Iterator[None]:
    """Excludes other threads of this process and other processes on the node."""
    with _process_lock:
        try:
            import fcntl  # deferred: POSIX only
        except ImportError:  # not POSIX: this process's threads only
            yield
            return
        with open(path, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def digest_of(path: Path) -> str:
    """sha256 of a file, or the manifest digest of a directory (as the driver computes)."""
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f"{f.relative_to(path).as_posix()}\0{digest_of(f)}\n".encode())
        return h.hexdigest()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def hash_paths(paths: dict[str, str]) -> dict[str, dict[str, Any]]:
    """On a worker, before the sweep: name → ``{"sha256", "size"}`` of each data
    path the driver cannot see (a file, or a directory as a sorted manifest, as
    the driver hashes local data), or ``{"error": ...}`` for one it cannot read."""
    out: dict[str, dict[str, Any]] = {}
    for name, source in paths.items():
        path = Path(source)
        try:
            if path.is_dir():
                size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            elif path.is_file():
                size = path.stat().st_size
            else:
                out[name] = {"error": f"{source}: no such file or directory on the worker"}
                continue
            out[name] = {"sha256": digest_of(path), "size": size}
        except OSError as exc:
            out[name] = {"error": f"{source}: cannot read it on the worker: {exc.strerror or exc}"}
    return out


def fetch_verified(url: str, expected: str, root: Path | None = None, hold: list[Any] | None = None) -> tuple[str, bool]:
    """A local, read-only copy of ``url`` whose sha256 is ``expected``, and whether
    it was downloaded now (``False``: the node's cache had it).

    One download per node: workers on the node share ``root``, keyed by sha256,
    and wait for each other. A cached copy is hashed again once per process
    before it is trusted (anything else may have written the cache). A download
    with another digest raises :class:`FetchMismatch` and leaves nothing behind.

    With ``hold``, the copy is marked in use (a shared lock appended to it,
    released by :func:`release`): eviction never removes it meanwhile. After a
    download, the least recently used entries not in use are evicted until the
    cache is within :func:`cache_max`.
    """
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise FetchError(f"{url}: not a sha256: {expected!r}")
    if root is None:
        root = cache_root()
    else:
        root.mkdir(parents=True, exist_ok=True)
    entry = root / expected
    final = entry / leaf_name(url)
    with _node_lock(root / f".{expected}.lock"):
        if entry.is_symlink() or (entry.exists() and not entry.is_dir()):
            _remove(entry)  # not what this cache writes: never followed
        if final.exists():
            trusted = str(final) in _verified or (not final.is_symlink() and digest_of(final) == expected)
            if trusted:
                _verified.add(str(final))
                _used(root, expected, hold)
                return str(final), False
            _remove(entry)  # damaged: fetch it again
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".fetch-"))
        try:
            target = tmp / final.name
            digest, _ = download(url, target)
            if digest != expected:
                raise FetchMismatch(
                    f"{url} changed since the run hashed it (sha256 {expected[:12]}…, now {digest[:12]}…); "
                    "restore the object, or run again to hash and use the new data"
                )
            entry.mkdir(exist_ok=True)
            os.rename(target, final)  # then read-only: a read-only directory cannot be moved (but by root)
            _read_only(final)
        finally:
            _remove(tmp)
        _verified.add(str(final))
        _used(root, expected, hold)
        evict(root, cache_max(), keep=expected)
        return str(final), True


def _used(root: Path, digest: str, hold: list[Any] | None) -> None:
    """The entry was just used: newest for eviction, and in use while ``hold`` keeps its lock."""
    with contextlib.suppress(OSError):
        os.utime(root / digest)
    if hold is None:
        return
    fh = open(root / f".{digest}.use", "a+b")  # held until release()
    try:
        import fcntl  # deferred: POSIX only

        fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
    except ImportError:
        pass
    hold.append(fh)


def release(hold: list[Any]) -> None:
    """The trial is done with the entries it held."""
    while hold:
        with contextlib.suppress(OSError):
            hold.pop().close()  # closing drops the lock


def _is_entry(path: Path) -> bool:
    name = path.name
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def _size(path: Path) -> int:
    """Bytes under ``path``, never following a link."""
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def entries(root: Path) -> list[tuple[Path, int, float]]:
    """(entry, bytes, last use) of each cache entry, least recently used first."""
    out = []
    try:
        listing = list(root.iterdir())
    except OSError:
        return []
    for p in listing:
        if _is_entry(p):
            with contextlib.suppress(OSError):
                out.append((p, _size(p), p.lstat().st_mtime))
    return sorted(out, key=lambda e: (e[2], e[0].name))


def evict(root: Path, limit: int, keep: str | None = None, dry_run: bool = False) -> tuple[list[tuple[Path, int]], list[Path]]:
    """Remove least recently used entries until the cache holds at most ``limit``
    bytes (``0``: all), skipping ``keep`` and every entry in use (a trial holds
    it, or a worker is fetching it). Returns (removed with their sizes, in use)."""
    found = entries(root)
    total = sum(size for _, size, _ in found)
    removed: list[tuple[Path, int]] = []
    busy: list[Path] = []
    for entry, size, _ in found:
        if total <= limit:
            break
        if entry.name == keep:
            continue
        with _try_exclusive(root / f".{entry.name}.lock") as fetching, _try_exclusive(root / f".{entry.name}.use") as used:
            if not (fetching and used):
                busy.append(entry)
                continue
            if not dry_run:
                _remove(entry)
                _verified.difference_update({v for v in _verified if v.startswith(str(entry) + os.sep)})
        removed.append((entry, size))
        total -= size
    return removed, busy


@contextlib.contextmanager
def _try_exclusive(path: Path) -> Iterator[bool]:
    """Whether nothing else holds ``path``'s lock (then held until the block ends)."""
    try:
        import fcntl  # deferred: POSIX only
    except ImportError:
        yield True
        return
    try:
        fh = open(path, "a+b")
    except OSError:
        yield False
        return
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True


def _read_only(path: Path) -> None:
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in reversed(paths):  # children before their directory
        p.chmod(0o555 if p.is_dir() else 0o444)


def _remove(path: Path) -> None:
    """Remove a cache entry or copy, never following a link out of it."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        with contextlib.suppress(OSError):
            path.unlink()
        return
    if not path.exists():
        return
    for dirpath, _dirs, _files in os.walk(path):  # read-only copies: their directories writable again
        with contextlib.suppress(OSError):
            os.chmod(dirpath, 0o700)
    shutil.rmtree(path, ignore_errors=True)
