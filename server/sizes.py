"""Byte counts as people read them, for messages (a module of its own: the folder checks need it at start-up,
and server.fetch, where it lived, imports the HTTP stack)."""

from __future__ import annotations

__all__ = ["format_size"]


def format_size(size: int) -> str:
    """1536 -> '1.5 KB'; sizes in messages are for people, not exact."""
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{size} bytes"
