"""One linear pass over an image's container structure, refusing counts no real image has.

Pillow parses PNG chunks, JPEG segments, GIF blocks and TIFF directories in Python, one at a time, and some of it
more than once (counting TIFF pages is quadratic): a file of a few megabytes made of millions of empty blocks
holds a worker for minutes. This walk touches each block once, in a plain loop over the bytes, and stops at the
first count over its limit, before Pillow sees the file. It never refuses a file for being malformed (it stops
walking where the structure ends or breaks, and leaves the verdict to the decoder): only for being too many.

No Pillow here: `tools.image_guard` and the server's start-up import this.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

# Frames of an animation or pages of a TIFF read from one file. frames="all" samples at most
# `imaging.MAX_ANIMATION_FRAMES` of them; this bounds what is parsed to count them at all.
MAX_FRAMES = 10_000
# PNG: metadata chunks (text, colour, private ones); real files have a handful. Image data chunks (IDAT, and
# APNG's fdAT and fcTL): a 50 MB file cut into libpng's 8 KB chunks has about 6,400.
MAX_PNG_METADATA_CHUNKS = 1_000
MAX_PNG_DATA_CHUNKS = 50_000
# JPEG segments before the first scan (what Pillow parses in Python): an ICC profile can take 255 APP2 segments,
# a camera adds a dozen more.
MAX_JPEG_SEGMENTS = 1_000
# GIF: extension blocks (about two a frame at most in real files) and data sub-blocks. Encoders fill sub-blocks
# to 255 bytes, so a real GIF has about one per 255 bytes plus a few per frame: a 50 MB GIF about 200,000. Allowed:
# one per 128 bytes, plus four per frame of the longest animation (1-byte sub-blocks make the walk itself slow).
MAX_GIF_EXTENSIONS = 2 * MAX_FRAMES + 100
GIF_SUB_BLOCKS_PER_FILE = 4 * MAX_FRAMES
GIF_BYTES_PER_SUB_BLOCK = 128

_REEXPORT = "Re-export it as an ordinary PNG or JPEG (open and save it in any image editor) and load it again."


class ImageRejected(ValueError):
    """The input cannot be used; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class Structure:
    """What the walk counted. `frames` is None where the walk does not count them (Pillow does it cheaply)."""

    frames: int | None = None


def too_many(what: str, limit: int, real: str) -> ImageRejected:
    return ImageRejected(
        f"The file holds more than {limit:,} {what}; {real}, so it is malformed or built to be slow to read, and "
        f"was refused before decoding. {_REEXPORT}"
    )


def check_structure(data: bytes) -> Structure:
    """Walk the container and refuse it if a count is over its limit; what was counted on the way."""
    for magic, walk in _WALKS:
        if data.startswith(magic):
            return walk(data)
    return Structure()


def _png(data: bytes) -> Structure:
    pos, metadata, chunks, frames = 8, 0, 0, 0
    end = len(data)
    while pos + 8 <= end:
        length, kind = struct.unpack_from(">I4s", data, pos)
        pos += 12 + length
        if kind in (b"IDAT", b"fdAT", b"fcTL"):
            chunks += 1
            frames += kind == b"fcTL"
            if chunks > MAX_PNG_DATA_CHUNKS:
                raise too_many("PNG image data chunks", MAX_PNG_DATA_CHUNKS, "an encoder writes a few thousand")
            if frames > MAX_FRAMES:
                raise too_many("animation frames", MAX_FRAMES, "a long real animation has a few thousand")
        elif kind == b"IEND":
            break
        else:
            metadata += 1
            if metadata > MAX_PNG_METADATA_CHUNKS:
                raise too_many("PNG metadata chunks", MAX_PNG_METADATA_CHUNKS, "a real image has a handful")
    return Structure()


def _jpeg(data: bytes) -> Structure:
    pos, segments, end = 2, 0, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            break  # not a marker: the decoder will say what is wrong
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or the first scan: libjpeg reads the rest in C
            break
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise too_many("JPEG segments before the image data", MAX_JPEG_SEGMENTS, "a real photo has a few dozen")
        pos += 2 + (data[pos + 2] << 8 | data[pos + 3])
    return Structure(frames=1)


