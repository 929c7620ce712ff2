"""The report stage: ``report.html`` of a bundle, one self-contained page.

- :mod:`~runner.report.page`: :func:`write_report` / :func:`render_report`
- :mod:`~runner.report.data`: a bundle's files as one :class:`~runner.report.data.Run`
- :mod:`~runner.report.scan`: the one streaming pass over ``trials.jsonl``, memory bounded by what is shown
- :mod:`~runner.report.sections`, :mod:`~runner.report.trials`, :mod:`~runner.report.provenance`: the page's sections
- :mod:`~runner.report.plots`, :mod:`~runner.report.timeplots`: the figures (matplotlib, imported only when drawing)
- :mod:`~runner.report.html`: escaping and the few HTML helpers

Reads bundles through :mod:`runner.bundle.journal`; never writes outside the bundle.
"""

from runner.report.page import REPORT_FILE, render_report, write_report

__all__ = ["REPORT_FILE", "render_report", "write_report"]
