"""The OpenAI Chat step: one turn of the conversation about the loaded images and files.

The step checks the call, plans it (tools/plan.py), runs it as a turn in the server (tools/turn.py) and waits
for it up to the wait budget, sending progress notifications; an answer that takes longer comes back as
status "running" with its turn number, and `chat(turn=N)` or `preview` fetches it when it is done. A turn that
fails or is cancelled before it was announced leaves no trace: the conversation and its pending attachments
stay as they were.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from tools import pricing
from tools.deps import ConversationId, Deps, check_conversation_id
from tools.model_check import check_model
from tools.models import Conversation, SentImage, Turn, Usage
from tools.plan import ChatCall, plan_turn
from tools.plan import StartingPoint as StartingPoint
from tools.recovery import refresh
from tools.request import TokenEstimate, abbreviate, build_request, estimate, sent_images
from tools.sanitize import clean_text
from tools.turn import TurnRun, live, start

Progress = Callable[[float, float | None, str], Awaitable[None]]
PROGRESS_INTERVAL = 0.5  # at most two progress notifications a second while tokens stream in
HEARTBEAT = 5.0  # and one every 5 s while the model thinks, so clients that reset their timeout keep waiting
FOLLOW_INTERVAL = 0.5  # how often a turn run by another process is re-read
MAX_WAIT = 3600  # seconds: the longest a call may wait for its answer
# How long a turn whose wait ran out may take to get hold of an idle conversation before it counts as queued
# behind another turn (wait_seconds=0 means "start it, and answer running at once").
START_GRACE = 1.0

# The step's arguments, declared once: the MCP tool's signature and the step below both use them.
Prompt = Annotated[str | None, Field(description="Required unless turn is given.")]
ImageIds = Annotated[
    list[str] | None,
    Field(description="Image ids (default: those loaded since the last turn; [] for text only)."),
]
FileIds = Annotated[list[str] | None, Field(description="File ids (default: those attached since the last turn).")]
PersistContext = Annotated[bool, Field(description="false: a stand-alone turn, without the history.")]
ContinueFrom = Annotated[
    StartingPoint,
    Field(description="Continue from this earlier turn ('start': afresh); later turns are kept."),
]
TurnModel = Annotated[str | None, Field(description="This turn only.")]
DryRun = Annotated[
    bool,
    Field(description="Return the request, its estimated tokens and cost; send nothing."),
]
WaitSeconds = Annotated[
    float | None,
    Field(
        ge=0,
        le=MAX_WAIT,
        description="Before answering 'running' (default IMAGECHAT_WAIT_SECONDS; 0: at once).",
    ),
]
TurnNumber = Annotated[
    int | None,
    Field(
        ge=1,
        description="Fetch this turn's answer (one that came back 'running') instead of asking.",
    ),
]
CancelTurn = Annotated[
    bool,
    Field(description="With turn=<n>: stop it (recorded as failed; its attachments wait again)."),
]


class ChatResult(BaseModel):
    conversation_id: str
    turn: int | None
    status: str = Field(
        description="completed, incomplete (see incomplete_reason), running, failed (see error) or dry_run."
    )
    text: str = ""
    model: str
    response_id: str | None = None
    usage: Usage | None = None
    incomplete_reason: str | None = None
    error: str | None = None
    parent: int | None = Field(default=None, description="The turn this one continued from.")
    images: list[str] = Field(default_factory=list, description="Image ids sent with this turn.")
    sent: list[SentImage] = Field(default_factory=list, description="Each image's size, detail and tokens as sent.")
    files: list[str] = Field(default_factory=list, description="File ids sent with this turn.")
    notes: list[str] = Field(default_factory=list)
    request: dict[str, Any] | None = Field(default=None, description="Dry run: the request as it would be sent.")
    estimated_input_tokens: TokenEstimate | None = None
    estimated_cost_usd: pricing.CostEstimate | None = None


def result_of(conversation_id: str, turn: Turn, notes: list[str] | None = None) -> ChatResult:
    return ChatResult(
        conversation_id=conversation_id,
        turn=turn.turn,
        status=turn.status,
        text=turn.output,
        model=turn.model,
        response_id=turn.response_id,
        usage=turn.usage,
        incomplete_reason=turn.incomplete_reason,
        error=turn.error,
        parent=turn.parent,
        images=turn.images,
        sent=turn.sent,
        files=turn.files,
        notes=notes or [],
    )


def budget(deps: Deps, wait_seconds: float | None) -> float:
    wait = deps.wait_seconds if wait_seconds is None else wait_seconds
    if not 0 <= wait <= MAX_WAIT:
        raise ToolError(f"wait_seconds must be between 0 and {MAX_WAIT:.0f}, not {wait}.")
    return wait


def check_prompt(deps: Deps, prompt: str) -> None:
    """chat's rules for a prompt (a workflow's pre-flight checks its chat nodes' prompts with them too)."""
    if not prompt or not prompt.strip():
        raise ToolError("prompt is empty: say what you want to know about the images.")
    if len(prompt) > deps.limits.max_prompt_chars:
        raise ToolError(
            f"prompt is {len(prompt)} characters; the limit is {deps.limits.max_prompt_chars} "
            "(IMAGECHAT_MAX_PROMPT_CHARS). Attach long text as a file with attach_file instead."
        )


