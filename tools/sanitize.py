"""Text from outside (model output, file names) made safe to hand back to the calling model.

Invisible characters are how prompt injections hide: Unicode tag characters spell out ASCII that a
model reads but a person never sees ("ASCII smuggling"), bidirectional overrides make text display in
a different order than it is read ("Trojan Source"), and runs of zero-width characters or variation
selectors carry hidden payloads. `clean_text` removes them and keeps everything a reader can see.

Removed:
- control characters (C0, DEL, C1) except tab and newline; a carriage return becomes a newline, and so
  do the line and paragraph separators U+2028/U+2029;
- every format character (category Cf): zero-width space U+200B, the bidi marks, embeddings, overrides
  and isolates (U+200E/F, U+202A-202E, U+2066-2069, U+061C), word joiner and invisible operators
  (U+2060-2064), the byte order mark U+FEFF, soft hyphen U+00AD, interlinear annotations, ...;
- every other default-ignorable code point: tag characters U+E0000-E007F (so a subdivision flag such
  as England's shows as a plain black flag), Hangul fillers, the combining grapheme joiner, Mongolian
  variation selectors, unassigned U+E0000-E0FFF;
- lone surrogates (they cannot even be encoded as UTF-8).

Kept, because real text needs them:
- ZWJ U+200D and ZWNJ U+200C between two visible characters (emoji sequences such as a technologist
  emoji, Persian and Indic spelling), one at a time; a joiner next to a space, another joiner or the
  start or end of the text is removed;
- one variation selector (U+FE00-FE0F, U+E0100-E01EF) directly after a visible character (the emoji
  presentation selector U+FE0F, CJK ideographic variants); any further selector is removed, which is
  what stops selector runs from carrying data;
- all visible characters, spaces of every width, combining marks, private-use and not yet assigned
  characters (newer emoji are unassigned to older Python versions).
"""

from __future__ import annotations

import bisect
import re
import unicodedata

__all__ = ["clean_text", "removed", "removed_note"]

_ZWNJ, _ZWJ = "\u200c", "\u200d"
_JOINERS = frozenset({_ZWNJ, _ZWJ})
_SELECTORS = ((0xFE00, 0xFE0F), (0xE0100, 0xE01EF))
# Default_Ignorable_Code_Point (Unicode DerivedCoreProperties), as inclusive ranges.
_IGNORABLE = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_STARTS = [start for start, _ in _IGNORABLE]
# Default-ignorable characters that str.isprintable() still calls printable (letters and marks).
_PRINTABLE_IGNORABLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180d\u180f\u3164\ufe00-\ufe0f\uffa0\U000e0100-\U000e01ef]"
)
_LINE_BREAKS = frozenset({"\r", "\u2028", "\u2029"})


def clean_text(text: str) -> str:
    """`text` without the invisible and bidirectional control characters listed in the module docstring."""
    if _PRINTABLE_IGNORABLE.search(text) is None and text.replace("\n", "").replace("\t", "").isprintable():
        return text  # the common case: nothing invisible, nothing to rebuild
    out: list[str] = []
    for index, char in enumerate(text):
        if char in _LINE_BREAKS:
            if not (char == "\r" and text[index + 1 : index + 2] == "\n"):
                out.append("\n")
        elif char in _JOINERS:
            if out and _visible(out[-1], selectors_ok=True) and _visible(text[index + 1 : index + 2]):
                out.append(char)
        elif _is_selector(char):
            if out and _visible(out[-1]):
                out.append(char)
        elif char in "\t\n" or not _removed(char):
            out.append(char)
    return "".join(out)


def _removed(char: str) -> bool:
    if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
        return True
    code = ord(char)
    slot = bisect.bisect_right(_STARTS, code) - 1
    return slot >= 0 and code <= _IGNORABLE[slot][1]


def _is_selector(char: str) -> bool:
    code = ord(char)
    return any(start <= code <= end for start, end in _SELECTORS)


def _visible(char: str, *, selectors_ok: bool = False) -> bool:
    """A character a joiner or selector may attach to: shown, not a space, not itself a joiner."""
    if not char or char.isspace() or char in _JOINERS:
        return False
    if _is_selector(char):
        return selectors_ok
    return not _removed(char)


def removed(text: str) -> dict[str, int]:
    """What `clean_text` removes from `text`: each character as "U+XXXX NAME", with how often. Line breaks that
    become a newline are not counted: the text still breaks there."""
    counts: dict[str, int] = {}
    kept, at = clean_text(text), 0  # clean_text only removes and turns line breaks into newlines: walk both
    for index, char in enumerate(text):
        if char in _LINE_BREAKS:
            if kept[at : at + 1] == "\n" and not (char == "\r" and text[index + 1 : index + 2] == "\n"):
                at += 1
        elif kept[at : at + 1] == char:
            at += 1
        else:
            label = f"U+{ord(char):04X} {unicodedata.name(char, 'unnamed')}"
            counts[label] = counts.get(label, 0) + 1
    return counts


def removed_note(text: str, what: str = "the prompt") -> str | None:
    """A note saying which hidden characters were removed from `text`, or None when none were."""
    found = removed(text)
    if not found:
        return None
    listed = [f"{label} x{count}" if count > 1 else label for label, count in list(found.items())[:8]]
    more = f" and {len(found) - 8} more kinds" if len(found) > 8 else ""
    total = sum(found.values())
    counted = "1 hidden character was" if total == 1 else f"{total} hidden characters were"
    return (
        f"{counted} removed from {what} before it was sent (ComfyUI sends prompts verbatim): {', '.join(listed)}{more}."
    )
