"""A turn holds its conversation's turn lock, and nothing else: no other conversation waits for its answer."""

from __future__ import annotations

import pytest

from server.settings import Settings
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_a_conversation_named_turn_colon_foo_does_not_wait_for_foos_answer(
    settings: Settings, upstream: FakeUpstream, mode: str, store: str
) -> None:
    upstream.add_reply(Reply(text="Slow answer for foo.", delay=3.0))
    async with connect(settings, mode, store=store) as client:
        running = await call(
            client, "chat", {"conversation_id": "foo", "prompt": "Take your time", "wait_seconds": 1, "images": []}
        )
        options = await call(client, "set_options", {"conversation_id": "turn:foo", "temperature": 0.3})
        foo_meanwhile = await call(client, "preview", {"conversation_id": "foo"})
        answer = await call(client, "chat", {"conversation_id": "foo", "prompt": "", "turn": 1, "wait_seconds": 30})
    assert running["status"] == "running" and running["turn"] == 1
    assert options["conversation_id"] == "turn:foo" and options["options"]["temperature"] == 0.3
    # set_options on 'turn:foo' came back while foo's turn was still being answered, not after it.
    assert "Turn 1 is still running" in foo_meanwhile["text"]
    assert answer["status"] == "completed" and answer["text"] == "Slow answer for foo."
