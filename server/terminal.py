"""Serving stdio when a person started the server by hand, on a terminal.

A stdio server is meant to be started by an MCP client; a new user who runs it in a shell saw nothing at all,
and Ctrl-C did nothing the first time (the SDK reads stdin in a worker thread that cannot be cancelled, so
shutting down waited for a line or Ctrl-D) and printed a traceback the second. On a terminal the server says
on stderr what it is waiting for, how to connect a client and how to stop it, reads the terminal in a way a
cancellation can interrupt, and stops at once, cleanly, on Ctrl-C. Nothing here writes to stdout.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import anyio

from server.stdio_pipes import FdLines, StdioServer


def on_terminal() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def command_path() -> str:
    """How a client would start this server: the installed script's absolute path when that is what ran."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.stem == "imagechat-mcp" and argv0.exists():
        return str(argv0.resolve())
    return "imagechat-mcp"


def banner(command: str, *, has_key: bool) -> str:
    desktop = {"mcpServers": {"imagechat": {"command": command, "env": {"OPENAI_API_KEY": "sk-..."}}}}
    lines = [
        "imagechat-mcp is running and waiting for an MCP client on stdin/stdout; there is nothing to type here.",
        "An MCP client starts it itself. To connect one:",
        f"  Claude Desktop (claude_desktop_config.json): {json.dumps(desktop)}",
        f"  Claude Code: claude mcp add imagechat -e OPENAI_API_KEY=sk-... -- {command}",
        f"  Over HTTP: {command} --transport streamable-http   (then connect to http://127.0.0.1:8000/mcp)",
    ]
    if not has_key:
        lines.append("OPENAI_API_KEY is not set: every step works except the model call.")
    lines.append("Stop it with Ctrl-C (or Ctrl-D).")
    return "\n".join(lines) + "\n"


def greet(*, has_key: bool) -> None:
    """The banner on stderr; from now on Ctrl-C ends the process quietly, even while it is still starting."""
    signal.signal(signal.SIGINT, stop_quietly)
    sys.stderr.write(banner(command_path(), has_key=has_key))
    sys.stderr.flush()


def stop_quietly(signum: int, frame: object) -> None:
    sys.stderr.write("imagechat-mcp: stopped.\n")
    raise SystemExit(0)


async def serve(server: StdioServer) -> None:
    """Serve stdio from the terminal until the client (Ctrl-D) or the user (Ctrl-C, SIGTERM) ends it."""
    async with anyio.create_task_group() as group:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    sys.stderr.write("imagechat-mcp: stopped.\n")
                    group.cancel_scope.cancel()
                    return

        group.start_soon(stop_on_signal)
        await server.run_stdio_lines(FdLines(sys.stdin.fileno()))
        group.cancel_scope.cancel()


def run(server: StdioServer) -> None:
    if sys.platform == "win32":  # no waiting on a console handle or signal receivers there: the SDK's own loop
        anyio.run(server.run_stdio_async)
    else:
        anyio.run(serve, server)
