"""A client that declares the MCP Apps extension, as hosts that render MCP Apps do (Claude, the test host)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp import Client
from mcp.client.extension import ClientExtension
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID

from server.app import build_server
from server.settings import Settings


class AppsHost(ClientExtension):
    identifier = EXTENSION_ID

    def settings(self) -> dict[str, Any]:
        return {"mimeTypes": [APP_MIME_TYPE]}


@asynccontextmanager
async def connect_as_apps_host(settings: Settings, mode: str = "auto") -> AsyncIterator[Client]:
    async with Client(build_server(settings), mode=mode, extensions=[AppsHost()]) as client:
        yield client
