"""Upstream failures as messages a user can act on. Never includes the key, request headers or URL credentials.

Each message quotes what the upstream said (cleaned of hidden characters, redacted, then cut: a secret is
found before a cut could split it), says how many retries were made, and names the setting that helps.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from server.logsafe import cut, display_url, redact
from tools.sanitize import clean_text

if TYPE_CHECKING:
    import openai

MESSAGE_LIMIT = 500
# How servers other than OpenAI's word an unknown model (LiteLLM: "Invalid model name passed in model=...";
# Ollama: "model 'x' not found"; vLLM: "The model `x` does not exist.").
_UNKNOWN_MODEL = re.compile(
    r"(?i)(invalid|unknown|unsupported) model|model\b.{0,80}\b(not found|does not exist|not exist|is not served)"
    r"|no such model"
)
# Keys under which gateways put their message when they do not use OpenAI's {"error": {"message"}}.
_MESSAGE_KEYS = ("message", "detail", "error", "msg")


def upstream_message(exc: Exception) -> str:
    """The upstream's own words, cleaned, redacted, then cut; empty when it said nothing."""
    text = _raw_message(getattr(exc, "body", None))
    if not text:
        text = str(getattr(exc, "message", "") or exc)
    return cut(redact(" ".join(clean_text(text).split())), MESSAGE_LIMIT)


def _raw_message(body: Any) -> str:
    """The SDK keeps OpenAI's `error` object (or the whole JSON, or the text) as `body`."""
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        for key in _MESSAGE_KEYS:
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return value
            if isinstance(value, dict):
                return _raw_message(value)
    return ""


def retries_made(exc: Exception) -> int | None:
    """How many times the SDK retried before giving up: it names the attempt in every request it sends."""
    response = getattr(exc, "response", None)
    try:
        return int(response.request.headers.get("x-stainless-retry-count", ""))  # type: ignore[union-attr]
    except (AttributeError, RuntimeError, ValueError):
        return None


def retry_after_seconds(exc: Exception) -> int | None:
    """The wait the upstream asked for, as whole seconds; None when it gave none or nothing readable."""
    response = getattr(exc, "response", None)
    value = str(response.headers.get("retry-after", "")).strip() if response is not None else ""
    if re.fullmatch(r"\d{1,7}(\.\d+)?", value):
        return max(1, round(float(value)))
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(1, round(moment.timestamp() - time.time()))


def retries_text(exc: Exception) -> str:
    count = retries_made(exc)
    if count is None:
        return ""
    if count == 0:
        return " No retries were made (IMAGECHAT_MAX_RETRIES=0 or a failure not worth retrying)."
    return f" The request was retried {count} time{'s' if count != 1 else ''} (IMAGECHAT_MAX_RETRIES)."


@dataclass(frozen=True)
class Failure:
    """An HTTP error from the upstream, with what every message needs."""

    exc: openai.APIStatusError
    status: int
    code: str | None
    said: str
    where: str
    model: str
    truncation: str | None = None  # what the request said; None: the API in use has no truncation

    @property
    def quote(self) -> str:
        return f' Upstream said: "{self.said}"' if self.said else ""


def _unknown_model(f: Failure) -> str:
    return (
        f"The upstream does not serve model {f.model!r}. Choose another with set_options(model=...) "
        f"(the models resource lists what it serves).{f.quote}"
    )


def _bad_key(f: Failure) -> str:
    return (
        "The upstream rejected the API key (401). Set a valid OPENAI_API_KEY in the server's environment "
        f"and restart it.{f.quote}"
    )


def _rate_limited(f: Failure) -> str:
    if f.code == "insufficient_quota":
        return f"The account behind OPENAI_API_KEY is out of quota or credit. Check billing, then try again.{f.quote}"
    seconds = retry_after_seconds(f.exc)
    wait = f" The upstream asked to wait {seconds} s." if seconds else ""
    return f"Rate limited by the upstream (429).{retries_text(f.exc)}{wait} Wait and try again.{f.quote}"


def _refused(f: Failure) -> str:
    lowered = f.said.lower()
    if f.code == "context_length_exceeded" or ("context" in lowered and "length" in lowered):
        return _too_long(f)
    if f.code in ("content_policy_violation", "content_filter") or "safety" in lowered:
        return f"The upstream refused the request under its content policy.{f.quote}"
    return f"The upstream refused the request ({f.status}).{f.quote}"


