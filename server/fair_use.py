"""Fair use among authenticated principals: chat turns per minute and stored bytes (both off by default), and an
audit line per tool call on stderr (who, which tool and conversation, the model and tokens; never prompt text
or secrets)."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult

MB = 1024 * 1024
WINDOW_SECONDS = 60.0
# Tools that store something new: refused while a principal is over its stored bytes.
STORING = frozenset({"load_image", "attach_file", "chat", "run_workflow"})

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


def folder_bytes(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue  # removed meanwhile
    return total


class FairUse:
    def __init__(self, turns_per_minute: int, stored_mb: float) -> None:
        self.turns_per_minute = turns_per_minute
        self.stored_bytes = int(stored_mb * MB)
        self._starts: dict[str, deque[float]] = {}

    async def admit(self, principal: str, tool: str, arguments: Mapping[str, Any], folder: Path | None) -> None:
        """Refuses the call when it would go over the principal's limits, saying when to try again."""
        if self.turns_per_minute > 0 and starts_turn(tool, arguments):
            self.count_turn(principal)
        if self.stored_bytes > 0 and tool in STORING and folder is not None:
            used = await anyio.to_thread.run_sync(folder_bytes, folder)
            if used >= self.stored_bytes:
                raise ToolError(
                    f"Your conversations and images take {used / MB:.1f} MB, this server's limit per user "
                    f"(IMAGECHAT_USER_STORED_MB = {self.stored_bytes / MB:g} MB): nothing new is stored until the "
                    "server's retention removes some (ask its operator). Reading and previewing still work."
                )

    def count_turn(self, principal: str) -> None:
        now = time.monotonic()
        starts = self._starts.setdefault(principal, deque())
        while starts and now - starts[0] >= WINDOW_SECONDS:
            starts.popleft()
        if len(starts) >= self.turns_per_minute:
            wait = math.ceil(WINDOW_SECONDS - (now - starts[0]))
            raise ToolError(
                f"You started {len(starts)} chat turns in the last minute, this server's limit per user "
                f"(IMAGECHAT_USER_TURNS_PER_MINUTE). Try again in {wait} s. Nothing was sent."
            )
        starts.append(now)


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
