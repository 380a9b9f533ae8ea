"""One chat turn, from the call that starts it to its answer recorded in the conversation.

Its life, each step a method of `TurnRun`:
- run: spawned in the server's task group (tools/running.py) under this process's owner id, so an answer
  that takes minutes outlives the request that asked for it;
- begin: under the conversation's turn lock (one turn at a time), plan against the conversation as it is
  then and claim the turn's number;
- check_writable: before anything is sent (and billed), the conversation is written back as it is, so a full
  or read-only disk fails the turn while it still costs nothing;
- answer: send the request and hear the answer stream in (the turn is the upstream's Listener), within the
  turn's total deadline (IMAGECHAT_TURN_TIMEOUT) however slowly it trickles in;
- announce: the caller's wait budget ran out, so the turn is recorded as "running" and its number handed back;
- finish: the answer is recorded (if the store refuses it, it is handed back all the same and held for
  chat(turn=N)); fail: a turn already announced is recorded as failed and its attachments given back (before
  it was announced, a failure leaves no trace); cancel: the agent stops it; abandon: the caller gave up
  before the turn was announced, so generating stops;
- after a restart, a turn recorded as running that no live owner holds is adopted and settled
  (tools/recovery.py).

Across processes the owner holds the conversation's turn lock as a lease it renews (server/stores/leases.py):
others follow the record, which the owner checkpoints; once the owner died and its lease ran out, whoever looks
first settles the turn, under the conversation's lock and re-reading it, so exactly once (`settled_elsewhere`).
"""

from __future__ import annotations

import functools
import logging
import time
from contextlib import AsyncExitStack

import anyio
from mcp.server.mcpserver.exceptions import ToolError

from tools.deps import Deps
from tools.models import Conversation, Turn
from tools.pending import consume, restore
from tools.plan import ChatCall, TurnPlan, plan_turn
from tools.ports import ChatReply, ContextLost
from tools.request import build_request, sent_images
from tools.sanitize import clean_text
from tools.turn_record import answered, checkpoint, replace_turn, save
from tools.turn_words import CANCELLED, INTERRUPTED, NOT_STORED, NOT_WRITABLE, REPLAYED, TOO_LONG, UNEXPECTED, reason

log = logging.getLogger(__name__)


