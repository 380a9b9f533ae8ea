"""A turn's record in the conversation: the answer written into the draft, and saving only what changed."""

from __future__ import annotations

import time

from tools.deps import Deps
from tools.models import Conversation, Turn
from tools.ports import ChatReply
from tools.sanitize import clean_text


def answered(turn: Turn, reply: ChatReply) -> Turn:
    return turn.model_copy(
        update={
            # Model output is data for the caller: no invisible or bidi characters that could hide instructions.
            "output": clean_text(reply.text),
            "status": "incomplete" if reply.status == "incomplete" else "completed",
            "incomplete_reason": reply.incomplete_reason,
            "model": reply.model or turn.model,
            "response_id": reply.response_id,
            "stored": reply.stored,
            "api": reply.api,
            "usage": reply.usage,
            "background": reply.background,
            "error": None,
        }
    )


def replace_turn(conversation: Conversation, turn: Turn) -> None:
    conversation.turns = [turn if t.turn == turn.turn else t for t in conversation.turns]


async def save(deps: Deps, conversation: Conversation, *turns: Turn) -> None:
    """The conversation's own record and the turns that changed: the others are not written again."""
    conversation.updated_at = time.time()
    await deps.store.put_changes(conversation, turns)
