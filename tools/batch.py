"""Bulk runs: the same question asked of many images, resumable and exactly once (issue 17).

The one implementation behind `imagechat-mcp batch` and the run_batch tool (tools/batch_tool.py): `start`
reconciles the results file with the manifest (tools/batch_spec.py), `estimate` prices the whole run before it
starts, `execute` answers what is left (one runner at a time per run, its status kept in the runs index,
tools/batch_runs.py), through `run`.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from typing import Literal

from mcp.server.mcpserver.exceptions import ToolError

from tools import batch_runs, image_sizing, pricing
from tools.batch_api import BatchService, FileLimits, in_batches, run_batch_api
from tools.batch_direct import Progress, run_direct
from tools.batch_spec import BatchSpec, Ledger
from tools.batch_work import prompt_of
from tools.deps import Deps
from tools.models import DEFAULT_MAX_OUTPUT_TOKENS
from tools.request import text_tokens

log = logging.getLogger(__name__)
Via = Literal["direct", "batch-api", "auto"]
SAMPLE = 24  # images whose size is read to estimate the run's tokens
AUTO_BATCH_API_FROM = 1000  # images left: from here `auto` uses the Batch API on OpenAI's own API


@dataclass(frozen=True)
class Backend:
    """How runs reach the upstream beyond plain requests (the server builds it from its settings)."""

    service: BatchService | None  # OpenAI's Files and Batches endpoints; None when the upstream has none
    on_openai: bool  # the upstream is OpenAI's own API (where `auto` may choose the Batch API)
    poll_seconds: float = 30.0  # IMAGECHAT_BATCH_POLL_SECONDS


def choose_via(via: str, backend: Backend, images: int) -> Via:
    if via != "auto":
        return "batch-api" if via == "batch-api" else "direct"
    return "batch-api" if backend.on_openai and backend.service and images >= AUTO_BATCH_API_FROM else "direct"


@dataclass(frozen=True)
class Estimate:
    images: int  # still to answer
    input_tokens: int
    input_cost: float | None
    output_cost_max: float | None  # if every answer used max_output_tokens

    def total(self, *, batch_api: bool = False) -> float | None:
        """The most the run may cost (every answer at max_output_tokens); the Batch API charges half."""
        if self.input_cost is None or self.output_cost_max is None:
            return None
        return round((self.input_cost + self.output_cost_max) * (0.5 if batch_api else 1.0), 6)

    def text(self) -> str:
        if self.input_cost is None or self.output_cost_max is None:
            return f"{self.images} images, about {self.input_tokens} input tokens (no price known for this model)"
        return (
            f"{self.images} images, about {self.input_tokens} input tokens: ${self.input_cost:.4f} in, "
            f"up to ${self.output_cost_max:.4f} more for the answers (at {DEFAULT_MAX_OUTPUT_TOKENS} tokens each)"
        )


async def start(deps: Deps, spec: BatchSpec, *, by: str = "command") -> Ledger:
    """The run's ledger, opened; the run listed in the runs index (by "command" or "tool")."""
    ledger = Ledger(deps.store, spec)
    await ledger.open()
    known = await batch_runs.get_run(deps.store, ledger.run_id)
    await batch_runs.mark(
        deps.store,
        ledger.run_id,
        by=by,
        prompt=spec.prompt[:200],
        model=spec.model,
        images=len(spec.paths),
        out=str(spec.out) if spec.writes_file else None,
        **({} if known else {"status": "estimated"}),
    )
    return ledger


@dataclass(frozen=True)
class Planned:
    """A run opened and priced, before anything is sent."""

    ledger: Ledger
    estimate: Estimate
    via: Via
    already: int  # images with a result already


def instructions_of(deps: Deps, preset: str | None) -> str | None:
    if preset is None:
        return None
    if preset not in deps.presets:
        raise ToolError(f"Unknown preset {preset!r}. Presets: {', '.join(sorted(deps.presets))}.")
    return deps.presets[preset]


