"""What a worker needs beside the user's packages, and checking what workers run.

Workers talk to the driver's scheduler with ``distributed``; client and worker
must run the same version. An environment that does not name ``distributed``
gets it pinned to the driver's version at lock time, with ``dask`` (conda:
``dask-core``) at the same version; its own dependencies (cloudpickle, tornado,
msgpack, …) come with it. The lock records what was added.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Collection, Mapping

from packaging.version import InvalidVersion, Version

from runner.env.model import LockedEnv
from runner.errors import InfraError

# kind -> the names added, distributed first
RUNTIME_PACKAGES = {"conda": ("distributed", "dask-core"), "pip": ("distributed", "dask")}
DASK_ALIASES = {"dask", "dask-core"}


def normalize(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def driver_distributed_version() -> str:
    try:
        return importlib.metadata.version("distributed")
    except importlib.metadata.PackageNotFoundError as exc:  # pragma: no cover - a dependency
        raise InfraError("the driver has no `distributed` installed: pip install xrun") from exc


def runtime_additions(kind: str, named: Collection[str]) -> list[str]:
    """Requirements (``name==version``) to add to an environment naming ``named``.

    Nothing when the environment names ``distributed`` itself (it then owns the
    version); otherwise ``distributed`` and, unless the environment names dask,
    dask at the driver's version.
    """
    names = {normalize(n) for n in named}
    if "distributed" in names:
        return []
    version = driver_distributed_version()
    dist, dask = RUNTIME_PACKAGES[kind]
    added = [f"{dist}=={version}"]
    if not names & DASK_ALIASES:
        added.append(f"{dask}=={version}")
    return added


def driver_mismatch(locked: LockedEnv) -> str | None:
    """Why workers of ``locked`` may not talk to this driver, or None.

    Not a reason to call the lock stale: a lock made by an older driver must stay
    usable as it is (``xrun reproduce`` rebuilds exactly what a bundle recorded).
    """
    if locked.kind == "current":
        return None
    pinned = locked.packages.get("distributed")
    driver = driver_distributed_version()
    if pinned is None:
        return f"the environment has no distributed; workers need distributed {driver}"
    if not _same_version(pinned, driver):
        return (
            f"the environment pins distributed {pinned} but this driver runs {driver}; "
            "relock (`xrun lock SPEC`) to pin the driver's version"
        )
    return None


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def worker_packages_mismatch(locked: LockedEnv, reported: Mapping[str, str]) -> list[str]:
    """Lines like ``scikit-learn: lock 1.5.2, worker 1.9.1`` for every package in the
    lock whose version on a worker (``reported``: name -> version) differs.

    Packages the worker does not report are not compared.
    """
    packages = locked.packages
    seen = {normalize(k): v for k, v in reported.items()}
    lines = []
    for name, version in sorted((normalize(k), v) for k, v in packages.items()):
        worker = seen.get(name)
        if worker is not None and not _same_version(version, worker):
            lines.append(f"{name}: lock {version}, worker {worker}")
    return lines