NO_PROMPT = (
    "chat needs a prompt saying what to ask the model about the images, or turn=<n> to fetch an answer that "
    "came back 'running'."
)


async def check_known(deps: Deps, conversation_id: str) -> None:
    """A chat that names no images or files must name a conversation that exists: a typo of an id would otherwise
    send (and bill) a prompt with nothing to look at."""
    if await deps.store.get_conversation(conversation_id) is not None:
        return
    known = await deps.store.list_conversations()
    close = difflib.get_close_matches(conversation_id, known, n=1, cutoff=0.6)
    mean = f"Did you mean {close[0]!r}? " if close else ""
    listing = ", ".join(repr(c) for c in known[:20]) + (" ..." if len(known) > 20 else "") if known else "none yet"
    raise ToolError(
        f"No conversation {conversation_id!r} yet, so there is nothing to ask about. {mean}Known conversations: "
        f"{listing}. To start {conversation_id!r}, load images into it first (load_image(source, "
        f"conversation_id={conversation_id!r})), or pass images=[...] (images=[] for a text-only turn). "
        "Nothing was sent."
    )


async def chat(
    deps: Deps,
    prompt: Prompt = None,
    conversation_id: ConversationId = "default",
    images: ImageIds = None,
    files: FileIds = None,
    persist_context: PersistContext = True,
    starting_point: ContinueFrom = None,
    model: TurnModel = None,
    dry_run: DryRun = False,
    progress: Progress | None = None,
    wait_seconds: WaitSeconds = None,
    turn: TurnNumber = None,
    cancel: CancelTurn = False,
) -> ChatResult:
    check_conversation_id(conversation_id)
    wait = budget(deps, wait_seconds)
    if cancel:
        if turn is None:
            raise ToolError("cancel=true stops a running turn: give its number as turn=<n> (chat returned it).")
        return await cancel_turn(deps, conversation_id, turn)
    if turn is not None:
        return await wait_for_turn(deps, conversation_id, turn, wait, progress)
    if prompt is None:
        raise ToolError(NO_PROMPT)
    check_prompt(deps, prompt)
    if images is None and files is None:
        await check_known(deps, conversation_id)
    call = ChatCall(clean_text(prompt), images, files, persist_context, starting_point, model)
    if dry_run:
        return await rehearse(deps, conversation_id, call)
    return await follow(deps, start(deps, conversation_id, call), wait, progress)


async def rehearse(deps: Deps, conversation_id: str, call: ChatCall) -> ChatResult:
    """A dry run: the turn planned against the conversation as it is now, and its request, not sent."""
    plan = plan_turn(await deps.conversation(conversation_id), call, max_images=deps.limits.max_images_per_turn)
    said = await check_known_model(deps, plan.options.model)
    request = await build_request(deps, plan)
    tokens = estimate(request)
    return ChatResult(
        conversation_id=conversation_id,
        turn=None,
        status="dry_run",
        model=plan.options.model,
        parent=plan.parent,
        images=plan.images,
        sent=sent_images(request),
        files=plan.files,
        notes=plan.notes + said,
        request=abbreviate(deps.upstream.render(request)),
        estimated_input_tokens=tokens,
        estimated_cost_usd=pricing.estimate(plan.options.model, tokens.total, plan.options.max_output_tokens),
    )


async def check_known_model(deps: Deps, model: str) -> list[str]:
    """A dry run's check of the model name (tools/model_check.py): refused, or passed with what could not be
    checked."""
    refusal, note = await check_model(deps.upstream, model)
    if refusal:
        raise ToolError(f"{refusal} Choose one with set_options(model=...) or chat(model=...). Nothing was sent.")
    return [note] if note else []


