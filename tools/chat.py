"""The OpenAI Chat step: one turn of the conversation about the loaded images and files.

A turn runs as a job in the server (tools/jobs.py). The request waits for it up to the wait budget, sending
progress notifications; an answer that takes longer comes back as status "running" with its turn number, and
`chat(turn=N)` or `preview` fetches it when it is done. A turn that fails or is cancelled before it was
announced leaves no trace: the conversation and its pending attachments stay as they were.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from tools import model_rules, pricing
from tools.deps import Deps, check_conversation_id
from tools.jobs import Job
from tools.models import Conversation, Options, Turn, Usage
from tools.ports import ChatRequest, ContextLost
from tools.request import TokenEstimate, abbreviate, build_request, estimate, image_ref
from tools.sanitize import clean_text
from tools.turns import announce, refresh, settle

Progress = Callable[[float, float | None, str], Awaitable[None]]
StartingPoint = int | str | None
PROGRESS_INTERVAL = 0.5  # at most two progress notifications a second while tokens stream in
HEARTBEAT = 5.0  # and one every 5 s while the model thinks, so clients that reset their timeout keep waiting
MAX_WAIT = 3600.0


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


def choose_parent(conversation: Conversation, persist_context: bool, starting_point: StartingPoint) -> int | None:
    if starting_point == "start" or not persist_context:
        return None
    if starting_point is None:
        last = conversation.last_usable_turn()
        return last.turn if last else None
    if isinstance(starting_point, str) and starting_point.strip().isdigit():
        starting_point = int(starting_point.strip())
    turn = conversation.get_turn(starting_point) if isinstance(starting_point, int) else None
    if turn is not None and turn.usable:
        return turn.turn
    usable = [t.turn for t in conversation.turns if t.usable]
    known = f"turns {', '.join(map(str, usable))}" if usable else "no finished turns yet"
    raise ToolError(
        f"starting_point {starting_point!r} is not a finished turn of {conversation.id!r} ({known}). "
        "Use one of those turn numbers, or 'start' to begin afresh."
    )


def pick(refs: list[str] | None, pending: list[str], kind: str) -> list[str]:
    if refs is None:
        return list(pending)
    picked = [image_ref(ref.strip()) for ref in refs]
    if any(not ref for ref in picked):
        raise ToolError(f"{kind} contains an empty id.")
    return picked


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
    prompt: str,
    conversation_id: str = "default",
    images: list[str] | None = None,
    files: list[str] | None = None,
    persist_context: bool = True,
    starting_point: StartingPoint = None,
    model: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    wait_seconds: float | None = None,
    turn: int | None = None,
) -> ChatResult:
    check_conversation_id(conversation_id)
    wait = budget(deps, wait_seconds)
    if turn is not None:
        return await wait_for_turn(deps, conversation_id, turn, wait, progress)
    check_prompt(deps, prompt)
    plan = Plan(clean_text(prompt), images, files, persist_context, starting_point, model)
    if dry_run:
        return await plan.dry_run(deps, conversation_id)
    job = Job(conversation_id)
    deps.jobs.start(job, plan.run(deps))
    return await follow(deps, job, wait, progress)


@dataclass(frozen=True)
class Resolved:
    """A plan read against the conversation as it is now."""

    options: Options
    images: list[str]
    files: list[str]
    parent: int | None
    notes: list[str]


class Plan:
    """What one chat call asked for, turned into a request once the conversation is ours."""

    def __init__(
        self,
        prompt: str,
        images: list[str] | None,
        files: list[str] | None,
        persist_context: bool,
        starting_point: StartingPoint,
        model: str | None,
    ) -> None:
        self.prompt = prompt
        self.images = images
        self.files = files
        self.persist_context = persist_context
        self.starting_point = starting_point
        self.model = model.strip() if model and model.strip() else None

    def resolve(self, deps: Deps, conversation: Conversation) -> Resolved:
        options = conversation.options
        notes: list[str] = []
        if self.model and self.model != options.model:
            options, notes = model_rules.drop_unsupported(self.model, options.model_copy(update={"model": self.model}))
        image_ids = pick(self.images, conversation.pending_images, "images")
        file_ids = pick(self.files, conversation.pending_files, "files")
        if len(image_ids) > deps.limits.max_images_per_turn:
            raise ToolError(f"{len(image_ids)} images in one turn; the limit is {deps.limits.max_images_per_turn}.")
        parent = choose_parent(conversation, self.persist_context, self.starting_point)
        return Resolved(options, image_ids, file_ids, parent, notes)

    async def dry_run(self, deps: Deps, conversation_id: str) -> ChatResult:
        conversation = await deps.conversation(conversation_id)
        plan = self.resolve(deps, conversation)
        request = await self.request(deps, conversation, plan)
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

    async def request(
        self, deps: Deps, conversation: Conversation, plan: Resolved, *, replay: bool = False
    ) -> ChatRequest:
        return await build_request(
            deps,
            conversation,
            plan.options,
            prompt=self.prompt,
            images=plan.images,
            files=plan.files,
            parent=plan.parent,
            replay=replay,
        )

    def run(self, deps: Deps) -> Callable[[Job], Awaitable[None]]:
        async def work(job: Job) -> None:
            # One turn at a time per conversation: a second chat waits rather than interleaving with the first.
            async with deps.store.lock(f"turn:{job.conversation_id}"):
                conversation = await deps.conversation(job.conversation_id)
                plan = self.resolve(deps, conversation)
                job.notes.extend(plan.notes)
                job.number = conversation.next_number()
                deps.jobs.register(job)
                job.draft = Turn(
                    turn=job.number,
                    parent=plan.parent,
                    prompt=self.prompt,
                    images=plan.images,
                    files=plan.files,
                    status="running",
                    model=plan.options.model,
                    instructions=plan.options.instructions,
                )
                job.consumed = (self.images is None, self.files is None)
                try:
                    try:
                        reply = await deps.upstream.send(await self.request(deps, conversation, plan), job)
                    except ContextLost:
                        job.notes.append("The upstream no longer had the previous response; the history was replayed.")
                        replayed = await self.request(deps, conversation, plan, replay=True)
                        reply = await deps.upstream.send(replayed, job)
                except BaseException as exc:
                    await settle(deps, job, None, exc)
                    raise
                await settle(deps, job, reply, None)

        return work


async def follow(deps: Deps, job: Job, wait: float, progress: Progress | None) -> ChatResult:
    """Wait for the job up to the budget, reporting progress; then its result, or "running"."""
    try:
        await watch(job, wait, progress)
    except BaseException:
        # The client gave up (or the server is stopping) before the answer was announced: stop generating too.
        if not job.announced:
            job.scope.cancel()
            if job.background and job.response_id:
                with anyio.CancelScope(shield=True):
                    await deps.upstream.cancel(job.response_id)
        raise
    if not job.finished.is_set():
        running = await announce(deps, job)
        if running is not None:
            return result_of(job.conversation_id, running, job.notes)
    return outcome(job)


def outcome(job: Job) -> ChatResult:
    if job.error is not None:
        raise job.error
    if job.turn is None:
        raise ToolError("The turn was cancelled before it finished; nothing was recorded. Ask again.")
    return result_of(job.conversation_id, job.turn, job.notes)


async def watch(job: Job, wait: float, progress: Progress | None) -> None:
    deadline = time.monotonic() + wait
    sent_at, sent_deltas = time.monotonic(), 0
    while not job.finished.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        with anyio.move_on_after(min(PROGRESS_INTERVAL, left)):
            await job.finished.wait()
        now = time.monotonic()
        fresh = job.deltas != sent_deltas
        if progress is not None and not job.finished.is_set() and (fresh or now - sent_at >= HEARTBEAT):
            sent_at, sent_deltas = now, job.deltas
            doing = f"receiving answer: {job.deltas} tokens so far" if job.deltas else "waiting for the model"
            await progress(round(job.elapsed, 1), None, f"{doing} ({job.elapsed:.0f} s)")


async def wait_for_turn(
    deps: Deps, conversation_id: str, number: int, wait: float, progress: Progress | None
) -> ChatResult:
    job = deps.jobs.get(conversation_id, number)
    if job is not None:
        await watch(job, wait, progress)
        if job.finished.is_set():
            return outcome(job)
    conversation = await refresh(deps, conversation_id)
    found = conversation.get_turn(number) if conversation is not None else None
    if found is None:
        count = len(conversation.turns) if conversation else 0
        raise ToolError(f"{conversation_id!r} has no turn {number} ({count} turns so far).")
    return result_of(conversation_id, found)
