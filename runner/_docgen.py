"""``docs/spec-reference.md``, generated from the JSON Schema of spec v1.

``python -m runner._docgen > docs/spec-reference.md`` regenerates it; a test
fails when the committed file differs. Types, defaults, choices and patterns
come from the schema (``runner.spec.json_schema()``, committed as
``schema/spec-v1.json``); where a field has no description in the schema, a
short one from :data:`NOTES` fills the gap (a description added in
``runner/spec/models.py`` takes precedence).
"""

from __future__ import annotations

import json
from typing import Any

# Descriptions for fields the schema does not describe, by key path.
NOTES = {
    "name": "used in run ids and image tags",
    "description": "free text, shown in the report",
    "environment": "the software trials run in: exactly one of `conda`, `pip`, `current`",
    "environment.platforms": "platforms to lock for",
    "image": "the worker image, for the docker and kubernetes backends",
    "image.build_args": "Docker build arguments, e.g. `{BASE_IMAGE: my-base:bookworm}`; `--build-arg K=V` wins",
    "image.registry": "where `xrun build --push` pushes, and where Kubernetes pulls from",
    "code": "the source shipped to workers and snapshotted into the bundle",
    "code.include": 'glob patterns under `code.root` (none may be absolute or contain `..`); default `["**/*.py"]`',
    "code.exclude": "glob patterns left out",
    "data": "named inputs; each one is hashed into the bundle",
    "data.<name>.path": "a local file (relative to the spec)",
    "data.<name>.url": "s3://, gs://, az:// (fsspec) or http(s):// object, or a prefix ending in /; fetched and verified by each node; hashed by the driver when `sha256` is not given",
    "data.<name>.sha256": "expected sha256; the run stops when the data differs",
    "trial": "what one trial runs: exactly one of `function`, `sklearn`",
    "trial.retries": "re-runs of a trial that raised",
    "trial.sklearn": "a zero-code trial: cross-validate a scikit-learn estimator",
    "trial.sklearn.estimator": "import path of the estimator class, e.g. `sklearn.svm.SVC`",
    "trial.sklearn.dataset": "`module:loader` returning `(X, y)`, e.g. `sklearn.datasets:load_iris`",
    "trial.sklearn.data": "a `data` entry (a table) instead of `dataset`",
    "trial.sklearn.target": "the column to predict, with `data`",
    "trial.sklearn.cv": "cross-validation folds",
    "trial.sklearn.scoring": "scikit-learn scorer names; default `[accuracy]`",
    "sweep": "the parameter sweep: which trials run",
    "sweep.method": "`grid`: every combination; `random`: `samples` draws; `list`: the given `points`; "
    "`tpe`, `cmaes`, `nsga2`, `qmc`: adaptive, Optuna's samplers asked in generations (`pip install 'xrun[adaptive]'`)",
    "sweep.parameters": "parameter name → choices or (random and adaptive methods) a distribution",
    "sweep.parameters.<name>": "a list of choices; with `method: random` or an adaptive method also a distribution (cmaes: distributions only)",
    "sweep.points": "the parameter sets to run, with `method: list`",
    "sweep.samples": "how many points to draw, with `method: random`; the trial budget of an adaptive method (required there)",
    "sweep.seed": "master seed; each trial's seed is derived from it and the trial's point",
    "sweep.repeats": "trials per point, each with its own derived seed",
    "sweep.objective": "the metric to optimize; sklearn trials default to the first scorer",
    "sweep.objective.metric": "a metric the trial returns",
    "sweep.objective.goal": "whether higher or lower is better",
    "sweep.early_stop": "adaptive methods: stop unpromising trials at fixed steps (status `pruned`); thresholds come from earlier generations only",
    "cluster": "where trials run: exactly one backend",
    "cluster.backend": "which backend",
    "cluster.workers": "Dask workers (processes, containers or pods)",
    "cluster.threads_per_worker": "trials each worker runs at once",
    "cluster.memory_limit": "memory per worker: bytes, or a size like `512MiB`, `2GiB`",
    "cluster.address": "the scheduler of an existing Dask cluster",
    "cluster.kubernetes": "Kubernetes options",
    "cluster.kubernetes.namespace": "namespace for the run's objects",
    "cluster.kubernetes.context": "kubeconfig context; default: the current one",
    "cluster.kubernetes.spot": "schedule workers on spot/preemptible nodes",
    "cluster.kubernetes.node_selector": "node labels workers must match",
    "cluster.kubernetes.operator": "use the Dask operator's `DaskCluster` instead of plain objects",
    "reproduce": "how `xrun reproduce` compares results",
    "reproduce.tolerance": "metric → absolute tolerance; metrics not named must match exactly",
    "secrets": "environment variables passed to workers; never written to bundles, logs or argv",
}

INTRO = """\
A spec is one YAML file. Paths in it are relative to the spec file. Every key
is validated: an unknown key is an error with a "did you mean" hint, and errors
name the file, line and key path (`specs/x.yaml:14 sweep.parameters.C: expected
a list`). Any value can be overridden on the command line with
`--set key.path=value` (the value is read as YAML).

Keys are written as paths: `trial.sklearn.cv` is `cv` inside `sklearn` inside
`trial`; `<name>` stands for a name you choose.
"""