async def plan(deps: Deps, spec: BatchSpec, *, via: str, backend: Backend, by: str = "command") -> Planned:
    """Open the run (or find it again), price what is left and choose how to ask: what the command prints and
    the tool returns before the run starts."""
    ledger = await start(deps, spec, by=by)
    left = len(ledger.pending())
    found = await estimate(deps, ledger)
    # Images waiting in batches made before are polled there, whatever `via` says now (never paid for twice).
    chosen = "batch-api" if in_batches(ledger) else choose_via(via, backend, left)
    cost = found.total(batch_api=chosen == "batch-api")
    await batch_runs.mark(deps.store, ledger.run_id, estimated_cost=cost, estimated_images=left)
    return Planned(ledger, found, chosen, len(spec.paths) - left)


async def estimate(deps: Deps, ledger: Ledger) -> Estimate:
    """Tokens of a spread sample of the images left, scaled to all of them (headers only: nothing decoded)."""
    from tools import image_decode

    spec = ledger.spec
    left = ledger.pending()
    step = max(1, len(left) // SAMPLE)
    sampled = left[::step][:SAMPLE]
    image_tokens: list[int] = []
    for path in sampled:
        try:
            data = (await deps.reader.read(path, kind="image")).data
            info = await deps.image_work(
                data,
                functools.partial(image_decode.inspect_image, data, max_pixels=deps.limits.max_pixels, max_frames=1),
                image_id=path,
            )
            image_tokens.append(
                image_sizing.target(info.width, info.height, detail=spec.detail, model=spec.model).tokens
            )
        except Exception as exc:  # an unreadable image is reported when the run reaches it
            log.debug("not sized for the estimate: %s: %s", path, exc)
    per_image = (sum(image_tokens) / len(image_tokens) if image_tokens else 0) + text_tokens(
        prompt_of(spec) + (spec.instructions or "")
    )
    tokens = round(per_image * len(left))
    cost = pricing.estimate(spec.model, tokens, DEFAULT_MAX_OUTPUT_TOKENS * len(left))
    if cost is None:
        return Estimate(len(left), tokens, None, None)
    return Estimate(len(left), tokens, cost.input, cost.output_max)


async def run(
    deps: Deps,
    ledger: Ledger,
    *,
    via: Via = "direct",
    concurrency: int = 8,
    progress: Progress,
    service: BatchService | None = None,
    poll_seconds: float = 30.0,
    limits: FileLimits | None = None,
) -> Progress:
    """Answer every image without a result yet; `progress` hears each one. The Batch API path needs `service`
    (OpenAI's Files and Batches endpoints); `limits` is a test hook for splitting into several batches."""
    if via == "batch-api":
        if service is None:
            raise ToolError("The upstream in use has no Batch API; use --via direct.")
        await run_batch_api(deps, ledger, service, progress=progress, poll_seconds=poll_seconds, limits=limits)
    else:
        await run_direct(deps, ledger, concurrency=concurrency, progress=progress)
    return progress


async def execute(
    deps: Deps,
    ledger: Ledger,
    *,
    via: Via,
    concurrency: int,
    progress: Progress,
    backend: Backend,
    limits: FileLimits | None = None,
) -> Progress:
    """`run`, by one runner at a time (a lease on the run, across processes sharing the store): a second runner
    waits, then finds the run answered. The manifest is read again once the lease is held, so nothing answered
    meanwhile is sent again. The runs index says how it went (a run cut off by a stop stays `running`)."""
    store = deps.store
    async with store.turn_lock(batch_runs.lock_name(ledger.run_id)):
        await ledger.open()
        left = len(ledger.pending())
        progress.total = left
        await batch_runs.mark(
            store, ledger.run_id, status="running", via=via, started=time.time(), left_at_start=left, error=None
        )
        try:
            await run(
                deps, ledger, via=via, concurrency=concurrency, progress=progress, service=backend.service,
                poll_seconds=backend.poll_seconds, limits=limits,
            )  # fmt: skip
        except Exception as exc:
            await batch_runs.mark(store, ledger.run_id, status="stopped", error=str(exc), ended=time.time())
            raise
        await batch_runs.mark(store, ledger.run_id, status="finished", left_over=progress.left_over, ended=time.time())
    return progress
