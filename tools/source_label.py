"""How a `source` an agent gave appears in a message: quoted, printable, short, and without secrets."""

from __future__ import annotations

from urllib.parse import urlsplit


def source_label(source: str, limit: int = 200) -> str:
    """`source` quoted for a message or a log.

    A data: URL shows only its header and length (its payload is the file itself). A URL loses its
    user:password and its query is elided, because signed URLs carry tokens there. Characters that do
    not print become '?', and anything longer than `limit` is cut with '…'.
    """
    if source[:5].lower() == "data:":
        shown = f"{source.split(',', 1)[0]},... ({len(source)} characters)"
    elif "://" in source:
        shown = _without_secrets(source)
    else:
        shown = source
    shown = "".join(c if c.isprintable() else "?" for c in shown)
    return f"'{shown[:limit]}…'" if len(shown) > limit else f"'{shown}'"


def _without_secrets(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme:  # "://" inside a path, not a URL
        return url
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" + ("?…" if parts.query else "")
