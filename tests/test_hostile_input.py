"""Hostile input: generated specs and overrides never produce anything but a
SpecError; archives xrun extracts cannot write outside their destination."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner._plugin import UnsafeArchive, safe_extract
from runner.errors import SpecError
from runner.spec import loads_spec

BASE = {
    "xrun": 1,
    "name": "fuzz",
    "trial": {"function": "experiments.train:run", "timeout": "10s", "retries": 1},
    "sweep": {"method": "grid", "parameters": {"C": [0.1, 1]}, "seed": 1},
    "cluster": {"backend": "local", "workers": 2},
}
KEYS = ["xrun", "name", "trial", "sweep", "cluster", "environment", "data", "code", "image", "secrets",
        "output", "method", "parameters", "samples", "points", "function", "sklearn", "backend", "workers",
        "memory_limit", "timeout", "retries", "uniform", "loguniform", "int", "conda", "pip", "current",
        "address", "objective", "metric", "goal", "repeats", "seed", "path", "url", "sha256"]  # fmt: skip

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20), st.sampled_from(KEYS),
    st.sampled_from(["10m", "2GiB", "tcp://x:1", "grid", "random", "list", "docker", "..", "/etc/passwd"]),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=4),
    ),
    max_leaves=12,
)
paths = st.lists(st.sampled_from(KEYS), min_size=1, max_size=4)


@pytest.fixture(scope="module")
def proj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "experiments").mkdir()
    (root / "experiments" / "train.py").write_text("def run(p, ctx):\n    return {}\n")
    return root


def _set(doc: dict, path: list[str], value: object) -> None:
    node = doc
    for key in path[:-1]:
        nxt = node.get(key)
        if not isinstance(nxt, dict):
            nxt = node[key] = {}
        node = nxt
    node[path[-1]] = value


def _check(text: str, proj: Path, overrides: list[str] = ()) -> None:  # type: ignore[assignment]
    try:
        loads_spec(text, proj / "spec.yaml", overrides)
    except SpecError as exc:
        assert exc.message and "Traceback" not in exc.message


@settings(max_examples=2500, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutations=st.lists(st.tuples(paths, values), min_size=1, max_size=4))
def test_mutated_specs_only_raise_spec_errors(proj: Path, mutations) -> None:
    import copy

    doc = copy.deepcopy(BASE)
    for path, value in mutations:
        _set(doc, path, value)
    try:
        text = yaml.safe_dump(doc)
    except yaml.YAMLError:
        return
    _check(text, proj)


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.text(max_size=300))
def test_arbitrary_text_only_raises_spec_errors(proj: Path, text: str) -> None:
    _check(text, proj)


@settings(max_examples=800, deadline=None, suppress_health_check=list(HealthCheck))
@given(sets=st.lists(st.tuples(st.lists(st.sampled_from(KEYS + ["0", "", "a.b"]), min_size=0, max_size=4), st.text(max_size=20)), max_size=3))
def test_overrides_only_raise_spec_errors(proj: Path, sets) -> None:
    overrides = [".".join(k) + "=" + v for k, v in sets]
    _check(yaml.safe_dump(BASE), proj, overrides)


def test_huge_document_is_refused_quickly(proj: Path) -> None:
    text = "xrun: 1\nname: big\nx: [" + ",".join(["1"] * 1_500_000) + "]\n"
    start = time.monotonic()
    with pytest.raises(SpecError, match="limited to"):
        from runner import _yaml

        _yaml.decode(text.encode(), "big.yaml")
    assert time.monotonic() - start < 2


def test_deep_nesting_is_refused(proj: Path) -> None:
    text = "xrun: 1\nname: deep\nx: " + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises(SpecError):
        loads_spec(text, proj / "spec.yaml")


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buf.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize(
    "member",
    [
        _info("/etc/evil"),
        _info("../evil"),
        _info("a/../../evil"),
        _info("link", tarfile.SYMTYPE, "/etc/passwd"),
        _info("hard", tarfile.LNKTYPE, "../../x"),
        _info("dev", tarfile.CHRTYPE),
        _info("fifo", tarfile.FIFOTYPE),
    ],
    ids=["absolute", "dotdot", "nested-dotdot", "symlink", "hardlink", "device", "fifo"],
)
def test_unsafe_archives_are_refused(tmp_path: Path, member: tarfile.TarInfo) -> None:
    data = _tar([(_info("ok.py"), b"x = 1\n"), (member, b"boom")])
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(UnsafeArchive):
        safe_extract(data, dest)
    assert list(dest.iterdir()) == []  # nothing extracted before the check
    assert not (tmp_path / "evil").exists()


def test_safe_archive_extracts(tmp_path: Path) -> None:
    data = _tar([(_info("pkg/mod.py"), b"x = 1\n")])
    safe_extract(data, tmp_path)
    assert (tmp_path / "pkg" / "mod.py").read_text() == "x = 1\n"
