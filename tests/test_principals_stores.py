"""Each principal's state is their own in the shared store too: two callers over real authenticated HTTP with the
Redis store (a real redis-server), and workflow conversations (run_workflow, its ComfyUI-style cache) per
principal in the SQLite and Redis stores, in both protocol eras."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import test_principals
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call, fails
from tests.redis_server import redis_server, redis_url  # noqa: F401 - fixtures
from tests.test_auth import running_server
from tests.test_fair_use_stores import store_settings, tokens_file
from tests.test_principals import as_principal
from tests.test_run_workflow import inputs, node, template  # noqa: F401 - a fixture

NODE = "workflow:cards:node3"  # the template's chat node, in a run named "cards"


def serve(tmp_path: Path, upstream: FakeUpstream, pictures: Path, store: dict[str, str]) -> Iterator[str]:
    extra = {"IMAGECHAT_AUTH_TOKENS_FILE": tokens_file(tmp_path), "IMAGECHAT_ALLOWED_DIRS": str(pictures), **store}
    with running_server(tmp_path, upstream, extra) as url:
        yield url


@pytest.fixture
def on_redis(
    tmp_path: Path,
    upstream: FakeUpstream,
    pictures: Path,
    redis_url: str,  # noqa: F811 - a fixture
) -> Iterator[str]:
    yield from serve(tmp_path, upstream, pictures, {"IMAGECHAT_STORE": "redis", "IMAGECHAT_REDIS_URL": redis_url})


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_two_principals_never_see_each_others_state_in_redis(
    on_redis: str, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    """The same conversation ids, the same image, every tool, resource and prompt: the SQLite test's whole
    scenario, against a server whose state is in Redis."""
    await test_principals.test_two_principals_never_see_each_others_state(on_redis, pictures, upstream, mode)


@pytest.fixture(params=["sqlite", "redis"])
def server(tmp_path: Path, upstream: FakeUpstream, pictures: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from serve(tmp_path, upstream, pictures, store_settings(str(request.param), request))


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_workflow_conversations_are_per_principal(
    server: str,
    inputs: Path,  # noqa: F811 - a fixture
    upstream: FakeUpstream,
    mode: str,
) -> None:
    upstream.models.append("o1-pro")  # the template's model
    workflow = template()
    node(workflow, 3)["widgets_values"][1] = True  # persist_context: a second run continues the node's conversation
    run = {"workflow": workflow, "input_dir": str(inputs), "name": "cards"}
    upstream.add_reply(Reply(text="Alice's card"))
    async with as_principal(server, "alice", mode) as alice:
        first = await call(alice, "run_workflow", run)
    assert first["previews"] == {"2": "Alice's card"}

    upstream.add_reply(Reply(text="Bob's card"))
    async with as_principal(server, "bob", mode) as bob:
        # Alice's node conversation is not Bob's to read, list or continue.
        unseen = await fails(bob, "preview", {"conversation_id": NODE})
        assert "Alice's card" not in unseen
        listed = json.loads((await bob.read_resource("conversations://all")).contents[0].text)
        assert listed == []
        # The same workflow, unchanged, under the same name: Bob's first run, not Alice's cached result.
        second = await call(bob, "run_workflow", run)
    assert second["previews"] == {"2": "Bob's card"} and second["chats"]["3"]["turn"] == 1
    bodies = upstream.responses_bodies()
    assert len(bodies) == 2 and "previous_response_id" not in bodies[1]

    async with as_principal(server, "alice", mode) as alice:
        shown = await call(alice, "preview", {"conversation_id": NODE})
        again = await call(alice, "run_workflow", run)  # unchanged since her last run: her own cache answers
    assert shown["text"] == "Alice's card"
    assert again["previews"] == {"2": "Alice's card"} and len(upstream.responses_bodies()) == 2
