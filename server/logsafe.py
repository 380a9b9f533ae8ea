"""The API key never reaches a log line or a tool result, whoever echoes it.

An upstream may quote the key back ("Incorrect API key provided: sk-..."), an exception may carry a
request's headers, a debug log may print them. Rather than trust every such place, secrets are
removed where text leaves the process:

- Logs: `install()` wraps the log record factory, so every record from every logger (ours, the SDKs',
  the MCP server's), whichever handler prints it, is scrubbed when it is created: the message with
  its arguments, the exception text with its whole chain, and the stack. Scrubbed are the configured
  key, anything shaped like an OpenAI key (`sk-...`), `Bearer` tokens and `Authorization`/`api-key`
  header values.
- Tool results, errors and text resources: `scrub_result`, `scrub_error` and `scrub_contents` (used by
  server.app) remove the configured key itself. Shapes are not matched there, so that a file named
  `sk-landscape.png` or a model's answer about key formats is shown as it is.

Keys shorter than 8 characters are the dummy keys local servers accept ("ollama", "x") and are left
alone: redacting every "x" would make the logs unreadable and protect nothing.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent

__all__ = [
    "REDACTED",
    "RedactingFilter",
    "install",
    "redact",
    "scrub_contents",
    "scrub_error",
    "scrub_result",
    "scrub_secrets",
]

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 8

# Order matters: a header value first (it may start with a scheme such as Bearer), then bare tokens.
_PATTERNS = (
    re.compile(
        r"(?i)(\b(?:proxy-)?(?:authorization|x-api-key|api[-_]?key)[\"']?\s*[:=]\s*[\"']?)"
        r"(?:(?:bearer|basic|token)\s+)?[^\s\"',;}\]]+"
    ),
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=\-]+"),
    re.compile(r"()\bsk-[A-Za-z0-9_\-]{6,}"),
)

_secrets: set[str] = set()
_lock = threading.Lock()
_factory_installed = False


def install(secret: str | None) -> None:
    """Scrub `secret` (the configured API key) and key-shaped text from every log record from now on.

    Safe to call more than once (each server built in one process adds its key)."""
    global _factory_installed
    with _lock:
        if secret and len(secret.strip()) >= MIN_SECRET_LENGTH:
            _secrets.add(secret.strip())
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _scrub_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = True


def scrub_secrets(text: str) -> str:
    """`text` without the configured key(s); nothing else changes."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact(text: str) -> str:
    """`text` without the configured key(s), key-shaped strings, bearer tokens and auth header values."""
    text = scrub_secrets(text)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda match: match.group(1) + REDACTED, text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs a record in place (for handlers set up outside `install`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        _scrub_record(record)
        return True


def _scrub_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: logging would print the raw arguments in its error report
        message = f"{record.msg!s} {record.args!r}"
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[0] is not None:
        text = _FORMATTER.formatException(record.exc_info)
        clean = redact(text)
        if clean != text:
            # Handlers print exc_text when it is set; dropping exc_info stops any from re-rendering it.
            record.exc_text, record.exc_info = clean, None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


_FORMATTER = logging.Formatter()


def scrub_error(exc: ToolError) -> ToolError:
    """The same tool error without the configured key in its message (its class and cause kept)."""
    text = str(exc)
    clean = scrub_secrets(text)
    if clean == text:
        return exc
    try:
        replacement = type(exc)(clean)
    except TypeError:  # a subclass with another constructor
        replacement = ToolError(clean)
    replacement.__cause__ = exc.__cause__
    return replacement


def scrub_result(result: CallToolResult) -> CallToolResult:
    """A tool result without the configured key in any text or structured value."""
    if not _secrets or not _mentions_secret([result.content, result.structured_content]):
        return result
    content = [
        block.model_copy(update={"text": scrub_secrets(block.text)}) if isinstance(block, TextContent) else block
        for block in result.content
    ]
    structured = _scrub_value(result.structured_content) if result.structured_content is not None else None
    return result.model_copy(update={"content": content, "structured_content": structured})


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_secrets(value)
    if isinstance(value, dict):
        return {key: _scrub_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub_value(item) for item in value]
    return value


def scrub_contents(item: ReadResourceContents) -> ReadResourceContents:
    """A resource's text without the configured key."""
    if isinstance(item.content, str) and _mentions_secret(item.content):
        return ReadResourceContents(content=scrub_secrets(item.content), mime_type=item.mime_type, meta=item.meta)
    return item


def _mentions_secret(value: Any) -> bool:
    if isinstance(value, str):
        return any(secret in value for secret in _secrets)
    if isinstance(value, TextContent):
        return _mentions_secret(value.text)
    if isinstance(value, dict):
        return any(_mentions_secret(item) for item in value.values())
    if isinstance(value, list):
        return any(_mentions_secret(item) for item in value)
    return False
