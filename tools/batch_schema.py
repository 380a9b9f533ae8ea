"""A bulk run's JSON schema, as OpenAI's strict structured outputs take it: checked before anything is sent.

With `strict: true` the model's answer always matches the schema, but only a subset of JSON Schema is accepted
(OpenAI's structured outputs guide): the root is an object (not anyOf); every object lists all its properties in
`required` (an optional field is a union with null) and sets `additionalProperties: false`; some keywords are not
supported. The upstream would refuse every request of the run for any of these, so the run is refused at once
with the place in the schema and the fix.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver.exceptions import ToolError

FORMAT_NAME = "answer"
# Keywords strict mode refuses (the guide's "unsupported" list).
UNSUPPORTED = ("allOf", "not", "if", "then", "else", "dependentRequired", "dependentSchemas", "patternProperties")
MAX_DEPTH = 10  # levels of nested objects
MAX_PROPERTIES = 5000


def check_strict(schema: dict[str, Any]) -> None:
    """ToolError naming the first place (a JSON pointer) strict structured outputs would refuse."""
    if schema.get("type") != "object" or "anyOf" in schema:
        raise refused("#", 'the root must be {"type": "object", ...} (not anyOf, not another type)')
    count = [0]
    check_node(schema, "#", 0, count)
    if count[0] > MAX_PROPERTIES:
        raise refused("#", f"it has {count[0]} properties in all; strict mode takes at most {MAX_PROPERTIES}")


def check_node(node: Any, where: str, depth: int, count: list[int]) -> None:
    if not isinstance(node, dict):
        return
    for key in UNSUPPORTED:
        if key in node:
            raise refused(where, f"strict mode does not support {key!r}")
    kinds = node.get("type")
    if kinds == "object" or (isinstance(kinds, list) and "object" in kinds) or "properties" in node:
        check_object(node, where, depth, count)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            check_node(node[key], f"{where}/{key}", depth, count)
    for key in ("anyOf", "prefixItems"):
        for index, item in enumerate(node.get(key) or []):
            check_node(item, f"{where}/{key}/{index}", depth, count)
    for key in ("$defs", "definitions"):
        for name, item in (node.get(key) or {}).items():
            check_node(item, f"{where}/{key}/{name}", depth, count)


def check_object(node: dict[str, Any], where: str, depth: int, count: list[int]) -> None:
    if depth >= MAX_DEPTH:
        raise refused(where, f"objects nest more than {MAX_DEPTH} levels deep")
    if node.get("additionalProperties") is not False:
        raise refused(where, 'every object needs "additionalProperties": false')
    properties = node.get("properties") or {}
    missing = [name for name in properties if name not in (node.get("required") or [])]
    if missing:
        raise refused(
            where,
            f"every property must be in 'required' (missing: {', '.join(missing)}); make an optional one a union "
            'with null, e.g. {"type": ["string", "null"]}',
        )
    count[0] += len(properties)
    for name, item in properties.items():
        check_node(item, f"{where}/properties/{name}", depth + 1, count)


def refused(where: str, problem: str) -> ToolError:
    return ToolError(
        f"The JSON schema cannot be used with strict structured outputs: at {where}, {problem}. Nothing was sent; "
        "fix the schema and ask again."
    )


def text_format(schema: dict[str, Any]) -> dict[str, Any]:
    """The Responses API's `text.format` for the schema (Chat Completions nests the same under json_schema)."""
    return {"type": "json_schema", "name": FORMAT_NAME, "schema": schema, "strict": True}
