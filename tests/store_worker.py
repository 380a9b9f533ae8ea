"""A server process's worth of work on a shared store, run as a real process by tests/test_cross_process.py.

`python -m tests.store_worker MODE ARGS...` with the server's settings in the environment (IMAGECHAT_STORE,
IMAGECHAT_STATE_DIR or IMAGECHAT_REDIS_URL, OPENAI_BASE_URL, ...). It runs the same steps as the MCP tools, on
the Deps the server builds, and prints one JSON line with what it saw:
- `race CONVERSATION ROUNDS`: ROUNDS chats, one after another, while a second task previews the conversation
  non-stop (a preview must never settle another process's running turn);
- `open CONVERSATION`: open the store and change the conversation's options (two at once on a fresh folder);
- `start CONVERSATION IMAGE`: load IMAGE and chat with a short wait, print the "running" result, then stay alive
  until killed (the owner of a turn that dies mid-answer);
- `collect CONVERSATION TURN WAIT`: wait for turn TURN (run by another process) and print it with what is
  pending.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio

from server.app import opened
from server.settings import resolve
from tools.chat import chat
from tools.deps import Deps
from tools.load_image import load_image
from tools.options import OptionChanges, set_options
from tools.preview import preview


def say(value: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


async def race(deps: Deps, conversation_id: str, rounds: int) -> dict[str, Any]:
    answered: list[int] = []
    previews = 0
    done = anyio.Event()

    async def look() -> None:
        nonlocal previews
        while not done.is_set():
            try:
                await preview(deps, conversation_id, "conversation")
                previews += 1
            except Exception as exc:  # a conversation not created yet is fine; anything else is a failure
                if "No conversation" not in str(exc):
                    raise
            await anyio.sleep(0.005)

    async with anyio.create_task_group() as group:
        group.start_soon(look)
        for index in range(rounds):
            result = await chat(
                deps, f"round {index} from pid {os.getpid()}", conversation_id, images=[], wait_seconds=120
            )
            assert result.turn is not None and result.status == "completed", result
            answered.append(result.turn)
        done.set()
    return {"turns": answered, "previews": previews}


async def work(deps: Deps, mode: str, args: list[str]) -> dict[str, Any]:
    if mode == "race":
        return await race(deps, args[0], int(args[1]))
    if mode == "open":
        changed = await set_options(deps, args[0], OptionChanges(temperature=0.5))
        return {"temperature": changed.options.temperature}
    if mode == "start":
        await load_image(deps, args[1], args[0])
        running = await chat(deps, "Talk for a while", args[0], wait_seconds=0.5)
        say(running.model_dump(mode="json"))
        await anyio.sleep_forever()
    if mode == "collect":
        result = await chat(deps, "", args[0], turn=int(args[1]), wait_seconds=float(args[2]))
        pending = await preview(deps, args[0], "pending", "json")
        return {**result.model_dump(mode="json"), "pending": json.loads(str(pending.text))}
    raise SystemExit(f"unknown mode {mode!r}")


async def main(mode: str, args: list[str]) -> None:
    async with opened(resolve(None, os.environ)) as deps:
        say(await work(deps, mode, args))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2:])