def _gif(data: bytes) -> Structure:
    end = len(data)
    if end < 13:
        return Structure()
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    frames = extensions = blocks = 0
    most_blocks = GIF_SUB_BLOCKS_PER_FILE + end // GIF_BYTES_PER_SUB_BLOCK
    while pos < end:
        introducer = data[pos]
        if introducer == 0x21:  # extension: label, then sub-blocks
            extensions += 1
            if extensions > MAX_GIF_EXTENSIONS:
                raise too_many("GIF extension blocks", MAX_GIF_EXTENSIONS, "a real animation has one or two a frame")
            pos += 2
        elif introducer == 0x2C:  # image: descriptor, optional colour table, LZW code size, sub-blocks
            frames += 1
            if frames > MAX_FRAMES:
                raise too_many("animation frames", MAX_FRAMES, "a long real animation has a few thousand")
            if pos + 10 > end:
                break
            local = data[pos + 9]
            pos += 11 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
        else:  # the trailer (0x3B), or something the decoder will refuse
            break
        pos, blocks = _skip_sub_blocks(data, pos, blocks, most_blocks)
    return Structure(frames=max(frames, 1))


def _skip_sub_blocks(data: bytes, pos: int, blocks: int, most: int) -> tuple[int, int]:
    end = len(data)
    while pos < end:
        size = data[pos]
        pos += 1 + size
        if size == 0:
            break
        blocks += 1
        if blocks > most:
            raise too_many(
                "GIF data blocks", most, f"a real GIF of {end:,} bytes has about {end // 255 + 1:,} (255 bytes each)"
            )
    return pos, blocks


def _tiff(data: bytes) -> Structure:
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack_from(order + "H", data, 2)[0] == 43
    # Classic TIFF: 2-byte entry counts, 12-byte entries, 4-byte offsets; BigTIFF: 8, 20 and 8.
    count_format, entry_size, offset_format = ("Q", 20, "Q") if big else ("H", 12, "I")
    count_size, offset_size = struct.calcsize(count_format), struct.calcsize(offset_format)
    first = 8 if big else 4
    if len(data) < first + offset_size:
        return Structure()
    offset = struct.unpack_from(order + offset_format, data, first)[0]
    seen: set[int] = set()
    while offset > 0 and offset + count_size <= len(data) and offset not in seen:  # a loop ends the chain
        seen.add(offset)
        if len(seen) > MAX_FRAMES:
            raise too_many("TIFF pages", MAX_FRAMES, "a long scanned document has a few hundred")
        entries = struct.unpack_from(order + count_format, data, offset)[0]
        following = offset + count_size + entries * entry_size
        if following + offset_size > len(data):
            break
        offset = struct.unpack_from(order + offset_format, data, following)[0]
    return Structure(frames=max(len(seen), 1))


def _webp(data: bytes) -> Structure:
    if data[8:12] != b"WEBP":
        return Structure()
    pos, frames, chunks, end = 12, 0, 0, len(data)
    while pos + 8 <= end:
        kind, size = struct.unpack_from("<4sI", data, pos)
        pos += 8 + size + (size & 1)
        chunks += 1
        frames += kind == b"ANMF"
        if frames > MAX_FRAMES:
            raise too_many("animation frames", MAX_FRAMES, "a long real animation has a few thousand")
        if chunks > MAX_FRAMES + MAX_PNG_METADATA_CHUNKS:
            raise too_many("WebP chunks", MAX_FRAMES + MAX_PNG_METADATA_CHUNKS, "a real image has a handful")
    return Structure()


_WALKS: tuple[tuple[bytes, Callable[[bytes], Structure]], ...] = (
    (b"\x89PNG\r\n\x1a\n", _png),
    (b"\xff\xd8", _jpeg),
    (b"GIF87a", _gif),
    (b"GIF89a", _gif),
    (b"II*\x00", _tiff),
    (b"MM\x00*", _tiff),
    (b"II+\x00", _tiff),
    (b"MM\x00+", _tiff),
    (b"RIFF", _webp),
)
