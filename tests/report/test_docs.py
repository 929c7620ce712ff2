"""docs/: the spec reference is generated from the schema and current; the specs
shown in the docs are valid."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runner._docgen import render_spec_reference
from runner.spec import json_schema, loads_spec

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"


def test_committed_spec_reference_is_current() -> None:
    committed = (DOCS / "spec-reference.md").read_text(encoding="utf-8")
    assert committed == render_spec_reference(), (
        "docs/spec-reference.md is stale: python -m runner._docgen > docs/spec-reference.md"
    )


def test_reference_names_every_key_of_the_schema() -> None:
    text = render_spec_reference()
    defs = json_schema()["$defs"]
    for name, definition in defs.items():
        for key in definition.get("properties", {}):
            assert re.search(rf"`[^`]*\b{re.escape(key)}\b[^`]*`", text), f"{name}.{key}"
    for key in json_schema()["properties"]:
        assert f"`{key}`" in text, key


def _full_specs(path: Path) -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", path.read_text(encoding="utf-8"), re.S)
    return [b for b in blocks if re.search(r"^xrun: 1$", b, re.M)]


@pytest.mark.parametrize("doc", ["spec-reference.md", "tutorial.md"])
def test_specs_in_the_docs_are_valid(doc: str) -> None:
    specs = _full_specs(DOCS / doc)
    assert specs, f"no complete spec in docs/{doc}"
    for text in specs:
        # As if saved in specs/: their relative paths point into this repository.
        loaded = loads_spec(text, REPO / "specs" / f"from-{doc}.yaml")
        assert loaded.spec.name
