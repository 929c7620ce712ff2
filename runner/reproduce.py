"""``xrun reproduce``: rebuild a run from its bundle alone and compare results.

Only what the bundle holds is used: the spec as resolved, the environment
file and lock, the code snapshot, the data manifest (data must be at its
recorded path, or given with ``--data name=path``, and match its sha256), and
each trial's params and seed. The chosen trials run again without the cache,
and every metric is compared within ``reproduce.tolerance`` (default: exact).
"""

from __future__ import annotations

import json
import logging
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import _yaml, config
from runner._hashing import file_digest
from runner._plugin import UnsafeArchive, safe_extract
from runner._safeio import MAX_SPEC_BYTES, UnsafePath, read_bytes
from runner.bundle.journal import latest_records, read_journal
from runner.bundle.read import Bundle, open_bundle
from runner.bundle.stored import stored_artifacts
from runner.bundle.write import BundleWriter
from runner.errors import UsageError, XrunError
from runner.execute import Outcome
from runner.image.render import DEFAULT_BASE_IMAGE, REDACTED, base_dockerfile_of
from runner.objective import recorded_objective
from runner.plan import diff_versions, make_plan
from runner.run import RunOptions, load_environment, run_plan, secret_values
from runner.spec import apply_override, validate
from runner.stages import compare_stages
from runner.sweep import SWEEP_VERSIONS

log = logging.getLogger(__name__)

REPRODUCE_FILE = "reproduce.json"
MAX_ENV_FILE_BYTES = 64 * 1024 * 1024


@dataclass
class Row:
    trial: str
    metric: str
    recorded: float | None
    reproduced: float | None
    delta: float | None
    tolerance: float
    match: bool


@dataclass
class Reproduction:
    original: Bundle
    bundle: Path | None = None
    rows: list[Row] = field(default_factory=list)
    verdict: str = "mismatch"
    environment: str = ""  # what could be said about the environment
    env_identical: bool | None = None
    problems: list[str] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)  # prepare / final, compared (runner.stages)
    artifacts: list[dict[str, Any]] = field(default_factory=list)  # stored artifacts compared by sha256
    search: str = ""  # adaptive sweeps: what replaying the suggestions showed

    @property
    def ok(self) -> bool:
        return self.verdict == "match"

    def to_json(self) -> dict[str, Any]:
        return {
            "original_run_id": self.original.meta.get("run_id"),
            "original_bundle": str(self.original.root),
            "verdict": self.verdict,
            "environment": self.environment,
            "env_identical": self.env_identical,
            "problems": self.problems,
            "search": self.search,
            "rows": [r.__dict__ for r in self.rows],
            "stages": self.stages,
            "artifacts": self.artifacts,
        }


def select_trials(bundle: Bundle, which: str) -> list[dict[str, Any]]:
    records = [r for r in bundle.trials if r.get("status") == "ok"]
    if not records:
        raise UsageError(f"{bundle.root}: no successful trial to reproduce")
    best = bundle.meta.get("best") or {}
    objective = recorded_objective(best, None) if best.get("metric") else None
    if objective is not None:
        records = [dict(r) for r in objective.rank(records)]
    if which == "all":
        return records
    if which == "best":
        if best.get("trial"):
            return [r for r in records if r["id"] == best["trial"]] or records[:1]
        return records[:1]
    if which.isdigit():
        n = int(which)
        if n < 1:
            raise UsageError("--trials N: N must be at least 1")
        return records[:n]
    wanted = [w.strip() for w in which.split(",") if w.strip()]
    by_id = {r["id"]: r for r in records}
    unknown = [w for w in wanted if w not in by_id]
    if unknown:
        raise UsageError(f"--trials: no successful trial {', '.join(unknown)} in {bundle.root}")
    return [by_id[w] for w in wanted]


