"""Reading files that someone else made: bundles, archives, cache entries, specs.

Nothing read from such a file may choose where xrun reads or writes outside the
directory it belongs to, and nothing may make xrun read without bound. So:

* :func:`member_path` is the one check for a path taken from inside a bundle
  (a name in ``env.json``, a line of ``MANIFEST.sha256``): relative, no ``..``,
  no link anywhere on the way, and inside the bundle once resolved.
* :func:`open_regular` opens a regular file only, without following a final
  symlink and without blocking on a FIFO; :func:`read_bytes` reads it up to a
  limit.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath
from typing import BinaryIO

MAX_JSON_BYTES = 256 * 1024 * 1024  # a bundle's or cache entry's JSON file
MAX_SPEC_BYTES = 16 * 1024 * 1024  # a spec file (YAML)


class UnsafePath(OSError):
    """A path or file that xrun refuses to read or write (with the reason)."""


def open_regular(path: Path, *, follow: bool = False) -> BinaryIO:
    """``path`` opened for binary reading; refuses FIFOs, devices, directories,
    and links (unless ``follow``: then what a link leads to must be a regular file)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | (0 if follow else getattr(os, "O_NOFOLLOW", 0))
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW: the last component is a symlink
            raise UnsafePath(f"{path}: is a symbolic link") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafePath(f"{path}: not a regular file ({_kind(mode)})")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: Path, limit: int, *, follow: bool = False) -> bytes:
    """A regular file's bytes; :class:`UnsafePath` when it is larger than ``limit``."""
    with open_regular(path, follow=follow) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise UnsafePath(f"{path}: larger than {limit:,} bytes")
    return data


def read_text(path: Path, limit: int = MAX_JSON_BYTES) -> str:
    return read_bytes(path, limit).decode("utf-8", errors="replace")


def is_regular(path: Path) -> bool:
    """A regular file, not a link to one."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def member_path(root: Path, rel: object, *, name_only: bool = False) -> Path:
    """``root / rel`` for a ``rel`` read from a file under ``root``, or :class:`UnsafePath`.

    ``rel`` must be a non-empty relative POSIX path (``name_only``: one plain
    name) without ``..`` or control characters, whose every component under
    ``root`` is not a symlink, and which stays inside ``root`` when resolved.
    """
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise UnsafePath(f"{rel!r}: not a file name")
    if any(ord(c) < 32 or c == "\x7f" for c in rel) or "\\" in rel:
        raise UnsafePath(f"{rel!r}: not a file name")
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or rel.startswith("~"):
        raise UnsafePath(f"{rel!r}: escapes {root}")
    if name_only and (len(pure.parts) != 1 or rel in (".", "..")):
        raise UnsafePath(f"{rel!r}: expected a plain file name")
    path = root
    for part in pure.parts:
        path = path / part
        if path.is_symlink():
            raise UnsafePath(f"{rel!r}: is or goes through a symbolic link")
    if not path.resolve().is_relative_to(root.resolve()):
        raise UnsafePath(f"{rel!r}: escapes {root}")
    return path


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):  # fmt: skip
        if test(mode):
            return name
    return "a special file"


def entry_kind(path: Path) -> str:
    """What a directory entry is, for messages (without following links)."""
    try:
        return _kind(os.lstat(path).st_mode) if not is_regular(path) else "a regular file"
    except OSError:
        return "unreadable"
