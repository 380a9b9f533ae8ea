"""Taking an attachment back before it is sent: the pending images and files of a conversation."""

from __future__ import annotations

from mcp.server.mcpserver.exceptions import ToolError

from tools.models import Conversation
from tools.plan import image_ref


def remove_pending(conversation: Conversation, attachment_id: str) -> str:
    """Drop one pending image or file (an `image://` reference works too) and say which kind it was.

    Only the pending list changes: the stored bytes stay, so the same image can be loaded again, and turns
    that already sent it keep their record. Refused, naming what is pending, when the id is not pending."""
    wanted = image_ref(attachment_id.strip())
    if wanted in conversation.pending_images:
        conversation.pending_images = [i for i in conversation.pending_images if i != wanted]
        return "image"
    if wanted in conversation.pending_files:
        conversation.pending_files = [f for f in conversation.pending_files if f != wanted]
        return "file"
    waiting = conversation.pending_images + conversation.pending_files
    listing = ", ".join(waiting) if waiting else "nothing"
    raise ToolError(
        f"{attachment_id!r} is not waiting for the next turn of {conversation.id!r} (pending: {listing}). "
        "Use an id from that list."
    )
