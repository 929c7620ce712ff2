"""Sealing a finished bundle: the derived files (``report.html``, the RO-Crate)
and then ``MANIFEST.sha256`` over everything.

The last step of a run (and of ``xrun report`` / re-sealing): it sits above the
report, which reads the bundle through :mod:`runner.bundle`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from runner.bundle.manifest import verify, write_manifest
from runner.bundle.rocrate import write_crate
from runner.errors import VerifyError
from runner.report import write_report
from runner.report.scan import Scan

log = logging.getLogger(__name__)


def seal(root: Path, *, scanned: Scan | None = None) -> None:
    """Write the derived files (report, RO-Crate), then the manifest over everything
    (``scanned``: the journal already scanned for the report, :func:`runner.report.data.new_scan`).

    A failure to render the report or the crate is logged and recorded; it
    never costs the results, which are already on disk.
    """
    makers: tuple[tuple[str, Callable[[Path], object]], ...] = (
        ("report.html", lambda r: write_report(r, scanned=scanned)), ("ro-crate-metadata.json", write_crate))
    for name, make in makers:
        try:
            make(root)
        except Exception as exc:  # pragma: no cover - exercised only by bugs
            log.error("could not write %s: %s", name, exc)  # the bundle says so too
            log.debug("could not write %s", name, exc_info=True)
            (root / f"{name}.error.txt").write_text(f"{type(exc).__name__}: {exc}\n", encoding="utf-8")
    write_manifest(root)


def reseal(root: Path) -> None:
    """Rewrite a finished bundle's derived files and manifest, only if it verifies.

    Sealing a bundle whose files no longer match its manifest would make a
    tampered bundle look genuine, so that is refused (:class:`VerifyError`).
    """
    result = verify(root)
    if not result.ok:
        problems = [*(f"changed: {p}" for p in result.changed), *(f"missing: {p}" for p in result.missing),
                    *(f"extra: {p}" for p in result.extra), *(f"not a regular file: {p}" for p in result.unsafe)]  # fmt: skip
        if result.manifest_missing:
            problems.append("MANIFEST.sha256 is missing")
        raise VerifyError(
            f"{root}: refusing to re-seal a bundle that does not verify ({len(problems)} problem(s)):\n  "
            + "\n  ".join(problems[:20])
        )
    seal(root)
