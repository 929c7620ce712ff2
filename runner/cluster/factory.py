"""One backend factory: ``cluster.backend`` -> its module's ``from_launch``, and
the image step for the backends whose workers run in an image.
"""

from __future__ import annotations

import importlib
from typing import Any

from runner.cluster import Backend, Launch
from runner.env import LockedEnv
from runner.errors import UsageError
from runner.image import ImageInfo, build_for_spec
from runner.spec import LoadedSpec

# backend -> module; imported on use (docker and kr8s load only for their backend)
MODULES = {
    "local": "runner.cluster.local",
    "docker": "runner.cluster.docker",
    "kubernetes": "runner.cluster.kubernetes",
    "address": "runner.cluster.address",
}
IMAGE_BACKENDS = {"docker": False, "kubernetes": True}  # backend -> whether the image is pushed


def make_backend(launch: Launch) -> Backend:
    module = importlib.import_module(MODULES[launch.spec.cluster.backend])
    backend: Backend = module.from_launch(launch)
    return backend


def worker_image(loaded: LoadedSpec, env: LockedEnv, build_args: dict[str, str]) -> ImageInfo | None:
    """The image step: build (and for kubernetes push) the workers' image;
    ``None`` for backends whose workers use an interpreter on this machine."""
    spec = loaded.spec
    backend = spec.cluster.backend
    if backend not in IMAGE_BACKENDS:
        return None
    push = IMAGE_BACKENDS[backend]
    if backend == "kubernetes":
        if not spec.image.registry:
            raise UsageError(
                f"{loaded.where('image')}: the kubernetes backend pulls the image from image.registry; "
                "set it (e.g. registry.example.com/me/xrun) and push with `xrun build --push`"
            )
        from runner.cluster.kubernetes import check_access  # deferred: kr8s

        check_access(spec)  # before pushing: a run that cannot reach its cluster pushes nothing
    return build_for_spec(loaded, env, build_args=build_args, push=push)


def image_record(backend: str, image: ImageInfo) -> dict[str, Any]:
    """What the run records as ``image.json`` (kubernetes: with the pulled reference)."""
    if backend == "kubernetes":
        from runner.cluster.kubernetes import image_reference  # deferred: kr8s

        return {**image.to_record(), "reference": image_reference(image)}
    return image.to_record()
