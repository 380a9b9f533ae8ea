"""The OpenAI Chat step: one turn of the conversation about the loaded images and files.

The step checks the call, plans it (tools/plan.py), runs it as a turn in the server (tools/turn.py) and waits
for it up to the wait budget, sending progress notifications; an answer that takes longer comes back as
status "running" with its turn number, and `chat(turn=N)` or `preview` fetches it when it is done. A turn that
fails or is cancelled before it was announced leaves no trace: the conversation and its pending attachments
stay as they were.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from tools import pricing
from tools.deps import ConversationId, Deps, check_conversation_id
from tools.models import Conversation, Turn, Usage
from tools.plan import ChatCall, plan_turn
from tools.plan import StartingPoint as StartingPoint
from tools.request import TokenEstimate, abbreviate, build_request, estimate
from tools.sanitize import clean_text
from tools.turn import TurnRun, live, refresh, start

Progress = Callable[[float, float | None, str], Awaitable[None]]
PROGRESS_INTERVAL = 0.5  # at most two progress notifications a second while tokens stream in
HEARTBEAT = 5.0  # and one every 5 s while the model thinks, so clients that reset their timeout keep waiting
FOLLOW_INTERVAL = 0.5  # how often a turn run by another process is re-read
MAX_WAIT = 3600  # seconds: the longest a call may wait for its answer

# The step's arguments, declared once: the MCP tool's signature and the step below both use them.
Prompt = Annotated[str, Field(description="What to ask or tell the model about the images.")]
ImageIds = Annotated[
    list[str] | None,
    Field(description="Image ids (or image://<id>) to send; default: the images loaded since the last turn."),
]
FileIds = Annotated[
    list[str] | None, Field(description="File ids to send; default: the files attached since the last turn.")
]
PersistContext = Annotated[
    bool, Field(description="Continue the conversation (true) or send a stand-alone turn (false).")
]
ContinueFrom = Annotated[
    StartingPoint,
    Field(
        description="Continue from this earlier turn number instead of the last, or 'start' to begin afresh. "
        "Later turns are kept."
    ),
]
TurnModel = Annotated[str | None, Field(description="Use this model for this turn only.")]
DryRun = Annotated[
    bool,
    Field(
        description="Return the request that would be sent and its estimated tokens and cost, without "
        "calling the model."
    ),
]
WaitSeconds = Annotated[
    float | None,
    Field(
        ge=0,
        le=MAX_WAIT,
        description="How long to wait for the answer before returning status 'running' "
        "(default: the server's IMAGECHAT_WAIT_SECONDS, just under a minute).",
    ),
]
TurnNumber = Annotated[
    int | None,
    Field(
        ge=1,
        description="Instead of asking anything: wait for this earlier turn (one that came back "
        "'running') and return its answer. The prompt is ignored.",
    ),
]


class ChatResult(BaseModel):
    conversation_id: str
    turn: int | None = Field(description="The turn number (null for a dry run).")
    status: str = Field(
        description="completed; incomplete (see incomplete_reason); running (still generating: call chat with "
        "turn=<n> or preview to get it); failed (see error); dry_run."
    )
    text: str = Field(default="", description="The answer (so far, while running).")
    model: str
    response_id: str | None = None
    usage: Usage | None = None
    incomplete_reason: str | None = None
    error: str | None = None
    parent: int | None = Field(default=None, description="The turn this one continued from.")
    images: list[str] = Field(default_factory=list, description="Image ids sent with this turn.")
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


async def chat(
    deps: Deps,
    prompt: Prompt,
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
) -> ChatResult:
    check_conversation_id(conversation_id)
    wait = budget(deps, wait_seconds)
    if turn is not None:
        return await wait_for_turn(deps, conversation_id, turn, wait, progress)
    check_prompt(deps, prompt)
    call = ChatCall(clean_text(prompt), images, files, persist_context, starting_point, model)
    if dry_run:
        return await rehearse(deps, conversation_id, call)
    return await follow(deps, start(deps, conversation_id, call), wait, progress)


async def rehearse(deps: Deps, conversation_id: str, call: ChatCall) -> ChatResult:
    """A dry run: the turn planned against the conversation as it is now, and its request, not sent."""
    plan = plan_turn(await deps.conversation(conversation_id), call, max_images=deps.limits.max_images_per_turn)
    request = await build_request(deps, plan)
    tokens = estimate(request)
    return ChatResult(
        conversation_id=conversation_id,
        turn=None,
        status="dry_run",
        model=plan.options.model,
        parent=plan.parent,
        images=plan.images,
        files=plan.files,
        notes=plan.notes,
        request=abbreviate(deps.upstream.render(request)),
        estimated_input_tokens=tokens,
        estimated_cost_usd=pricing.estimate(plan.options.model, tokens.total, plan.options.max_output_tokens),
    )


async def follow(deps: Deps, run: TurnRun, wait: float, progress: Progress | None) -> ChatResult:
    """Wait for the turn up to the budget, reporting progress; then its result, or "running"."""
    try:
        await watch(run, wait, progress)
    except BaseException:
        await run.abandon(deps)
        raise
    if not run.finished.is_set():
        running = await run.announce(deps)
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
