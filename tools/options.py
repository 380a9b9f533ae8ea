"""The Advanced Options step: model, instructions (or a preset), truncation, limits and sampling."""

from __future__ import annotations

import time
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from tools import model_rules
from tools.deps import Deps
from tools.models import Detail, Options, ReasoningEffort, ResponseFormat, Truncation

MAX_OUTPUT_TOKENS_RANGE = (16, 128_000)


class OptionsResult(BaseModel):
    conversation_id: str
    options: Options
    notes: list[str] = Field(
        default_factory=list,
        description="Settings dropped because the model cannot take them, and similar remarks.",
    )


def check_ranges(*, max_output_tokens: int | None, temperature: float | None, top_p: float | None) -> None:
    low, high = MAX_OUTPUT_TOKENS_RANGE
    if max_output_tokens is not None and not low <= max_output_tokens <= high:
        raise ToolError(f"max_output_tokens must be between {low} and {high}, not {max_output_tokens}.")
    if temperature is not None and not 0 <= temperature <= 2:
        raise ToolError(f"temperature must be between 0 and 2, not {temperature}.")
    if top_p is not None and not 0 <= top_p <= 1:
        raise ToolError(f"top_p must be between 0 and 1, not {top_p}.")


async def set_options(
    deps: Deps,
    conversation_id: str = "default",
    *,
    model: str | None = None,
    instructions: str | None = None,
    preset: str | None = None,
    truncation: Truncation | None = None,
    max_output_tokens: int | None = None,
    reasoning_effort: ReasoningEffort | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    detail: Detail | None = None,
    response_format: ResponseFormat | None = None,
    reset: bool = False,
) -> OptionsResult:
    check_ranges(max_output_tokens=max_output_tokens, temperature=temperature, top_p=top_p)
    if instructions is not None and preset is not None:
        raise ToolError("Give instructions or preset, not both: a preset fills the instructions.")
    if instructions is not None and len(instructions) > deps.limits.max_prompt_chars:
        raise ToolError(
            f"instructions are {len(instructions)} characters; the limit is "
            f"{deps.limits.max_prompt_chars} (IMAGECHAT_MAX_PROMPT_CHARS)."
        )
    if model is not None and not model.strip():
        raise ToolError("model is empty: name a model, e.g. gpt-4.1-mini.")
    changes: dict[str, Any] = {}
    if preset is not None:
        if preset not in deps.presets:
            raise ToolError(f"Unknown preset {preset!r}. Presets: {', '.join(sorted(deps.presets))}.")
        changes.update(preset=preset, instructions=deps.presets[preset])
    if instructions is not None:
        # An empty string clears the instructions; any text replaces a preset's.
        changes.update(preset=None, instructions=instructions or None)
    given = {
        "model": model.strip() if model else None,
        "truncation": truncation,
        "max_output_tokens": max_output_tokens,
        "reasoning_effort": reasoning_effort,
        "temperature": temperature,
        "top_p": top_p,
        "detail": detail,
        "response_format": response_format,
    }
    changes.update({name: value for name, value in given.items() if value is not None})

    async with deps.store.lock(conversation_id):
        conversation = await deps.conversation(conversation_id)
        base = Options(model=deps.default_model) if reset else conversation.options
        updated = base.model_copy(update=changes)
        # What was asked for in this call is refused outright; what an earlier call set and the new model
        # cannot take is dropped with a note, since there is no other way to unset it.
        unasked: dict[str, Any] = {k: None for k in ("reasoning_effort", "temperature", "top_p") if k not in changes}
        if "detail" not in changes:
            unasked["detail"] = "auto"
        asked = updated.model_copy(update=unasked)
        problems = model_rules.refusals(updated.model, asked)
        if problems:
            raise ToolError(" ".join(problems) + " Nothing was changed.")
        updated, notes = model_rules.drop_unsupported(updated.model, updated)
        conversation.options = updated
        conversation.updated_at = time.time()
        await deps.store.put_conversation(conversation)
    return OptionsResult(conversation_id=conversation_id, options=updated, notes=notes)
