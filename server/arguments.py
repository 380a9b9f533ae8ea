"""Tool arguments checked against the input schemas the tools advertise, and refusals in the server's voice.

The SDK builds each tool's argument model from its signature: it ignores keys the tool does not take (so a
misspelt `detial="low"` silently did nothing) and words a bad value as a pydantic dump. Both are put right
here from what `tools/list` shows the caller, so the checks follow the tools whatever their signatures become.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from typing import Any

Schema = Mapping[str, Any]

_PLURALS = {"string": "strings", "integer": "whole numbers", "number": "numbers", "object": "objects"}
_CUSTOM_ERRORS = ("value_error", "assertion_error")


def unknown_arguments(tool: str, arguments: Mapping[str, Any], schemas: Mapping[str, Schema]) -> str | None:
    """The refusal of the arguments `tool` does not take (None when it takes them all).

    `schemas` maps every tool to its input schema: an argument that belongs to another tool says which."""
    own = list(properties(schemas[tool]))
    if schemas[tool].get("additionalProperties") is True:
        return None
    unknown = [name for name in arguments if name not in own]
    if not unknown:
        return None
    if len(unknown) == 1:
        head = f"unknown argument {unknown[0]!r}"
        hints = [hint(unknown[0], own, tool, schemas, named=False)]
    else:
        head = "unknown arguments " + ", ".join(repr(name) for name in unknown)
        hints = [hint(name, own, tool, schemas, named=True) for name in unknown]
    said = "; ".join(text for text in hints if text)
    if said and not said.endswith("?"):
        said += "."
    takes = f"{tool} takes: {', '.join(own)}." if own else f"{tool} takes no arguments."
    return f"{head}; {said + ' ' if said else ''}{takes}"


def hint(name: str, own: Sequence[str], tool: str, schemas: Mapping[str, Schema], *, named: bool) -> str:
    """'did you mean ...?' and/or '... is set with <tool>' for one unknown argument ('' when nothing fits)."""
    close = closest(name, own)
    if close:
        return f"{name!r}: did you mean {close!r}?" if named else f"did you mean {close!r}?"
    elsewhere = {
        other: real
        for other, schema in schemas.items()
        if other != tool and (real := closest(name, list(properties(schema))))
    }
    if not elsewhere:
        return ""
    real = next(iter(elsewhere.values()))
    owners = " or ".join(other for other, value in elsewhere.items() if value == real)
    mean = "" if real == name else f"{name!r}: did you mean {real!r}? " if named else f"did you mean {real!r}? "
    return f"{mean}{real} is set with {owners}"


def closest(name: str, candidates: Sequence[str]) -> str | None:
    if name in candidates:
        return name
    folded = {candidate.lower().replace("-", "_"): candidate for candidate in candidates}
    if name.lower().replace("-", "_") in folded:
        return folded[name.lower().replace("-", "_")]
    matches = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
    return matches[0] if matches else None


def properties(schema: Schema) -> dict[str, Schema]:
    props = schema.get("properties")
    return dict(props) if isinstance(props, Mapping) else {}


# -- values ----------------------------------------------------------------------------------------------


def invalid_values(tool: str, schema: Schema, arguments: Mapping[str, Any], errors: Sequence[Any]) -> str | None:
    """One sentence per argument pydantic refused (`errors` is `ValidationError.errors()`), or None when an
    error is not about a declared argument (then the SDK's own text is the better one)."""
    props = properties(schema)
    by_name: dict[str, list[Any]] = {}
    for error in errors:
        loc = error.get("loc") or ()
        if not loc or loc[0] not in props:
            return None
        by_name.setdefault(str(loc[0]), []).append(error)
    # In the order the caller gave them; missing ones after, in the schema's order.
    order = [*arguments, *props]
    sentences = [
        sentence(tool, name, resolve(props[name], schema), arguments, by_name[name])
        for name in sorted(by_name, key=order.index)
    ]
    return " ".join(sentences)


def sentence(tool: str, name: str, prop: Schema, arguments: Mapping[str, Any], errors: Sequence[Any]) -> str:
    accepted = describe(prop)
    if name not in arguments or any(error.get("type") == "missing" for error in errors):
        return f"{tool} needs {name} ({accepted}), and it was not given."
    given = shown(arguments[name])
    custom = [error for error in errors if error.get("type") in _CUSTOM_ERRORS]
    if custom:
        reason = str(custom[0].get("msg", "")).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        return f"{name} got {given}: {reason.rstrip('.')}."
    return f"{name} must be {accepted}; got {given}."


def resolve(prop: Schema, root: Schema) -> Schema:
    """`prop` with a local `$ref` (to the root's `$defs`) followed."""
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        merged = {**target, **{key: value for key, value in prop.items() if key != "$ref"}}
        return resolve(merged, root)
    return prop


def describe(prop: Schema, root: Schema | None = None) -> str:
    """What an argument accepts, in words: "one of 'low', 'high'", "a whole number from 16 to 128000"."""
    prop = resolve(prop, root or prop)
    if "enum" in prop:
        return "one of " + ", ".join(literal(value) for value in prop["enum"])
    if "const" in prop:
        return literal(prop["const"])
    options = prop.get("anyOf") or prop.get("oneOf")
    if isinstance(options, list):
        words: list[str] = []
        for option in options:
            if isinstance(option, Mapping) and option.get("type") != "null":
                word = describe(option, root or prop)
                if word not in words:
                    words.append(word)
        return " or ".join(words) if words else "null"
    return described_type(prop, root or prop)


def described_type(prop: Schema, root: Schema) -> str:
    kind = prop.get("type")
    if kind == "string":
        return "a string" + length(prop, "Length", "characters")
    if kind in ("integer", "number"):
        return ("a whole number" if kind == "integer" else "a number") + number_range(prop)
    if kind == "boolean":
        return "true or false"
    if kind == "array":
        items = prop.get("items")
        item_kind = resolve(items, root).get("type") if isinstance(items, Mapping) else None
        noun = f"a list of {_PLURALS[item_kind]}" if item_kind in _PLURALS else "a list"
        return noun + length(prop, "Items", "items")
    if kind == "object":
        return "a JSON object"
    return "a valid value"


def length(prop: Schema, suffix: str, unit: str) -> str:
    low, high = prop.get(f"min{suffix}"), prop.get(f"max{suffix}")
    if low is not None and high is not None:
        return f" of {low} to {high} {unit}"
    if high is not None:
        return f" of at most {high} {unit}"
    if low is not None:
        return f" of at least {low} {unit}"
    return ""


def number_range(prop: Schema) -> str:
    low, high = prop.get("minimum"), prop.get("maximum")
    if low is not None and high is not None:
        return f" from {low} to {high}"
    bounds = [
        f"of at least {low}" if low is not None else "",
        f"greater than {prop['exclusiveMinimum']}" if "exclusiveMinimum" in prop else "",
        f"of at most {high}" if high is not None else "",
        f"less than {prop['exclusiveMaximum']}" if "exclusiveMaximum" in prop else "",
    ]
    said = " and ".join(bound for bound in bounds if bound)
    return f" {said}" if said else ""


def literal(value: Any) -> str:
    return repr(value) if isinstance(value, str) else json.dumps(value)


def shown(value: Any) -> str:
    """The caller's value, short enough for one line, with its kind when that is the problem's likely cause."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else f"a string of {len(value)} characters"
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    text = json.dumps(value, default=str)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({kind_of(value)})"


def kind_of(value: Any) -> str:
    if isinstance(value, list):
        return f"a list of {len(value)} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
