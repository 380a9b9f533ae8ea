"""The attachments waiting for the next chat turn: how many may wait, and dropping some or all of them.

Images and files loaded with load_image and attach_file wait in the conversation until a chat turn sends them.
A turn sends at most `Limits.max_images_per_turn` images, so load_image refuses to let more than that wait (a
conversation holding more could never chat again with the default attachments), and `clear_pending` drops
waiting attachments that should not go with the next turn. Dropping forgets only the waiting: the images and
files stay stored, and `image://<id>` loads one again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, TypeVar

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from tools.deps import ConversationId, Deps, check_conversation_id
from tools.models import Conversation, Turn, image_ref

T = TypeVar("T")

DropImages = Annotated[
    list[str] | None,
    Field(description="Image ids to drop ([] keeps all); give neither images nor files to drop all."),
]
DropFiles = Annotated[
    list[str] | None,
    Field(description="File ids to drop."),
]


class ClearPendingResult(BaseModel):
    conversation_id: str
    dropped_images: list[str]
    dropped_files: list[str]
    pending_images: int
    pending_files: int


def drop_pending(
    conversation: Conversation, images: list[str] | None = None, files: list[str] | None = None
) -> tuple[list[str], list[str]]:
    """Remove `images` and `files` from the conversation's waiting attachments (both None: all of them); the ids
    dropped. An id that is not waiting is refused, naming the ones that are, and nothing is dropped."""
    if images is None and files is None:
        images, files = list(conversation.pending_images), list(conversation.pending_files)
    image_ids = [image_ref(ref.strip()) for ref in images or []]
    file_ids = [ref.strip() for ref in files or []]
    _check_waiting(image_ids, conversation.pending_images, "image")
    _check_waiting(file_ids, conversation.pending_files, "file")
    conversation.pending_images = [i for i in conversation.pending_images if i not in image_ids]
    conversation.pending_files = [f for f in conversation.pending_files if f not in file_ids]
    return list(dict.fromkeys(image_ids)), list(dict.fromkeys(file_ids))


def remove_pending(conversation: Conversation, attachment_id: str) -> str:
    """Drop one pending image or file (an `image://` reference works too) and say which kind it was (the MCP
    App's remove button). Refused, naming what is pending, when the id is not pending."""
    wanted = image_ref(attachment_id.strip())
    if wanted in conversation.pending_images:
        drop_pending(conversation, images=[wanted], files=[])
        return "image"
    if wanted in conversation.pending_files:
        drop_pending(conversation, images=[], files=[wanted])
        return "file"
    waiting = conversation.pending_images + conversation.pending_files
    listing = ", ".join(waiting) if waiting else "nothing"
    raise ToolError(
        f"{attachment_id!r} is not waiting for the next turn of {conversation.id!r} (pending: {listing}). "
        "Use an id from that list."
    )


def consume(conversation: Conversation, turn: Turn, takes_pending: tuple[bool, bool]) -> None:
    """A recorded turn no longer waits for what it sent (when it took the pending ones, not explicit ids)."""
    if takes_pending[0]:
        conversation.pending_images = [i for i in conversation.pending_images if i not in turn.images]
    if takes_pending[1]:
        conversation.pending_files = [f for f in conversation.pending_files if f not in turn.files]


def restore(conversation: Conversation, turn: Turn) -> None:
    """Give a failed turn's attachments back, so the next turn sends them."""
    conversation.pending_images += [i for i in turn.images if i not in conversation.pending_images]
    conversation.pending_files += [f for f in turn.files if f not in conversation.pending_files]


def check_room(conversation: Conversation, new_images: list[str], limit: int) -> None:
    """Refuse images that would make more wait than one turn can send (then nothing is attached)."""
    waiting = conversation.pending_images
    after = len(dict.fromkeys([*waiting, *new_images]))
    if after <= limit:
        return
    raise ToolError(
        f"{conversation.id!r} already has {len(waiting)} images waiting for the next turn, and one turn sends at "
        f"most {limit}: these {len(new_images)} would make {after}, so none of them was attached. Send the waiting "
        f"ones first (chat), or drop them with clear_pending(conversation_id={conversation.id!r}) (all) or "
        "clear_pending(images=[...]) (some), then load again."
    )


async def change_pending(
    deps: Deps, conversation_id: str, change: Callable[[Conversation], T]
) -> tuple[Conversation, T]:
    """Apply `change` to the conversation's waiting attachments under its lock, and store only its own record
    (the turns are neither read nor written). `change` raises to refuse, and then nothing is stored."""
    check_conversation_id(conversation_id)
    async with deps.store.lock(conversation_id):
        conversation = await deps.conversation(conversation_id, with_turns=False)
        before = (list(conversation.pending_images), list(conversation.pending_files))
        result = change(conversation)
        if (conversation.pending_images, conversation.pending_files) != before:
            conversation.updated_at = time.time()
            await deps.store.put_changes(conversation)
    return conversation, result


async def clear_pending(
    deps: Deps, conversation_id: ConversationId = "default", images: DropImages = None, files: DropFiles = None
) -> ClearPendingResult:
    conversation, (dropped_images, dropped_files) = await change_pending(
        deps, conversation_id, lambda c: drop_pending(c, images, files)
    )
    return ClearPendingResult(
        conversation_id=conversation_id,
        dropped_images=dropped_images,
        dropped_files=dropped_files,
        pending_images=len(conversation.pending_images),
        pending_files=len(conversation.pending_files),
    )


def _check_waiting(ids: list[str], waiting: list[str], kind: str) -> None:
    unknown = [i for i in ids if i not in waiting]
    if not unknown:
        return
    shown = ", ".join(waiting[:10]) + (f" and {len(waiting) - 10} more" if len(waiting) > 10 else "")
    raise ToolError(
        f"{kind} {unknown[0]!r} is not waiting for the next turn, so nothing was dropped. Waiting {kind}s: "
        f"{shown or 'none'}."
    )