def _too_long(f: Failure) -> str:
    if f.truncation == "disabled":
        return (
            "The conversation is too long for the model's context window. Start from an earlier turn with "
            f"starting_point=<n> or 'start', or use set_options(truncation='auto').{f.quote}"
        )
    if f.truncation == "auto":
        # 'auto' already drops the oldest turns: what is left over is this turn's own input.
        return (
            "This turn is too long for the model's context window even with truncation 'auto', which already "
            "drops the oldest turns: its own prompt, images and files are too big. Send fewer images or a lower "
            f"detail (set_options(detail='low')), shorter files, or start afresh with starting_point='start'.{f.quote}"
        )
    return (
        "The conversation is too long for the model's context window (this API cannot drop the oldest turns "
        "by itself). Start from an earlier turn with starting_point=<n> or 'start', or send fewer or smaller "
        f"images and files.{f.quote}"
    )


def _server_failed(f: Failure) -> str:
    return f"The upstream at {f.where} failed ({f.status}).{retries_text(f.exc)}{f.quote} Try again later."


# Ordered: the first test that holds writes the message.
_MESSAGES: tuple[tuple[Callable[[Failure], bool], Callable[[Failure], str]], ...] = (
    (lambda f: is_model_not_found(f.exc), _unknown_model),
    (lambda f: f.status == 401, _bad_key),
    (lambda f: f.status == 403, lambda f: f"The API key may not use this model or endpoint (403).{f.quote}"),
    (lambda f: f.status == 429, _rate_limited),
    (lambda f: f.status == 404, lambda f: f"The upstream at {f.where} answered 404.{f.quote} Check OPENAI_BASE_URL."),
    (lambda f: f.status in (400, 422), _refused),
    (lambda f: f.status >= 500, _server_failed),
)


def explain(exc: Exception, *, base_url: str, model: str, truncation: str | None = None) -> str:
    """The upstream failure as a message that says what to do; `truncation` is the request's, None where the API
    in use has none (Chat Completions)."""
    import openai

    where = display_url(base_url)
    if isinstance(exc, openai.APITimeoutError):
        return (
            f"The upstream at {where} did not answer in time. Try again, raise IMAGECHAT_TIMEOUT, or check "
            "that the server is up."
        )
    if isinstance(exc, openai.APIConnectionError):
        return (
            f"Could not reach the upstream at {where}. Check OPENAI_BASE_URL and that the server is running "
            "and reachable."
        )
    if not isinstance(exc, openai.APIStatusError):
        return f"The upstream call failed: {redact(type(exc).__name__)}: {cut(redact(str(exc)), MESSAGE_LIMIT)}"
    code = getattr(exc, "code", None)
    failure = Failure(
        exc, exc.status_code, str(code) if code else None, upstream_message(exc), where, model, truncation
    )
    for applies, message in _MESSAGES:
        if applies(failure):
            return message(failure)
    return f"The upstream answered {failure.status}.{failure.quote}"


def is_missing_previous(exc: Exception) -> bool:
    code = getattr(exc, "code", None)
    return code == "previous_response_not_found" or "previous response" in str(exc).lower()


def is_model_not_found(exc: Exception) -> bool:
    """An unknown model, however the server words it: OpenAI's code, a 404 about a model, a 400 "Invalid model"."""
    status = getattr(exc, "status_code", None)
    if getattr(exc, "code", None) == "model_not_found":
        return True
    said = upstream_message(exc) if status in (400, 404) else ""
    return (status == 404 and "model" in said.lower()) or (status == 400 and _UNKNOWN_MODEL.search(said) is not None)


def is_missing_endpoint(exc: Exception) -> bool:
    """The server has no such route (Responses API on Ollama, llama.cpp, LM Studio), not a missing model."""
    status = getattr(exc, "status_code", None)
    return status in (404, 405, 501) and not is_model_not_found(exc)


def is_server_failure(exc: Exception) -> bool:
    """A 5xx: on a gateway that converts the Responses API (LiteLLM), its Chat Completions route may work."""
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and status >= 500