def prepare(bundle: Bundle, workdir: Path, *, backend: str | None, data: dict[str, Path], output: Path | None) -> Any:
    """A spec equivalent to the recorded one, pointing into ``workdir``."""

    resolved = bundle.json("spec.resolved.json")
    if not isinstance(resolved, dict):
        raise UsageError(f"{bundle.root}: spec.resolved.json is missing or unreadable")
    overrides = resolved.pop("_overrides", None) or []
    if sweep_version(bundle) == 1:
        _restore_written_order(bundle, resolved, overrides)
    _image_from_bundle(bundle, resolved, workdir)
    code_dir = workdir / "code"
    code_dir.mkdir(parents=True)
    try:
        safe_extract(bundle.member("code/source.tar.gz"), code_dir)
    except (UnsafeArchive, UnsafePath, tarfile.TarError, OSError, EOFError) as exc:
        raise UsageError(f"{bundle.root}: code/source.tar.gz cannot be used: {exc}") from None
    resolved["code"]["root"] = str(code_dir)
    env_info = bundle.json("env/env.json") or {}
    env_dir = workdir / "env"
    env_dir.mkdir()
    kind = env_info.get("kind", "current")
    for key in ("env_file", "lock_file"):
        if env_info.get(key):
            # Names from env.json choose what is copied: plain names of regular files in env/ only.
            src = bundle.member(env_info[key], directory="env")
            (env_dir / src.name).write_bytes(read_bytes(src, MAX_ENV_FILE_BYTES))
    if kind in ("conda", "pip"):
        if not env_info.get("env_file"):
            raise UsageError(f"{bundle.root}: env/env.json names no env_file for a {kind} environment")
        resolved["environment"][kind] = str(env_dir / env_info["env_file"])
    recorded_data = bundle.json("data.json") or {}
    for name, entry in recorded_data.items():
        if entry.get("url"):
            if name in resolved["data"] and isinstance(entry.get("sha256"), str):
                # the object the original run hashed, or the trials fail as data-changed
                resolved["data"][name]["sha256"] = entry["sha256"]
            continue
        if entry.get("volume") and name not in data and name in resolved["data"] and isinstance(entry.get("sha256"), str):
            resolved["data"][name]["sha256"] = entry["sha256"]  # on the workers' volume: they verify it there
            continue
        path = Path(data.get(name) or entry["path"])
        if not path.is_file() and not path.is_dir():
            raise UsageError(
                f"data {name!r}: {path} not found; put it back at its recorded path or pass --data {name}=PATH"
            )
        if path.is_file():
            digest = file_digest(path)
            if digest != entry["sha256"]:
                raise UsageError(
                    f"data {name!r}: {path} has sha256 {digest[:16]}…, the bundle recorded {entry['sha256'][:16]}…; "
                    f"pass the original with --data {name}=PATH"
                )
        resolved["data"][name]["path"] = str(path)
    for name in data:
        if name not in recorded_data:
            raise UsageError(f"--data {name}: the bundle has no data entry {name!r}")
    if backend:
        resolved["cluster"]["backend"] = backend
        if backend != "kubernetes":
            resolved["cluster"].pop("kubernetes", None)
        if backend != "address":
            resolved["cluster"].pop("address", None)
    # Absolute, so the new bundle lands where the user is, not in ``workdir``.
    resolved["output"] = str(Path(output or _default_output(bundle)).absolute())
    spec_path = workdir / "spec.yaml"
    text = read_bytes(bundle.member("spec.yaml"), MAX_SPEC_BYTES).decode("utf-8", errors="replace")
    spec_path.write_text(text, encoding="utf-8")
    return validate(resolved, spec_path, text=text)


def _default_output(bundle: Bundle) -> Path:
    """Next to the original bundle; for an unpacked archive, ``runs/`` in the
    user's working directory. Always absolute (a relative bundle path is taken
    from the working directory the command was started in)."""

    root = bundle.root.absolute()
    if config.cache_dir().absolute() in root.parents:  # an unpacked archive
        return Path.cwd() / "runs"
    return root.parent


def sweep_version(bundle: Bundle) -> int:
    """The sweep expansion the bundle's trials were made with (1 before it was recorded)."""

    sweep = bundle.meta.get("sweep")
    version = sweep.get("version", 1) if isinstance(sweep, dict) else 1
    if version not in SWEEP_VERSIONS:
        raise UsageError(
            f"{bundle.root}: sweep version {version!r} was written by a newer xrun "
            f"(this one knows {', '.join(map(str, SWEEP_VERSIONS))}); upgrade xrun to reproduce it"
        )
    return int(version)


def _restore_written_order(bundle: Bundle, resolved: dict[str, Any], overrides: list[str]) -> None:
    """Sweep version 1 expanded ``sweep.parameters`` in the order they were
    written; spec.resolved.json has them sorted. Recover the written order from
    spec.yaml with the recorded ``--set`` overrides applied (the way the run
    read them), else from the order of the recorded trials' params."""

    params = (resolved.get("sweep") or {}).get("parameters") or {}
    if not isinstance(params, dict) or len(params) < 2:
        return
    order: list[str] = []
    try:
        raw, _ = _yaml.load((bundle.root / "spec.yaml").read_text(encoding="utf-8"), "spec.yaml")
        for item in overrides:
            apply_override(raw, str(item))
        order = list(raw["sweep"]["parameters"])
    except (XrunError, OSError, KeyError, TypeError, ValueError):
        pass
    if set(order) != set(params):
        first = next((r.get("params") for r in bundle.trials if isinstance(r.get("params"), dict)), None)
        order = list(first or [])
    if set(order) == set(params):
        resolved["sweep"]["parameters"] = {name: params[name] for name in order}


