"""Fair use per principal over authenticated HTTP: chat turns per minute, stored bytes, and the audit line."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call, fails
from tests.test_auth import running_server
from tests.test_principals import TOKENS, as_principal
from tests.test_remote import noise_png

SECRET_PROMPT = "the words of a private prompt"


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "server.log"


@pytest.fixture
def server(tmp_path: Path, upstream: FakeUpstream, log: Path) -> Iterator[str]:
    tokens = tmp_path / "tokens"
    tokens.write_text(
        "".join(f"{who} sha256:{hashlib.sha256(token.encode()).hexdigest()}\n" for who, token in TOKENS.items())
    )
    extra = {
        "IMAGECHAT_AUTH_TOKENS_FILE": str(tokens),
        "IMAGECHAT_USER_TURNS_PER_MINUTE": "2",
        "IMAGECHAT_USER_STORED_MB": "1",
    }
    with running_server(tmp_path, upstream, extra, log=log) as url:
        yield url


async def test_turns_per_minute_are_counted_per_principal(server: str, upstream: FakeUpstream, log: Path) -> None:
    for _ in range(4):
        upstream.add_reply(Reply(text="fine"))
    async with as_principal(server, "alice", "auto") as alice:
        for _ in range(2):
            await call(alice, "chat", {"prompt": SECRET_PROMPT, "conversation_id": "a", "images": []})
        refused = await fails(alice, "chat", {"prompt": SECRET_PROMPT, "conversation_id": "a", "images": []})
        # Fetching a turn is not starting one.
        await call(alice, "chat", {"turn": 1, "conversation_id": "a"})
    assert "IMAGECHAT_USER_TURNS_PER_MINUTE" in refused and "Try again in" in refused
    wait = int(refused.split("Try again in ")[1].split(" s")[0])
    assert 0 < wait <= 60
    sent = len(upstream.responses_bodies())
    assert sent == 2  # the refused turn sent nothing
    async with as_principal(server, "bob", "legacy") as bob:  # another principal has their own allowance
        await call(bob, "chat", {"prompt": "hello", "conversation_id": "a", "images": []})

    lines = [json.loads(line.split(" audit ", 1)[1]) for line in log.read_text().splitlines() if " audit {" in line]
    chats = [line for line in lines if line["tool"] == "chat" and line["principal"] == "token:alice"]
    assert [line["outcome"] for line in chats] == ["ok", "ok", "error", "ok"]
    assert chats[0]["conversation"] == "a" and chats[0]["model"] and chats[0]["tokens"]["output_tokens"] >= 0
    text = log.read_text()
    assert SECRET_PROMPT not in text and TOKENS["alice"] not in text and "sk-test-key" not in text


async def test_stored_bytes_are_limited_per_principal(server: str) -> None:
    url = "data:image/png;base64," + base64.b64encode(noise_png(1_500_000)).decode()
    async with as_principal(server, "alice", "auto") as alice:
        await call(alice, "load_image", {"source": url, "conversation_id": "big"})
        refused = await fails(alice, "load_image", {"source": url, "conversation_id": "other"})
        assert "IMAGECHAT_USER_STORED_MB" in refused and "Reading and previewing still work" in refused
        await call(alice, "preview", {"conversation_id": "big", "target": "conversation"})
    async with as_principal(server, "bob", "auto") as bob:
        await call(bob, "load_image", {"source": url, "conversation_id": "big"})


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_bulk_run_is_refused_where_turns_per_minute_are_limited(
    server: str, upstream: FakeUpstream, mode: str
) -> None:
    image = "data:image/png;base64," + base64.b64encode(noise_png(3_000)).decode()
    async with as_principal(server, "alice", mode) as alice:
        refused = await fails(alice, "run_batch", {"sources": [image, image], "prompt": "Caption it."})
        listed = await alice.read_resource("batches://all")
        estimate = await call(alice, "run_batch", {"sources": [image], "prompt": "Caption it.", "dry_run": True})
        await call(alice, "chat", {"prompt": "hello", "conversation_id": "a", "images": []})
    assert json.loads(getattr(listed.contents[0], "text", "")) == []  # no run was recorded
    assert "IMAGECHAT_USER_TURNS_PER_MINUTE" in refused and "run_batch" in refused and "Nothing was sent" in refused
    assert estimate["images"] == 1
    assert len(upstream.responses_bodies()) == 1  # only the chat: the refused run and the dry run sent nothing
