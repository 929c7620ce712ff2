"""The committed JSON Schema matches the models, and example specs validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.schema import render
from runner.spec import load_spec

REPO = Path(__file__).resolve().parents[1]


def test_committed_schema_is_current() -> None:
    committed = (REPO / "schema" / "spec-v1.json").read_text()
    assert committed == render(), "schema/spec-v1.json is stale: run `make schema`"


@pytest.mark.parametrize("spec", sorted((REPO / "specs").glob("*.yaml")), ids=lambda p: p.name)
def test_example_specs_are_valid(spec: Path) -> None:
    loaded = load_spec(spec)
    assert loaded.spec.name
