"""A principal's bulk runs are their own: over real authenticated HTTP, in both eras, a second principal can
neither list, preview, read nor continue the first one's run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import pytest

from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call, fails
from tests.test_batch_tool import resource_text
from tests.test_principals import as_principal, resource_error, server  # noqa: F401


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_second_principal_cannot_see_the_first_ones_run(
    server: str,  # noqa: F811
    pictures: Path,
    upstream: FakeUpstream,
    mode: str,
) -> None:
    upstream.default_reply = Reply(text="Alice's private caption")
    async with as_principal(server, "alice", mode) as alice:
        started = await call(alice, "run_batch", {"sources": [str(pictures)], "prompt": "Caption it."})
        run_id = started["run_id"]
        deadline = time.monotonic() + 60
        while (await call(alice, "preview", {"target": f"batch:{run_id}"}))["batch"]["status"] != "finished":
            assert time.monotonic() < deadline
            await anyio.sleep(0.05)
        listed = json.loads(await resource_text(alice, "batches://all"))
        assert [run["id"] for run in listed] == [run_id]

    async with as_principal(server, "bob", mode) as bob:
        assert json.loads(await resource_text(bob, "batches://all")) == []
        shown = await fails(bob, "preview", {"target": f"batch:{run_id}"})
        assert f"No batch run {run_id!r}. Known runs: none yet." in shown
        assert "No batch run" in await resource_error(bob, f"batch://{run_id}")
        assert "No batch run" in await fails(bob, "run_batch", {"resume": run_id})
        assert "Alice's private caption" not in shown
    assert len(upstream.answered) == 4  # Alice's four images, once each; nothing for Bob
