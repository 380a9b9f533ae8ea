"""`imagechat-mcp prune` reaches every authenticated user's store (SQLite databases under principals/, Redis key
prefixes), and prunes each by its own conversations: what one user keeps never keeps another's images."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from server.settings import Settings
from server.stores.scoped import principal_folder, space_of
from tests import images
from tests.fake_upstream import FakeUpstream
from tests.helpers import call
from tests.redis_server import redis_server, redis_url  # noqa: F401 - fixtures
from tests.test_auth import running_server
from tests.test_fair_use_stores import store_settings, tokens_file
from tests.test_principals import as_principal, resource_error
from tests.test_retention import LONG_AGO, age_everything, prune

RED = "data:image/png;base64," + base64.b64encode(images.png(64, 48, (200, 30, 30))).decode()
BLUE = "data:image/png;base64," + base64.b64encode(images.png(48, 64, (30, 30, 200))).decode()
AGED = ("images", "files", "variants", "blobs")  # every record and blob, by when it was stored


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(tmp_path: Path, upstream: FakeUpstream, store: str, request: pytest.FixtureRequest) -> Iterator[str]:
    extra = {"IMAGECHAT_AUTH_TOKENS_FILE": tokens_file(tmp_path), **store_settings(store, request)}
    with running_server(tmp_path, upstream, extra) as url:
        yield url


def age_redis(url: str, keep: str) -> None:
    """Every user's records and blobs as if stored 100 days ago, except their conversation `keep`."""
    with redis.Redis.from_url(url) as client:
        for key in client.scan_iter(match="imagechat:p:*"):
            name = key.decode().split(":", 3)[3]
            if name == "conversations" or name in AGED:
                members = [m for m in client.zrange(key, 0, -1) if not (name == "conversations" and m == keep.encode())]
                if members:
                    client.zadd(key, dict.fromkeys(members, LONG_AGO))


async def image_ids(url: str, who: str, mode: str, old: str, new: str) -> dict[str, str]:
    async with as_principal(url, who, mode) as client:
        first = await call(client, "load_image", {"source": old, "conversation_id": "old"})
        second = await call(client, "load_image", {"source": new, "conversation_id": "new"})
        assert (await client.read_resource(f"image://{first['images'][0]['image_id']}")).contents
    return {"old": first["images"][0]["image_id"], "new": second["images"][0]["image_id"]}


async def test_prune_prunes_every_users_store(
    server: str, store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # The same two images, the other way round: Alice's old one is Bob's kept one.
    alice = await image_ids(server, "alice", "auto", old=RED, new=BLUE)
    bob = await image_ids(server, "bob", "legacy", old=BLUE, new=RED)
    assert alice["old"] == bob["new"]  # the same content, stored once per user

    state = tmp_path / "state"
    flags = ["--keep-conversations-days", "30"]
    if store == "sqlite":
        settings = Settings(state_dir=state)
        folders = [principal_folder(settings, space_of(f"token:{who}")) for who in ("alice", "bob")]
        for folder in folders:
            age_everything(folder, keep="new")
    else:
        url = request.getfixturevalue("redis_url")
        age_redis(url, keep="new")
        flags += ["--store", "redis", "--redis-url", url]

    said = prune(state, "--dry-run", *flags)
    assert re.match(r"Would remove 2 conversations, 2 images, 0 files, ", said), said
    said = prune(state, *flags)
    assert re.match(r"Removed 2 conversations, 2 images, 0 files, ", said), said
    assert "the server's own store and 2 users' stores" in said

    for who, ids, mode in (("alice", alice, "auto"), ("bob", bob, "legacy")):
        async with as_principal(server, who, mode) as client:
            listed = await client.read_resource("conversations://all")
            assert '"old"' not in str(listed.contents[0]) and '"new"' in str(listed.contents[0])
            assert "load it with load_image first" in await resource_error(client, f"image://{ids['old']}")
            kept = await client.read_resource(f"image://{ids['new']}")  # the other user's old image: kept
            assert kept.contents
