"""Fair use among authenticated principals: chat turns per minute and stored bytes (both off by default), and an
audit line per tool call on stderr (who, which tool and conversation, the model and tokens; never prompt text
or secrets)."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult

MB = 1024 * 1024
WINDOW_SECONDS = 60.0
# Tools that store something new: refused while a principal is over its stored bytes (chat only when it starts a
# turn: fetching one, or a dry run, stores nothing; run_batch unless it is a dry run).
STORING = frozenset({"load_image", "attach_file", "chat", "run_workflow", "run_batch"})

audit_log = logging.getLogger("imagechat.audit")


def install_audit() -> None:
    """Audit lines go to stderr whatever the log level (they are the operator's record of use)."""
    if not audit_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s audit %(message)s"))
        audit_log.addHandler(handler)
        audit_log.setLevel(logging.INFO)
        audit_log.propagate = False


def starts_turn(tool: str, arguments: Mapping[str, Any]) -> bool:
    """chat with a prompt and no turn number or dry run starts a turn; chat(turn=N) only fetches one."""
    return tool == "chat" and arguments.get("turn") is None and not arguments.get("dry_run")


def stores(tool: str, arguments: Mapping[str, Any]) -> bool:
    if tool == "run_batch":
        return not arguments.get("dry_run")
    return tool in STORING and (tool != "chat" or starts_turn(tool, arguments))


class TurnWindow(Protocol):
    """The chat turns one principal started in the last WINDOW_SECONDS."""

    async def start(self, limit: int) -> float | None:
        """Counts a new start unless `limit` started within the window: None when counted, else the seconds
        until the oldest of them leaves the window."""
        ...


class LocalWindow:
    """TurnWindow for one process (the SQLite and memory stores: one server process serves them)."""

    def __init__(self) -> None:
        self.starts: deque[float] = deque()

    async def start(self, limit: int) -> float | None:
        now = time.monotonic()
        while self.starts and now - self.starts[0] >= WINDOW_SECONDS:
            self.starts.popleft()
        if len(self.starts) >= limit:
            return WINDOW_SECONDS - (now - self.starts[0])
        self.starts.append(now)
        return None


@dataclass
class Allowance:
    """What fair use counts for one principal: the turns it started (server.stores.redis_window shares the
    count among replicas) and what its store holds (server.stores.usage)."""

    window: TurnWindow
    stored_bytes: Callable[[], Awaitable[int]]


class FairUse:
    def __init__(self, turns_per_minute: int, stored_mb: float, keep_conversations_days: float = 0.0) -> None:
        self.turns_per_minute = turns_per_minute
        self.stored_bytes = int(stored_mb * MB)
        self.keep_days = keep_conversations_days

    async def admit(self, allowance: Allowance, tool: str, arguments: Mapping[str, Any]) -> None:
        """Refuses the call when it would go over the principal's limits, saying when or how it can go on."""
        if self.stored_bytes > 0 and stores(tool, arguments):
            used = await allowance.stored_bytes()
            if used >= self.stored_bytes:
                raise ToolError(self.over_storage(used))
        if self.turns_per_minute > 0 and tool == "run_batch" and not arguments.get("dry_run"):
            # A run sends a request per image, thousands a minute: it cannot keep a per-minute limit of turns.
            raise ToolError(
                f"This server limits each user to {self.turns_per_minute} chat turns a minute "
                "(IMAGECHAT_USER_TURNS_PER_MINUTE), and a bulk run sends one request per image, so run_batch is "
                "off for users here. Chat about a few images at a time, or ask the server's operator to run it "
                "(run_batch with dry_run=true still shows what a run would cost). Nothing was sent."
            )
        if self.turns_per_minute > 0 and starts_turn(tool, arguments):
            wait = await allowance.window.start(self.turns_per_minute)
            if wait is not None:
                raise ToolError(
                    f"You started {self.turns_per_minute} chat turns in the last minute, this server's limit per "
                    f"user (IMAGECHAT_USER_TURNS_PER_MINUTE). Try again in {max(1, math.ceil(wait))} s. "
                    "Nothing was sent."
                )

    def over_storage(self, used: int) -> str:
        if self.keep_days > 0:
            wait = (
                f"the server removes conversations unchanged for {self.keep_days:g} days, with the images and files "
                "only they use: wait for that, or ask its operator to remove some of yours"
            )
        else:
            wait = "the server keeps conversations until its operator removes them: ask them to remove some of yours"
        return (
            f"Your conversations, images and files take {used / MB:.1f} MB, this server's limit per user "
            f"(IMAGECHAT_USER_STORED_MB = {self.stored_bytes / MB:g} MB), so nothing new is stored until some go "
            f"({wait}; no tool deletes them). Reading and previewing still work."
        )


def audit(principal: str, tool: str, arguments: Mapping[str, Any], result: object, outcome: str) -> None:
    """One JSON line per tool call: values are quoted, so an id cannot forge a line of its own."""
    line: dict[str, Any] = {"principal": principal, "tool": tool, "outcome": outcome}
    conversation = arguments.get("conversation_id", "default")
    if isinstance(conversation, str):
        line["conversation"] = conversation[:200]
    structured = result.structured_content if isinstance(result, CallToolResult) else None
    if isinstance(structured, dict):
        if isinstance(structured.get("model"), str):
            line["model"] = structured["model"]
        usage = structured.get("usage")
        if isinstance(usage, dict):
            line["tokens"] = {key: usage.get(key) for key in ("input_tokens", "output_tokens")}
    audit_log.info(json.dumps(line, ensure_ascii=True))