def _image_from_bundle(bundle: Bundle, resolved: dict[str, Any], workdir: Path) -> None:
    """Docker and Kubernetes runs rebuild the image the bundle records: the base
    Dockerfile (recovered from the rendered Dockerfile in image.json) and its
    build args, not a path relative to a spec file that may be gone. Bundles
    without an image that named a relative base fall back to the default base
    (``--build-arg BASE_IMAGE=…`` still picks another)."""

    image = resolved.setdefault("image", {})
    recorded = bundle.json("image.json")
    if isinstance(recorded, dict) and isinstance(recorded.get("dockerfile"), str):
        try:
            text = base_dockerfile_of(recorded["dockerfile"])
        except UsageError as exc:  # matters only where an image is built, which then says so
            log.warning("%s: %s; building from the spec's image.base", bundle.root / "image.json", exc.message)
            return
        base = workdir / "Dockerfile.base"
        base.write_text(text, encoding="utf-8")
        image["base"] = str(base)
        args = {str(k): str(v) for k, v in (recorded.get("build_args") or {}).items() if v != REDACTED}
        image["build_args"] = {**(image.get("build_args") or {}), **args}  # what was built; the CLI's win later
        return
    base_value = str(image.get("base") or "")
    if base_value and not Path(base_value).is_absolute() and ":" not in base_value and "@" not in base_value:
        image["base"] = DEFAULT_BASE_IMAGE


def environment_note(bundle: Bundle, env: Any) -> tuple[str, bool | None]:
    env_info = bundle.json("env/env.json") or {}
    if env_info.get("kind", "current") == "current":

        freeze = (bundle.root / "env" / "freeze.txt").read_text(encoding="utf-8") if (bundle.root / "env" / "freeze.txt").is_file() else ""
        recorded = dict(line.split("==", 1) for line in freeze.splitlines() if "==" in line)
        changes = diff_versions(recorded, env.packages)
        head = ("the environment was `current: true` (the interpreter that ran xrun): it cannot be rebuilt; "
                "compared the recorded freeze with this interpreter: ")  # fmt: skip
        if not changes:
            return head + "identical package versions", None
        shown = ", ".join(changes[:10]) + (f" (+{len(changes) - 10} more)" if len(changes) > 10 else "")
        return head + f"{len(changes)} difference(s): {shown}", None
    if env_info.get("lock_hash") == env.lock_hash:
        return f"rebuilt from the bundle's {env_info.get('kind')} lock (hash {env.lock_hash[:12]})", None
    return (f"rebuilt from the bundle's lock, but its hash is now {env.lock_hash[:12]} "
            f"(recorded {str(env_info.get('lock_hash'))[:12]})"), False  # fmt: skip


def compare(original: list[dict[str, Any]], reproduced: list[dict[str, Any]], tolerance: dict[str, float]) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    problems: list[str] = []
    again = {r["id"]: r for r in reproduced}
    for rec in original:
        new = again.get(rec["id"])
        if new is None:
            problems.append(f"{rec['id']}: did not run")
            continue
        if new.get("status") != "ok":
            problems.append(f"{rec['id']}: {new.get('failure_class')}: {new.get('error')}")
        for metric, value in sorted(rec.get("metrics", {}).items()):
            tol = float(tolerance.get(metric, 0.0))
            got = (new.get("metrics") or {}).get(metric)
            if isinstance(value, (int, float)) and isinstance(got, (int, float)):
                delta = abs(float(got) - float(value))
                match = delta <= tol
            else:
                delta, match = None, value == got
            rows.append(Row(rec["id"], metric, value, got, delta, tol, match))
    return rows, problems


def compare_stored(original: Path, reproduced: Path, rows: list[Row]) -> tuple[list[dict[str, Any]], list[str]]:
    """Stored artifacts (the large ones, kept by sha256) of each trial whose
    metrics all reproduced exactly: a deterministic trial writes the same bytes."""
    exact = {r.trial for r in rows} - {r.trial for r in rows if not r.match or r.delta not in (None, 0.0)}
    before = {(a.trial, a.path): a.sha256 for a in stored_artifacts(original) if a.trial in exact}
    after = {(a.trial, a.path): a.sha256 for a in stored_artifacts(reproduced)}
    compared, problems = [], []
    for (trial, path), digest in sorted(before.items()):
        got = after.get((trial, path))
        compared.append({"trial": trial, "path": path, "sha256": digest, "reproduced": got, "match": got == digest})
        if got != digest:
            problems.append(f"{trial}: artifact {path}: sha256 {digest[:12]}…, reproduced {str(got)[:12]}…")
    return compared, problems


