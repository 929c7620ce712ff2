"""What a worker says about its installed distributions, read without parsing
each one's whole metadata: the same names, versions and module owners as
``importlib.metadata`` finds the slow way, for the installed environment and
for any distribution a property builds."""

from __future__ import annotations

import csv
import importlib
import inspect
import sys
from importlib import metadata
from pathlib import Path, PurePosixPath

from hypothesis import given
from hypothesis import strategies as st

from runner.worker import probe


def reference_tops(dist: metadata.Distribution) -> set[str]:
    """Top-level names of a distribution, as ``importlib.metadata.packages_distributions``
    finds them since Python 3.12: one ``PurePosixPath`` per path its RECORD lists
    (read here, not through ``dist.files``: the ``importlib_metadata`` backport,
    once imported, hands out its own distributions, which leave out files missing on disk)."""
    declared = (dist.read_text("top_level.txt") or "").split()
    if declared:
        return set(declared)
    record = dist.read_text("RECORD")
    if record:
        paths = [row[0] for row in csv.reader(record.splitlines()) if row]
    else:
        paths = (dist.read_text("SOURCES.txt") or "").splitlines()
    names = set()
    for path in paths:
        parts = PurePosixPath(path).parts
        if not parts:  # "." (the standard library raises on it)
            continue
        name = parts[0] if len(parts) > 1 else (inspect.getmodulename(parts[0]) or parts[0])
        if "." not in name:
            names.add(name)
    return names


def reference_imported() -> dict[str, str]:
    owners: dict[str, list[str]] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            for top in reference_tops(dist):
                owners.setdefault(top, []).append(name)
    loaded = {m.partition(".")[0] for m in list(sys.modules)} - set(sys.stdlib_module_names) - set(sys.builtin_module_names)
    found: dict[str, str] = {}
    for top in loaded:
        for name in owners.get(top, ()):
            found.setdefault(probe._normalize(name), metadata.version(name))
    return dict(sorted(found.items()))


def test_the_installed_environment_reads_as_the_standard_library_reads_it() -> None:
    importlib.import_module("sklearn.svm")
    by_stdlib = [(d.metadata["Name"], d.version) for d in metadata.distributions() if d.metadata["Name"]]
    assert [(n, v) for n, v, _ in probe._installed()] == by_stdlib
    assert len(by_stdlib) > 20
    probe._IMPORTED.update(modules=-1, owners=None)
    found = probe.imported_distributions()
    assert found == reference_imported()
    assert {"scikit-learn", "numpy", "scipy"} <= set(found)
    packages = probe.worker_info()["packages"]
    assert packages["scikit-learn"] == metadata.version("scikit-learn")
    assert set(packages) == {probe._normalize(n) for n, _ in by_stdlib}


segment = st.sampled_from(["pkg", "mod.py", "_ext.cpython-311-x86_64-linux-gnu.so", "x-1.0.dist-info", "..", ".",
                           "data", "a,b.py", 'q"uote.py', "LICENSE", "__pycache__", "sub", "n.pyi", ""])  # fmt: skip
record_path = st.lists(segment, min_size=1, max_size=4).map("/".join)
header_value = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=12)


@given(
    dists=st.lists(
        st.fixed_dictionaries({
            "name": header_value.filter(lambda s: s.strip() == s and ":" not in s[:1]),
            "version": st.from_regex(r"\A[0-9]{1,3}(\.[0-9]{1,3}){0,2}\Z"),
            "body": st.lists(st.sampled_from(["Name: decoy", "Version: 9.9", "", "plain text", "Summary: s"]), max_size=4),
            "paths": st.lists(record_path, max_size=8),
            "top_level": st.none() | st.lists(st.sampled_from(["alpha", "beta", "gamma_1"]), max_size=3),
            "metadata_file": st.sampled_from(["METADATA", "PKG-INFO"]),
        }),
        min_size=1, max_size=4,
    )
)  # fmt: skip
def test_any_distribution_reads_as_the_standard_library_reads_it(tmp_path_factory, dists) -> None:
    root = tmp_path_factory.mktemp("site")
    for i, d in enumerate(dists):
        info = Path(root) / f"dist{i}-{d['version']}.dist-info"
        info.mkdir()
        body = "\n".join(d["body"])
        headers = f"Metadata-Version: 2.1\nName: {d['name']}\nVersion: {d['version']}\n"
        (info / d["metadata_file"]).write_text(f"{headers}\n{body}\n", encoding="utf-8")
        rows = []
        for p in d["paths"]:
            quoted = '"' + p.replace('"', '""') + '"' if ("," in p or '"' in p) else p
            rows.append(f"{quoted},,")
        (info / "RECORD").write_text("".join(f"{row}\n" for row in rows), encoding="utf-8")
        if d["top_level"] is not None:
            (info / "top_level.txt").write_text("\n".join(d["top_level"]) + "\n", encoding="utf-8")
    found = list(metadata.distributions(path=[str(root)]))
    assert len(found) == len(dists)
    for dist in found:
        text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
        name, version = probe._headers(text)
        assert (name, version) == (dist.metadata["Name"], dist.version)
        assert probe._tops(dist) == reference_tops(dist)


def test_uncommon_record_paths_split_as_pathlib_splits_them() -> None:
    for path in ["./pkg/mod.py", "pkg//mod.py", "pkg/", "/abs/x.py", "a/./b.py", "mod.py/.", "mod.py", "_c.abi3.so", "x."]:
        parts = PurePosixPath(path).parts
        assert probe._top_of(path) == (parts[0] if len(parts) > 1 else (inspect.getmodulename(parts[0]) or parts[0]))
