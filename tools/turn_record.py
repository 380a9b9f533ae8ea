"""A turn's record in the conversation: the answer written into the draft, saving only what changed, and the
answer so far checkpointed while it streams (for replicas that follow the turn, and against a crash)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anyio

from tools.deps import Deps
from tools.models import Conversation, Turn
from tools.ports import ChatReply
from tools.sanitize import clean_text

if TYPE_CHECKING:
    from tools.turn import TurnRun

log = logging.getLogger(__name__)
CHECKPOINT_SECONDS = 2.0  # how often a running turn's answer so far is written for other replicas


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


async def checkpoint(run: TurnRun, deps: Deps) -> None:
    """While an announced turn streams, write its answer so far every few seconds: a replica following the
    turn (chat(turn=N), preview) shows it, and a crash keeps it."""
    while not run.finished.is_set():
        with anyio.move_on_after(CHECKPOINT_SECONDS):
            await run.finished.wait()
        if run.finished.is_set() or run.number is None:
            return
        try:
            await write_checkpoint(run, deps)
        except Exception as exc:  # best effort: the next checkpoint, or the answer itself, is written later
            log.warning("answer so far of %r not written: %s", run.conversation_id, exc)


async def write_checkpoint(run: TurnRun, deps: Deps) -> None:
    assert run.number is not None
    async with deps.store.lock(run.conversation_id):
        conversation = await deps.conversation(run.conversation_id)
        stored = conversation.get_turn(run.number)
        if stored is None or stored.status != "running" or run.finished.is_set():
            return
        # The response id too: announced before the upstream named it, a background turn is found by it.
        update = {"output": run.text_so_far(), "response_id": run.response_id, "background": run.background}
        partial = stored.model_copy(update=update)
        await save(deps, conversation, partial)
