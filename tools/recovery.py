"""Turns recorded as running that no live owner holds (the process stopped, or died and its lease ran out):
recovered where they are next looked at, exactly once."""

from __future__ import annotations

import logging

from mcp.server.mcpserver.exceptions import ToolError

from tools.deps import Deps
from tools.models import Conversation, Turn
from tools.turn import TurnRun
from tools.turn_record import save
from tools.turn_words import INTERRUPTED

log = logging.getLogger(__name__)


async def refresh(deps: Deps, conversation_id: str, *, turn_lock_held: bool = False) -> Conversation | None:
    """The conversation with its running turns brought up to date where this process can tell: a turn that no
    live owner holds (its process stopped, or died and its lease ran out) is recovered here, exactly once (under
    the conversation's lock, re-read). `turn_lock_held`: the caller holds the turn lock, so no other process runs
    a turn of this conversation."""
    conversation = await deps.store.get_conversation(conversation_id)
    if conversation is None or not await orphans(deps, conversation, turn_lock_held):
        return conversation
    async with deps.store.lock(conversation_id):
        conversation = await deps.conversation(conversation_id)
        changed: list[Turn] = []
        for record in await orphans(deps, conversation, turn_lock_held):
            adopted = adopt(conversation_id, record, deps.turns.owner)
            if await recover(adopted, deps, conversation) and adopted.recorded is not None:
                changed.append(adopted.recorded)
        if changed:
            await save(deps, conversation, *changed)
    return conversation


async def orphans(deps: Deps, conversation: Conversation, turn_lock_held: bool = False) -> list[Turn]:
    running = [t for t in conversation.turns if t.status == "running" and not deps.turns.holds(conversation.id, t.turn)]
    if not running or turn_lock_held:
        return running
    # A turn runs while its owner holds the conversation's turn lock: held by a live lease, it is not an orphan.
    return [] if await deps.store.turn_holder(conversation.id) is not None else running


def adopt(conversation_id: str, record: Turn, owner: str) -> TurnRun:
    """A turn recorded as running that no live owner holds, taken over by `owner` to settle it."""
    run = TurnRun(conversation_id, owner)
    run.draft, run.announced = record, True
    run.response_id, run.background = record.response_id, record.background
    return run


async def recover(run: TurnRun, deps: Deps, conversation: Conversation) -> bool:
    """Settle an adopted turn in `conversation` (locked by the caller): a background response is fetched again
    by its id, a stream that was cut off is recorded as failed. False while it may still finish."""
    if not (run.background and run.response_id):
        run.record_failure(conversation, INTERRUPTED)
        return True
    try:
        reply = await deps.upstream.retrieve(run.response_id)
    except ToolError as exc:
        log.info("could not fetch %s: %s", run.response_id, exc)
        if "not found" not in str(exc).lower():
            return False  # perhaps a passing failure: try again on the next look
        run.record_failure(conversation, str(exc))
        return True
    if reply is None:
        return False  # still generating upstream
    run.record_answer(conversation, reply)
    return True
