"""Bulk runs: the same question asked of many images, resumable and exactly once (issue 17).

The one implementation behind `imagechat-mcp batch`: `start` reconciles the results file with the manifest
(tools/batch_spec.py), `estimate` prices the whole run before it starts, `run` answers what is left.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Literal

from mcp.server.mcpserver.exceptions import ToolError

from tools import image_sizing, pricing
from tools.batch_api import BatchService, FileLimits, run_batch_api
from tools.batch_direct import Progress, run_direct
from tools.batch_spec import BatchSpec, Ledger
from tools.batch_work import prompt_of
from tools.deps import Deps
from tools.models import DEFAULT_MAX_OUTPUT_TOKENS
from tools.request import text_tokens

log = logging.getLogger(__name__)
Via = Literal["direct", "batch-api", "auto"]
SAMPLE = 24  # images whose size is read to estimate the run's tokens


@dataclass(frozen=True)
class Estimate:
    images: int  # still to answer
    input_tokens: int
    input_cost: float | None
    output_cost_max: float | None  # if every answer used max_output_tokens

    def text(self) -> str:
        if self.input_cost is None or self.output_cost_max is None:
            return f"{self.images} images, about {self.input_tokens} input tokens (no price known for this model)"
        return (
            f"{self.images} images, about {self.input_tokens} input tokens: ${self.input_cost:.4f} in, "
            f"up to ${self.output_cost_max:.4f} more for the answers (at {DEFAULT_MAX_OUTPUT_TOKENS} tokens each)"
        )


async def start(deps: Deps, spec: BatchSpec) -> Ledger:
    ledger = Ledger(deps.store, spec)
    await ledger.open()
    return ledger


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
