"""Words for failures of the machine rather than of the input: a full or read-only disk, input nested too deeply.

A tool that meets one of these would otherwise end in the SDK's bare "Error executing tool X" (and a traceback in
the log), which tells the agent nothing it can act on. `explain` finds such a failure among an exception's causes
and says what happened and what to do; `state_problem` checks the state folder before the server starts.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

from server.settings import Settings

STATE_SETTING = "IMAGECHAT_STATE_DIR (--state-dir)"
_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def explain(exc: BaseException | None, state_dir: Path | None) -> str | None:
    """What went wrong, for the agent, when `exc` (or one of its causes) is a failure it can act on; else None."""
    where = f"the server's state folder ({state_dir})" if state_dir else "the server's state folder"
    for cause in causes(exc):
        if isinstance(cause, RecursionError):
            return (
                "The input is nested too deeply to read (thousands of levels). Nothing was changed. Flatten it, or "
                "send it as plain text."
            )
        kind = disk_problem(cause)
        if kind == "full":
            return (
                f"The disk holding {where} is full, so nothing was stored or changed. Free some space there, or "
                f"move the state with {STATE_SETTING}, then try again."
            )
        if kind == "read-only":
            return (
                f"{where[0].upper()}{where[1:]} cannot be written (a read-only disk), so nothing was stored or "
                f"changed. Move the state to a writable folder with {STATE_SETTING}."
            )
    return None


def causes(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def disk_problem(exc: BaseException) -> str | None:
    """ "full" or "read-only" when `exc` says so (an OSError's errno, SQLite's message), else None."""
    if isinstance(exc, OSError):
        if exc.errno in _FULL:
            return "full"
        if exc.errno == errno.EROFS:
            return "read-only"
    if isinstance(exc, sqlite3.Error):
        text = str(exc).lower()
        if "disk is full" in text:
            return "full"
        if "readonly" in text or "read-only" in text:
            return "read-only"
    return None


def state_problem(settings: Settings) -> str | None:
    """Why the state folder cannot be used, checked before serving: a server that fails later, in its first
    session, shows a client nothing and leaves a traceback in a log nobody reads."""
    if settings.store != "sqlite":
        return None
    folder = settings.resolved_state_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
        database = folder / "imagechat.sqlite3"
        if database.exists() and not os.access(database, os.W_OK):
            raise PermissionError(errno.EACCES, "the database file is not writable")
    except OSError as exc:
        what = "is on a read-only disk" if exc.errno == errno.EROFS else f"cannot be written ({exc.strerror or exc})"
        return (
            f"The state folder {folder} {what}. Set {STATE_SETTING} to a writable folder, or IMAGECHAT_STORE=memory "
            "to keep nothing between runs."
        )
    return None


class OneLineDisconnects(logging.Filter):
    """An HTTP client that goes away before its request is read (a slow or abandoned connection) is logged by the
    SDK as an ERROR with a traceback, one per connection: the client's doing, not the server's. Say it in one
    line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is None or type(error).__name__ not in _GONE:
            return True
        said = record.getMessage()
        record.msg = "%s: the client went away before the request was complete (%s)"
        record.args = (said, type(error).__name__)
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


# By name: starlette's ClientDisconnect, anyio's closed and broken streams, a reset socket.
_GONE = {"ClientDisconnect", "ClosedResourceError", "BrokenResourceError", "ConnectionResetError", "BrokenPipeError"}
HTTP_LOGGER = "mcp.server.streamable_http"


def quiet_disconnects() -> None:
    """Log abandoned HTTP connections in one line (see OneLineDisconnects); once per process."""
    logger = logging.getLogger(HTTP_LOGGER)
    if not any(isinstance(f, OneLineDisconnects) for f in logger.filters):
        logger.addFilter(OneLineDisconnects())
