"""OpenAI's published request schemas, and a validator for the bodies the fake upstream receives."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_FILE = Path(__file__).with_name("openai_requests.json")
BASE = "urn:openai-openapi"
# The schema each POST route's body must match.
ROUTES = {
    "/v1/responses": "CreateResponse",
    "/v1/chat/completions": "CreateChatCompletionRequest",
}


# OpenAI's spec writes its unions as oneOf although their branches overlap (a user message with a list of
# parts is both an EasyInputMessage and an InputMessage), and the API takes a body that matches any branch:
# so oneOf is checked as anyOf. Every other keyword keeps its JSON Schema 2020-12 meaning.
SpecValidator = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, {"oneOf": Draft202012Validator.VALIDATORS["anyOf"]}
)


@cache
def validator(schema: str) -> Any:
    document = json.loads(SPEC_FILE.read_text(encoding="utf-8"))
    # The OpenAPI document is one resource; its "#/components/schemas/X" references resolve inside it.
    registry: Registry[Any] = Registry().with_resource(BASE, Resource.from_contents(document, DRAFT202012))
    return SpecValidator({"$ref": f"{BASE}#/components/schemas/{schema}"}, registry=registry)


def source() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SPEC_FILE.read_text(encoding="utf-8"))["source"]
    return data


def problems(path: str, body: Any) -> list[str]:
    """Why `body`, sent to `path`, is not a valid request under OpenAI's spec (empty when it is, or no schema)."""
    schema = ROUTES.get(path)
    if schema is None:
        return []
    errors = sorted(validator(schema).iter_errors(body), key=lambda error: list(error.absolute_path))
    return [_describe(error) for error in errors]


def _describe(error: ValidationError) -> str:
    # "not valid under any of the given schemas" says little: name the deepest mismatch among the branches.
    leaves = list(_leaves(error))
    # A branch that failed on its "type" tag is the wrong branch, not the closest one.
    deepest = max(leaves, key=lambda leaf: (len(leaf.absolute_path), list(leaf.absolute_path)[-1:] != ["type"]))
    where = "/".join(map(str, deepest.absolute_path)) or "(body)"
    return f"{where}: {_short(deepest.message)}"


def _leaves(error: ValidationError) -> Iterator[ValidationError]:
    if not error.context:
        yield error
    for child in error.context:
        yield from _leaves(child)


def _short(text: str) -> str:
    return text if len(text) <= 300 else text[:300] + "..."
