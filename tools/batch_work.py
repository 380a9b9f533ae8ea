"""One image of a bulk run: read through the source reader, prepared the bounded way, asked stand-alone.

Failures are sorted here: `Permanent` (unreadable, not an image, refused: reported once, never retried) and
`Transient` (429, 5xx, timeouts, dropped connections: retried with backoff, honouring the wait the upstream
asks for).
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError

from tools import image_sizing, pricing
from tools.batch_spec import BatchSpec, Result
from tools.deps import Deps, content_id_of
from tools.models import Options
from tools.ports import ChatReply, ChatRequest, ImagePart, UpstreamFailure
from tools.request import compose

TRANSIENT_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))
# A refusal of this image's request; any other failure (a bad key, an unknown model, no key) stops the whole run.
REFUSED_STATUSES = frozenset({400, 413, 422})
# What the SDK raises for a request that never got an answer (it keeps the cause; the adapter hides it).
TRANSIENT_ERRORS = ("APITimeoutError", "APIConnectionError", "TimeoutError", "ReadTimeout", "ConnectError")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class Permanent(Exception):
    """This image will not get an answer by asking again."""


class Transient(Exception):
    """Asking again later may work; `wait` is what the upstream asked for (seconds), when it said."""

    def __init__(self, message: str, *, wait: float | None = None, rate_limited: bool = False) -> None:
        super().__init__(message)
        self.wait = wait
        self.rate_limited = rate_limited


def options_of(spec: BatchSpec) -> Options:
    return Options(model=spec.model, instructions=spec.instructions, detail=spec.detail)


def prompt_of(spec: BatchSpec) -> str:
    """The prompt as sent: a schema goes as the request's format (strict structured outputs), not in the text."""
    return spec.prompt


async def prepare(deps: Deps, spec: BatchSpec, path: str) -> ImagePart:
    """The image as the model will see it (the same sizing and encoding as load_image and chat)."""
    from tools import image_decode, imaging  # Pillow is imported on first use

    try:
        data = (await deps.reader.read(path, kind="image")).data
        image_id = await content_id_of("img", data)
        limits = deps.limits
        info = await deps.image_work(
            data,
            functools.partial(image_decode.inspect_image, data, max_pixels=limits.max_pixels, max_frames=1),
            image_id=path,
        )
        target = image_sizing.target(info.width, info.height, detail=spec.detail, model=spec.model)
        done = await deps.image_work(
            data, functools.partial(imaging.prepare, data, target=target, max_pixels=limits.max_pixels), image_id=path
        )
    except (ToolError, image_sizing.DetailNotSupported) as exc:
        raise Permanent(str(exc)) from None
    return ImagePart(image_id, done.mime, done.data, target.detail, done.width, done.height, done.tokens)


def request_of(spec: BatchSpec, part: ImagePart) -> ChatRequest:
    message = compose(prompt_of(spec), [part], [])
    return ChatRequest(options=options_of(spec), messages=[message], store=False, json_schema=spec.schema)


async def ask(deps: Deps, spec: BatchSpec, part: ImagePart) -> ChatReply:
    try:
        return await deps.upstream.send(request_of(spec, part))
    except UpstreamFailure as exc:
        raise classify(exc) from None


def classify(exc: UpstreamFailure) -> Exception:
    """Transient, Permanent (this image refused), or `exc` itself (the run cannot go on: a bad key, say), from
    the SDK error the adapter's message was made from (kept as the exception's context)."""
    cause = exc.__cause__ or exc.__context__
    status = getattr(cause, "status_code", None)
    if status in TRANSIENT_STATUSES or type(cause).__name__ in TRANSIENT_ERRORS:
        return Transient(str(exc), wait=wait_asked(cause), rate_limited=status == 429)
    if status in REFUSED_STATUSES:
        return Permanent(str(exc))
    return exc


def wait_asked(error: Any) -> float | None:
    """Retry-After (seconds), else OpenAI's x-ratelimit-reset-* (e.g. "1s", "6m0s", "20ms"): the longest."""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    value = str(headers.get("retry-after", "")).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    waits = [
        duration(str(headers.get(name, ""))) for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
    ]
    found = [wait for wait in waits if wait is not None]
    return max(found) if found else None


def duration(text: str) -> float | None:
    parts = _DURATION.findall(text.strip())
    if not parts:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def result_of(spec: BatchSpec, path: str, image_id: str, reply: ChatReply) -> Result:
    usage = reply.usage
    tokens_in, tokens_out = (usage.input_tokens, usage.output_tokens) if usage else (0, 0)
    prices = pricing.price_of(reply.model or spec.model)
    cost = round((tokens_in * prices[0] + tokens_out * prices[1]) / 1e6, 9) if prices else None
    answer: Any = reply.text
    error = None
    if reply.status != "completed":
        error = f"The answer is {reply.status} ({reply.incomplete_reason or 'no reason given'})."
    elif spec.schema is not None:
        try:
            answer = json.loads(reply.text)
        except ValueError:
            error = "The answer is not valid JSON."
    return Result(
        path=path,
        status="done" if error is None else "failed",
        image_id=image_id,
        answer=answer,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cost=cost,
        error=error,
    )
