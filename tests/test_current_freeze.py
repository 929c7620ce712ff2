"""Freezing the ``current`` environment reads only the metadata headers, and
must give exactly what the full metadata parse gives: the environment's hash
keys every cached result of a ``current`` run."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from runner.env.current import freeze
from runner.env.runtime import normalize


def full_parse(path: list[str] | None = None) -> dict[str, str]:
    """What freeze gave before: every distribution's metadata parsed whole."""
    found: dict[str, str] = {}
    kw = {"path": path} if path is not None else {}
    for dist in importlib.metadata.distributions(**kw):
        name = dist.metadata["Name"]
        if name and normalize(name) not in found:
            found[normalize(name)] = dist.version
    return dict(sorted(found.items()))


def test_this_interpreter_freezes_as_the_full_parse_does() -> None:
    assert freeze() == full_parse()
    assert "scikit-learn" in freeze()


names = st.from_regex(r"[A-Za-z][A-Za-z0-9._-]{0,12}[A-Za-z0-9]", fullmatch=True)
versions = st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,2}(rc[0-9])?", fullmatch=True)
bodies = st.text(st.sampled_from("Name: Version: evil 9.9\n\tx"), max_size=60)


@given(dists=st.lists(st.tuples(names, versions, bodies, st.sampled_from(["dist-info", "egg-info", "folded"])),
                      min_size=1, max_size=6))  # fmt: skip
def test_headers_alone_give_what_the_full_parse_gives(tmp_path_factory, dists) -> None:
    """Descriptions that say ``Name:`` or ``Version:`` after the headers,
    egg-info PKG-INFO files, a header folded onto two lines, one name twice
    (the first on the path wins)."""
    site = tmp_path_factory.mktemp("site")
    for i, (name, version, body, kind) in enumerate(dists):
        folder = site / f"{name}-{i}.{'egg-info' if kind == 'egg-info' else 'dist-info'}"
        folder.mkdir()
        folded = "Summary: a summary\n  folded onto a second line\n" if kind == "folded" else ""
        header = f"Metadata-Version: 2.1\nName: {name}\n{folded}Version: {version}\n"
        (folder / ("PKG-INFO" if kind == "egg-info" else "METADATA")).write_text(f"{header}Summary: s\n\n{body}\n")
    assert freeze([str(site)]) == full_parse([str(site)])


def test_a_description_never_names_the_distribution(tmp_path: Path) -> None:
    folder = tmp_path / "real-1.0.dist-info"
    folder.mkdir()
    (folder / "METADATA").write_text("Metadata-Version: 2.1\nName: real\nVersion: 1.0\n\nName: fake\nVersion: 6.6.6\n")
    assert freeze([str(tmp_path)]) == {"real": "1.0"}
