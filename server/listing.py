"""tools/list as a calling model reads it: the same capabilities in half the words.

A model pays for tools/list on every conversation, so the listing says each thing once and says nothing a caller
never reads:
- input schemas keep every argument, type, bound, enum and description, but lose pydantic's generated titles, the
  `default: null` of optional arguments and the `anyOf [X, null]` wrapping: an optional argument is one left out
  of `required`, so it is listed as X (the server still takes an explicit null);
- output schemas are shallow: every top-level field by name; the fields that guide the next step (status, turn,
  text, notes, what waits for the next turn) with their type and a short description (an id is a string). The structured
  content is the same; only its advertised shape is terser, so every result still validates against it. The chat
  result, which run_workflow nests by node id, is described once, under chat;
- descriptions written as docstrings lose their line breaks and indentation;
- `additionalProperties: true` (JSON Schema's default) is left out, and so are the annotations that say what MCP
  assumes when a hint is absent (readOnlyHint false, idempotentHint false, destructiveHint true); openWorldHint
  stays, since clients read it as "may reach the outside world" and most of these tools do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mcp_types import Tool, ToolAnnotations

# Output fields whose description tells the caller what to do next; every other output description is dropped.
GUIDING = frozenset({"status", "turn", "text", "pending_images", "pending_files", "notes", "chats", "previews"})
SCALARS = frozenset({"string", "integer", "number", "boolean", "null"})


def tidy(text: str | None) -> str | None:
    return re.sub(r"\s+", " ", text).strip() if text else text


def compact_input(schema: Mapping[str, Any]) -> dict[str, Any]:
    """An input schema without what a caller never reads (see the module docstring)."""
    found = compact_node(schema)
    found.pop("title", None)
    return found


def compact_node(node: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if (key == "default" and value is None) or (key == "additionalProperties" and value is True):
            continue
        if key in ("properties", "$defs") and isinstance(value, Mapping):
            out[key] = {name: compact_node(item) for name, item in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            out[key] = compact_node(value)
        elif key in ("anyOf", "oneOf", "prefixItems") and isinstance(value, list):
            out[key] = [compact_node(item) if isinstance(item, Mapping) else item for item in value]
        elif key == "description" and isinstance(value, str):
            out[key] = tidy(value)
        else:
            out[key] = value
    return nullable(out)


def nullable(node: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [{type: X, ...}, {type: null}]` as `{type: X, ...}`, and null left out of a longer anyOf (see the
    module docstring)."""
    options = node.get("anyOf")
    if not isinstance(options, list) or {"type": "null"} not in options:
        return node
    if len(options) > 2:
        return {**node, "anyOf": [item for item in options if item != {"type": "null"}]}
    other = next(item for item in options if item != {"type": "null"})
    if "$ref" in other:
        return node
    merged = {key: value for key, value in node.items() if key != "anyOf"}
    merged.update(other)
    return merged


def shallow_output(schema: Mapping[str, Any]) -> dict[str, Any]:
    """An output schema as its top-level fields and their kinds (see the module docstring)."""
    properties: dict[str, Any] = {}
    for name, field in (schema.get("properties") or {}).items():
        shape: dict[str, Any] = {}
        if name in GUIDING:
            shape["type"] = kinds(field)
        if name in GUIDING and field.get("description"):
            shape["description"] = tidy(field["description"])
        properties[name] = shape
    return {"type": "object", "properties": properties}


def kinds(field: Mapping[str, Any]) -> str | list[str]:
    """The JSON types a field may take, from its type, enum, const or anyOf; a reference is an object."""
    found = kind_list(field)
    return found[0] if len(found) == 1 else found


def kind_list(field: Mapping[str, Any]) -> list[str]:
    if "$ref" in field:
        return ["object"]
    if isinstance(field.get("anyOf"), list):
        found: list[str] = []
        for option in field["anyOf"]:
            found += [kind for kind in kind_list(option) if kind not in found]
        return found
    kind = field.get("type")
    if isinstance(kind, str):
        return [kind]
    if isinstance(kind, list):
        return [str(item) for item in kind]
    if "enum" in field or "const" in field:
        return ["string"]
    return sorted(SCALARS | {"object", "array"})


def lean(annotations: ToolAnnotations | None) -> ToolAnnotations | None:
    """The hints that differ from what MCP assumes when one is absent (see the module docstring)."""
    if annotations is None:
        return None
    defaults = {"read_only_hint": False, "idempotent_hint": False, "destructive_hint": True}
    return annotations.model_copy(
        update={name: None for name, value in defaults.items() if getattr(annotations, name) is value}
    )


def shaped(tool: Tool, *, app_only: bool = False) -> Tool:
    """The tool as listed: compact input schema, shallow output schema, tidy description. An app-only tool has no
    output schema: only the app calls it, and the app reads its structured content as it comes."""
    return tool.model_copy(
        update={
            "description": tidy(tool.description),
            "input_schema": compact_input(tool.input_schema),
            "output_schema": shallow_output(tool.output_schema) if tool.output_schema and not app_only else None,
            "annotations": lean(tool.annotations),
        }
    )
