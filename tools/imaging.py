"""Image bytes in, checked and right-sized image bytes out (Pillow).

Plain functions on `bytes`, safe to call from several worker threads at once: they share no state but one
helper thread for half of a large resize (`tools.image_resize`). Every problem with the input is raised as
`ImageRejected`, whose message says what is wrong and what to do about it.

- `inspect_image` reads only the header: format allow-list and pixel limit, before any
  pixel is decoded.
- `load_frames` turns a file into the still images that are stored: the file itself for
  a still image, PNG frames for an animation (OpenAI refuses animated GIFs).
- `prepare` produces what is sent upstream: decoded at reduced scale where JPEG allows,
  EXIF-rotated, resized to the size the model works at (computed once by the caller with
  `tools.image_sizing.target`), converted to 8-bit sRGB, and encoded as JPEG, or PNG/WebP
  when it has real transparency.
- `thumbnail` makes a preview under a byte budget (Claude Desktop refuses images over 1 MiB).

Reading and decoding (`inspect_image`, `decode_scaled`, the sRGB conversion) live in `tools.image_decode`,
sizing in `tools.image_sizing`, MIME sniffing (without Pillow) in `tools.image_mime`.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Literal

from PIL import Image

from tools.image_decode import (
    ImageInfo,
    ImageRejected,
    decode_check,
    decode_first,
    decode_scaled,
    decoding,
    exif_orientation,
    frame_count,
    inspect_image,
    normalize,
    open_image,
    too_large,
    upright,
)
from tools.image_resize import REDUCING_GAP as REDUCING_GAP
from tools.image_resize import RESIZE_FILTER as RESIZE_FILTER
from tools.image_resize import resized
from tools.image_sizing import Target

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["MAX_ANIMATION_FRAMES", "Prepared", "load_frames", "prepare", "thumbnail"]

# frames="all" samples from start to end, and reaching a late GIF/APNG/WebP frame decodes every frame before
# it: past this many frames that is refused rather than done (a 3000-frame GIF is more often an attack than a
# clip). frames="first" decodes one frame whatever the length.
MAX_ANIMATION_FRAMES = 1000


@dataclass(frozen=True)
class Prepared:
    data: bytes
    mime: str
    width: int
    height: int
    tokens: int


def frame_indices(count: int, max_frames: int) -> list[int]:
    """Which frames of a `count`-frame animation frames='all' takes: up to `max_frames`, evenly from start to end."""
    k = min(count, max_frames)
    return sorted({round(i * (count - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]


def load_frames(data: bytes, *, mode: Literal["first", "all"], max_frames: int, max_pixels: int) -> list[bytes]:
    """The still images to store for a file.

    A still image is returned unchanged (after a full decode check). An animation gives
    its first frame, or with mode="all" up to `max_frames` frames sampled evenly from
    start to end, each as lossless PNG with the file's EXIF orientation applied.
    """
    if max_frames < 1:
        raise ValueError("max_frames must be at least 1")
    with decoding():
        img = open_image(data, max_pixels)
        count = frame_count(img)
        if count == 1:
            decode_check(data, max_pixels=max_pixels)
            return [data]
        orientation = exif_orientation(img)
        wanted = [0]
        if mode == "all":
            if count > MAX_ANIMATION_FRAMES:
                raise ImageRejected(
                    f"The animation has {count} frames; frames='all' samples animations of up to "
                    f"{MAX_ANIMATION_FRAMES} frames, since reaching a late frame means decoding every frame before "
                    "it. Load it with frames='first', or shorten it."
                )
            width, height = img.size
            # Reaching frame N decodes the frames before it (GIF, APNG): bound that work.
            if count * width * height > max_frames * max_pixels:
                raise ImageRejected(
                    f"The animation has too many frames to sample ({count} frames of {width}x{height}). "
                    "Load it with frames='first' or shorten it."
                )
            wanted = frame_indices(count, max_frames)
        out = []
        for index in wanted:
            img.seek(index)
            if img.size[0] * img.size[1] > max_pixels:  # TIFF pages each have their own size
                raise too_large(f"frame {index} is {img.size[0]}x{img.size[1]}", max_pixels)
            out.append(_save(upright(normalize(img), orientation), "PNG"))
        return out


def _save(img: Image.Image, fmt: str, **params: object) -> bytes:
    """`img` encoded as `fmt`, by way of an anonymous file.

    Pillow encodes into a file descriptor with the GIL released, but into a BytesIO while holding it: 2.4 ms for
    a 1152x768 JPEG during which no other thread of the server runs a line, the event loop (every other call)
    included. Measured side by side in benchmarks/bench_concurrency.py."""
    with anonymous_file() as scratch:
        img.save(scratch, fmt, **params)
        scratch.seek(0)
        return scratch.read()


def anonymous_file() -> IO[bytes]:
    """A file with no name, gone when closed: in memory on Linux (memfd), a temporary file elsewhere, and a
    BytesIO (encoded holding the GIL) when neither can be made."""
    if hasattr(os, "memfd_create"):
        try:
            return os.fdopen(os.memfd_create("imagechat-encode", os.MFD_CLOEXEC), "w+b")
        except OSError:  # a sandbox that forbids it
            pass
    try:
        return tempfile.TemporaryFile()
    except OSError:  # no temporary folder
        return io.BytesIO()


class _Oversize(Exception):
    """An encoder wrote more than the size it had to beat."""


class _CappedBuffer(io.BytesIO):
    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap

    def write(self, data: ReadableBuffer, /) -> int:
        if self.tell() + memoryview(data).nbytes > self.cap:
            raise _Oversize
        return super().write(data)


def _save_within(img: Image.Image, fmt: str, cap: int) -> bytes | None:
    """The encoded image if it is at most `cap` bytes, else None, stopping as soon as it is over.

    Pillow's encoders write as they go, so a losing candidate costs only the share of the image
    it took to exceed the cap (a photo's PNG loses to its WebP within the first few rows).
    """
    buffer = _CappedBuffer(cap)
    try:
        img.save(buffer, fmt)
    except _Oversize:
        return None
    return buffer.getvalue()


# EXIF orientations that swap width and height.
TURNED = frozenset({5, 6, 7, 8})
# Huffman optimisation saves about 5% of a prepared photo's bytes for more than twice the encode time (2.4 ms
# against 5.8 at 1152x768): the bytes are already a fortieth of ComfyUI's, the time is not free.
JPEG_OPTIMIZE = False

# libwebp's method 2 came within 3% of method 4's size at two thirds of its time on photos with alpha.
_WEBP_METHOD = 2


def _encode(img: Image.Image, quality: int) -> tuple[bytes, str]:
    """JPEG when opaque; with real transparency, the smaller of WebP and PNG (PNG on a tie)."""
    if img.mode in ("RGBA", "LA"):
        webp = _save(img.convert("RGBA"), "WEBP", quality=quality, method=_WEBP_METHOD)
        png = _save_within(img, "PNG", len(webp))
        return (webp, "image/webp") if png is None else (png, "image/png")
    return _save(img, "JPEG", quality=quality, optimize=JPEG_OPTIMIZE), "image/jpeg"


def prepare(
    data: bytes, *, target: Target, max_pixels: int, quality: int = 85, info: ImageInfo | None = None
) -> Prepared:
    """The image as the model will look at it: at `target`'s size, upright, compactly encoded.

    `target` is `image_sizing.target` of the image's displayed size; it is never larger, so nothing is
    upscaled. Its token estimate stays true, because OpenAI's own resizing leaves an image of the target
    size unchanged. Raises ImageRejected for bad input. `info` is `inspect_image` of these bytes, when the
    caller has read it already.
    """
    if info is None:  # a caller that inspected the header already passes what it found (opening it is 0.5 ms)
        info = inspect_image(data, max_pixels=max_pixels, max_frames=1)
    size, tokens = target.size, target.tokens
    with decoding():
        decoded, orientation = decode_first(data, size, max_pixels)
        plain = decoded.format == "JPEG" and decoded.mode in ("RGB", "L") and orientation == 1
        if plain and "icc_profile" not in decoded.info and decoded.size == size == (info.width, info.height):
            return Prepared(data, "image/jpeg", *size, tokens)  # already what the model sees: no re-encode
        img: Image.Image = decoded
        if img.mode not in ("L", "RGB", "RGBA", "LA", "CMYK"):  # e.g. palette, 16-bit: convert to resize well
            img = normalize(img)
        # Resized as stored, then turned: turning the small image is cheaper (phone photos are mostly stored
        # turned, EXIF orientation 6).
        stored = (size[1], size[0]) if orientation in TURNED else size
        if img.size != stored:
            img = resized(img, stored)  # the filter and its cost: tools/image_resize.py
        img = normalize(upright(img, orientation))
    encoded, mime = _encode(img, quality)
    return Prepared(encoded, mime, *size, tokens)


def thumbnail(
    data: bytes, *, max_bytes: int = 512_000, max_side: int = 1024, max_pixels: int = 100_000_000
) -> tuple[bytes, str]:
    """A preview (bytes, mime) no larger than `max_bytes`, at most `max_side` px on a side.

    Quality drops first, then the size, until it fits. JPEG, or WebP with transparency.
    """
    info = inspect_image(data, max_pixels=max_pixels, max_frames=1)
    scale = min(1.0, max_side / max(info.width, info.height))
    size = (max(1, round(info.width * scale)), max(1, round(info.height * scale)))
    with decoding():
        img = normalize(decode_scaled(data, size=size, max_pixels=max_pixels))
    img.thumbnail(size, Image.Resampling.LANCZOS)
    while True:
        for quality in (85, 70, 55, 40, 25):
            if img.mode in ("RGBA", "LA"):
                out, mime = _save(img.convert("RGBA"), "WEBP", quality=quality), "image/webp"
            else:
                out, mime = _save(img, "JPEG", quality=quality, optimize=True), "image/jpeg"
            if len(out) <= max_bytes:
                return out, mime
        if max(img.size) <= 16:
            raise ValueError(f"max_bytes={max_bytes} is too small for any preview image")
        smaller = (max(1, img.width * 3 // 4), max(1, img.height * 3 // 4))
        img = img.resize(smaller, Image.Resampling.LANCZOS)
