"""The rendered Dockerfile and the pure helpers of runner.image (no Docker needed).

Snapshots live in tests/snapshots/; refresh them with XRUN_UPDATE_SNAPSHOTS=1
after an intended change, and read the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner.errors import UsageError
from runner.image import (
    DEFAULT_BASE_IMAGE,
    ImageInfo,
    base_reference,
    image_tag,
    redact_build_args,
    reference_dockerfile,
    render_dockerfile,
    wheels,
)
from runner.image.build import _builder_image_id

REPO = Path(__file__).resolve().parents[2]
SNAPSHOTS = REPO / "tests" / "snapshots"


def assert_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("XRUN_UPDATE_SNAPSHOTS") == "1" or (
        not path.exists() and os.environ.get("CI") != "true"
    ):
        path.write_text(text)
    assert text == path.read_text(), (
        f"{name} changed; rerun with XRUN_UPDATE_SNAPSHOTS=1 if intended"
    )


def test_dockerfile_for_repo_base_matches_snapshot():
    base = (REPO / "Dockerfile.base").read_text()
    assert_snapshot("Dockerfile.pip", render_dockerfile("pip", base_dockerfile=base))


def test_dockerfile_for_image_reference_matches_snapshot():
    text = render_dockerfile(
        "pip", base_dockerfile=reference_dockerfile("debian:bookworm@sha256:" + "0" * 64)
    )
    assert_snapshot("Dockerfile.pip-reference", text)


def test_render_is_pure_and_depends_only_on_its_inputs():
    base = (REPO / "Dockerfile.base").read_text()
    a = render_dockerfile("pip", base_dockerfile=base)
    assert a == render_dockerfile("pip", base_dockerfile=base)
    assert a != render_dockerfile("pip", base_dockerfile=base, python_version="3.12")
    assert "(3, 12)" in render_dockerfile("pip", base_dockerfile=base, python_version="3.12")


def test_render_installs_hermetically_and_reproducibly():
    text = render_dockerfile("pip")
    assert "--no-index" in text and "--require-hashes" in text and "--no-compile" in text
    assert "--invalidation-mode unchecked-hash" in text
    assert 'touch -h -d "@$SOURCE_DATE_EPOCH"' in text
    assert "COPY --from=xrun-env-builder /xrun/stage/ /" in text
    # The final stage adds exactly one filesystem layer: the environment.
    final = text.split("AS xrun-env\n", 1)[1]
    assert [line.split()[0] for line in final.splitlines() if line.strip()] == ["COPY", "ENV"]


def test_render_uses_prefix_of_python_path():
    text = render_dockerfile("pip", "/srv/env/bin/python")
    assert "python3 -m venv --without-pip /srv/env" in text
    assert "/opt/xrun" not in text


def test_conda_dockerfile_matches_snapshot():
    base = (REPO / "Dockerfile.base").read_text()
    text = render_dockerfile("conda", base_dockerfile=base)
    assert_snapshot("Dockerfile.conda", text)
    assert (
        "/xrun/tool/bin/python /xrun/conda/install.py /xrun/conda/conda-lock.yml /opt/xrun/env linux-64"
        in text
    )
    assert (
        text.split("# Reproducible layer")[1]
        == render_dockerfile("pip", base_dockerfile=base).split("# Reproducible layer")[1]
    )  # the same normalization and final stage


def test_render_rejects_kinds_it_cannot_build():
    with pytest.raises(UsageError, match=r"environment\.current cannot be built"):
        render_dockerfile("current")


def test_last_base_stage_is_named_or_kept():
    unnamed = "ARG BASE_IMAGE=x@sha256:1\nFROM ${BASE_IMAGE}\nRUN true\n"
    assert "FROM ${BASE_IMAGE} AS xrun-base\nRUN true" in render_dockerfile(
        "pip", base_dockerfile=unnamed
    )
    named = "FROM a AS tools\nFROM b as runtime\n"
    text = render_dockerfile("pip", base_dockerfile=named)
    assert "FROM runtime AS xrun-env-builder" in text and "FROM runtime AS xrun-env\n" in text
    with pytest.raises(UsageError, match="no FROM"):
        render_dockerfile("pip", base_dockerfile="ARG X=1\n")


def test_base_reference_prefers_build_arg_then_default():
    base = (REPO / "Dockerfile.base").read_text()
    assert base_reference(base, {}) == DEFAULT_BASE_IMAGE
    assert base_reference(base, {"BASE_IMAGE": "mine:1"}) == "mine:1"
    assert base_reference("FROM debian:12@sha256:abc\n", {}) == "debian:12@sha256:abc"
    assert "@sha256:" in DEFAULT_BASE_IMAGE


def test_secret_looking_build_args_are_redacted():
    assert redact_build_args({"BASE_IMAGE": "b", "PIP_TOKEN": "t", "api_key": "k"}) == {
        "BASE_IMAGE": "b",
        "PIP_TOKEN": "<redacted>",
        "api_key": "<redacted>",
    }


def test_image_tag_carries_lock_and_inputs_hashes():
    assert image_tag("iris-svm", "a" * 64, "b" * 64) == "xrun-env/iris-svm:aaaaaaaaaaaa-bbbbbbbb"
    with pytest.raises(UsageError):
        image_tag("Bad_Name", "a" * 64, "b" * 64)


def test_image_info_json_round_trip():
    info = ImageInfo(
        image="xrun-env/x:1", image_id="sha256:1", env_layer_digest="sha256:2", cached=True,
        base="b", dockerfile="FROM b\n", build_args={"BASE_IMAGE": "b"}, python="/opt/xrun/env/bin/python",
    )  # fmt: skip
    data = info.to_json()
    assert {"image", "image_id", "env_layer_digest", "cached", "base"} <= data.keys()
    assert ImageInfo.from_json({**data, "unknown": 1}) == info


def test_platform_tags_cover_every_glibc_up_to_bookworm():
    tags = wheels.platform_tags()
    assert tags[0] == "manylinux_2_36_x86_64"
    assert {"manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64"} <= set(tags)


def test_lock_helpers_read_uv_output():
    lock = (REPO / "tests/docker/data/tiny.lock").read_text()
    assert wheels.lock_python_version(lock, "3.10") == "3.11"
    assert wheels.lock_python_version("x==1\n", "3.10") == "3.10"
    assert (
        wheels.lock_python_version("# xrun-lock: 1\n# python-version: 3.12\nx==1\n", "3.10")
        == "3.12"
    )
    assert len(wheels.lock_hashes(lock)) == 2


def test_builder_stage_image_is_read_from_the_build_log():
    log = [
        "Step 3/9 : FROM xrun-base AS xrun-env-builder",
        " ---> 3e842973bffc",
        "Step 4/9 : RUN true",
        " ---> Running in c1ce310d503d",
        " ---> 7e67497f0d11",
        "Step 5/9 : FROM xrun-base AS xrun-env",
        " ---> 3e842973bffc",
    ]
    assert _builder_image_id(log) == "7e67497f0d11"
    assert _builder_image_id(log[:3]) is None


def _loaded(tmp_path: Path, image_block: str):
    from runner.spec import loads_spec

    spec = tmp_path / "specs" / "s.yaml"
    spec.parent.mkdir(parents=True, exist_ok=True)
    text = (
        "xrun: 1\nname: img-test\nenvironment: {current: true}\n"
        f"image: {image_block}\n"
        "trial: {function: m:f}\nsweep: {method: grid, parameters: {a: [1]}}\n"
    )
    spec.write_text(text)
    (spec.parent / "m.py").write_text("def f(params, ctx):\n    return {}\n")
    return loads_spec(text, spec)


def test_build_for_spec_resolves_base_and_lets_cli_build_args_win(tmp_path, monkeypatch):
    import runner.image.build as image

    calls = []
    monkeypatch.setattr(image, "build_image", lambda **kw: calls.append(kw) or kw)
    (tmp_path / "Dockerfile.base").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    loaded = _loaded(
        tmp_path,
        "{base: ../Dockerfile.base, build_args: {BASE_IMAGE: a, X: spec}, registry: r.io/x}",
    )
    image.build_for_spec(loaded, "LOCKED", build_args={"X": "cli"}, push=True)
    assert calls[-1]["dockerfile_base"] == (tmp_path / "Dockerfile.base").resolve()
    assert calls[-1]["build_args"] == {"BASE_IMAGE": "a", "X": "cli"}
    assert calls[-1]["name"] == "img-test" and calls[-1]["push_to"] == "r.io/x"

    ref = "debian:bookworm@sha256:" + "0" * 64
    image.build_for_spec(_loaded(tmp_path, f"{{base: '{ref}'}}"), "LOCKED")
    assert calls[-1]["dockerfile_base"] == ref and calls[-1]["push_to"] is None

    with pytest.raises(UsageError, match=r"image\.base: 'nope\.txt' is neither a Dockerfile"):
        image.build_for_spec(_loaded(tmp_path, "{base: nope.txt}"), "LOCKED")
    with pytest.raises(UsageError, match=r"--push needs image\.registry"):
        image.build_for_spec(_loaded(tmp_path, f"{{base: '{ref}'}}"), "LOCKED", push=True)


def test_conda_context_rewrites_urls_and_checks_every_file(tmp_path: Path):
    import hashlib

    import yaml

    from runner.errors import VerifyError
    from runner.image import conda

    pkg = tmp_path / "ch" / "noarch" / "liba-1.0-0.tar.bz2"
    whl = tmp_path / "wheels" / "six-1.0-py3-none-any.whl"
    for path, data in ((pkg, b"conda package"), (whl, b"wheel")):
        path.parent.mkdir(parents=True)
        path.write_bytes(data)

    def entry(manager, name, path, platform="linux-64"):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return {"name": name, "version": "1.0", "manager": manager, "platform": platform,
                "url": path.as_uri(), "hash": {"sha256": digest}}  # fmt: skip

    lock = tmp_path / "env.conda-lock.yml"
    data = {
        "version": 1,
        "metadata": {"platforms": ["linux-64", "osx-arm64"]},
        "package": [
            entry("conda", "liba", pkg),
            entry("pip", "six", whl),
            {"name": "libz", "platform": "osx-arm64", "url": "https://x/y.conda"},
        ],
    }
    lock.write_text(yaml.safe_dump(data))
    context = conda.conda_context(lock)
    rewritten = yaml.safe_load(context.lock)
    assert rewritten["package"][0]["url"] == "file:///xrun/conda/pkgs/liba-1.0-0.tar.bz2"
    assert rewritten["package"][2]["url"] == "https://x/y.conda"  # other platforms untouched
    assert context.packages == {"liba-1.0-0.tar.bz2": pkg}
    assert context.wheels == [whl]
    assert (
        context.pip_requirements
        == f"six==1.0 --hash=sha256:{entry('pip', 'six', whl)['hash']['sha256']}\n"
    )

    pkg.write_bytes(b"tampered")
    with pytest.raises(VerifyError, match="liba does not match the lock"):
        conda.conda_context(lock)
    data["metadata"]["platforms"] = ["osx-arm64"]
    lock.write_text(yaml.safe_dump(data))
    with pytest.raises(UsageError, match=r"add it to environment\.platforms"):
        conda.conda_context(lock)
