"""Spec v1 models: the pydantic tree of a spec, :class:`LoadedSpec` and the JSON Schema.

Owns what a valid spec is. Paths in a spec are relative to the spec file and are
resolved to absolute paths here. Loading is in :mod:`runner.spec.load`, checks
across keys in :mod:`runner.spec.check`, error messages in :mod:`runner.spec.messages`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from runner import _yaml
from runner.spec.cluster import (  # the cluster models the spec tree holds
    Cluster,
    DockerCluster,
    KubernetesCluster,
    LocalCluster,
)
from runner.spec.strict import StrictModel
from runner.spec.values import (
    MAX_INT,
    ByteSize,
    Duration,
    GlobPattern,
    NonEmptyStr,
    PlainValue,
    SpecPath,
    output_dir,
    spec_version,
)

SPEC_VERSION = 1
NAME_RE = r"^[a-z0-9][a-z0-9-]*$"
IDENT_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"

# ---------------------------------------------------------------- environment


class CondaEnv(StrictModel):
    conda: SpecPath = Field(description="conda environment.yml; its lock is <stem>.conda-lock.yml beside it")
    platforms: list[Literal["linux-64", "linux-aarch64", "osx-64", "osx-arm64", "win-64"]] = Field(
        default_factory=lambda: ["linux-64"], min_length=1  # type: ignore[arg-type,return-value]
    )

    @property
    def kind(self) -> Literal["conda"]:
        return "conda"


class PipEnv(StrictModel):
    pip: SpecPath = Field(description="requirements input; its lock is <stem>.lock beside it")

    @property
    def kind(self) -> Literal["pip"]:
        return "pip"


class CurrentEnv(StrictModel):
    current: Literal[True] = Field(True, description="the interpreter running xrun; recorded, not rebuilt")

    @property
    def kind(self) -> Literal["current"]:
        return "current"


def _one_of(options: Sequence[str]) -> Any:
    def tag(value: Any) -> str | None:
        if isinstance(value, BaseModel):
            return next((o for o in options if o in type(value).model_fields), None)
        if not isinstance(value, dict):
            return None
        present = [o for o in options if o in value]
        return present[0] if len(present) == 1 else None

    return tag


Environment = Annotated[
    Annotated[CondaEnv, Tag("conda")] | Annotated[PipEnv, Tag("pip")] | Annotated[CurrentEnv, Tag("current")],
    Discriminator(
        _one_of(("conda", "pip", "current")),
        custom_error_type="one_of",
        custom_error_message="expected exactly one of conda, pip, current",
    ),
]

# ---------------------------------------------------------------- image, code, data


class Image(StrictModel):
    base: str = Field(
        "Dockerfile.base",
        description="a Dockerfile declaring ARG BASE_IMAGE (relative to the spec), or an image reference pinned by digest",
    )
    build_args: dict[str, str] = Field(default_factory=dict)
    registry: str | None = None


class Code(StrictModel):
    root: SpecPath = Field(Path("."), validate_default=True, description="directory shipped to workers and snapshotted")
    include: list[GlobPattern] = Field(default_factory=lambda: ["**/*.py"])  # relative; none may leave code.root
    exclude: list[GlobPattern] = Field(default_factory=list)


class DataItem(StrictModel):
    path: SpecPath | None = None
    url: str | None = None
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None


class Artifacts(StrictModel):
    store: str | None = Field(
        None, description="s3://, gs:// or az:// prefix; artifacts above inline_max are uploaded there by the worker"
    )
    inline_max: ByteSize = Field(1024 * 1024, description="artifacts up to this size stay in the bundle")


# ---------------------------------------------------------------- trial


class _TrialBase(StrictModel):
    timeout: Duration | None = Field(None, description="e.g. 30s, 10m, 1h; a hung trial is stopped")
    retries: Annotated[int, Field(ge=0, le=100)] = 0


class FunctionTrial(_TrialBase):
    function: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")] = Field(
        description="module:function under code.root; def f(params: dict, ctx) -> dict[str, float]"
    )

    @property
    def kind(self) -> Literal["function"]:
        return "function"


class SklearnSpec(StrictModel):
    estimator: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$")]
    params: dict[str, PlainValue] = Field(default_factory=dict, description="fixed estimator params")
    dataset: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")] | None = None
    data: str | None = None
    target: str | None = None
    cv: Annotated[int, Field(ge=2, le=1000)] = 5
    scoring: list[NonEmptyStr] = Field(default_factory=lambda: ["accuracy"], min_length=1)
    holdout: Annotated[float, Field(gt=0, lt=1)] | None = Field(
        None,
        description="fraction of rows held out (stratified for classifiers, by train_test_split seeded with "
        "holdout_seed); the sweep cross-validates on the rest and a built-in final stage refits the best "
        "estimator, scores it on the holdout and saves it with skops",
    )
    holdout_seed: Annotated[int, Field(ge=0, lt=2**32)] = 0


class SklearnTrial(_TrialBase):
    sklearn: SklearnSpec

    @property
    def kind(self) -> Literal["sklearn"]:
        return "sklearn"


Trial = Annotated[
    Annotated[FunctionTrial, Tag("function")] | Annotated[SklearnTrial, Tag("sklearn")],
    Discriminator(
        _one_of(("function", "sklearn")),
        custom_error_type="one_of",
        custom_error_message="expected exactly one of function, sklearn",
    ),
]

# ---------------------------------------------------------------- stages


class Stage(StrictModel):
    """``prepare`` (once before the sweep) or ``final`` (once after it, with the best point)."""

    function: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")] = Field(
        description="module:function under code.root; def f(params: dict, ctx) -> dict[str, float] | None"
    )
    params: dict[str, PlainValue] = Field(default_factory=dict, description="passed as the function's first argument")
    timeout: Duration | None = Field(None, description="e.g. 10m; a hung stage is stopped")


# ---------------------------------------------------------------- sweep


class Uniform(StrictModel):
    uniform: tuple[float, float]

    @model_validator(mode="after")
    def _finite_width(self) -> Uniform:
        lo, hi = self.uniform
        if not math.isfinite(hi - lo):
            raise ValueError(f"the range [{lo!r}, {hi!r}] is too wide to sample from")
        return self


class LogUniform(StrictModel):
    loguniform: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]]


BoundedInt = Annotated[int, Field(ge=-MAX_INT, lt=MAX_INT)]


class IntRange(StrictModel):
    int: tuple[BoundedInt, BoundedInt]


Distribution = Annotated[
    Annotated[Uniform, Tag("uniform")] | Annotated[LogUniform, Tag("loguniform")] | Annotated[IntRange, Tag("int")],
    Discriminator(
        _one_of(("uniform", "loguniform", "int")),
        custom_error_type="one_of",
        custom_error_message="expected a list of choices or one of {uniform: [lo, hi]}, {loguniform: [lo, hi]}, {int: [lo, hi]}",
    ),
]


def _param_tag(value: Any) -> str:
    return "dist" if isinstance(value, (dict, BaseModel)) else "choices"


Parameter = Annotated[
    Annotated[list[PlainValue], Field(min_length=1), Tag("choices")] | Annotated[Distribution, Tag("dist")],
    Discriminator(_param_tag),
]


class Objective(StrictModel):
    metric: NonEmptyStr
    goal: Literal["maximize", "minimize"] = "maximize"


ADAPTIVE_METHODS = ("tpe", "cmaes", "nsga2", "qmc")


class EarlyStop(StrictModel):
    """Stops unpromising trials of an adaptive sweep at fixed steps (``ctx.log(step=…)``)."""

    rule: Literal["halving", "median"] = Field(description="halving: keep the top 1/reduction at each rung; median: stop below the median")
    metric: NonEmptyStr | None = Field(None, description="the value logged with ctx.log(step=…, <metric>=…); default: the objective's metric")
    goal: Literal["maximize", "minimize"] | None = Field(None, description="default: the objective's goal")
    min_steps: Annotated[int, Field(ge=1, le=10_000_000)] = Field(1, description="no trial is stopped before this step")
    max_steps: Annotated[int, Field(ge=1, le=10_000_000)] | None = Field(None, description="a trial's full length in steps; required for halving")
    reduction: Annotated[int, Field(ge=2, le=100)] = Field(3, description="halving: rungs at min_steps·reduction^k, 1/reduction kept at each")


class Sweep(StrictModel):
    method: Literal["grid", "random", "list", "tpe", "cmaes", "nsga2", "qmc"] = "grid"
    parameters: dict[Annotated[str, Field(pattern=IDENT_RE)], Parameter] = Field(default_factory=dict)
    points: list[dict[str, PlainValue]] | None = None
    samples: Annotated[int, Field(gt=0, le=10_000_000)] | None = None
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    repeats: Annotated[int, Field(ge=1, le=10_000)] = 1
    objective: Objective | None = None
    objectives: list[Objective] | None = Field(default=None, min_length=2, max_length=10, description="nsga2 only: a Pareto front over these")
    batch: Annotated[int, Field(ge=2, le=10_000)] | None = Field(
        default=None, description="adaptive: trials asked per generation (default 8), whatever the number of workers"
    )
    early_stop: EarlyStop | None = None

    @property
    def adaptive(self) -> bool:
        return self.method in ADAPTIVE_METHODS


class Reproduce(StrictModel):
    tolerance: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)


# ---------------------------------------------------------------- the spec


class Spec(StrictModel):
    """xrun spec, format version 1."""

    xrun: Annotated[Literal[1], BeforeValidator(spec_version)] = Field(description="spec format version")
    name: Annotated[str, Field(pattern=NAME_RE, max_length=40)]
    description: str = ""
    environment: Environment = Field(default_factory=CurrentEnv)  # type: ignore[arg-type]
    image: Image = Field(default_factory=Image)  # type: ignore[arg-type]
    code: Code = Field(default_factory=dict, validate_default=True)  # type: ignore[arg-type]
    data: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")], DataItem] = Field(
        default_factory=dict
    )
    trial: Trial
    artifacts: Artifacts = Field(default_factory=Artifacts)  # type: ignore[arg-type]
    sweep: Sweep = Field(default_factory=Sweep)
    prepare: Stage | None = Field(
        None, description="runs once before the sweep; its files reach every trial as ctx.inputs['prepare']"
    )
    final: Stage | None = Field(None, description="runs once after the sweep with the best point as ctx.best")
    cluster: Cluster = Field(default_factory=LocalCluster)
    reproduce: Reproduce = Field(default_factory=Reproduce)
    secrets: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(default_factory=list)
    output: Annotated[SpecPath, AfterValidator(output_dir)] = Field(Path("runs"), validate_default=True, description="bundles go to <output>/<name>-<UTC time>-<6 hex>/")

    def volume_for(self, path: Path) -> tuple[str, Path | None] | None:
        """(mount path, where this machine sees that volume or None) when ``path``
        is on a volume the workers mount (``cluster.docker.volumes``,
        ``cluster.kubernetes.volumes``); None for an ordinary path."""
        mounts: list[tuple[str, Path | None]] = []
        if isinstance(self.cluster, DockerCluster):
            mounts = [(v.target, v.source) for v in self.cluster.docker.volumes]
        elif isinstance(self.cluster, KubernetesCluster):
            mounts = [(v.mount_path, None) for v in self.cluster.kubernetes.volumes]
        for target, source in mounts:
            if Path(path).is_relative_to(target):
                return target, source
        return None


# ---------------------------------------------------------------- loading


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec with what it was made from."""

    spec: Spec
    path: Path  # absolute path of the spec file
    text: str  # the spec exactly as given
    overrides: tuple[str, ...] = ()
    lines: dict[_yaml.KeyPath, int] = field(default_factory=dict, repr=False, compare=False)
    warnings: tuple[str, ...] = ()

    @property
    def base(self) -> Path:
        return self.path.parent

    def where(self, *path: str | int) -> str:
        """``file:line key.path`` for messages about an already valid spec."""
        line = _yaml.line_for(self.lines, path)
        loc = f"{self.display}:{line}" if line else self.display
        return f"{loc} {_yaml.dotted(path)}".rstrip()

    @property
    def display(self) -> str:
        return display_path(self.path)


def display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of spec v1, as committed in ``schema/spec-v1.json``."""
    schema = Spec.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://xrun.dev/schema/spec-v1.json"
    return schema