async def follow(deps: Deps, run: TurnRun, wait: float, progress: Progress | None) -> ChatResult:
    """Wait for the turn up to the budget, reporting progress; then its result, or "running"."""
    try:
        await watch(run, wait, progress)
    except BaseException:
        await run.abandon(deps)
        raise
    if not run.begun.is_set():
        # The budget ran out before the turn got hold of the conversation: give an idle one a moment to.
        with anyio.move_on_after(START_GRACE):
            await run.begun.wait()
    if not run.finished.is_set():
        try:
            running = await run.announce(deps)
        except Exception:
            await run.abandon(deps)  # not announced, so nobody could fetch its answer: stop it (a full disk)
            raise
        if running is not None:
            return result_of(run.conversation_id, running, run.notes)
    return outcome(run)


def outcome(run: TurnRun) -> ChatResult:
    if run.error is not None:
        raise run.error
    if run.recorded is None:
        raise ToolError("The turn was cancelled before it finished; nothing was recorded. Ask again.")
    return result_of(run.conversation_id, run.recorded, run.notes)


async def watch(run: TurnRun, wait: float, progress: Progress | None) -> None:
    deadline = time.monotonic() + wait
    sent_at, sent_deltas = time.monotonic(), 0
    while not run.finished.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        with anyio.move_on_after(min(PROGRESS_INTERVAL, left)):
            await run.finished.wait()
        now, received = time.monotonic(), len(run.deltas)
        fresh = received != sent_deltas
        if progress is not None and not run.finished.is_set() and (fresh or now - sent_at >= HEARTBEAT):
            sent_at, sent_deltas = now, received
            doing = f"receiving answer: {received} tokens so far" if received else "waiting for the model"
            await progress(round(run.elapsed, 1), None, f"{doing} ({run.elapsed:.0f} s)")


async def wait_for_turn(
    deps: Deps, conversation_id: str, number: int, wait: float, progress: Progress | None
) -> ChatResult:
    run = live(deps, conversation_id, number)
    if run is not None:
        await watch(run, wait, progress)
        if run.finished.is_set():
            return outcome(run)
        wait = 0  # the budget was spent on this process's own run: report it as it stands
    return await recorded(deps, conversation_id, number, wait, progress)


async def cancel_turn(deps: Deps, conversation_id: str, number: int) -> ChatResult:
    """Stop a turn this process is generating; a turn that already ended is shown as it ended."""
    run = live(deps, conversation_id, number)
    if run is not None and not run.finished.is_set():
        await run.cancel(deps)
        if run.recorded is None:
            raise ToolError(
                f"Turn {number} of {conversation_id!r} was stopped before it was recorded; nothing was kept."
            )
        return result_of(conversation_id, run.recorded, run.notes)
    result = outcome(run) if run is not None else await recorded(deps, conversation_id, number)
    if result.status == "running":
        raise ToolError(
            f"Turn {number} of {conversation_id!r} is being answered by another server process; it "
            "can be cancelled only there."
        )
    result.notes.append(f"Turn {number} had already ended ({result.status}): there was nothing to cancel.")
    return result


async def recorded(
    deps: Deps, conversation_id: str, number: int, wait: float = 0, progress: Progress | None = None
) -> ChatResult:
    """The turn as the store has it, followed up to `wait` seconds while another process answers it."""
    conversation = await follow_elsewhere(deps, conversation_id, number, wait, progress)
    found = conversation.get_turn(number) if conversation is not None else None
    if found is None:
        count = len(conversation.turns) if conversation else 0
        raise ToolError(f"{conversation_id!r} has no turn {number} ({count} turns so far).")
    return result_of(conversation_id, found)


async def follow_elsewhere(
    deps: Deps, conversation_id: str, number: int, wait: float, progress: Progress | None
) -> Conversation | None:
    """A turn this process does not run (another replica does, or nobody since its owner died): the conversation
    re-read until the turn is settled, by its owner or here once the owner's lease ran out, or the budget is spent."""
    started = time.monotonic()
    while True:
        conversation = await refresh(deps, conversation_id)
        found = conversation.get_turn(number) if conversation is not None else None
        left = wait - (time.monotonic() - started)
        if found is None or found.status != "running" or left <= 0:
            return conversation
        if progress is not None:
            spent = time.monotonic() - started
            so_far = f"{len(found.output)} characters so far" if found.output else "waiting for the model"
            await progress(round(spent, 1), None, f"running on another server process: {so_far} ({spent:.0f} s)")
        await anyio.sleep(min(FOLLOW_INTERVAL, left))
