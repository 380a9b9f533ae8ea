"""Upstream failures as messages a user can act on. Never includes the key or request headers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server.logsafe import redact

if TYPE_CHECKING:
    import openai


def upstream_message(exc: Exception) -> str:
    """The upstream's own words: the SDK keeps the JSON `error` object as `body`."""
    body: Any = getattr(exc, "body", None)
    if isinstance(body, dict) and body.get("message"):
        return redact(str(body["message"]))
    if isinstance(body, str) and body.strip():
        return redact(body.strip()[:500])
    return redact(str(getattr(exc, "message", "") or exc))


def explain(exc: Exception, *, base_url: str, model: str) -> str:
    import openai

    detail = upstream_message(exc)
    if isinstance(exc, openai.APITimeoutError):
        return (
            f"The upstream at {base_url} did not answer in time. Try again, raise IMAGECHAT_TIMEOUT, or check "
            "that the server is up."
        )
    if isinstance(exc, openai.APIConnectionError):
        return (
            f"Could not reach the upstream at {base_url}. Check OPENAI_BASE_URL and that the server is running "
            "and reachable."
        )
    if is_model_not_found(exc):
        return (
            f"The upstream does not serve model {model!r}. Choose another with set_options(model=...) "
            f"(the models resource lists what it serves). Upstream said: {detail}"
        )
    if isinstance(exc, openai.APIStatusError):
        return _status_message(exc, base_url, detail)
    return f"The upstream call failed: {redact(type(exc).__name__)}: {redact(str(exc))}"


def _status_message(exc: openai.APIStatusError, base_url: str, detail: str) -> str:
    """An HTTP error answer, by its kind (the SDK maps each status to an exception class)."""
    import openai

    code = getattr(exc, "code", None)
    if isinstance(exc, openai.AuthenticationError):
        return (
            "The upstream rejected the API key (401). Set a valid OPENAI_API_KEY in the server's environment "
            f"and restart it. Upstream said: {detail}"
        )
    if isinstance(exc, openai.PermissionDeniedError):
        return f"The API key may not use this model or endpoint (403). Upstream said: {detail}"
    if isinstance(exc, openai.RateLimitError):
        if code == "insufficient_quota":
            return (
                "The account behind OPENAI_API_KEY is out of quota or credit. Check billing, then try again. "
                f"Upstream said: {detail}"
            )
        retry_after = exc.response.headers.get("retry-after") if exc.response is not None else None
        wait = f" The upstream asked to wait {retry_after} s." if retry_after else ""
        return f"Rate limited by the upstream, even after retries.{wait} Wait and try again. Upstream said: {detail}"
    if isinstance(exc, openai.NotFoundError):
        return f"The upstream at {base_url} answered 404: {detail}. Check OPENAI_BASE_URL."
    if isinstance(exc, openai.BadRequestError):
        return _refusal_message(code, detail)
    if isinstance(exc, openai.InternalServerError):
        return f"The upstream failed ({getattr(exc, 'status_code', 500)}), even after retries. Try again later."
    return f"The upstream answered {exc.status_code}: {detail}"


def _refusal_message(code: object, detail: str) -> str:
    """A 400: the context window, the content policy, or anything else the upstream refused."""
    lowered = detail.lower()
    if code == "context_length_exceeded" or ("context" in lowered and "length" in lowered):
        return (
            "The conversation is too long for the model's context window. Start from an earlier turn with "
            "starting_point=<n> or 'start', or use set_options(truncation='auto'). "
            f"Upstream said: {detail}"
        )
    if code in ("content_policy_violation", "content_filter") or "safety" in lowered:
        return f"The upstream refused the request under its content policy. Upstream said: {detail}"
    return f"The upstream refused the request (400): {detail}"


def is_missing_previous(exc: Exception) -> bool:
    code = getattr(exc, "code", None)
    return code == "previous_response_not_found" or "previous response" in str(exc).lower()


def is_model_not_found(exc: Exception) -> bool:
    import openai

    return getattr(exc, "code", None) == "model_not_found" or (
        isinstance(exc, openai.NotFoundError) and "model" in upstream_message(exc).lower()
    )


def is_missing_endpoint(exc: Exception) -> bool:
    """The server has no such route (Responses API on Ollama, llama.cpp, LM Studio), not a missing model."""
    status = getattr(exc, "status_code", None)
    return status in (404, 405, 501) and not is_model_not_found(exc)
