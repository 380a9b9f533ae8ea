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
- The configured key is removed in the forms an upstream may quote it back in, not only verbatim:
  base64 (also inside a longer base64 text such as "Bearer KEY" or a Basic credential, at any alignment),
  hex, JSON `\\u` escapes and URL %-escapes (any mix of escaped and plain characters).
- A URL with credentials (`http://user:password@proxy/v1?api-key=...`) is shown by `display_url` without
  its userinfo and query values; in log lines, the userinfo and query values of any URL are removed, and
  `protect_url` adds a base URL's credentials to the secrets.

Keys shorter than 8 characters are the dummy keys local servers accept ("ollama", "x") and are left
alone: redacting every "x" would make the logs unreadable and protect nothing.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent

__all__ = [
    "REDACTED",
    "RedactingFilter",
    "cut",
    "display_url",
    "install",
    "protect_url",
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
    # A URL's userinfo (http://user:password@host).
    re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://)[^/\s@?#\"'<>]+(?=@)"),
)
# A URL's query, whose values may be keys or signatures (?api-key=..., ?sig=...).
_URL_QUERY = re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://[^\s?#\"'<>]*\?)([^\s#\"'<>]+)")
_QUERY_VALUE = re.compile(r"(=)[^&;]+")

_secrets: set[str] = set()
_forms: _Forms | None = None
_lock = threading.Lock()
_factory_installed = False


def display_url(url: str) -> str:
    """`url` as it may be shown anywhere: no userinfo, query values replaced, no fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a malformed port or host: show nothing that could be a credential
        return "[a malformed URL]"
    if ":" in host:
        host = f"[{host}]"
    query = "&".join(f"{name}={REDACTED}" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, host + port, parts.path, query, ""))


def protect_url(url: str | None) -> None:
    """Treat the credentials in `url` (its password, user name and query values) as secrets from now on."""
    if not url:
        return
    try:
        parts = urlsplit(url)
        found = [parts.password, parts.username, *(value for _, value in parse_qsl(parts.query))]
    except ValueError:
        return
    with _lock:
        for value in found:
            _add_secret(value)


def cut(text: str, limit: int = 500) -> str:
    """`text` at most `limit` characters long. Cut only text already redacted: a secret cut in two is not found."""
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


@dataclass(frozen=True)
class _Forms:
    """The configured secrets as text may carry them. Replaced whole, never changed, so readers need no lock."""

    # Plain, hex and the base64 cores: found with str's fast substring search.
    literals: tuple[str, ...] = ()
    # Escaped character by character (JSON \\uXXXX or \\/, URL %XX, in any mix): only worth a regex when the
    # text holds a backslash or a percent sign at all.
    escaped: re.Pattern[str] | None = None

    def scrub(self, text: str) -> str:
        for form in self.literals:
            if form in text:
                text = text.replace(form, REDACTED)
        if self.escaped is not None and ("\\" in text or "%" in text):
            text = self.escaped.sub(REDACTED, text)
        return text

    def found_in(self, text: str) -> bool:
        if any(form in text for form in self.literals):
            return True
        return self.escaped is not None and ("\\" in text or "%" in text) and self.escaped.search(text) is not None


def _add_secret(secret: str | None) -> None:
    global _forms
    if secret and len(secret.strip()) >= MIN_SECRET_LENGTH and secret.strip() not in _secrets:
        _secrets.add(secret.strip())
        literals = {form for value in _secrets for form in _literal_forms(value)}
        escaped = "|".join("".join(_char_forms(char) for char in value) for value in _secrets)
        _forms = _Forms(tuple(sorted(literals, key=len, reverse=True)), re.compile(escaped))


def _literal_forms(secret: str) -> list[str]:
    """`secret` plain, hex-encoded, and base64-encoded at each of the three alignments it can have inside
    longer data ("Bearer KEY", "user:KEY"), in both base64 alphabets."""
    raw = secret.encode()
    forms = [secret, raw.hex(), raw.hex().upper()]
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        # Skip the characters that mix in the preceding bytes and stop before those that mix in the following.
        core = encoded[(offset * 8 + 5) // 6 : (offset + len(raw)) * 8 // 6]
        forms += [core, core.replace("+", "-").replace("/", "_")]
    return forms


def _char_forms(char: str) -> str:
    code = ord(char)
    escaped = [re.escape(char), r"\\u" + _any_case(f"{code:04x}")]
    if code < 128:
        escaped.append("%" + _any_case(f"{code:02x}"))
    if char == "/":
        escaped.append(r"\\/")
    return "(?:" + "|".join(escaped) + ")"


def _any_case(hex_digits: str) -> str:
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in hex_digits)


def install(secret: str | None) -> None:
    """Scrub `secret` (the configured API key) and key-shaped text from every log record from now on.

    Safe to call more than once (each server built in one process adds its key)."""
    global _factory_installed
    with _lock:
        _add_secret(secret)
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
    """`text` without the configured key(s), in any of the forms `_encodings` knows; nothing else changes."""
    forms = _forms
    return text if forms is None else forms.scrub(text)


def redact(text: str) -> str:
    """`text` without the configured key(s), key-shaped strings, bearer tokens, auth header values and the
    userinfo and query values of URLs."""
    text = scrub_secrets(text)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda match: match.group(1) + REDACTED, text)
    return _URL_QUERY.sub(lambda match: match.group(1) + _QUERY_VALUE.sub(r"\1" + REDACTED, match.group(2)), text)


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
        forms = _forms
        return forms is not None and forms.found_in(value)
    if isinstance(value, TextContent):
        return _mentions_secret(value.text)
    if isinstance(value, dict):
        return any(_mentions_secret(item) for item in value.values())
    if isinstance(value, list):
        return any(_mentions_secret(item) for item in value)
    return False
