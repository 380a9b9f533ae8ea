"""Hostile image files built byte by byte: small in bytes, expensive in structure.

Each is structured exactly like an attack the adversarial pass found (issue 12): a TIFF whose pages are a long
chain of 1x1 IFDs, a PNG padded with empty private chunks, a JPEG with a run of empty APP segments, a GIF of
many 1x1 frames. `count` sets how many; the attack used millions, the tests use enough to be over the limits.
`noise` makes the opposite: an honest file that is slow to decode, for stopping a decode under way.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def noise(width: int, height: int, fmt: str, **params: object) -> bytes:
    """Random pixels: a valid file that hardly compresses, so decoding it takes many reads of 64 KB."""
    import random

    img = Image.frombytes("RGB", (width, height), random.Random(width * height).randbytes(width * height * 3))
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def _png_chunk(kind: bytes, body: bytes = b"") -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with_chunks(count: int, *, size: tuple[int, int] = (1, 1)) -> bytes:
    """A valid PNG with `count` empty private ancillary chunks ("prVt") between its header and its pixels."""
    width, height = size
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    pixels = _png_chunk(b"IDAT", zlib.compress(bytes(height * (width + 1))))
    return b"\x89PNG\r\n\x1a\n" + header + _png_chunk(b"prVt") * count + pixels + _png_chunk(b"IEND")


def flat_png(width: int, height: int) -> bytes:
    """A complete PNG of one colour, compressed to almost nothing: big in pixels, small in bytes."""
    row = bytes(width + 1)  # filter byte + gray pixels
    body = zlib.compressobj(9)
    data = b"".join(body.compress(row) for _ in range(height)) + body.flush()
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND")


def jpeg_with_segments(count: int) -> bytes:
    """A valid 8x8 JPEG with `count` empty APP15 segments after its start-of-image marker."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 120, 200)).save(buffer, "JPEG")
    data = buffer.getvalue()
    return data[:2] + b"\xff\xef\x00\x02" * count + data[2:]


def gif_with_frames(count: int) -> bytes:
    """A valid GIF of `count` 1x1 frames, each a graphic-control block and an image of one LZW code run."""
    head = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    frame = (
        b"\x21\xf9\x04\x04\x01\x00\x00\x00"  # graphic control: 1/100 s, do not dispose
        + b"\x2c"
        + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
        + b"\x02\x02\x44\x01\x00"  # LZW minimum code size 2, one sub-block: clear, pixel 0, end
    )
    return head + loop + frame * count + b"\x3b"


def tiff_with_pages(count: int) -> bytes:
    """A valid little-endian TIFF whose IFD chain holds `count` uncompressed 1x1 gray pages."""
    entries = 8
    ifd_size = 2 + 12 * entries + 4
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))
    for index in range(count):
        start = 8 + index * (ifd_size + 2)
        pixel = start + ifd_size
        following = start + ifd_size + 2 if index + 1 < count else 0
        tags = (
            (256, 3, 1, 1),  # ImageWidth
            (257, 3, 1, 1),  # ImageLength
            (258, 3, 1, 8),  # BitsPerSample
            (259, 3, 1, 1),  # Compression: none
            (262, 3, 1, 1),  # Photometric: black is zero
            (273, 4, 1, pixel),  # StripOffsets
            (278, 3, 1, 1),  # RowsPerStrip
            (279, 4, 1, 1),  # StripByteCounts
        )
        out += struct.pack("<H", entries)
        for tag, kind, number, value in tags:
            packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
            out += struct.pack("<HHI", tag, kind, number) + packed
        out += struct.pack("<I", following) + b"\x80\x00"
    return bytes(out)