def reproduce(
    path: Path | str,
    *,
    trials: str = "best",
    backend: str | None = None,
    data: dict[str, Path] | None = None,
    options: Any = None,
) -> Reproduction:

    bundle = open_bundle(path)
    chosen = select_trials(bundle, trials)
    result = Reproduction(original=bundle)
    options = options or RunOptions()
    options.use_cache = False
    workdir = Path(tempfile.mkdtemp(prefix="xrun-reproduce-"))
    try:
        loaded = prepare(bundle, workdir, backend=backend, data=data or {}, output=options.output)
        env = load_environment(loaded)
        result.environment, result.env_identical = environment_note(bundle, env)
        plan = make_plan(loaded, env, use_cache=False, sweep_version=sweep_version(bundle))
        if loaded.spec.sweep.adaptive:
            # The search asked again, told the recorded results: each generation
            # must suggest the recorded points (and early-stopping thresholds).
            from runner.search.driver import SEARCH_FILE, replay  # deferred: imports Optuna
            from runner.search.sampler import optuna_version  # deferred: imports Optuna

            recorded = bundle.json(SEARCH_FILE)
            search, differences = replay(plan, bundle.trials, recorded)
            result.problems += differences
            decided = sum(len(g) for g in search.generations)
            result.search = (f"{len(search.generations)} generation(s), {decided} suggestions replayed from the recorded "
                             f"results: {'DIFFERENT (see problems)' if differences else 'identical to the recorded ones'}")  # fmt: skip
            then, now = (recorded or {}).get("optuna"), optuna_version()
            if then != now:  # another sampler implementation may suggest other points
                result.search += f" (recorded with Optuna {then}, replayed with {now})"
            plan.trials = [t for gen in search.generations for t in gen]
            plan.search = None  # the chosen trials run as a plain sweep
        wanted = {rec["id"] for rec in chosen}
        by_id = {t.id: t for t in plan.trials if t.id in wanted}  # a sweep's trials are streamed: keep the chosen
        selected = []
        for rec in chosen:
            t = by_id.get(rec["id"])
            if t is None or t.point.params != rec["params"] or t.point.seed != rec["seed"]:
                result.problems.append(f"{rec['id']}: the sweep no longer yields its recorded params and seed")
                continue
            selected.append(t)
        plan.trials = selected
        tolerance = dict(loaded.spec.reproduce.tolerance)
        recorded_image = bundle.json("image.json")

        def finalize(writer: BundleWriter, outcome: Outcome, extra: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
            new = latest_records(read_journal(writer.root / "trials.jsonl"))
            result.rows, problems = compare(chosen, new, tolerance)
            result.problems += problems
            result.stages, problems = compare_stages(bundle.json("stages.json"), _read_stages(writer.root), tolerance)
            result.problems += problems
            result.artifacts, problems = compare_stored(bundle.root, writer.root, result.rows)
            result.problems += problems
            image = extra.get("image.json")
            if recorded_image and image:
                same = recorded_image.get("env_layer_digest") == image.get("env_layer_digest")
                result.env_identical = same
                result.environment += (
                    f"; image environment layer {'bit-identical' if same else 'DIFFERENT'} "
                    f"({str(image.get('env_layer_digest'))[:19]} vs recorded {str(recorded_image.get('env_layer_digest'))[:19]})"
                )
            matched = all(r.match for r in result.rows) and all(s["match"] for s in result.stages)
            result.verdict = "match" if result.rows and matched and not result.problems else "mismatch"
            return {REPRODUCE_FILE: result.to_json()}, {
                "reproduces": bundle.meta.get("run_id"),
                "verdict": result.verdict,
            }

        run = run_plan(plan, options, secrets=secret_values(loaded), finalize=finalize)
        result.bundle = run.bundle
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def _read_stages(root: Path) -> Any:
    path = root / "stages.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def mismatch_summary(result: Reproduction) -> str:
    bad = [f"{r.trial} {r.metric}: recorded {r.recorded!r}, reproduced {r.reproduced!r}" for r in result.rows if not r.match]
    for st in result.stages:
        if not st["match"]:
            shown = [f"{m['metric']} {m['recorded']!r} → {m['reproduced']!r}" for m in st.get("metrics", []) if not m["match"]]
            bad.append(f"{st['stage']} stage ({st['by']}): " + (", ".join(shown) or "outputs differ"))
    lines = bad[:10] + result.problems[:10]
    return "reproduction does not match:\n  " + "\n  ".join(lines)


def load_reproduction(bundle_dir: Path) -> dict[str, Any] | None:
    path = Path(bundle_dir) / REPRODUCE_FILE
    return json.loads(path.read_text()) if path.is_file() else None
