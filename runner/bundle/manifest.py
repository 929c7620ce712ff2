"""``MANIFEST.sha256``: the sha256 of every other file in a bundle.

The format is that of ``sha256sum`` (``<hex>  <relative path>``), so
``sha256sum -c MANIFEST.sha256`` works inside a bundle too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from runner._hashing import file_digest

MANIFEST = "MANIFEST.sha256"



def bundle_files(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if rel != MANIFEST:
                out.append(rel)
    return sorted(out)


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
    checked: int = 0
    manifest_missing: bool = False

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing or self.extra or self.manifest_missing)


def verify(root: Path) -> VerifyResult:
    result = VerifyResult()
    manifest = root / MANIFEST
    if not manifest.is_file():
        result.manifest_missing = True
        return result
    expected: dict[str, str] = {}
    for line in manifest.read_text(encoding="utf-8", errors="replace").splitlines():
        digest, sep, rel = line.partition("  ")
        if sep and rel:
            expected[rel] = digest
        elif line.strip():
            result.changed.append(f"{MANIFEST} (malformed line: {line[:60]!r})")
    present = set(bundle_files(root))
    for rel, digest in sorted(expected.items()):
        if rel not in present:
            result.missing.append(rel)
        elif file_digest(root / rel) != digest:
            result.changed.append(rel)
        result.checked += 1
    result.extra = sorted(present - set(expected))
    return result