def render_spec_reference(schema: dict[str, Any] | None = None) -> str:
    """The Markdown reference of spec v1 (from ``runner.spec.json_schema()`` by default)."""
    if schema is None:
        from runner.spec import json_schema  # deferred: imports pydantic

        schema = json_schema()
    return _Doc(schema).render()


class _Doc:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.defs: dict[str, Any] = schema.get("$defs", {})

    def render(self) -> str:
        out = [
            "# Spec reference (v1)",
            "",
            "<!-- Generated from the JSON Schema of spec v1 by `python -m runner._docgen`;",
            "     do not edit: a test fails when this file is stale. -->",
            "",
            INTRO,
            f"The JSON Schema itself: [`schema/spec-v1.json`](../schema/spec-v1.json) "
            f"(`$id` {self.schema.get('$id', '')}).",
            "",
            "## Top level",
            "",
        ]
        props = self.schema.get("properties", {})
        required = set(self.schema.get("required", []))
        out += _table_head()
        for key, sub in props.items():
            out.append(self._row(key, sub, key in required, link=self._has_section(sub)))
        out.append("")
        for key, sub in props.items():
            if self._has_section(sub):
                out += self._section(key, sub)
        example = _EXAMPLE.strip("\n")
        out += ["## A complete example", "", "```yaml", example, "```", ""]
        return "\n".join(out).rstrip() + "\n"

    # ------------------------------------------------------------------ structure

    def _resolve(self, s: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in s:
            s = self.defs[s["$ref"].rsplit("/", 1)[-1]]
        return s

    def _object(self, s: dict[str, Any]) -> dict[str, Any] | None:
        """The object schema ``s`` stands for (through refs and ``X | null``), if any."""
        s = self._resolve(s)
        if s.get("type") == "object" and "properties" in s:
            return s
        options = [o for o in s.get("anyOf", []) if o.get("type") != "null"]
        if len(options) == 1:
            return self._object(options[0])
        return None

    def _variants(self, s: dict[str, Any]) -> list[dict[str, Any]]:
        return [self._resolve(o) for o in s.get("oneOf", []) if "$ref" in o]

    def _has_section(self, s: dict[str, Any]) -> bool:
        return bool(self._variants(s)) or self._object(s) is not None or "patternProperties" in s

    def _section(self, key: str, s: dict[str, Any]) -> list[str]:
        out = [f"## {key}", ""]
        note = s.get("description") or NOTES.get(key)
        if note:
            out += [_text(_sentence(note)), ""]
        variants = self._variants(s)
        if variants:
            names = _variant_names(variants)
            out += [
                "Exactly one of: "
                + ", ".join(f"[{n}](#{_anchor(f'{key}: {n}')})" for n in names)
                + ".",
                "",
            ]
            for name, v in zip(names, variants):
                out += [f"### {key}: {name}", ""]
                out += _table_head()
                out += self._rows(key, v)
                out.append("")
            return out
        if "patternProperties" in s:
            pattern, value = next(iter(s["patternProperties"].items()))
            out += [f"`<name>` matches `{pattern}`.", ""]
            out += _table_head()
            out += self._rows(f"{key}.<name>", self._resolve(value))
            out.append("")
            return out
        obj = self._object(s)
        out += _table_head()
        out += self._rows(key, obj or {})
        out.append("")
        return out

    def _rows(self, prefix: str, obj: dict[str, Any]) -> list[str]:
        rows = []
        required = set(obj.get("required", []))
        for key, sub in obj.get("properties", {}).items():
            path = f"{prefix}.{key}"
            rows.append(self._row(path, sub, key in required))
            nested = self._object(sub)
            if nested is not None and not self._variants(sub):
                rows += self._rows(path, nested)
            elif "patternProperties" in sub:
                rows += self._pattern_rows(path, sub)
            elif sub.get("type") == "array" and sub.get("items"):
                item = self._object(sub["items"])
                if item is not None and item.get("properties"):
                    rows += self._rows(f"{path}[]", item)
        return rows

    def _pattern_rows(self, path: str, s: dict[str, Any]) -> list[str]:
        rows = []
        for _pattern, value in s["patternProperties"].items():
            rows.append(self._row(f"{path}.<name>", value, False))
        return rows

    def _row(self, path: str, s: dict[str, Any], required: bool, link: bool = False) -> str:
        key = f"[`{path}`](#{_anchor(path)})" if link else f"`{path}`"
        if required:
            default = "required"
        elif "default" in s:
            default = _literal(s["default"])
        else:
            default = ""
        note = _text(s.get("description") or NOTES.get(path) or "")
        return f"| {key} | {_cell(_text(self._type(s)))} | {_cell(default)} | {_cell(note)} |"

    # ------------------------------------------------------------------ types

    def _type(self, s: dict[str, Any]) -> str:
        if "$ref" in s:
            return "mapping"
        if "const" in s:
            return _literal(s["const"])
        if "enum" in s:
            return " | ".join(_literal(v) for v in s["enum"])
        if "oneOf" in s:
            variants = self._variants(s)
            if variants and len(variants) == len(s["oneOf"]):
                if all(len(v.get("properties", {})) == 1 for v in variants):
                    return " or ".join(self._inline(v) for v in variants)
                return "one of: " + ", ".join(_variant_names(variants))
            return " or ".join(self._type(o) for o in s["oneOf"])
        if "anyOf" in s:
            options = [o for o in s["anyOf"] if o.get("type") != "null"]
            text = " or ".join(self._type(o) for o in options)
            return text + (" or null" if len(options) < len(s["anyOf"]) else "")
        kind = s.get("type")
        if kind == "array":
            if "prefixItems" in s:
                return "[" + ", ".join(self._type(i) for i in s["prefixItems"]) + "]"
            items = s.get("items") or {}
            inner = self._type(items) if items else "values"
            text = f"list of {_plural(inner)}"
            if s.get("minItems"):
                text += f" (at least {s['minItems']})"
            return text
        if kind == "object":
            extra = s.get("additionalProperties")
            if isinstance(extra, dict):
                return f"mapping of name → {self._type(extra)}"
            if "patternProperties" in s:
                return "mapping by name (see `.<name>`)"
            return "mapping"
        if kind in ("integer", "number"):
            return kind + _bounds(s)
        if kind == "string":
            if s.get("format") == "path":
                return "path"
            if "pattern" in s:
                return f"string matching `{s['pattern']}`"
            if s.get("maxLength") is not None:
                return f"string (≤ {s['maxLength']} characters)"
            return "string"
        if kind == "boolean":
            return "boolean"
        if kind == "null":
            return "null"
        return "any value" if not s else "value"

    def _inline(self, obj: dict[str, Any]) -> str:
        """A one-key mapping written as YAML flow: ``{uniform: [number, number]}``."""
        (key, sub), *_ = obj["properties"].items()
        return f"`{{{key}: {self._type(sub).replace('`', '')}}}`"


def _table_head() -> list[str]:
    return ["| key | type | default | description |", "|---|---|---|---|"]


def _variant_names(variants: list[dict[str, Any]]) -> list[str]:
    """Name each variant by its const discriminator, else by the key only it has."""
    for key in variants[0].get("properties", {}):
        consts = [v.get("properties", {}).get(key, {}).get("const") for v in variants]
        if all(isinstance(c, str) for c in consts):
            return [str(c) for c in consts]
    names = []
    for v in variants:
        others = {k for o in variants if o is not v for k in o.get("properties", {})}
        own = [k for k in v.get("properties", {}) if k not in others]
        names.append(own[0] if own else str(v.get("title", "?")))
    return names


def _bounds(s: dict[str, Any]) -> str:
    parts = []
    bounds = (("minimum", "≥"), ("exclusiveMinimum", ">"), ("gt", ">"), ("maximum", "≤"),
              ("exclusiveMaximum", "<"))  # fmt: skip
    for key, sign in bounds:
        if key in s:
            parts.append(f"{sign} {'2^63' if s[key] == 2**63 else s[key]}")
    return f" ({', '.join(parts)})" if parts else ""


def _plural(text: str) -> str:
    for word in ("string", "integer", "number", "mapping", "boolean", "path"):
        if text == word:
            return word + "s"
        if text.startswith(word + " "):
            return word + "s" + text[len(word) :]
    return text


def _literal(value: Any) -> str:
    if isinstance(value, str) and value:
        return f"`{value}`"
    return f"`{json.dumps(value)}`"


def _text(text: str) -> str:
    """Markdown text: ``<`` and ``>`` escaped outside code spans (else they read as HTML)."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _sentence(text: str) -> str:
    text = text.strip()
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    out = []
    for ch in heading.lower():
        if ch.isalnum() or ch in "-_":
            out.append(ch)
        elif ch == " ":
            out.append("-")
    return "".join(out)


_EXAMPLE = """
xrun: 1
name: iris-svm
description: SVM on iris

environment:
  pip: ../envs/sklearn-pip.in      # locked beside it: sklearn-pip.lock (`xrun lock`)

image:
  base: ../Dockerfile.base         # declares ARG BASE_IMAGE
  registry: registry.example.com/me/xrun        # for `xrun build --push` and Kubernetes

code:
  root: ..
  include: ["experiments/**/*.py"]

data: {}                           # e.g. iris: {path: ../data/iris.csv}; hashed into the bundle

trial:
  sklearn:
    estimator: sklearn.svm.SVC
    dataset: sklearn.datasets:load_iris  # or data: iris + target: species
    cv: 5
    scoring: [accuracy, f1_macro]
  timeout: 10m
  retries: 2

sweep:
  method: grid
  parameters:
    C: [0.1, 1, 10]
    kernel: [linear, rbf]
  seed: 42
  objective: {metric: accuracy, goal: maximize}

cluster:
  backend: local
  workers: 2
  memory_limit: 2GiB

reproduce:
  tolerance: {accuracy: 0.0}

output: ../runs
"""


if __name__ == "__main__":
    print(render_spec_reference(), end="")