class TurnRun:
    """A turn this process generates (or has adopted after a restart, to settle it).

    The waiters read it (`finished`, `recorded`, `error`, `notes`, the streamed `deltas`); only its own
    methods change it.
    """

    def __init__(self, conversation_id: str, owner: str) -> None:
        self.conversation_id = conversation_id
        self.owner = owner  # the process that runs it: a shared store's lease names this id
        self.started_at = time.monotonic()
        self.finished = anyio.Event()
        self.scope = anyio.CancelScope()
        self.notes: list[str] = []
        self.deltas: list[str] = []  # the answer's text, as it streamed in
        self.response_id: str | None = None
        self.background = False
        self.takes_pending = (True, True)  # whether its images / files are the pending ones (used up by it)
        self.draft: Turn | None = None  # the turn as it will be recorded; set once it holds the turn lock
        self.announced = False  # a "running" turn has been written to the store
        self.recorded: Turn | None = None  # the turn as recorded, once settled
        self.error: ToolError | None = None
        self.begun = anyio.Event()  # set once it holds the turn lock and has a number (or has ended)
        self.cancel_requested = False  # the agent asked to stop it
        self.unstored = False  # answered, but the store refused the answer: held here so it is not lost
        self.deps: Deps | None = None  # set while it runs: the listener writes the response id through it

    @property
    def number(self) -> int | None:
        return None if self.draft is None else self.draft.turn

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def text_so_far(self) -> str:
        if not self.deltas and self.draft is not None:
            return self.draft.output  # an adopted turn: what was recorded when it was announced
        return clean_text("".join(self.deltas))

    async def started(self, response_id: str, background: bool) -> None:
        self.response_id = response_id
        self.background = background
        if self.deps is not None:
            await self.keep_response_id(self.deps)

    async def keep_response_id(self, deps: Deps) -> None:
        """Write the response id into the turn if it was already announced as running without it (the caller's
        wait ran out before the upstream named the response): after a restart, `refresh` fetches a background
        answer by this id. `announce` reads the id under the same lock, so one of the two always records it."""
        with anyio.CancelScope(shield=True):
            try:
                await self.write_response_id(deps)
            except Exception as exc:  # a store that cannot be written now must not cut the answer off
                log.warning("response id of %r not recorded: %s", self.conversation_id, exc)

    async def write_response_id(self, deps: Deps) -> None:
        async with deps.store.lock(self.conversation_id):
            if not self.announced or self.recorded is not None or self.number is None:
                return
            conversation = await deps.conversation(self.conversation_id)
            record = conversation.get_turn(self.number)
            if record is None or record.status != "running" or record.response_id == self.response_id:
                return
            kept = record.model_copy(update={"response_id": self.response_id, "background": self.background})
            replace_turn(conversation, kept)
            await save(deps, conversation, kept)

    async def text(self, delta: str) -> None:
        self.deltas.append(delta)

    async def run(self, deps: Deps, call: ChatCall) -> None:
        """The whole turn, in the server's task group; how it ended is left on the object for the waiters."""
        self.deps = deps
        with self.scope:
            try:
                await self.take_turn(deps, call)
            except ToolError as exc:
                self.error = exc
            except Exception:
                log.exception("turn of %r (owner %s) failed unexpectedly", self.conversation_id, self.owner)
                self.error = ToolError(UNEXPECTED)
        if self.number is not None and not self.unstored:
            deps.turns.release(self.conversation_id, self.number)
        self.begun.set()
        self.finished.set()

    async def take_turn(self, deps: Deps, call: ChatCall) -> None:
        # One turn at a time per conversation: a second chat waits rather than interleaving with the first.
        async with AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(deps.store.turn_lock(self.conversation_id))
            except Exception as exc:  # the lease is a write too (a full disk, the shared store away): say so
                log.warning("turn of %r not started: its lock cannot be taken: %s", self.conversation_id, exc)
                raise ToolError(NOT_WRITABLE.format(reason=reason(exc))) from None
            # Holding the turn lock, any turn still recorded as running lost its owner (whose lease ran out).
            from tools.recovery import refresh  # recovery adopts turns with TurnRun: imported when used

            await refresh(deps, self.conversation_id, turn_lock_held=True)
            plan = self.begin(deps, await deps.conversation(self.conversation_id), call)
            try:
                await self.check_writable(deps)
                reply = await self.answer_in_time(deps, plan)
            except BaseException as exc:
                await self.fail(deps, exc)
                raise
            await self.finish(deps, reply)

    def begin(self, deps: Deps, conversation: Conversation, call: ChatCall) -> TurnPlan:
        """Plan the turn against the conversation as it is now (the caller holds the turn lock); claim its number."""
        plan = plan_turn(conversation, call, max_images=deps.limits.max_images_per_turn)
        self.notes.extend(plan.notes)
        self.takes_pending = plan.takes_pending
        self.draft = plan.draft(conversation.next_number())
        deps.turns.claim(self.conversation_id, self.draft.turn, self)
        self.begun.set()
        return plan

    async def check_writable(self, deps: Deps) -> None:
        """Write the conversation back as it is, before paying for an answer that could not be stored. (One not
        stored yet stays so: a turn that fails leaves no trace; `finish` keeps its answer in any case.)"""
        try:
            if await deps.store.get_conversation(self.conversation_id, with_turns=False) is None:
                return
            async with deps.store.lock(self.conversation_id):
                await save(deps, await deps.conversation(self.conversation_id, with_turns=False))
        except Exception as exc:
            log.warning("turn of %r not started: the store cannot be written: %s", self.conversation_id, exc)
            raise ToolError(NOT_WRITABLE.format(reason=reason(exc))) from None

    async def answer_in_time(self, deps: Deps, plan: TurnPlan) -> ChatReply:
        """The answer, within the turn's total deadline: the upstream timeout bounds only the gaps between
        bytes, and an upstream that drips a byte now and then would otherwise hold the turn for ever."""
        limit = deps.limits.turn_timeout
        with anyio.move_on_after(limit):
            return await self.answer(deps, plan)
        await self.stop_upstream(deps)
        raise ToolError(TOO_LONG.format(limit=limit))

    async def answer(self, deps: Deps, plan: TurnPlan) -> ChatReply:
        request = await build_request(deps, plan)
        if self.draft is not None:  # the record says how each image went to the model (size, detail, tokens)
            self.draft = self.draft.model_copy(update={"sent": sent_images(request)})
        try:
            reply = await deps.upstream.send(request, self)
        except ContextLost as lost:
            # The upstream lost the stored response, or is not trusted to keep it: send the recorded turns.
            self.notes.append(lost.note or REPLAYED)
            reply = await deps.upstream.send(await build_request(deps, plan.replayed()), self)
        # What the adapter changed to fit the API in use (a detail it lacks, a fallback): the caller sees it.
        self.notes.extend(note for note in reply.notes if note not in self.notes)
        return reply

    async def announce(self, deps: Deps) -> Turn | None:
        """The wait budget ran out: record the turn as running and hand it back. None if it just finished."""
        async with deps.store.lock(self.conversation_id):
            if self.finished.is_set() or self.recorded is not None:
                return None
            if self.draft is None:
                # Still queued behind another turn of this conversation: do not start it later, unannounced.
                self.scope.cancel()
                raise ToolError(
                    f"Another turn of {self.conversation_id!r} is still being answered, so this one did not start. "
                    "Wait for it (preview shows it when done), then ask again."
                )
            conversation = await deps.conversation(self.conversation_id, with_turns=False)
            turn = self.draft.model_copy(
                update={"response_id": self.response_id, "background": self.background, "output": self.text_so_far()}
            )
            conversation.turns.append(turn)
            consume(conversation, turn, self.takes_pending)
            await save(deps, conversation, turn)
            self.announced = True
            deps.turns.spawn(functools.partial(checkpoint, self, deps))
            return turn

    async def finish(self, deps: Deps, reply: ChatReply) -> None:
        # Shielded, here and in fail: this also runs while the turn is being cancelled, and must not be cut
        # short half-way.
        with anyio.CancelScope(shield=True):
            try:
                async with deps.store.lock(self.conversation_id):
                    # Still holding the turn lease, nobody else changed the turns: the conversation's own record
                    # will do.
                    lost = await deps.store.turn_holder(self.conversation_id) != self.owner
                    conversation = await deps.conversation(self.conversation_id, with_turns=self.announced or lost)
                    if self.settled_elsewhere(conversation):
                        return
                    turn = self.record_answer(conversation, reply)
                    await save(deps, conversation, turn)
            except Exception as exc:
                # The answer was paid for: hand it back all the same, and say it was not kept.
                log.warning("turn %s of %r answered but not stored: %s", self.number, self.conversation_id, exc)
                assert self.draft is not None
                self.recorded = self.recorded or answered(self.draft, reply)
                self.unstored = True
                self.notes.append(NOT_STORED.format(reason=reason(exc)))

    async def cancel(self, deps: Deps) -> None:
        """The agent asked to stop this turn: generating stops, and an announced turn is recorded as failed."""
        self.cancel_requested = True
        self.scope.cancel()
        with anyio.move_on_after(10):
            await self.finished.wait()
        await self.stop_upstream(deps)

    async def stop_upstream(self, deps: Deps) -> None:
        """A background response goes on upstream by itself: cancel it there too."""
        if self.background and self.response_id:
            with anyio.CancelScope(shield=True):
                try:
                    await deps.upstream.cancel(self.response_id)
                except ToolError as exc:
                    log.info("could not cancel %s: %s", self.response_id, exc)

    async def fail(self, deps: Deps, error: BaseException) -> None:
        """Record the failure of a turn already announced; before that, a failure leaves no trace."""
        if not self.announced:
            return
        stopping = isinstance(error, anyio.get_cancelled_exc_class()) and not self.cancel_requested
        if stopping and self.background and self.response_id:
            return  # the server is stopping; the response lives on upstream and `refresh` fetches it later
        message = str(error) if isinstance(error, ToolError) else CANCELLED if self.cancel_requested else INTERRUPTED
        with anyio.CancelScope(shield=True):
            async with deps.store.lock(self.conversation_id):
                conversation = await deps.conversation(self.conversation_id, with_turns=True)
                if self.settled_elsewhere(conversation):
                    return
                turn = self.record_failure(conversation, message)
                await save(deps, conversation, turn)

    def settled_elsewhere(self, conversation: Conversation) -> bool:
        """Whether this announced turn was settled by another process meanwhile (this one stalled past its lease,
        which a replica took over): then that record stands, so the turn ends exactly once."""
        if not self.announced or self.number is None:
            return False
        stored = conversation.get_turn(self.number)
        if stored is None or stored.status == "running":
            return False
        log.warning(
            "turn %d of %r was settled by another process; this answer is dropped", stored.turn, conversation.id
        )
        self.recorded = stored
        return True

    async def abandon(self, deps: Deps) -> None:
        """The caller gave up (or the server is stopping) before the turn was announced: stop generating too."""
        if self.announced:
            return
        self.scope.cancel()
        if self.background and self.response_id:
            with anyio.CancelScope(shield=True):
                await deps.upstream.cancel(self.response_id)

    def record_answer(self, conversation: Conversation, reply: ChatReply) -> Turn:
        assert self.draft is not None, "a turn is answered only after it began"
        turn = answered(self.draft, reply)
        if self.announced:
            replace_turn(conversation, turn)
        else:
            if conversation.get_turn(turn.turn) is not None:
                # This process stalled past its lease and another took the next number meanwhile: keep both answers.
                turn = turn.model_copy(update={"turn": conversation.next_number()})
            conversation.turns.append(turn)
            consume(conversation, turn, self.takes_pending)
        self.recorded = turn
        return turn

    def record_failure(self, conversation: Conversation, message: str) -> Turn:
        assert self.draft is not None, "only a turn that began can fail once announced"
        turn = self.draft.model_copy(update={"status": "failed", "error": message, "output": self.text_so_far()})
        replace_turn(conversation, turn)
        restore(conversation, turn)
        self.recorded = turn
        return turn


def start(deps: Deps, conversation_id: str, call: ChatCall) -> TurnRun:
    """Start a turn in the server's task group; it queues for the conversation's turn lock there."""
    run = TurnRun(conversation_id, deps.turns.owner)
    deps.turns.spawn(functools.partial(run.run, deps, call))
    return run


def live(deps: Deps, conversation_id: str, number: int) -> TurnRun | None:
    """The turn if this process is generating it."""
    found = deps.turns.holder(conversation_id, number)
    return found if isinstance(found, TurnRun) else None
