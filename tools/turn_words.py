"""What a turn says when it cannot go on: stopped by the agent, over its deadline, or a store that cannot take it."""

from __future__ import annotations

CANCELLED = "Cancelled by chat(turn=N, cancel=true). Its images and files wait for the next turn."
TOO_LONG = (
    "The answer took longer than {limit:g} s in all (IMAGECHAT_TURN_TIMEOUT), so it was stopped. Its images and "
    "files wait for the next turn: ask again (a faster model or a lower reasoning_effort answers sooner), or raise "
    "IMAGECHAT_TURN_TIMEOUT."
)
INTERRUPTED = "The server stopped while this answer was streaming, so it was lost. Ask again."
REPLAYED = "The upstream no longer had the previous response; the history was replayed."
UNEXPECTED = "The turn failed unexpectedly; the server log has the details. Try again."
NOT_WRITABLE = (
    "The conversation cannot be stored ({reason}), so the model was not asked and nothing was billed. Free space "
    "in the server's state folder, or move it with IMAGECHAT_STATE_DIR, then ask again."
)
NOT_STORED = (
    "The answer could not be stored ({reason}): it is only in this reply, the conversation does not hold this turn "
    "and its images and files still wait. Free space in the server's state folder (IMAGECHAT_STATE_DIR)."
)


def reason(exc: BaseException) -> str:
    """What went wrong with the store, in a few words (an OSError's strerror, sqlite's message)."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
