"""Recording a turn's outcome, announcing a turn that is still running, and finishing running turns later
(after a restart, a background response is fetched again by its id)."""

from __future__ import annotations

import logging
import time

import anyio
from mcp.server.mcpserver.exceptions import ToolError

from tools.deps import Deps
from tools.jobs import Job
from tools.models import Conversation, Turn
from tools.ports import ChatReply
from tools.sanitize import clean_text

log = logging.getLogger(__name__)
INTERRUPTED = "The server stopped while this answer was streaming, so it was lost. Ask again."


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


def consume(conversation: Conversation, turn: Turn, consumed: tuple[bool, bool]) -> None:
    if consumed[0]:
        conversation.pending_images = [i for i in conversation.pending_images if i not in turn.images]
    if consumed[1]:
        conversation.pending_files = [f for f in conversation.pending_files if f not in turn.files]


def restore(conversation: Conversation, turn: Turn) -> None:
    """Give a failed turn's attachments back, so the next turn sends them."""
    conversation.pending_images += [i for i in turn.images if i not in conversation.pending_images]
    conversation.pending_files += [f for f in turn.files if f not in conversation.pending_files]


async def save(deps: Deps, conversation: Conversation) -> None:
    conversation.updated_at = time.time()
    await deps.store.put_conversation(conversation)


async def settle(deps: Deps, job: Job, reply: ChatReply | None, error: BaseException | None) -> None:
    """Record how the job ended. Before it was announced, only success leaves a trace."""
    draft = job.draft
    if draft is None or (reply is None and not job.announced):
        return
    # Shielded: this also runs while the job is being cancelled, and must not be cut short half-way.
    with anyio.CancelScope(shield=True):
        async with deps.store.lock(job.conversation_id):
            conversation = await deps.conversation(job.conversation_id)
            if reply is not None:
                turn = answered(draft, reply)
                if job.announced:
                    replace_turn(conversation, turn)
                else:
                    conversation.turns.append(turn)
                    consume(conversation, turn, job.consumed)
            elif isinstance(error, anyio.get_cancelled_exc_class()) and job.background and job.response_id:
                return  # the server is stopping; the response lives on upstream and `refresh` fetches it later
            else:
                message = str(error) if isinstance(error, ToolError) else INTERRUPTED
                turn = draft.model_copy(
                    update={"status": "failed", "error": message, "output": clean_text("".join(job.texts))}
                )
                replace_turn(conversation, turn)
                restore(conversation, turn)
            await save(deps, conversation)
            job.turn = turn


async def announce(deps: Deps, job: Job) -> Turn | None:
    """The wait budget ran out: record the turn as running and hand its number back. None if it just finished."""
    async with deps.store.lock(job.conversation_id):
        if job.finished.is_set():
            return None
        if job.draft is None:
            # Still queued behind another turn of this conversation: do not start it later, unannounced.
            job.scope.cancel()
            raise ToolError(
                f"Another turn of {job.conversation_id!r} is still being answered, so this one did not start. "
                "Wait for it (preview shows it when done), then ask again."
            )
        conversation = await deps.conversation(job.conversation_id)
        turn = job.draft.model_copy(
            update={
                "response_id": job.response_id,
                "background": job.background,
                "output": clean_text("".join(job.texts)),
            }
        )
        conversation.turns.append(turn)
        consume(conversation, turn, job.consumed)
        await save(deps, conversation)
        job.announced = True
        return turn


async def refresh(deps: Deps, conversation_id: str) -> Conversation | None:
    """The conversation with its running turns brought up to date where this process can tell."""
    conversation = await deps.store.get_conversation(conversation_id)
    if conversation is None:
        return None
    stale = [t for t in conversation.turns if t.status == "running" and deps.jobs.get(conversation_id, t.turn) is None]
    if not stale:
        return conversation
    async with deps.store.lock(conversation_id):
        conversation = await deps.conversation(conversation_id)
        changed = False
        for turn in conversation.turns:
            if turn.status != "running" or deps.jobs.get(conversation_id, turn.turn) is not None:
                continue
            failure: str | None = None
            if turn.background and turn.response_id:
                try:
                    reply = await deps.upstream.retrieve(turn.response_id)
                except ToolError as exc:
                    log.info("could not fetch %s: %s", turn.response_id, exc)
                    if "not found" not in str(exc).lower():
                        continue  # perhaps a passing failure: try again on the next look
                    reply, failure = None, str(exc)
                if reply is not None:
                    replace_turn(conversation, answered(turn, reply))
                    changed = True
                    continue
                if failure is None:
                    continue  # still generating upstream
            else:
                failure = INTERRUPTED
            failed = turn.model_copy(update={"status": "failed", "error": failure})
            replace_turn(conversation, failed)
            restore(conversation, failed)
            changed = True
        if changed:
            await save(deps, conversation)
    return conversation
