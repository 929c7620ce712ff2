"""``report.html``: the human view of a bundle, with plots (DESIGN §4).

The report is one self-contained file: plots are inline SVG, style and script
are inline, and nothing is loaded from anywhere (a Content-Security-Policy
says so to the browser). It is made only from the files of the bundle, so
``xrun report BUNDLE`` can rewrite it at any time, and the same bundle always
gives the same bytes.

Sections: the run, the prepare and final stages (the final model: its
holdout metrics and sha256), the best trials, parameter points with their repeats
aggregated (mean ± std), learning curves from ``ctx.log``, the objective against each parameter,
parallel coordinates, a timeline of trials per worker, failures, the
environment, the reproduction verdict (``reproduce.json``, when the bundle is
a reproduction) and every trial.

matplotlib is imported only when plots are drawn: ``import runner.report``
stays cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from runner._version import __version__
from runner.report import html as h
from runner.report import provenance as prov
from runner.report import search, trials
from runner.report import sections as sec
from runner.report import stages as stg
from runner.report.data import Run, load_run
from runner.report.scan import Scan

__all__ = ["REPORT_FILE", "render_report", "write_report"]

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"


def write_report(bundle_dir: Path, *, scanned: Scan | None = None) -> Path:
    """Write ``<bundle>/report.html`` from the bundle's files; returns its path
    (``scanned``: its journal already scanned, :func:`runner.report.data.new_scan`).

    The caller rewrites ``MANIFEST.sha256`` afterwards when the bundle already
    had one (``runner.bundle.manifest.write_manifest``).
    """
    bundle_dir = Path(bundle_dir)
    text = render_report(bundle_dir, scanned=scanned)
    path = bundle_dir / REPORT_FILE
    tmp = path.with_name(path.name + ".tmp")
    # "replace": a string of a bundle may hold a lone surrogate (a JSON escape), which UTF-8 cannot encode
    tmp.write_bytes(text.encode("utf-8", "replace"))
    tmp.replace(path)
    return path


def render_report(bundle_dir: Path, *, scanned: Scan | None = None) -> str:
    """The report of a bundle as HTML text."""
    run = load_run(Path(bundle_dir), scanned)
    # Some sections apply to some bundles only (the adaptive search section).
    shown = [(a, t, r) for a, t, r in _SECTIONS if a not in _OPTIONAL or _OPTIONAL[a](run)]
    body = [_header(run, shown)]
    for anchor, title, render in shown:
        body.append(_section(anchor, title, render, run))
    body.append(
        f"<footer>Written by xrun {h.esc(_version())} from the files of this bundle only; "
        "the page loads nothing and opens offline.</footer>"
    )
    return h.page(f"{run.name} — xrun report", "\n".join(body))


def _version() -> str:
    return __version__


def _section(anchor: str, title: str, render: Callable[[Run], str], run: Run) -> str:
    try:
        inner = render(run)
    except ImportError as exc:
        log.warning("report: the %s section needs %s", anchor, exc.name or exc)
        inner = f'<p class="note">Plots need matplotlib ({h.esc(exc)}): <code>pip install matplotlib</code>.</p>'
    except Exception as exc:  # a report must not take a finished run down with it
        log.warning("report: the %s section failed: %s", anchor, f"{type(exc).__name__}: {exc}"[:300])
        log.debug("report: the %s section failed", anchor, exc_info=True)
        inner = f'<p class="note">This section could not be rendered: {h.esc(exc)}</p>'
    return f'<section id="{anchor}">\n<h2>{h.esc(title)}</h2>\n{inner}\n</section>'


def _header(run: Run, shown: list[tuple[str, str, Callable[[Run], str]]]) -> str:
    m = run.meta
    desc = run.resolved.get("description") or ""
    nav = "".join(f'<a href="#{a}">{h.esc(t)}</a>' for a, t, _ in shown)
    return (
        '<header class="top">\n'
        f"<h1>{h.esc(run.name)}</h1>{h.badge(m.get('status'))}\n"
        + (f'<p class="desc">{h.esc(desc)}</p>\n' if desc else "")
        + f'<p class="runid mono">{h.esc(m.get("run_id") or run.root.name)}</p>\n'
        f"<nav>{nav}</nav>\n</header>"
    )


_SECTIONS: list[tuple[str, str, Callable[[Run], str]]] = [
    ("run", "Run", sec.run_section),
    ("stages", "Stages and final model", stg.stages_section),
    ("best", "Best trials", sec.best_section),
    ("search", "Adaptive search", search.search_section),
    ("points", "Points (repeats aggregated)", trials.points_section),
    ("curves", "Learning curves", trials.curves_section),
    ("objective", "Objective by parameter", sec.objective_section),
    ("parallel", "Parallel coordinates", sec.parallel_section),
    ("timeline", "Timeline", sec.timeline_section),
    ("failures", "Failures", prov.failures_section),
    ("environment", "Environment", prov.environment_section),
    ("reproduction", "Reproduction", prov.reproduction_section),
    ("trials", "All trials", trials.trials_section),
]
# Sections shown only for some bundles.
_OPTIONAL: dict[str, Callable[[Run], bool]] = {"search": search.is_adaptive}
