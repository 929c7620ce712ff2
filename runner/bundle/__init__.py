"""Provenance bundles: writing, verifying and reading (DESIGN §4)."""
