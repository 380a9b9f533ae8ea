"""tools/call with a tool the server does not have is a protocol error (JSON-RPC invalid params, -32602), as the
MCP spec has it, in both protocol eras: not a tool result flagged isError, since no tool ran. It names the closest
tool and the known ones, as an unknown prompt does."""

from __future__ import annotations

import pytest
from mcp.shared.exceptions import MCPError

from server.settings import Settings
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream

INVALID_PARAMS = -32602


async def test_an_unknown_tool_is_invalid_params_naming_the_closest_and_the_known_ones(
    settings: Settings, upstream: FakeUpstream, mode: str
) -> None:
    async with connect(settings, mode) as client:
        listed = ", ".join(tool.name for tool in (await client.list_tools()).tools)
        with pytest.raises(MCPError) as misspelt:
            await client.call_tool("chta", {"prompt": "hello"})
        with pytest.raises(MCPError) as unheard:
            await client.call_tool("test_missing_capability", {})
    assert misspelt.value.code == unheard.value.code == INVALID_PARAMS
    assert misspelt.value.message == f"unknown tool 'chta'; did you mean 'chat'? the tools are: {listed}."
    assert unheard.value.message == f"unknown tool 'test_missing_capability'; the tools are: {listed}."
    assert upstream.responses_bodies() == []
