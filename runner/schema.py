"""Print the JSON Schema of spec v1 (``make schema`` writes schema/spec-v1.json)."""

from __future__ import annotations

import json

from runner.spec import json_schema


def render() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
