"""The one upstream adapter over the official openai SDK: Responses API or Chat Completions.

`IMAGECHAT_API=auto` speaks the Responses API and falls back to Chat Completions, once per base URL, when the
server does not serve it (Ollama, llama.cpp, LM Studio) or fails on it with a 5xx where its Chat Completions
route answers (a gateway such as LiteLLM that converts one API into the other). The SDK is imported on the first
call, not at start-up: a server that only lists tools or makes dry runs should not pay for it.

The base URL is shown (dry runs, errors, logs) only through `logsafe.display_url`: credentials in it stay secret.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import anyio
from mcp.server.mcpserver.exceptions import ToolError

from server import logsafe, upstream_chat, upstream_responses
from server.settings import Settings
from server.upstream_errors import (
    explain,
    is_missing_endpoint,
    is_missing_previous,
    is_model_not_found,
    is_server_failure,
)
from tools import model_rules
from tools.ports import ChatReply, ChatRequest, ContextLost, ImagePart, Listener, UpstreamFailure

if TYPE_CHECKING:
    from openai import AsyncOpenAI

log = logging.getLogger(__name__)

NO_KEY = (
    "No API key is configured, so the model cannot be called. Set OPENAI_API_KEY in the server's environment "
    '(for Claude Desktop: the "env" block of this server in claude_desktop_config.json), or point '
    "OPENAI_BASE_URL at a local OpenAI-compatible server (Ollama: http://localhost:11434/v1) with any "
    "non-empty OPENAI_API_KEY. Everything else (load_image, set_options, preview, chat with dry_run=true) "
    "works without one."
)
OPENAI_URL = "https://api.openai.com/v1"
# The connection pool scans every idle connection (probing its socket) each time a request starts or ends, so the
# SDK's 100 idle connections cost more CPU per call under load than opening a connection now and then: 20 stay
# open, plenty for the concurrent turns of one server.
POOL_LIMITS = {"max_connections": 1000, "max_keepalive_connections": 20}

CHAIN_CHECKED = (
    "Sent chained only if the upstream hands the previous response back by id when asked (IMAGECHAT_CONTEXT=auto); "
    "otherwise the earlier turns are sent again with this one."
)
# Models that routinely think for minutes: worth background mode, so a restart or a dropped stream loses nothing.
SLOW_MODELS = ("o1-pro", "o3-pro", "gpt-5-pro", "deep-research")
# The states of a response a later turn can continue from.
KEPT = ("completed", "incomplete")


class OpenAIUpstream:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: AsyncOpenAI | None = None
        # What this base URL turned out to serve; None until `auto` has found out.
        self._api: str | None = None if settings.api == "auto" else settings.api
        self._background_ok = True
        # Whatever logs the URL (the HTTP client, the SDK) must not show its password or query values either.
        logsafe.protect_url(settings.base_url)

    @property
    def base_url(self) -> str:
        return (self.settings.base_url or OPENAI_URL).rstrip("/")

    @property
    def shown_url(self) -> str:
        """The base URL as it may be shown: without userinfo and query values."""
        return logsafe.display_url(self.base_url)

    def shown_endpoint(self, endpoint: str) -> str:
        """Where a request to `endpoint` goes, as it may be shown (the base URL's query comes after the path)."""
        parts = urlsplit(self.base_url)
        return logsafe.display_url(urlunsplit(parts._replace(path=parts.path.rstrip("/") + endpoint)))

    @property
    def openai_host(self) -> bool:
        return urlsplit(self.base_url).hostname == "api.openai.com"

    @property
    def api(self) -> str:
        return self._api or "responses"

    def client(self) -> AsyncOpenAI:
        if self._client is None:
            if not self.settings.api_key:
                raise UpstreamFailure(NO_KEY)
            import httpx2
            from openai import AsyncOpenAI, DefaultAsyncHttpxClient

            # A query in the base URL (a gateway's ?api-key=...) goes on every request: the SDK would otherwise
            # append the endpoint's path to the query.
            parts = urlsplit(self.base_url)
            self._client = AsyncOpenAI(
                api_key=self.settings.api_key,
                base_url=urlunsplit(parts._replace(query="", fragment="")),
                default_query=dict(parse_qsl(parts.query)) or None,
                timeout=self.settings.timeout,
                max_retries=self.settings.max_retries,
                http_client=DefaultAsyncHttpxClient(limits=httpx2.Limits(**POOL_LIMITS)),
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def use_background(self, request: ChatRequest) -> bool:
        policy = self.settings.background
        if policy == "never" or not self._background_ok:
            return False
        if policy == "always":
            return True
        model = request.options.model.lower()
        rules = model_rules.rules_for(model)
        slow = any(name in model for name in SLOW_MODELS) or request.options.reasoning_effort in ("high", "xhigh")
        # Background mode needs the response stored upstream: a stand-alone turn runs in the foreground.
        return self.openai_host and request.store and slow and (rules is None or rules.efforts is not None)

    def notes(self, request: ChatRequest) -> list[str]:
        """What the caller is told about how the request was fitted to the API in use."""
        details = sorted({p.detail for m in request.messages for p in m.parts if isinstance(p, ImagePart)})
        return [note for detail in details if (note := model_rules.api_note(detail, self.api))]

    def payload(self, request: ChatRequest) -> dict[str, Any]:
        """The body for the API in use; a model that API does not serve is refused before anything is sent."""
        refusal = model_rules.api_refusal(request.options.model, self.api)
        if refusal:
            raise UpstreamFailure(refusal)
        if self.api == "chat":
            return upstream_chat.body(request, openai_host=self.openai_host)
        return upstream_responses.body(request, background=self.use_background(request))

    def render(self, request: ChatRequest) -> dict[str, Any]:
        endpoint = "/chat/completions" if self.api == "chat" else "/responses"
        rendered = {"api": self.api, "endpoint": self.shown_endpoint(endpoint), "body": self.payload(request)}
        if self._api is None:
            rendered["note"] = "IMAGECHAT_API=auto: Chat Completions is used instead if the upstream lacks Responses."
        notes = self.notes(request)
        if request.previous_response_id and not (self.settings.context == "chain" or self.openai_host):
            notes = [*notes, CHAIN_CHECKED if self.settings.context == "auto" else self.replay_note()]
        if notes:
            rendered["notes"] = notes
        return rendered

    async def keeps(self, request: ChatRequest) -> bool:
        """Whether the turn, chained to its previous response, will reach the model with the earlier turns
        (IMAGECHAT_CONTEXT).

        OpenAI's API keeps stored responses. Elsewhere, under `auto`, chaining is trusted only when the upstream
        hands the response back by id: a gateway that converts the Responses API to Chat Completions accepts
        previous_response_id and drops it, so the model would get the new prompt alone."""
        if self.settings.context != "auto":
            return self.settings.context == "chain"
        if self.openai_host or not request.previous_response_id:
            return True
        from openai import APIConnectionError

        client = self.client()
        try:
            found = await client.responses.retrieve(request.previous_response_id)
        except Exception as exc:
            status = getattr(exc, "status_code", None)
            if status in (401, 403, 429) or isinstance(exc, APIConnectionError):
                # What would fail the turn itself (a key, a rate limit, no connection) fails it here, as it would.
                raise UpstreamFailure(await self._explain(exc, request)) from None
            # A 404 comes from an upstream that keeps responses and has lost this one: chaining fails there with
            # "previous response not found" and the turn is replayed, as on OpenAI. Any other failure (a gateway
            # that cannot hand responses back, an answer that is not a response) means it does not keep them.
            log.info("%s did not hand back the previous response (%s)", self.shown_url, type(exc).__name__)
            return status == 404
        return getattr(found, "id", None) == request.previous_response_id and getattr(found, "status", None) in KEPT

    def replay_note(self) -> str:
        if self.settings.context == "replay":
            return "IMAGECHAT_CONTEXT=replay: the earlier turns were sent again with this one."
        return (
            f"The upstream at {self.shown_url} does not hand back earlier responses by id, so it may not keep them: "
            "the earlier turns were sent again with this one (set IMAGECHAT_CONTEXT=chain if it does keep them)."
        )

    async def send(self, request: ChatRequest, listener: Listener | None = None) -> ChatReply:
        if self.api == "chat" and request.previous_response_id:
            # Chat Completions keeps nothing upstream: the recorded turns must be replayed.
            raise ContextLost("Chat Completions has no stored responses")
        if request.previous_response_id and not await self.keeps(request):
            raise ContextLost("the upstream is not trusted to keep responses", note=self.replay_note())
        payload = self.payload(request)
        client = self.client()
        try:
            if self.api == "chat":
                reply = await upstream_chat.stream(client, payload, listener)
            else:
                reply = await upstream_responses.stream(client, payload, listener)
        except (ToolError, ContextLost):
            raise
        except Exception as exc:
            return await self._recover(exc, request, listener)
        reply.notes.extend(self.notes(request))
        return reply

    async def _recover(self, exc: Exception, request: ChatRequest, listener: Listener | None) -> ChatReply:
        if request.previous_response_id and is_missing_previous(exc):
            raise ContextLost(str(exc)) from exc
        if self.api == "responses" and self._api is None and is_missing_endpoint(exc):
            log.warning("%s does not serve the Responses API; using Chat Completions from now on", self.shown_url)
            self._api = "chat"
            if request.previous_response_id:
                raise ContextLost("switched to Chat Completions") from exc
            return await self.send(request, listener)
        if self.api == "responses" and self._api is None and is_server_failure(exc) and not self.openai_host:
            return await self._try_chat(exc, request, listener)
        if self._background_ok and _background_refused(exc):
            log.warning("%s refused background mode; sending in the foreground from now on", self.shown_url)
            self._background_ok = False
            return await self.send(request, listener)
        raise UpstreamFailure(await self._explain(exc, request)) from None

    async def _try_chat(self, exc: Exception, request: ChatRequest, listener: Listener | None) -> ChatReply:
        """Under `auto`, a Responses API that fails with a 5xx is given up for Chat Completions, when that works."""
        log.warning("%s failed on the Responses API; trying Chat Completions", self.shown_url)
        self._api = "chat"
        if request.previous_response_id:
            raise ContextLost("switched to Chat Completions") from exc
        try:
            reply = await self.send(request, listener)
        except UpstreamFailure as chat_failure:
            self._api = None  # neither worked: the next turn tries the Responses API again
            first = await self._explain(exc, request)
            raise UpstreamFailure(f"{first} Chat Completions, tried instead, failed too: {chat_failure}") from None
        log.warning("%s: using Chat Completions from now on", self.shown_url)
        reply.notes.append(
            "The upstream failed on the Responses API, so this turn went through Chat Completions, as will the "
            "next ones (set IMAGECHAT_API=chat to skip the Responses API from the start)."
        )
        return reply

    async def _explain(self, exc: Exception, request: ChatRequest) -> str:
        if self.api == "chat" and upstream_chat.is_file_refusal(exc, request):
            return upstream_chat.file_refusal(exc, request, self.shown_url)
        truncation = request.options.truncation if self.api == "responses" else None
        message = explain(exc, base_url=self.base_url, model=request.options.model, truncation=truncation)
        if is_model_not_found(exc):
            served = await self._served_models()
            if served:
                message += f" Models it serves: {', '.join(served[:30])}{' ...' if len(served) > 30 else ''}."
        elif self.api == "responses" and self._api == "responses" and is_server_failure(exc) and not self.openai_host:
            message += (
                " If this server also serves Chat Completions (LiteLLM and vLLM do), IMAGECHAT_API=chat (or auto, "
                "which falls back by itself) may get past this failure."
            )
        return message

    async def _served_models(self) -> list[str]:
        try:
            with anyio.fail_after(10):
                return await self.list_models()
        except Exception:  # a best-effort hint: the main error is what matters
            return []

    async def retrieve(self, response_id: str) -> ChatReply | None:
        try:
            final = await self.client().responses.retrieve(response_id)
        except ToolError:
            raise
        except Exception as exc:
            raise UpstreamFailure(explain(exc, base_url=self.base_url, model="")) from None
        return upstream_responses.reply_of(final, model=final.model or "", background=True)

    async def cancel(self, response_id: str) -> None:
        try:
            await self.client().responses.cancel(response_id)
        except Exception as exc:  # cancelling is best effort: the response may have finished already
            log.info("could not cancel %s: %s", response_id, type(exc).__name__)

    async def list_models(self) -> list[str]:
        try:
            page = await self.client().models.list()
        except ToolError:
            raise
        except Exception as exc:
            raise UpstreamFailure(explain(exc, base_url=self.base_url, model="")) from None
        return sorted(model.id for model in page.data)


def _background_refused(exc: Exception) -> bool:
    return getattr(exc, "status_code", None) == 400 and "background" in str(exc).lower()
