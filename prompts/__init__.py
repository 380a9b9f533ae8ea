"""Prompt texts (markdown files beside this module) as set_options presets and as MCP prompts."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    description: str
    ask: str  # the default question that goes with the preset
    instructions: str


def _parse(name: str, text: str) -> Preset:
    meta: dict[str, str] = {}
    body = text
    if text.startswith("---\n"):
        header, _, body = text[4:].partition("\n---\n")
        for line in header.splitlines():
            key, _, value = line.partition(":")
            meta[key.strip()] = value.strip()
    instructions = " ".join(line.strip() for line in body.strip().splitlines())
    return Preset(
        name=name,
        title=meta.get("title", name),
        description=meta.get("description", ""),
        ask=meta.get("ask", "Describe this image."),
        instructions=instructions,
    )


@cache
def presets() -> dict[str, Preset]:
    found: dict[str, Preset] = {}
    for entry in sorted(resources.files(__package__).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".md"):
            name = entry.name.removesuffix(".md")
            found[name] = _parse(name, entry.read_text(encoding="utf-8"))
    return found


def instruction_texts() -> dict[str, str]:
    return {name: preset.instructions for name, preset in presets().items()}
