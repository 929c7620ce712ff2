"""The image stage: hermetic worker images for the docker and kubernetes backends.

- :mod:`~runner.image.render`: the Dockerfile, tag and :class:`ImageInfo` (pure)
- :mod:`~runner.image.build`: building with the network off, cache by lock hash, pushing
- :mod:`~runner.image.conda`, :mod:`~runner.image.wheels`: what goes into the build context
- :mod:`~runner.image.docker`: the one place that connects to the Docker daemon
"""

from runner.image.build import build_for_spec, build_image, push_hint
from runner.image.render import (
    DEFAULT_BASE_IMAGE,
    ENV_PREFIX,
    ENV_PYTHON,
    ImageInfo,
    base_dockerfile_of,
    base_reference,
    image_tag,
    redact_build_args,
    reference_dockerfile,
    render_dockerfile,
)

__all__ = [
    "DEFAULT_BASE_IMAGE",
    "ENV_PREFIX",
    "ENV_PYTHON",
    "ImageInfo",
    "base_dockerfile_of",
    "base_reference",
    "build_for_spec",
    "build_image",
    "image_tag",
    "push_hint",
    "redact_build_args",
    "reference_dockerfile",
    "render_dockerfile",
]
