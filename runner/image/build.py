"""Building and pushing hermetic, reproducible worker images, cached by lock hash.

The Dockerfile is a pure function of the base Dockerfile and the lock
(:func:`runner.image.render.render_dockerfile`, snapshot-tested). :func:`build_image` then

1. downloads every wheel the lock pins on the host, checked against its hashes;
2. sends a build context that carries all of them, and builds with the network
   disabled (``network_mode="none"``): nothing is fetched during the build;
3. installs into ``/opt/xrun/env`` in a builder stage, makes the bytecode and
   timestamps deterministic, and copies the result into the final stage as one
   layer whose digest is the same for every build of the same inputs;
4. tags the image ``xrun-env/<name>:<lock hash>-<inputs hash>`` so that an
   unchanged lock is a cache hit without any build.

The image ID still differs between builds (the config records the build time):
the environment layer digest is what identifies an environment.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from runner.errors import InfraError, UsageError
from runner.image import conda as _conda
from runner.image import wheels
from runner.image.docker import BUILD_TIMEOUT, docker_client
from runner.image.render import (
    DEFAULT_BASE_IMAGE,
    DEFAULT_PYTHON_VERSION,
    ENV_PYTHON,
    FINAL_STAGE,
    IMAGE_FORMAT,
    LABEL_IMAGE,
    LABEL_INPUTS,
    LABEL_KIND,
    LABEL_LOCK,
    SOURCE_DATE_EPOCH,
    ImageInfo,
    base_reference,
    image_tag,
    redact_build_args,
    reference_dockerfile,
    render_dockerfile,
)

if TYPE_CHECKING:
    import docker

    from runner.env import LockedEnv
    from runner.spec import LoadedSpec

log = logging.getLogger(__name__)
# --------------------------------------------------------------------- building


def build_image(
    *,
    name: str,
    locked: LockedEnv,
    dockerfile_base: Path | str | None,
    build_args: Mapping[str, str],
    no_cache: bool = False,
    push_to: str | None = None,
) -> ImageInfo:
    """Build (or reuse) the worker image of ``locked`` and return what was built.

    ``dockerfile_base`` is a Dockerfile declaring ``ARG BASE_IMAGE`` (a path), an
    image reference (a string that is not an existing file), or None for the
    default pinned base. ``build_args`` are the merged spec and CLI build args
    (the CLI's win; the caller merges). ``no_cache`` rebuilds every step.
    ``push_to`` pushes the image as ``<push_to>:<tag>``.

    Raises :class:`InfraError` when Docker is unreachable, a download fails, the
    base image is missing, or the build fails (with the tail of the build log).
    """
    if locked.kind not in ("pip", "conda"):
        render_dockerfile(locked.kind)  # raises the UsageError that explains it
    if locked.lock_file is None:
        raise UsageError(f"environment.{locked.kind}: no lock file; run `xrun lock SPEC` first")
    lock_file = Path(locked.lock_file)
    base_text = _read_base(dockerfile_base)
    lock_text = lock_file.read_text(encoding="utf-8")
    version = locked.python_version or wheels.lock_python_version(lock_text, DEFAULT_PYTHON_VERSION)
    python_version = ".".join(version.split(".")[:2])  # wheels and the base check use X.Y
    dockerfile = render_dockerfile(
        locked.kind, ENV_PYTHON, base_dockerfile=base_text, python_version=python_version
    )
    args = dict(sorted(build_args.items()))
    base = base_reference(base_text, args)

    client = docker_client(timeout=BUILD_TIMEOUT)
    base_id = _local_image_id(client, base) if base else None
    # A digest-pinned base is immutable; a local tag is identified by its image ID.
    base_identity = base if "@sha256:" in base else (base_id or f"missing:{base}")
    inputs_hash = _sha256_json(
        {
            "format": IMAGE_FORMAT,
            "kind": locked.kind,
            "lock_hash": locked.lock_hash,
            "dockerfile": dockerfile,
            "build_args": args,
            "base": base_identity,
            "platforms": wheels.platform_tags(),
            "tools": {tool: pin[1] for tool, pin in wheels.TOOLS.items()},
            "conda_script": _conda.INSTALL_SCRIPT if locked.kind == "conda" else None,
        }
    )
    tag = image_tag(name, locked.lock_hash, inputs_hash)

    def info(image: docker.models.images.Image, cached: bool) -> ImageInfo:
        return ImageInfo(
            image=tag,
            image_id=image.id,
            env_layer_digest=_env_layer_digest(image),
            cached=cached,
            base=base,
            dockerfile=dockerfile,
            build_args=redact_build_args(args),
            python=ENV_PYTHON,
            base_id=base_id,
            lock_hash=locked.lock_hash,
        )

    existing = _local_image(client, tag)
    if existing is not None and not no_cache and existing.labels.get(LABEL_INPUTS) == inputs_hash:
        log.info("image %s is up to date (lock %s)", tag, locked.lock_hash[:12])
        result = info(existing, cached=True)
    else:
        files = _context_files(locked.kind, lock_file, lock_text, python_version, locked.lock_hash)
        files["Dockerfile"] = dockerfile.encode()
        labels = {
            LABEL_IMAGE: str(IMAGE_FORMAT),
            LABEL_LOCK: locked.lock_hash,
            LABEL_INPUTS: inputs_hash,
            LABEL_KIND: locked.kind,
        }
        log.info("building image %s on %s (%d files, network disabled)", tag, base, len(files))
        image_id, builder_id = _docker_build(
            client, files, tag=tag, build_args=args, labels=labels, no_cache=no_cache, base=base
        )
        built = client.images.get(image_id)
        if builder_id:  # the builder stage (~2x the env) is only a step on the way
            _remove_quietly(client, builder_id)
        if existing is not None and existing.id != built.id:
            _remove_quietly(client, existing.id)  # the old image lost its tag; don't hoard it
        result = info(built, cached=False)

    if push_to:
        result = _push(client, result, push_to)
    return result


def _context_files(
    kind: str, lock_file: Path, lock_text: str, python_version: str, lock_hash: str
) -> dict[str, bytes | Path | None]:
    """What the build context carries, by path (None: an empty directory)."""
    files: dict[str, bytes | Path | None] = {
        "wheelhouse/": None,
        f"tools/{wheels.PIP_TOOL_WHEEL}": wheels.tool_wheel("pip"),
    }
    if kind == "pip":
        found = wheels.wheelhouse(lock_file, python_version=python_version, lock_hash=lock_hash)
        files["requirements.lock"] = lock_text.encode()
        files.update({f"wheelhouse/{w.name}": w for w in found})
        return files
    context = _conda.conda_context(lock_file)
    rattler = wheels.tool_wheel("py-rattler")
    files.update(
        {
            f"tools/{rattler.name}": rattler,
            "tools/requirements.txt": wheels.tool_requirements("py-rattler").encode(),
            "conda/conda-lock.yml": context.lock,
            "conda/install.py": _conda.INSTALL_SCRIPT.encode(),
            "conda/pkgs/": None,
            "requirements.lock": context.pip_requirements.encode(),
            **{f"conda/pkgs/{name}": path for name, path in sorted(context.packages.items())},
            **{f"wheelhouse/{w.name}": w for w in context.wheels},
        }
    )
    return files


def build_for_spec(
    loaded: LoadedSpec,
    locked: LockedEnv,
    *,
    build_args: Mapping[str, str] | None = None,
    no_cache: bool = False,
    push: bool = False,
) -> ImageInfo:
    """:func:`build_image` for a loaded spec: its base, build args and registry.

    ``build_args`` are the CLI's ``--build-arg`` values; they win over the
    spec's ``image.build_args``. ``push`` pushes to ``image.registry``.
    """
    spec = loaded.spec
    base_value = spec.image.base
    base_path = (loaded.base / base_value).resolve()
    base: Path | str | None
    if base_path.is_file():
        base = base_path
    elif "base" not in spec.image.model_fields_set:
        # No image.base and no Dockerfile.base beside the spec: the built-in
        # default, with the same contract (ARG BASE_IMAGE, a digest-pinned default).
        log.info("no %s beside the spec: building on the built-in base %s", base_value, DEFAULT_BASE_IMAGE)
        base = None
    elif re.fullmatch(r"[\w.\-/:]+(@sha256:[0-9a-f]{64})?", base_value) and (
        ":" in base_value or "@" in base_value
    ):
        base = base_value
    else:
        raise UsageError(
            f"{loaded.where('image', 'base')}: {base_value!r} is neither a Dockerfile "
            f"(looked for {base_path}) nor an image reference such as {DEFAULT_BASE_IMAGE}"
        )
    if push and not spec.image.registry:
        raise UsageError(f"{loaded.where('image')}: --push needs image.registry (where to push)")
    return build_image(
        name=spec.name,
        locked=locked,
        dockerfile_base=base,
        build_args={**spec.image.build_args, **(build_args or {})},
        no_cache=no_cache,
        push_to=spec.image.registry if push else None,
    )


def _read_base(dockerfile_base: Path | str | None) -> str:
    if dockerfile_base is None:
        return reference_dockerfile(DEFAULT_BASE_IMAGE)
    path = Path(dockerfile_base)
    if isinstance(dockerfile_base, Path) or path.is_file():
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"image.base: cannot read {path}: {exc.strerror}") from exc
    reference = str(dockerfile_base)
    if "@sha256:" not in reference:
        log.warning(
            "image.base %s is not pinned by digest; builds may not be reproducible", reference
        )
    return reference_dockerfile(reference)


def _docker_build(
    client: docker.DockerClient,
    files: Mapping[str, bytes | Path | None],
    *,
    tag: str,
    build_args: Mapping[str, str],
    labels: Mapping[str, str],
    no_cache: bool,
    base: str,
) -> tuple[str, str | None]:
    """Run one classic-builder build with the network disabled.

    Returns the image ID and the ID of the builder stage's last image (if seen).
    """
    from docker.errors import (  # deferred: docker-py, only with a Docker daemon
        APIError,
        DockerException,
    )

    lines: list[str] = []
    image_id: str | None = None
    error: str | None = None
    with tempfile.TemporaryFile() as context:
        _write_context(context, files)
        context.seek(0)
        try:
            stream = client.api.build(
                fileobj=context,
                custom_context=True,
                tag=tag,
                nocache=no_cache,
                rm=True,
                forcerm=True,
                pull=False,
                network_mode="none",
                buildargs=dict(build_args),
                labels=dict(labels),
                decode=True,
                use_config_proxy=False,
            )
            for chunk in stream:
                image_id, error = _consume(chunk, lines, image_id, error)
        except (APIError, DockerException, OSError) as exc:
            error = str(exc)
    if error is not None or image_id is None:
        tail = "\n".join(_tail(lines, 25))
        hint = ""
        if base and _local_image_id(client, base) is None:
            hint = (
                f"\nThe base image {base} is not on this Docker daemon and could not be pulled: "
                "pull or build it first (offline: `bash .ci/docker-setup.sh` makes "
                "xrun-base:bookworm), or pass --build-arg BASE_IMAGE=<local image>"
            )
        raise InfraError(
            f"docker build of {tag} failed: {error or 'no image produced'}\n{tail}{hint}"
        )
    return image_id, _builder_image_id(lines)


_STEP_RE = re.compile(r"^Step \d+/\d+ : FROM (?P<image>\S+)(?: AS (?P<stage>\S+))?", re.I)
_IMAGE_LINE_RE = re.compile(r"^ ---> (?P<id>[0-9a-f]{12,64})$")


def _builder_image_id(lines: Iterable[str]) -> str | None:
    """The builder stage's final image, read from the classic builder's step log."""
    last_id: str | None = None
    for line in lines:
        step = _STEP_RE.match(line)
        if step and (step.group("stage") or "").lower() == FINAL_STAGE:
            return last_id
        image = _IMAGE_LINE_RE.match(line)
        if image:
            last_id = image.group("id")
    return None


def _consume(
    chunk: Mapping[str, Any], lines: list[str], image_id: str | None, error: str | None
) -> tuple[str | None, str | None]:
    if "stream" in chunk:
        for line in str(chunk["stream"]).splitlines():
            if line.strip():
                lines.append(line)
                log.debug("build: %s", line)
    if "status" in chunk:  # base image pull progress
        lines.append(str(chunk["status"]))
    if "error" in chunk:
        error = str(chunk["error"]).strip()
        lines.append(error)
    aux = chunk.get("aux")
    if isinstance(aux, dict) and "ID" in aux:
        image_id = str(aux["ID"])
    return image_id, error


def _write_context(out: IO[bytes], files: Mapping[str, bytes | Path | None]) -> None:
    """A build context tar with fixed metadata: same inputs, same bytes."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            data = files[name]
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mode, info.mtime = 0o644, SOURCE_DATE_EPOCH
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(data, bytes):
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.size = data.stat().st_size
                with data.open("rb") as f:
                    tar.addfile(info, f)


def _env_layer_digest(image: docker.models.images.Image) -> str:
    """The environment layer: the last layer, made by the final stage's only COPY."""
    layers = image.attrs.get("RootFS", {}).get("Layers") or []
    if not layers:
        raise InfraError(f"image {image.id} has no layers; rebuild with `xrun build --no-cache`")
    return str(layers[-1])


def _local_image(client: docker.DockerClient, ref: str) -> docker.models.images.Image | None:
    from docker.errors import ImageNotFound  # deferred: docker-py, only with a Docker daemon

    try:
        return client.images.get(ref)
    except ImageNotFound:
        return None


def _local_image_id(client: docker.DockerClient, ref: str) -> str | None:
    from docker.errors import APIError  # deferred: docker-py, only with a Docker daemon

    try:
        image = _local_image(client, ref)
    except APIError:  # e.g. an invalid reference
        return None
    return image.id if image is not None else None


def _remove_quietly(client: docker.DockerClient, image_id: str) -> None:
    """Remove an image xrun made that no tag names any more (else leave it)."""
    from docker.errors import APIError  # deferred: docker-py, only with a Docker daemon

    try:
        image = client.images.get(image_id)
        if image.tags:
            return
        client.images.remove(image.id)
    except APIError as exc:  # gone already, or still used by a container
        log.debug("kept image %s: %s", image_id, exc)


def _push(client: docker.DockerClient, info: ImageInfo, registry: str) -> ImageInfo:
    """Tag ``info.image`` as ``<registry>:<tag>`` and push it (untested here: no registry)."""
    from docker.errors import APIError  # deferred: docker-py, only with a Docker daemon

    tag = info.image.rsplit(":", 1)[1]
    remote = f"{registry}:{tag}"
    try:
        client.images.get(info.image_id).tag(registry, tag=tag)
        errors = [
            str(chunk.get("error"))
            for chunk in client.images.push(registry, tag=tag, stream=True, decode=True)
            if "error" in chunk
        ]
    except APIError as exc:
        errors = [str(exc)]
    if errors:
        raise InfraError(f"pushing {remote} failed: {errors[-1]}\n{push_hint(errors[-1], registry)}")
    return ImageInfo(**{**asdict(info), "pushed": remote})


_UNREACHABLE = ("no such host", "name resolution", "lookup ", "dial tcp", "connection refused",
                "i/o timeout", "network is unreachable", "timeout exceeded", "tls:", "x509")  # fmt: skip
_AUTH = ("unauthorized", "authentication required", "denied", "forbidden", "401", "403")


def push_hint(error: str, registry: str) -> str:
    """What to do about a failed push: a registry that cannot be reached is not a login problem."""
    host = registry.split("/")[0]
    low = error.lower()
    if any(m in low for m in _UNREACHABLE):
        return (f"The registry {host} cannot be reached from the Docker daemon (DNS, network or TLS); "
                "check the host name in image.registry and the daemon's network")  # fmt: skip
    if any(m in low for m in _AUTH):
        return f"Log in first (`docker login {host}`) and check that you may push to {registry}"
    return f"Check image.registry ({registry}) and that the Docker daemon can push to {host}"


def _sha256_json(value: Any) -> str:
    return hashlib.sha256(
        json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def _tail(lines: Iterable[str], n: int) -> list[str]:
    return list(lines)[-n:]


