"""``MANIFEST.sha256``: the sha256 of every other file in a bundle.

The format is that of ``sha256sum`` (``<hex>  <relative path>``), so
``sha256sum -c MANIFEST.sha256`` works inside a bundle too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from runner._hashing import file_digest
from runner._safeio import entry_kind, is_regular, open_regular

MANIFEST = "MANIFEST.sha256"
MAX_LINE = 64 * 1024  # a MANIFEST line: 64 hex digits, two spaces, a path


def scan(root: Path) -> tuple[list[str], list[str]]:
    """(regular files, other entries) under ``root``, sorted, ``MANIFEST`` excluded.

    Links (to files or directories), FIFOs, devices and sockets are never
    followed or read: a bundle holds regular files and directories only.
    """
    files, unsafe = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in list(dirnames):
            if (Path(dirpath) / name).is_symlink():  # os.walk lists links to directories here
                dirnames.remove(name)
                filenames.append(name)
        for name in filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if is_regular(path):
                if rel != MANIFEST:
                    files.append(rel)
            else:
                unsafe.append(rel)
    return sorted(files), sorted(unsafe)


def bundle_files(root: Path) -> list[str]:
    return scan(root)[0]


def write_manifest(root: Path) -> None:
    lines = [f"{file_digest(root / rel)}  {rel}\n" for rel in bundle_files(root)]
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, root / MANIFEST)


@dataclass
class VerifyResult:
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    unsafe: list[str] = field(default_factory=list)  # "path (what it is)": links and special files
    checked: int = 0
    manifest_missing: bool = False

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing or self.extra or self.unsafe or self.manifest_missing)


def verify(root: Path) -> VerifyResult:
    result = VerifyResult()
    present, unsafe = scan(root)
    result.unsafe = [f"{rel} ({entry_kind(root / rel)})" for rel in unsafe]
    manifest = root / MANIFEST
    if not is_regular(manifest):
        if manifest.is_symlink() or manifest.exists():
            result.unsafe.append(f"{MANIFEST} ({entry_kind(manifest)})")
        result.manifest_missing = True
        return result
    expected: dict[str, str] = {}
    with open_regular(manifest) as fh:
        while line_bytes := fh.readline(MAX_LINE):
            line = line_bytes.decode("utf-8", errors="replace").rstrip("\n")
            digest, sep, rel = line.partition("  ")
            if sep and rel and len(line_bytes) < MAX_LINE:
                expected[rel] = digest
            elif line.strip():
                result.changed.append(f"{MANIFEST} (malformed line: {line[:60]!r})")
                if len(result.changed) > 100:
                    break
    regular = set(present)
    for rel, digest in sorted(expected.items()):
        if rel not in regular:  # only names found by walking the bundle are ever opened
            if rel not in unsafe:
                result.missing.append(rel)
        elif file_digest(root / rel) != digest:
            result.changed.append(rel)
        result.checked += 1
    result.extra = sorted(regular - set(expected))
    return result
