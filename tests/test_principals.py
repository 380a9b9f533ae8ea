"""Each principal's state is their own: two callers with the same conversation ids and the same image, over real
authenticated HTTP in both protocol eras, never see each other's data through any tool, resource or prompt."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call, fails
from tests.test_auth import running_server

TOKENS = {"alice": "alice-token-0123456789abcdef", "bob": "bob-token-0123456789abcdef"}


@pytest.fixture
def server(tmp_path: Path, upstream: FakeUpstream, pictures: Path) -> Iterator[str]:
    tokens = tmp_path / "tokens"
    tokens.write_text(
        "".join(f"{who} sha256:{hashlib.sha256(token.encode()).hexdigest()}\n" for who, token in TOKENS.items())
    )
    extra = {"IMAGECHAT_AUTH_TOKENS_FILE": str(tokens), "IMAGECHAT_ALLOWED_DIRS": str(pictures)}
    with running_server(tmp_path, upstream, extra) as url:
        yield url


@asynccontextmanager
async def as_principal(url: str, who: str, mode: str) -> Any:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKENS[who]}"}, timeout=60)
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        yield client


async def resource_error(client: Client, uri: str) -> str:
    with pytest.raises(MCPError) as caught:
        await client.read_resource(uri)
    return str(caught.value)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_two_principals_never_see_each_others_state(
    server: str, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    red = str(pictures / "red.png")
    upstream.add_reply(Reply(text="Alice's private answer"))
    async with as_principal(server, "alice", mode) as alice:
        loaded = await call(alice, "load_image", {"source": red, "conversation_id": "shared"})
        await call(alice, "set_options", {"model": "gpt-4o", "conversation_id": "shared"})
        await call(alice, "chat", {"prompt": "alice secret prompt", "conversation_id": "shared"})
        alices_image = loaded["images"][0]["image_id"]
        assert alices_image in (await alice.read_resource(f"image://{alices_image}")).contents[0].uri.__str__()

    async with as_principal(server, "bob", mode) as bob:
        # Nothing of Alice's is visible: not her conversation, its transcript, the list, her image or her turn.
        listed = json.loads((await bob.read_resource("conversations://all")).contents[0].text)
        assert listed == []
        assert "shared" in await resource_error(bob, "conversation://shared")
        unknown = await resource_error(bob, "image://img_000000000000000000000000")
        theirs = await resource_error(bob, f"image://{alices_image}")
        assert theirs.replace(alices_image, "ID") == unknown.replace("img_000000000000000000000000", "ID")
        shown = await fails(bob, "preview", {"conversation_id": "shared"})
        assert "Alice's private answer" not in shown
        running = await bob.call_tool("chat", {"turn": 1, "conversation_id": "shared"})
        assert "Alice's private answer" not in json.dumps(running.model_dump(mode="json"))
        # The same image loads as Bob's own: nothing says someone else loaded it first.
        again = await call(bob, "load_image", {"source": red, "conversation_id": "shared"})
        assert again["notes"] == loaded["notes"] and again["pending_images"] == 1
        upstream.add_reply(Reply(text="Bob's answer"))
        answer = await call(bob, "chat", {"prompt": "bob prompt", "conversation_id": "shared"})
        assert answer["text"] == "Bob's answer"
        prompt = await bob.get_prompt("describe", {"source": red, "conversation_id": "shared"})
        assert "Alice" not in json.dumps(prompt.model_dump(mode="json"))

    bobs_request = upstream.responses_bodies()[-1]
    assert "previous_response_id" not in bobs_request  # Bob's first turn: Alice's turn is not continued
    assert "alice secret prompt" not in json.dumps(bobs_request)
    assert bobs_request["model"] == "gpt-4.1-mini"  # Alice's options are hers

    async with as_principal(server, "alice", mode) as alice:
        listed = json.loads((await alice.read_resource("conversations://all")).contents[0].text)
        assert listed == ["shared"]
        previewed = await call(alice, "preview", {"conversation_id": "shared"})
        assert previewed["text"] == "Alice's private answer"
