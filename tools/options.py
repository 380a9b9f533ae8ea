"""The Advanced Options step: model, instructions (or a preset), truncation, limits and sampling.

Each argument is declared once, here: an `Annotated` alias carries its type, bounds and the description the
calling model reads. `OptionChanges` lists them; the MCP tool's parameters are generated from its fields
(server/mcp_tools.py) and the range checks read their bounds from the same aliases. Adding an option is a
field here (plus the schema snapshot).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_type_hints

import annotated_types
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

from tools import model_rules
from tools.deps import ConversationId, Deps
from tools.model_check import check_model
from tools.models import DEFAULT_MAX_OUTPUT_TOKENS, Detail, Options, ReasoningEffort, ResponseFormat, Truncation
from tools.ports import api_in_use

ModelArg = Annotated[str | None, Field(description="e.g. gpt-4.1-mini, gpt-4o, o3, gpt-5.")]
InstructionsArg = Annotated[str | None, Field(description="System instructions; '' clears them.")]
PresetArg = Annotated[
    str | None, Field(description="Named instructions: image-to-prompt, describe, extract-text, compare.")
]
TruncationArg = Annotated[
    Truncation | None,
    Field(description="'auto' drops the oldest context on overflow; 'disabled' fails."),
]
MaxOutputTokensArg = Annotated[
    int | None,
    Field(
        ge=16,
        le=128_000,
        description=f"The answer's upper bound, reasoning included. Default {DEFAULT_MAX_OUTPUT_TOKENS}.",
    ),
]
ReasoningEffortArg = Annotated[
    ReasoningEffort | None,
    Field(description="Reasoning models only; levels vary by model."),
]
TemperatureArg = Annotated[float | None, Field(ge=0, le=2, description="Non-reasoning models only.")]
TopPArg = Annotated[float | None, Field(ge=0, le=1, description="Non-reasoning models only.")]
DetailArg = Annotated[
    Detail | None,
    Field(
        description="low (fewest tokens; 512 px on gpt-4o, gpt-4.1, gpt-5, o3, larger on others), high, auto, or "
        "original (full size)."
    ),
]
ResponseFormatArg = Annotated[ResponseFormat | None, Field(description="'json' asks for a JSON object.")]
ResetArg = Annotated[bool, Field(description="Back to the defaults first, then the rest.")]


@dataclass(frozen=True)
class OptionChanges:
    """set_options' arguments after conversation_id, in the tool's order: None leaves a setting as it is.

    A plain dataclass, not a pydantic model: building one does not validate, so the step's own checks
    (`check_changes`) give every caller (the tool, the CLI, a workflow) the same messages."""

    model: ModelArg = None
    instructions: InstructionsArg = None
    preset: PresetArg = None
    truncation: TruncationArg = None
    max_output_tokens: MaxOutputTokensArg = None
    reasoning_effort: ReasoningEffortArg = None
    temperature: TemperatureArg = None
    top_p: TopPArg = None
    detail: DetailArg = None
    response_format: ResponseFormatArg = None
    reset: ResetArg = False


@functools.cache  # resolving the type hints costs more than the rest of a set_options call
def arguments() -> tuple[tuple[str, Any, Any], ...]:
    """Each argument as (name, its Annotated declaration, its default): what the MCP signature is built from."""
    hints = get_type_hints(OptionChanges, include_extras=True)
    return tuple((item.name, hints[item.name], item.default) for item in dataclasses.fields(OptionChanges))


def bounds(declaration: Any) -> tuple[Any, Any] | None:
    """The (ge, le) bounds an argument declares, if it declares both."""
    info = next((item for item in get_args(declaration)[1:] if isinstance(item, FieldInfo)), None)
    metadata = info.metadata if info is not None else []
    low = next((item.ge for item in metadata if isinstance(item, annotated_types.Ge)), None)
    high = next((item.le for item in metadata if isinstance(item, annotated_types.Le)), None)
    return None if low is None or high is None else (low, high)


@functools.cache
def bounded() -> tuple[tuple[str, tuple[Any, Any]], ...]:
    """The arguments that declare bounds, with them."""
    return tuple((name, limits) for name, declaration, _ in arguments() if (limits := bounds(declaration)))


class OptionsResult(BaseModel):
    conversation_id: str
    options: Options
    notes: list[str] = Field(
        default_factory=list,
    )
    model_note: str | None = Field(default=None, description="Why the model name could not be checked, if so.")
    images: str | None = Field(
        default=None, description="What the detail means on this model: the size and tokens an image is sent at."
    )


def check_ranges(changes: OptionChanges) -> None:
    """Every bounded argument inside its declared bounds (the MCP schema says the same to clients)."""
    for name, limits in bounded():
        value = getattr(changes, name)
        if value is not None and not limits[0] <= value <= limits[1]:
            raise ToolError(f"{name} must be between {limits[0]} and {limits[1]}, not {value}.")


def check_changes(deps: Deps, changes: OptionChanges) -> None:
    """The rules on the arguments themselves, before any conversation is read (a workflow's pre-flight too)."""
    check_ranges(changes)
    if changes.instructions is not None and changes.preset is not None:
        raise ToolError("Give instructions or preset, not both: a preset fills the instructions.")
    if changes.instructions is not None and len(changes.instructions) > deps.limits.max_prompt_chars:
        raise ToolError(
            f"instructions are {len(changes.instructions)} characters; the limit is "
            f"{deps.limits.max_prompt_chars} (IMAGECHAT_MAX_PROMPT_CHARS)."
        )
    if changes.model is not None and not changes.model.strip():
        raise ToolError("model is empty: name a model, e.g. gpt-4.1-mini.")
    if changes.preset is not None and changes.preset not in deps.presets:
        raise ToolError(f"Unknown preset {changes.preset!r}. Presets: {', '.join(sorted(deps.presets))}.")


def updates(deps: Deps, changes: OptionChanges) -> dict[str, Any]:
    """The Options fields this call sets."""
    found: dict[str, Any] = {}
    if changes.preset is not None:
        found.update(preset=changes.preset, instructions=deps.presets[changes.preset])
    if changes.instructions is not None:
        # An empty string clears the instructions; any text replaces a preset's.
        found.update(preset=None, instructions=changes.instructions or None)
    # The other Options fields are set as given; model is trimmed (check_changes refused an empty one).
    plain = [name for name in Options.model_fields if name not in ("model", "preset", "instructions")]
    found.update({name: getattr(changes, name) for name in plain if getattr(changes, name, None) is not None})
    if changes.model:
        found["model"] = changes.model.strip()
    return found


def planned(deps: Deps, current: Options, changes: OptionChanges) -> tuple[Options, list[str]]:
    """The options after `changes` (checked with `check_changes` first), and what in this call the model refuses.

    Only what was asked for in this call counts as a refusal: what an earlier call set and the new model cannot
    take is dropped later with a note (`apply`), since there is no other way to unset it."""
    base = Options(model=deps.default_model) if changes.reset else current
    found = updates(deps, changes)
    updated = base.model_copy(update=found)
    unasked: dict[str, Any] = {k: None for k in ("reasoning_effort", "temperature", "top_p") if k not in found}
    if "detail" not in found:
        unasked["detail"] = "auto"
    return updated, model_rules.refusals(updated.model, updated.model_copy(update=unasked))


def apply(deps: Deps, current: Options, changes: OptionChanges) -> tuple[Options, list[str]]:
    """The options after `changes`, and a note for each earlier setting the model cannot take (dropped)."""
    updated, problems = planned(deps, current, changes)
    if problems:
        raise ToolError(" ".join(problems) + " Nothing was changed.")
    options, notes = model_rules.drop_unsupported(updated.model, updated)
    # A model the upstream's API does not serve is said now, not only when chat refuses it.
    refusal = model_rules.api_refusal(options.model, api_in_use(deps.upstream) or "responses")
    return options, [*notes, f"chat will refuse this model: {refusal}"] if refusal else notes


async def set_options(
    deps: Deps, conversation_id: ConversationId = "default", changes: OptionChanges | None = None
) -> OptionsResult:
    changes = changes or OptionChanges()
    check_changes(deps, changes)
    said: list[str] = []
    if changes.model:
        refusal, note = await check_model(deps.upstream, changes.model.strip())
        if refusal:
            raise ToolError(f"{refusal} Nothing was changed.")
        said += [note] if note else []
    async with deps.store.lock(conversation_id):
        conversation = await deps.conversation(conversation_id, with_turns=False)
        updated, notes = apply(deps, conversation.options, changes)
        conversation.options = updated
        conversation.updated_at = time.time()
        await deps.store.put_changes(conversation)  # the options alone, however long the answers
    return OptionsResult(
        conversation_id=conversation_id,
        options=updated,
        notes=notes,
        model_note=" ".join(said) or None,
        images=model_rules.vision_note(updated.model) or model_rules.detail_note(updated.model, updated.detail),
    )
