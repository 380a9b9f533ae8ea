"""OpenAI's Files and Batches endpoints for bulk runs (tools/batch_api.py's BatchService), and the Backend the
command line and the run_batch tool hand to tools/batch.py."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from mcp.server.mcpserver.exceptions import ToolError

from server.settings import Settings
from tools.batch import Backend
from tools.batch_api import BatchState
from tools.ports import ChatReply, Upstream, UpstreamFailure

T = TypeVar("T")
OPENAI_HOSTS = ("api.openai.com",)


def backend_of(upstream: Upstream, settings: Settings) -> Backend:
    from server.upstream import OpenAIUpstream

    service = OpenAIBatches(upstream) if isinstance(upstream, OpenAIUpstream) else None
    on_openai = any(host in (settings.base_url or "https://api.openai.com/v1") for host in OPENAI_HOSTS)
    return Backend(service=service, on_openai=on_openai, poll_seconds=settings.batch_poll_seconds)


class OpenAIBatches:
    """tools/batch_api.py's BatchService on the OpenAI SDK client of the server's upstream adapter."""

    def __init__(self, upstream: Upstream) -> None:
        from server.upstream import OpenAIUpstream

        if not isinstance(upstream, OpenAIUpstream):
            raise ToolError("The Batch API needs an OpenAI-compatible upstream; use via direct.")
        self.upstream = upstream

    async def upload(self, name: str, data: bytes) -> str:
        return (
            await self.call(
                self.upstream.client().files.create(file=(name, data, "application/jsonl"), purpose="batch")
            )
        ).id

    async def create(self, file_id: str, metadata: dict[str, str]) -> str:
        made = self.upstream.client().batches.create(
            input_file_id=file_id, endpoint="/v1/responses", completion_window="24h", metadata=metadata
        )
        return (await self.call(made)).id

    async def find(self, metadata: dict[str, str], since: float) -> str | None:
        """Newest first, page by page, until the batches are older than `since`."""

        async def search() -> str | None:
            async for found in self.upstream.client().batches.list(limit=100):
                if found.created_at < since:
                    return None
                if all((found.metadata or {}).get(key) == value for key, value in metadata.items()):
                    return found.id
            return None

        return await self.call(search())

    async def state(self, batch_id: str) -> BatchState:
        found = await self.call(self.upstream.client().batches.retrieve(batch_id))
        return BatchState(found.status, found.output_file_id, found.error_file_id)

    async def content(self, file_id: str) -> bytes:
        return (await self.call(self.upstream.client().files.content(file_id))).content

    def reply(self, body: dict[str, Any], model: str) -> ChatReply:
        from openai.types.responses import Response

        from server.upstream_responses import reply_of

        found = reply_of(Response.model_validate(body), model=model, background=False, stored=False)
        if found is None:
            raise UpstreamFailure("The batch returned a response that had not finished.")
        return found

    async def call(self, pending: Awaitable[T]) -> T:
        """The SDK call, its failure worded as the other upstream calls are (exit code 3)."""
        import openai

        from server.upstream_errors import explain

        try:
            return await pending
        except openai.APIError as exc:
            raise UpstreamFailure(explain(exc, base_url=self.upstream.base_url, model="")) from None
