"""An image's MIME type from its first bytes, without Pillow (the server sniffs image resources with it)."""

from __future__ import annotations


def sniff_mime(data: bytes) -> str | None:
    """The image MIME type from the magic bytes (no decoding), or None."""
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if head.startswith(b"BM") and len(head) >= 14:
        return "image/bmp"
    if head[4:8] == b"ftyp":  # ISO-BMFF: AVIF when the major or a compatible brand says so
        box = data[: min(int.from_bytes(data[:4], "big"), 256)]
        brands = {box[i : i + 4] for i in range(8, len(box) - 3, 4)}
        if brands & {b"avif", b"avis"}:
            return "image/avif"
    return None
