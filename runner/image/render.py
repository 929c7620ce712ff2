"""Pure rendering of worker images: the Dockerfile, the tag and what ``image.json`` records.

Nothing here talks to Docker or reads files: the Dockerfile is a function of the
base Dockerfile and the lock (snapshot-tested). Building and pushing are in
:mod:`runner.image.build`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Any

from runner.errors import UsageError
from runner.image import conda as _conda
from runner.image import wheels

IMAGE_FORMAT = 1  # bump when the rendered Dockerfile or context changes meaning
ENV_PREFIX = "/opt/xrun/env"
ENV_PYTHON = f"{ENV_PREFIX}/bin/python"
DEFAULT_PYTHON_VERSION = "3.11"
# The public base xrun builds on when a spec names none. Tests and offline
# machines pass a local one: --build-arg BASE_IMAGE=xrun-base:bookworm.
DEFAULT_BASE_IMAGE = (
    "python:3.11-slim-bookworm"
    "@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b"
)
# Timestamp of every file in the environment layer. 1980-01-01, not 0: zip
# files cannot hold earlier dates, and tools zip site-packages.
SOURCE_DATE_EPOCH = 315532800
BASE_STAGE = "xrun-base"
BUILDER_STAGE = "xrun-env-builder"
FINAL_STAGE = "xrun-env"
REPOSITORY_PREFIX = "xrun-env"

LABEL_IMAGE = "xrun.image"  # format version; marks images xrun built
LABEL_LOCK = "xrun.lock-hash"
LABEL_INPUTS = "xrun.inputs-hash"
LABEL_KIND = "xrun.env-kind"

_SECRET_KEY_RE = re.compile(r"SECRET|TOKEN|PASSW|PWD|KEY|CREDENTIAL|AUTH|PRIVATE", re.I)
REDACTED = "<redacted>"


@dataclass(frozen=True)
class ImageInfo:
    """A built (or reused) worker image, as recorded in ``image.json``."""

    image: str  # local tag, xrun-env/<name>:<lock hash>-<inputs hash>
    image_id: str
    env_layer_digest: str  # sha256 of the environment layer (RootFS diff id): reproducible
    cached: bool  # True when no build ran
    base: str  # base image reference (BASE_IMAGE)
    dockerfile: str  # rendered Dockerfile text
    build_args: dict[str, str]  # values of secret-looking keys are redacted
    python: str  # interpreter of the environment inside the image
    base_id: str | None = None  # local image ID of the base, when the daemon has it
    lock_hash: str = ""
    pushed: str | None = None  # <registry>:<tag> when pushed

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def to_record(self) -> dict[str, Any]:
        """The content of a bundle's ``image.json``."""
        return {"image_format": IMAGE_FORMAT, **self.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImageInfo:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


# --------------------------------------------------------------------- rendering

_FROM_RE = re.compile(
    r"^(?P<head>[ \t]*FROM[ \t]+(?:--\S+[ \t]+)*(?P<image>\S+))"
    r"(?:[ \t]+AS[ \t]+(?P<stage>\S+))?[ \t]*$",
    re.I | re.M,
)
_ARG_BASE_RE = re.compile(r"^[ \t]*ARG[ \t]+BASE_IMAGE(?:=(?P<default>\S+))?[ \t]*$", re.M)


def reference_dockerfile(reference: str) -> str:
    """A base Dockerfile for a spec whose ``image.base`` is an image reference."""
    return f"ARG BASE_IMAGE={reference}\nFROM ${{BASE_IMAGE}}\n"


def render_dockerfile(
    env_kind: str,
    python_path: str = ENV_PYTHON,
    *,
    base_dockerfile: str | None = None,
    python_version: str = DEFAULT_PYTHON_VERSION,
    source_date_epoch: int = SOURCE_DATE_EPOCH,
) -> str:
    """The Dockerfile of a worker image: a pure function of its arguments.

    ``base_dockerfile`` is the text of the spec's base Dockerfile (default: the
    pinned public Python image); its last stage becomes ``xrun-base``. The
    environment is installed into the prefix of ``python_path`` from the build
    context (``tools/``, ``requirements.lock``, ``wheelhouse/``, and for conda
    ``conda/``), which the build reads without a network. ``python_version``
    is the Python the pip lock was made for (pip only).
    """
    if env_kind not in ("pip", "conda"):
        raise UsageError(
            f"environment.{env_kind} cannot be built into an image: the docker backend "
            "needs a locked environment (environment.pip or environment.conda)"
        )
    prefix = str(PurePosixPath(python_path).parent.parent)
    base_text, base_stage = _name_base_stage(
        base_dockerfile or reference_dockerfile(DEFAULT_BASE_IMAGE)
    )
    pip = f"/xrun/tools/{wheels.PIP_TOOL_WHEEL}/pip"
    pip_install = (
        f"{pip} install --no-index --find-links=/xrun/wheelhouse --require-hashes --no-deps "
        "--no-compile --no-warn-script-location -r /xrun/requirements.lock"
    )
    if env_kind == "pip":
        major, minor = (int(p) for p in python_version.split(".")[:2])
        install = f"""\
# ---- builder: install the locked pip environment from the wheelhouse ----
FROM {base_stage} AS {BUILDER_STAGE}
ARG SOURCE_DATE_EPOCH={source_date_epoch}
ENV {_BUILD_ENV}
RUN python3 -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == ({major}, {minor}) else "xrun: the base image has Python %d.%d but the lock is for {major}.{minor}" % v)'
COPY tools/ /xrun/tools/
COPY requirements.lock /xrun/requirements.lock
COPY wheelhouse/ /xrun/wheelhouse/
RUN python3 -m venv --without-pip {prefix}
RUN {prefix}/bin/python {pip_install}
"""
    else:
        install = f"""\
# ---- builder: install the locked conda environment with py-rattler ----
FROM {base_stage} AS {BUILDER_STAGE}
ARG SOURCE_DATE_EPOCH={source_date_epoch}
ENV {_BUILD_ENV}
RUN python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "xrun: conda images need python3 >= 3.10 in the base image (to run py-rattler)")'
COPY tools/ /xrun/tools/
RUN python3 -m venv --without-pip /xrun/tool \\
 && /xrun/tool/bin/python {pip} install --no-index --find-links=/xrun/tools --require-hashes --no-deps --no-compile -r /xrun/tools/requirements.txt
COPY conda/ /xrun/conda/
COPY requirements.lock /xrun/requirements.lock
COPY wheelhouse/ /xrun/wheelhouse/
RUN /xrun/tool/bin/python /xrun/conda/install.py /xrun/conda/conda-lock.yml {prefix} {_conda.PLATFORM}
RUN if [ -s /xrun/requirements.lock ]; then {prefix}/bin/python {pip_install}; fi
"""
    return f"""\
# Rendered by xrun (image format {IMAGE_FORMAT}); do not edit.
# Built with the network disabled: every artifact comes from the build context.

# ---- base: the spec's base Dockerfile ----
{base_text.rstrip()}

{install}
# Reproducible layer: bytecode checked by hash (not mtime), fixed hash seed,
# every timestamp set to SOURCE_DATE_EPOCH in a staging copy. Like pip, ignore
# files that do not compile (test data shipped in some packages).
RUN find {prefix} -depth -type d -name __pycache__ -exec rm -rf {{}} + \\
 && ({prefix}/bin/python -m compileall -q -q -j 0 --invalidation-mode unchecked-hash {prefix} || true) \\
 && mkdir -p /xrun/stage{PurePosixPath(prefix).parent} \\
 && cp -a {prefix} /xrun/stage{prefix} \\
 && find /xrun/stage -exec touch -h -d "@$SOURCE_DATE_EPOCH" {{}} +

# ---- final: the base plus one environment layer ----
FROM {base_stage} AS {FINAL_STAGE}
COPY --from={BUILDER_STAGE} /xrun/stage/ /
ENV VIRTUAL_ENV={prefix} PATH={prefix}/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
"""


_BASE_MARK = "# ---- base: the spec's base Dockerfile ----\n"
_BUILDER_MARK = "\n\n# ---- builder: "


def base_dockerfile_of(rendered: str) -> str:
    """The base Dockerfile inside a Dockerfile rendered by :func:`render_dockerfile`
    (as recorded in a bundle's image.json): rendering again with it gives the
    same text, so a bundle rebuilds its image without the original file."""
    start, end = rendered.find(_BASE_MARK), rendered.rfind(_BUILDER_MARK)
    if start < 0 or end < start:
        raise UsageError("image.json: the recorded Dockerfile was not rendered by xrun (no base section)")
    return rendered[start + len(_BASE_MARK) : end] + "\n"


_BUILD_ENV = (
    "PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1 PIP_NO_INPUT=1 "
    "PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1"
)


def _name_base_stage(text: str) -> tuple[str, str]:
    """Name the last stage of a base Dockerfile (``xrun-base`` unless it has a name)."""
    matches = list(_FROM_RE.finditer(text))
    if not matches:
        raise UsageError("image.base: the base Dockerfile has no FROM instruction")
    last = matches[-1]
    if last.group("stage"):
        return text, last.group("stage")
    named = f"{last.group('head')} AS {BASE_STAGE}"
    return text[: last.start()] + named + text[last.end() :], BASE_STAGE


def base_reference(base_dockerfile: str, build_args: Mapping[str, str]) -> str:
    """The base image a Dockerfile builds on: ``BASE_IMAGE`` if it declares it."""
    match = _ARG_BASE_RE.search(base_dockerfile)
    if match:
        return build_args.get("BASE_IMAGE") or match.group("default") or ""
    froms = _FROM_RE.findall(base_dockerfile)
    return froms[0][1] if froms else ""


def redact_build_args(build_args: Mapping[str, str]) -> dict[str, str]:
    """Build args as recorded: values of secret-looking keys replaced."""
    return {k: (REDACTED if _SECRET_KEY_RE.search(k) else v) for k, v in sorted(build_args.items())}


def image_tag(name: str, lock_hash: str, inputs_hash: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise UsageError(f"name: {name!r} cannot be used in an image tag (use [a-z0-9-])")
    return f"{REPOSITORY_PREFIX}/{name}:{lock_hash[:12]}-{inputs_hash[:8]}"
