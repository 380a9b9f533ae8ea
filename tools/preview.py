"""The Preview Any step: show what came back, or any part of the conversation, as text or an image."""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any, Literal

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from tools.deps import ConversationId, Deps, check_conversation_id
from tools.models import Conversation, Turn
from tools.recovery import refresh

PreviewFormat = Literal["text", "json", "markdown"]
# Claude Desktop refuses images over 1 MiB once base64 is added; stay well under.
THUMBNAIL_BYTES = 400_000
TARGETS = "'last', 'conversation', 'options', 'pending', 'turn:<n>', 'image:<image_id>' or 'batch:<run_id>'"

# The step's arguments; the MCP tool's parameters are these (server/mcp_tools.py).
TargetArg = Annotated[
    str,
    Field(
        description=(
            "'last' answer, 'conversation', 'options', 'pending', 'turn:<n>' (its answer; the whole turn with "
            "format='json'), 'image:<id>' (a thumbnail) or 'batch:<run_id>'."
        )
    ),
]
FormatArg = Annotated[
    PreviewFormat,
    Field(
        description=(
            "'text' (strings as they are, the rest as JSON), 'json', or 'markdown' (a transcript of "
            "target='conversation')."
        )
    ),
]


class PreviewResult(BaseModel):
    conversation_id: str
    target: str
    text: str
    image_mime: str | None = None
    image_bytes: int | None = None
    image: bytes | None = Field(default=None, exclude=True)
    batch: dict[str, Any] | None = None  # target 'batch:<run_id>': progress and a page of results


def render(value: Any, fmt: PreviewFormat) -> str:
    if isinstance(value, str) and fmt != "json":
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def transcript(conversation: Conversation) -> str:
    lines = [f"# Conversation {conversation.id}", ""]
    if conversation.options.instructions:
        lines += ["Instructions: " + conversation.options.instructions, ""]
    for turn in conversation.turns:
        attached = len(turn.images) + len(turn.files)
        extra = f" with {attached} attachment{'s' if attached != 1 else ''}" if attached else ""
        after = "" if turn.parent is None else f", after turn {turn.parent}"
        lines += [
            f"## Turn {turn.turn} ({turn.model}, {turn.status}{after}){extra}",
            "",
            f"**Prompt:** {turn.prompt}",
            "",
            turn.output,
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def turn_value(turn: Turn, fmt: PreviewFormat) -> Any:
    if fmt == "text" and turn.status == "running":
        return f"Turn {turn.turn} is still running. Preview again in a while, or call chat(turn={turn.turn})."
    if fmt == "text" and turn.status == "failed":
        return f"Turn {turn.turn} failed: {turn.error}"
    if fmt == "text":
        return turn.output
    return turn.model_dump(mode="json")


async def existing(deps: Deps, conversation_id: str) -> Conversation:
    # Running turns are brought up to date first: a long answer shows up here once it is done.
    found = await refresh(deps, conversation_id)
    if found is None:
        known = await deps.store.list_conversations()
        listing = ", ".join(repr(c) for c in known[:20]) if known else "none yet"
        raise ToolError(
            f"No conversation {conversation_id!r}. Known conversations: {listing}. "
            "Chat first, or check the conversation_id."
        )
    return found


async def preview(
    deps: Deps, conversation_id: ConversationId = "default", target: TargetArg = "last", format: FormatArg = "text"
) -> PreviewResult:
    check_conversation_id(conversation_id)
    target = target.strip()
    if target.startswith("image:"):
        return await image_preview(deps, conversation_id, target)
    if target.startswith("batch:"):
        from tools import batch_view

        text, view = await batch_view.preview(deps, target, format)
        return PreviewResult(conversation_id=conversation_id, target=target, text=text, batch=view)
    if target == "options":
        conversation = await deps.conversation(conversation_id, with_turns=False)
        value: Any = conversation.options.model_dump(mode="json")
    elif target == "pending":
        conversation = await deps.conversation(conversation_id, with_turns=False)
        value = {"images": conversation.pending_images, "files": conversation.pending_files}
    elif target == "last":
        conversation = await existing(deps, conversation_id)
        last = conversation.last_turn()
        if last is None:
            raise ToolError(f"Conversation {conversation_id!r} has no turns yet. Call chat first.")
        value = turn_value(last, format)
    elif target == "conversation":
        conversation = await existing(deps, conversation_id)
        if format == "markdown":
            return PreviewResult(conversation_id=conversation_id, target=target, text=transcript(conversation))
        value = [turn.model_dump(mode="json") for turn in conversation.turns]
    elif target.startswith("turn:"):
        conversation = await existing(deps, conversation_id)
        number = target[len("turn:") :].strip()
        turn = conversation.get_turn(int(number)) if number.isdigit() else None
        if turn is None:
            count = len(conversation.turns)
            raise ToolError(
                f"No {target!r} in {conversation_id!r}: it has {count} turn{'s' if count != 1 else ''}"
                f"{f' (1 to {count})' if count else ''}."
            )
        value = turn_value(turn, format)
    else:
        raise ToolError(f"Unknown target {target!r}. Use {TARGETS}.")
    return PreviewResult(conversation_id=conversation_id, target=target, text=render(value, format))


async def image_preview(deps: Deps, conversation_id: str, target: str) -> PreviewResult:
    image_id = target[len("image:") :].strip().removeprefix("//")
    found = await deps.store.get_image(image_id)
    if found is None:
        raise ToolError(
            f"No image with id {image_id!r} is loaded. Call load_image first; its result gives the image_id."
        )
    record, data = found
    # The name it was loaded under in this conversation (the same bytes may have another name elsewhere).
    conversation = await deps.store.get_conversation(conversation_id, with_turns=False)
    name = (conversation.names.get(image_id) if conversation is not None else None) or record.name
    from tools import imaging  # Pillow is imported on first use, not at start-up

    thumb, mime = await deps.image_work(
        data, functools.partial(imaging.thumbnail, data, max_bytes=THUMBNAIL_BYTES), image_id=image_id
    )
    text = (
        f"{name or image_id}: {record.width}x{record.height} {record.format}, {record.bytes} bytes; "
        f"thumbnail {len(thumb)} bytes {mime}"
    )
    return PreviewResult(
        conversation_id=conversation_id,
        target=target,
        text=text,
        image_mime=mime,
        image_bytes=len(thumb),
        image=thumb,
    )
