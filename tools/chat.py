"""The OpenAI Chat step: one turn of the conversation about the loaded images and files."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from tools import model_rules
from tools.deps import Deps, check_conversation_id
from tools.models import Conversation, Turn, Usage
from tools.ports import ChatReply, ContextLost
from tools.request import TokenEstimate, abbreviate, build_request, estimate, image_ref

Progress = Callable[[float, float | None, str], Awaitable[None]]
StartingPoint = int | str | None
PROGRESS_INTERVAL = 0.5  # seconds between progress notifications while tokens stream in


class ChatResult(BaseModel):
    conversation_id: str
    turn: int | None = Field(description="The turn number (null for a dry run).")
    status: str = Field(description="completed, incomplete (see incomplete_reason) or dry_run.")
    text: str = ""
    model: str
    response_id: str | None = None
    usage: Usage | None = None
    incomplete_reason: str | None = None
    parent: int | None = Field(default=None, description="The turn this one continued from.")
    images: list[str] = Field(default_factory=list, description="Image ids sent with this turn.")
    files: list[str] = Field(default_factory=list, description="File ids sent with this turn.")
    notes: list[str] = Field(default_factory=list)
    request: dict[str, Any] | None = Field(default=None, description="Dry run: the request as it would be sent.")
    estimated_input_tokens: TokenEstimate | None = None


def choose_parent(conversation: Conversation, persist_context: bool, starting_point: StartingPoint) -> int | None:
    if starting_point == "start" or not persist_context:
        return None
    if starting_point is None:
        last = conversation.last_turn()
        return last.turn if last else None
    if isinstance(starting_point, str) and starting_point.strip().isdigit():
        starting_point = int(starting_point.strip())
    if isinstance(starting_point, int) and conversation.get_turn(starting_point) is not None:
        return starting_point
    numbers = [turn.turn for turn in conversation.turns]
    known = f"turns 1 to {max(numbers)}" if numbers else "no turns yet"
    raise ToolError(
        f"starting_point {starting_point!r} is not a turn of {conversation.id!r} ({known}). "
        "Use a turn number, or 'start' to begin afresh."
    )


def pick(refs: list[str] | None, pending: list[str], kind: str) -> list[str]:
    if refs is None:
        return list(pending)
    picked = [image_ref(ref.strip()) for ref in refs]
    if any(not ref for ref in picked):
        raise ToolError(f"{kind} contains an empty id.")
    return picked


class _Throttle:
    """Turns streamed text into progress notifications, at most one per interval."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.deltas = 0
        self.chars = 0
        self.sent_at = 0.0

    async def __call__(self, delta: str) -> None:
        self.deltas += 1
        self.chars += len(delta)
        now = time.monotonic()
        if self.progress is not None and now - self.sent_at >= PROGRESS_INTERVAL:
            self.sent_at = now
            await self.progress(self.deltas, None, f"receiving answer: {self.deltas} tokens so far")


async def chat(
    deps: Deps,
    prompt: str,
    conversation_id: str = "default",
    images: list[str] | None = None,
    files: list[str] | None = None,
    persist_context: bool = True,
    starting_point: StartingPoint = None,
    model: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ChatResult:
    check_conversation_id(conversation_id)
    if not prompt or not prompt.strip():
        raise ToolError("prompt is empty: say what you want to know about the images.")
    if len(prompt) > deps.limits.max_prompt_chars:
        raise ToolError(
            f"prompt is {len(prompt)} characters; the limit is {deps.limits.max_prompt_chars} "
            "(IMAGECHAT_MAX_PROMPT_CHARS). Attach long text as a file with attach_file instead."
        )
    # One turn at a time per conversation: a second chat waits rather than interleaving with the first.
    async with deps.store.lock(f"turn:{conversation_id}"):
        conversation = await deps.conversation(conversation_id)
        options = conversation.options
        notes: list[str] = []
        if model is not None and model.strip() and model.strip() != options.model:
            options, notes = model_rules.drop_unsupported(
                model.strip(), options.model_copy(update={"model": model.strip()})
            )
        image_ids = pick(images, conversation.pending_images, "images")
        file_ids = pick(files, conversation.pending_files, "files")
        if len(image_ids) > deps.limits.max_images_per_turn:
            raise ToolError(f"{len(image_ids)} images in one turn; the limit is {deps.limits.max_images_per_turn}.")
        parent = choose_parent(conversation, persist_context, starting_point)
        request = await build_request(
            deps, conversation, options, prompt=prompt, images=image_ids, files=file_ids, parent=parent
        )
        if dry_run:
            return ChatResult(
                conversation_id=conversation_id,
                turn=None,
                status="dry_run",
                model=options.model,
                parent=parent,
                images=image_ids,
                files=file_ids,
                notes=notes,
                request=abbreviate(deps.upstream.render(request)),
                estimated_input_tokens=estimate(request),
            )
        throttle = _Throttle(progress)
        try:
            reply = await deps.upstream.send(request, throttle)
        except ContextLost:
            notes.append("The upstream no longer had the previous response; the conversation was replayed.")
            request = await build_request(
                deps,
                conversation,
                options,
                prompt=prompt,
                images=image_ids,
                files=file_ids,
                parent=parent,
                replay=True,
            )
            reply = await deps.upstream.send(request, _Throttle(progress))
        turn = await record_turn(
            deps,
            conversation_id,
            prompt,
            image_ids,
            file_ids,
            parent,
            reply,
            options.instructions,
            consumed_pending=(images is None, files is None),
        )
    return ChatResult(
        conversation_id=conversation_id,
        turn=turn.turn,
        status=turn.status,
        text=turn.output,
        model=turn.model,
        response_id=turn.response_id,
        usage=turn.usage,
        incomplete_reason=turn.incomplete_reason,
        parent=parent,
        images=image_ids,
        files=file_ids,
        notes=notes,
    )


async def record_turn(
    deps: Deps,
    conversation_id: str,
    prompt: str,
    image_ids: list[str],
    file_ids: list[str],
    parent: int | None,
    reply: ChatReply,
    instructions: str | None,
    consumed_pending: tuple[bool, bool],
) -> Turn:
    async with deps.store.lock(conversation_id):
        # Read again: load_image or set_options may have run while the model was answering.
        conversation = await deps.conversation(conversation_id)
        number = max((turn.turn for turn in conversation.turns), default=0) + 1
        turn = Turn(
            turn=number,
            parent=parent,
            prompt=prompt,
            images=image_ids,
            files=file_ids,
            output=reply.text,
            status="incomplete" if reply.status == "incomplete" else "completed",
            incomplete_reason=reply.incomplete_reason,
            model=reply.model,
            response_id=reply.response_id,
            stored=reply.stored,
            api=reply.api,
            usage=reply.usage,
            instructions=instructions,
        )
        conversation.turns.append(turn)
        if consumed_pending[0]:
            conversation.pending_images = [i for i in conversation.pending_images if i not in image_ids]
        if consumed_pending[1]:
            conversation.pending_files = [f for f in conversation.pending_files if f not in file_ids]
        conversation.updated_at = time.time()
        await deps.store.put_conversation(conversation)
    return turn
