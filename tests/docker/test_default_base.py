"""A spec without an `image` section, and no Dockerfile.base beside it, builds
on xrun's built-in base Dockerfile (same contract: `ARG BASE_IMAGE`, a public
default pinned by digest, overridable with --build-arg)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.image import DEFAULT_BASE_IMAGE

from .conftest import DATA, LOCAL_BASE, TEST_IMAGE_NAME

pytestmark = pytest.mark.docker


def test_spec_without_image_section_builds_on_the_built_in_base(docker_client, worker_image, tmp_path: Path) -> None:
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "f.py").write_text("def f(params, ctx):\n    return {'x': 1.0}\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"trial: {{function: exp.f:f}}\nname: {TEST_IMAGE_NAME}\nxrun: 1\n"
        f"environment: {{pip: {DATA / 'worker-env.in'}}}\ncode: {{include: ['exp/*.py']}}\n"
    )
    assert not (tmp_path / "Dockerfile.base").exists()
    res = subprocess.run(
        [sys.executable, "-m", "runner.cli", "build", str(spec), "--json", "--build-arg", f"BASE_IMAGE={LOCAL_BASE}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["base"] == LOCAL_BASE and info["image_id"].startswith("sha256:")
    # An image.base that is named and missing is still an error (exit 2), with where it looked.
    spec.write_text(spec.read_text() + "image: {base: Dockerfile.base}\n")
    named = subprocess.run([sys.executable, "-m", "runner.cli", "build", str(spec)], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert named.returncode == 2 and "neither a Dockerfile" in named.stderr
    assert DEFAULT_BASE_IMAGE in named.stderr
