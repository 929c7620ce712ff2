"""What a function trial receives as ``ctx``, and its data inputs.

``ctx.data[name]`` is a read-only copy private to the worker, made on first use
and verified against the sha256 the run recorded (and keyed by it), so a trial
sees exactly the bytes that were hashed into its key. A file changed since it
was hashed fails the trial as ``data-changed``.

A URL input (``s3://``, ``gs://``, ``az://``, ``http(s)://``) is fetched into the
node's cache before the trial starts (:meth:`DataInputs.prefetch`), verified
against the sha256 the run pinned, and ``ctx.data[name]`` is the local path; an
object that changed (or is gone) fails the trial as ``data-changed`` too."""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from . import fetch
from ._base import DataChanged, TrialPruned, current_worker


class TrialContext:
    """What a function trial receives as ``ctx`` (DESIGN §2)."""

    def __init__(self, trial_id: str, seed: int, params: dict[str, Any], data: dict[str, str], artifact_dir: str | None,
                 data_sha256: dict[str, str] | None = None, early_stop: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.trial_id = trial_id
        self.seed = seed
        self.params = dict(params)
        self.data = DataInputs(data, data_sha256 or {})
        self.made_artifact_dir = artifact_dir  # None: made when the trial first asks for it
        self.inputs: dict[str, str] = {}  # stage outputs, name -> read-only local directory (``prepare``)
        self.history: list[dict[str, Any]] = []
        self.rungs = Rungs(early_stop) if early_stop else None

    @property
    def artifact_dir(self) -> str:
        """A new empty directory for the trial's files (kept in the bundle);
        made on first use, so trials that write none cost no directory."""
        if self.made_artifact_dir is None:
            self.made_artifact_dir = tempfile.mkdtemp(prefix=f"xrun-{self.trial_id}-")
        return self.made_artifact_dir

    @artifact_dir.setter
    def artifact_dir(self, value: str) -> None:
        self.made_artifact_dir = value

    def log(self, **metrics: Any) -> None:
        """Record intermediate values (e.g. per-epoch loss); kept in the bundle.

        In an adaptive sweep with ``early_stop``, ``ctx.log(step=…, <metric>=…)``
        stops the trial (status ``pruned``) when the value is worse than the
        threshold of a rung the step has reached."""
        entry = {"time": time.time()}
        entry.update({k: number(v) for k, v in metrics.items()})
        self.history.append(entry)
        if self.rungs is not None:
            self.rungs.judge(entry)

    def __repr__(self) -> str:
        return f"TrialContext(trial_id={self.trial_id!r}, seed={self.seed})"


class Rungs:
    """The early-stopping table a trial was given (see ``runner.search.stopping``):
    ``rungs`` ``[[step, threshold], …]`` judged in order, each once, at the first
    logged step at or after it: ``halving`` judges the value logged there,
    ``median`` the best value logged so far."""

    def __init__(self, table: dict[str, Any]) -> None:
        self.metric = str(table["metric"])
        self.maximize = table.get("goal") != "minimize"
        self.median = table.get("rule") == "median"
        self.rungs = sorted((int(step), float(threshold)) for step, threshold in table.get("rungs") or [])
        self.next = 0
        self.best: float | None = None

    def judge(self, entry: dict[str, Any]) -> None:
        step, value = entry.get("step"), entry.get(self.metric)
        if not isinstance(step, int) or isinstance(step, bool):
            return
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return
        value = float(value)
        if self.best is None or (value > self.best if self.maximize else value < self.best):
            self.best = value
        judged = self.best if self.median else value
        while self.next < len(self.rungs) and self.rungs[self.next][0] <= step:
            rung, threshold = self.rungs[self.next]
            self.next += 1
            if judged < threshold if self.maximize else judged > threshold:
                rule = "median" if self.median else "halving"
                raise TrialPruned(f"stopped at step {step} ({rule}, rung {rung}): {self.metric} {judged!r} "
                                  f"is worse than {threshold!r}")  # fmt: skip


def number(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else None
    return value


# ------------------------------------------------------------------ data inputs


class DataInputs(Mapping[str, str]):
    """``ctx.data``: name → local path (a verified copy) or url, copied on first use."""

    def __init__(self, paths: dict[str, str], sha256: dict[str, str]) -> None:
        self._paths = dict(paths)
        self._sha256 = dict(sha256)
        self.changed: str | None = None  # set when a verification failed, whatever the trial did then
        self._held: list[Any] = []  # the node cache's entries this trial uses: not evicted meanwhile
        self._got: dict[str, str] = {}  # name -> its fetched copy, held once for the whole trial

    def __getitem__(self, name: str) -> str:
        source = self._paths[name]
        expected = self._sha256.get(name)
        if expected is None:  # not hashed by the run (an older driver): the trial's to read
            return source
        try:
            if fetch.is_url(source):
                return self._fetched(name, source, expected)
            return verified_copy(source, expected)
        except DataChanged as exc:
            self.changed = f"data {name!r}: {exc}"
            raise DataChanged(self.changed) from None

    def _fetched(self, name: str, url: str, expected: str) -> str:
        if name in self._got:
            return self._got[name]
        try:
            path, _ = fetch.fetch_verified(url, expected, hold=self._held)
        except (fetch.FetchMismatch, fetch.FetchMissing) as exc:
            raise DataChanged(str(exc)) from None
        except fetch.FetchError as exc:  # network, permissions, a package missing: an error, retried
            raise fetch.FetchError(f"data {name!r}: {exc}") from None
        self._got[name] = path
        return path

    def prefetch(self) -> None:
        """Fetch and verify every URL input before the trial starts."""
        for name, source in self._paths.items():
            if fetch.is_url(source) and name in self._sha256:
                self[name]

    def release(self) -> None:
        """The trial ended: the cache may evict what it used."""
        fetch.release(self._held)
        self._got.clear()

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __repr__(self) -> str:
        return f"DataInputs({sorted(self._paths)})"


_data_lock = threading.Lock()
_data_root: list[Path] = []  # this process's directory of verified copies, made once


def _copies_dir() -> Path:
    if not _data_root:
        worker = current_worker()
        local = getattr(worker, "local_directory", None)
        if local:  # removed by Dask with the worker
            root = Path(local) / "xrun-data"
            root.mkdir(parents=True, exist_ok=True)
        else:
            root = Path(tempfile.mkdtemp(prefix="xrun-data-"))
        _data_root.append(root)
    return _data_root[0]


def verified_copy(source: str, expected: str) -> str:
    """A read-only copy of ``source`` whose sha256 (as :func:`runner.data.hash_inputs`
    computes it) is ``expected``; raises :class:`DataChanged` otherwise."""
    with _data_lock:  # trials in other threads of this worker wait for the one copy
        root = _copies_dir()
        name = Path(source).name or "data"
        final = root / expected / name
        if final.exists():
            return str(final)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".copy-"))
        try:
            src = Path(source)
            if src.is_dir():
                shutil.copytree(src, tmp / name)
                digest = _dir_digest(tmp / name)
            else:
                shutil.copyfile(src, tmp / name)
                digest = _file_digest(tmp / name)
            if digest != expected:
                raise DataChanged(
                    f"{source} changed since the run hashed it (sha256 {expected[:12]}…, now {digest[:12]}…); "
                    "restore it, or run again to use the new data"
                )
            final.parent.mkdir(exist_ok=True)  # one content may come under several names
            os.rename(tmp / name, final)  # then read-only: a read-only directory cannot be moved (but by root)
            _read_only(final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return str(final)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _dir_digest(root: Path) -> str:
    """Must equal the driver's digest of a data directory (runner._hashing.dir_digest;
    this module cannot import it: workers do not have xrun installed)."""
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(root).as_posix()}\0{_file_digest(f)}\n".encode())
    return h.hexdigest()


def _read_only(path: Path) -> None:
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in reversed(paths):  # children before their directory
        p.chmod(0o555 if p.is_dir() else 0o444)

