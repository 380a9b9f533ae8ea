"""Fair use in every store: the stored-bytes limit holds for the SQLite, memory and Redis stores alike, and with
Redis the turns per minute are one count per principal for all replicas (two server processes, one redis-server).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call, fails
from tests.redis_server import redis_server, redis_url  # noqa: F401 - fixtures
from tests.test_auth import running_server
from tests.test_principals import TOKENS, as_principal
from tests.test_remote import noise_png

MB = 1024 * 1024


def tokens_file(tmp_path: Path) -> str:
    tokens = tmp_path / "tokens"
    tokens.write_text(
        "".join(f"{who} sha256:{hashlib.sha256(token.encode()).hexdigest()}\n" for who, token in TOKENS.items())
    )
    return str(tokens)


def store_settings(store: str, request: pytest.FixtureRequest) -> dict[str, str]:
    if store == "redis":
        return {"IMAGECHAT_STORE": "redis", "IMAGECHAT_REDIS_URL": request.getfixturevalue("redis_url")}
    return {"IMAGECHAT_STORE": store}


@pytest.fixture(params=["sqlite", "memory", "redis"])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def limited(tmp_path: Path, upstream: FakeUpstream, store: str, request: pytest.FixtureRequest) -> Iterator[str]:
    extra = {
        "IMAGECHAT_AUTH_TOKENS_FILE": tokens_file(tmp_path),
        "IMAGECHAT_USER_STORED_MB": "1",
        "IMAGECHAT_KEEP_CONVERSATIONS_DAYS": "30",
        **store_settings(store, request),
    }
    with running_server(tmp_path, upstream, extra) as url:
        yield url


async def test_stored_bytes_are_limited_per_principal_in_every_store(
    limited: str, upstream: FakeUpstream, store: str
) -> None:
    image = noise_png(1_500_000)
    url = "data:image/png;base64," + base64.b64encode(image).decode()
    small = "data:image/png;base64," + base64.b64encode(noise_png(3_000)).decode()
    upstream.add_reply(Reply(text="an answer stored before the limit"))
    async with as_principal(limited, "alice", "auto") as alice:
        await call(alice, "chat", {"prompt": "hello", "conversation_id": "talk", "images": []})
        await call(alice, "load_image", {"source": url, "conversation_id": "big"})  # under the limit until now
        refused = await fails(alice, "load_image", {"source": small, "conversation_id": "other"})
        turn = await fails(alice, "chat", {"prompt": "and now?", "conversation_id": "talk", "images": []})
        # Reading still works: a stored turn, a preview.
        fetched = await call(alice, "chat", {"turn": 1, "conversation_id": "talk"})
        assert fetched["text"] == "an answer stored before the limit"
        await call(alice, "preview", {"conversation_id": "big", "target": "conversation"})
    assert turn == refused
    taken = float(re.search(r"take (\d+\.\d) MB", refused).group(1))  # type: ignore[union-attr]
    assert abs(taken - len(image) / MB) <= 0.1, refused  # what Alice stored, the same in every store
    assert "IMAGECHAT_USER_STORED_MB = 1 MB" in refused
    assert "unchanged for 30 days" in refused and "Reading and previewing still work" in refused
    assert len(upstream.responses_bodies()) == 1  # the refused turn sent nothing
    async with as_principal(limited, "bob", "legacy") as bob:  # Bob's store is his own, and empty
        await call(bob, "load_image", {"source": url, "conversation_id": "big"})


@pytest.fixture
def replicas(tmp_path: Path, upstream: FakeUpstream, redis_url: str) -> Iterator[tuple[str, str]]:  # noqa: F811
    """Two server processes sharing one Redis, as two replicas behind a load balancer."""
    extra = {
        "IMAGECHAT_AUTH_TOKENS_FILE": tokens_file(tmp_path),
        "IMAGECHAT_USER_TURNS_PER_MINUTE": "2",
        "IMAGECHAT_STORE": "redis",
        "IMAGECHAT_REDIS_URL": redis_url,
    }
    with ExitStack() as both:
        first = both.enter_context(running_server(tmp_path / "a", upstream, extra))
        second = both.enter_context(running_server(tmp_path / "b", upstream, extra))
        yield first, second


async def test_turns_per_minute_are_one_count_for_all_replicas(
    replicas: tuple[str, str], upstream: FakeUpstream
) -> None:
    first, second = replicas
    for _ in range(3):
        upstream.add_reply(Reply(text="fine"))
    chat = {"prompt": "hello", "conversation_id": "c", "images": []}
    async with as_principal(first, "alice", "auto") as on_first, as_principal(second, "alice", "legacy") as on_second:
        await call(on_first, "chat", chat)
        await call(on_second, "chat", {**chat, "conversation_id": "d"})
        refusals = [
            await fails(on_second, "chat", {**chat, "conversation_id": "e"}),
            await fails(on_first, "chat", {**chat, "conversation_id": "f"}),
        ]
    for refused in refusals:
        assert "You started 2 chat turns in the last minute" in refused and "IMAGECHAT_USER_TURNS_PER_MINUTE" in refused
        wait = int(refused.split("Try again in ")[1].split(" s")[0])
        assert 50 <= wait <= 60  # the first turn started moments ago: it leaves the window in about a minute
    assert len(upstream.responses_bodies()) == 2  # neither refused turn was sent
    async with as_principal(second, "bob", "auto") as bob:  # Bob has his own count
        await call(bob, "chat", chat)
