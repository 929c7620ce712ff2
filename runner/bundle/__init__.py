"""The bundle format (DESIGN §4): what a run leaves behind, and reading it back.

- :mod:`~runner.bundle.journal`: ``BUNDLE_VERSION`` and ``trials.jsonl`` (append, stream, read)
- :mod:`~runner.bundle.write`: :class:`~runner.bundle.write.BundleWriter`, the one recorder of a run
- :mod:`~runner.bundle.read`: opening bundles, ``bundle.json`` checks, summaries; the one gate for paths read from a bundle
- :mod:`~runner.bundle.manifest`: ``MANIFEST.sha256``, written and verified
- :mod:`~runner.bundle.pack`: one deterministic ``.tar.gz``, and unpacking it safely
- :mod:`~runner.bundle.points`: repeats aggregated by parameter point; the best point
- :mod:`~runner.bundle.liveness`: heartbeats, and telling an abandoned run from a running one
- :mod:`~runner.bundle.diff`, :mod:`~runner.bundle.rocrate`: ``xrun diff``; the RO-Crate metadata

Sealing a finished bundle (report, crate, then manifest) is :mod:`runner.seal`,
one layer up, because the report reads the bundle through this package.
"""
