"""Image bytes in, checked and right-sized image bytes out (Pillow).

Plain functions on `bytes`, safe to call from several worker threads at once: they
share no state and only read module constants. Every problem with the input is raised as
`ImageRejected`, whose message says what is wrong and what to do about it.

- `inspect_image` reads only the header: format allow-list and pixel limit, before any
  pixel is decoded.
- `load_frames` turns a file into the still images that are stored: the file itself for
  a still image, PNG frames for an animation (OpenAI refuses animated GIFs).
- `prepare` produces what is sent upstream: decoded at reduced scale where JPEG allows,
  EXIF-rotated, resized to the size the model works at (`tools.image_sizing`), converted
  to 8-bit sRGB, and encoded as JPEG, or PNG/WebP when it has real transparency.
- `thumbnail` makes a preview under a byte budget (Claude Desktop refuses images over 1 MiB).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from PIL import ExifTags, Image, ImageCms, ImageFile, UnidentifiedImageError

from tools.image_sizing import (
    Detail,
    DetailNotSupported,
    image_tokens,
    model_family,
    supported_details,
    target_size,
)

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = [
    "ALLOWED_FORMATS",
    "MAX_ANIMATION_FRAMES",
    "Detail",
    "DetailNotSupported",
    "ImageInfo",
    "ImageRejected",
    "Prepared",
    "decode_check",
    "decode_scaled",
    "image_tokens",
    "inspect_image",
    "load_frames",
    "model_family",
    "prepare",
    "sniff_mime",
    "supported_details",
    "target_size",
    "thumbnail",
]

ALLOWED_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF"})
_MIME = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "AVIF": "image/avif",
}
# Only these decoders are ever tried, so exotic formats (EPS runs Ghostscript) never are.
# Our limit (IMAGECHAT_MAX_PIXELS), checked from the header before any pixel is decoded, replaces Pillow's
# global one: Pillow's would silently cap everyone at 89.5 MP whatever the setting says, and only warns below 2x.
Image.MAX_IMAGE_PIXELS = None
_OPEN_FORMATS = tuple(sorted(ALLOWED_FORMATS))
# What Pillow raises on malformed input varies by plugin; all of it means "bad file".
_DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    OverflowError,
    MemoryError,
    Image.DecompressionBombError,
)
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_RETRY = "Re-export or re-download the file and load it again."
# frames="all" samples from start to end, and reaching a late GIF/APNG/WebP frame decodes every frame before
# it: past this many frames that is refused rather than done (a 3000-frame GIF is more often an attack than a
# clip). frames="first" decodes one frame whatever the length.
MAX_ANIMATION_FRAMES = 1000


class ImageRejected(ValueError):
    """The input cannot be used; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class ImageInfo:
    format: str  # Pillow format name, e.g. "JPEG" (a multi-picture JPEG reports "JPEG")
    mime: str
    width: int  # as displayed, i.e. after EXIF orientation
    height: int
    frames: int  # 1 for a still image; pages for a multi-page TIFF
    has_alpha: bool  # an alpha channel or transparent colour exists (it may be all opaque)


@dataclass(frozen=True)
class Prepared:
    data: bytes
    mime: str
    width: int
    height: int
    tokens: int


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


@contextmanager
def _decoding() -> Iterator[None]:
    try:
        yield
    except ImageRejected:
        raise
    except _DECODE_ERRORS as exc:
        raise ImageRejected(f"The image data is corrupt or truncated ({exc}). {_RETRY}") from exc


def _open(data: bytes, max_pixels: int) -> ImageFile.ImageFile:
    """Open the header only, enforcing the format allow-list and the pixel limit."""
    limit = _limit(max_pixels)
    try:
        img = Image.open(io.BytesIO(data), formats=_OPEN_FORMATS)
    except UnidentifiedImageError as exc:
        allowed = ", ".join(_OPEN_FORMATS)
        raise ImageRejected(f"Not a supported image (accepted formats: {allowed}). Convert it to PNG or JPEG.") from exc
    except Image.DecompressionBombError as exc:
        raise _too_large("its header declares a size far over the limit", limit) from exc
    if _format(img) not in ALLOWED_FORMATS:
        raise ImageRejected(f"Image format {img.format} is not accepted. Convert it to PNG or JPEG.")
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageRejected(f"The image has no pixels ({width}x{height}). {_RETRY}")
    if width * height > limit:
        raise _too_large(f"{width}x{height}", limit)
    return img


def _limit(max_pixels: int) -> int:
    return max_pixels


def _too_large(what: object, limit: int) -> ImageRejected:
    return ImageRejected(
        f"The image is too large ({what}); the limit is {limit / 1e6:.1f} megapixels "
        "per image (IMAGECHAT_MAX_PIXELS). Resize it below the limit and load it again."
    )


def _format(img: Image.Image) -> str:
    # A multi-picture JPEG (phone and camera photos with an embedded preview) is a JPEG
    # whose first picture is the photo.
    return "JPEG" if img.format == "MPO" else str(img.format)


def _frames(img: Image.Image) -> int:
    return 1 if img.format == "MPO" else int(getattr(img, "n_frames", 1))


def _orientation(img: Image.Image) -> int:
    # A PNG may keep EXIF after the pixel data; reading it would force a full decode, so
    # only EXIF found in the header counts there.
    if img.format == "PNG" and "exif" not in img.info:
        return 1
    value = img.getexif().get(ExifTags.Base.Orientation, 1)
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def inspect_image(data: bytes, *, max_pixels: int, max_frames: int) -> ImageInfo:
    """Check and describe an image from its header, without decoding pixels.

    `frames` reports the true frame count: `max_frames` limits nothing here because
    `load_frames` samples long animations down to its own cap.
    """
    with _decoding():
        img = _open(data, max_pixels)
        width, height = img.size
        if _orientation(img) in (5, 6, 7, 8):
            width, height = height, width
        fmt = _format(img)
        return ImageInfo(fmt, _MIME[fmt], width, height, _frames(img), _has_alpha(img))


def decode_check(data: bytes, *, max_pixels: int) -> None:
    """Decode the (first) image fully, so truncated or corrupt files are refused now.

    JPEGs decode at 1/8 scale: every byte is still entropy-decoded, so truncation is
    caught, at a fraction of the cost.
    """
    with _decoding():
        _decode(data, (1, 1), max_pixels)


def load_frames(data: bytes, *, mode: Literal["first", "all"], max_frames: int, max_pixels: int) -> list[bytes]:
    """The still images to store for a file.

    A still image is returned unchanged (after a full decode check). An animation gives
    its first frame, or with mode="all" up to `max_frames` frames sampled evenly from
    start to end, each as lossless PNG with the file's EXIF orientation applied.
    """
    if max_frames < 1:
        raise ValueError("max_frames must be at least 1")
    with _decoding():
        img = _open(data, max_pixels)
        count = _frames(img)
        if count == 1:
            decode_check(data, max_pixels=max_pixels)
            return [data]
        orientation = _orientation(img)
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
            k = min(count, max_frames)
            wanted = sorted({round(i * (count - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]
        out = []
        for index in wanted:
            img.seek(index)
            if img.size[0] * img.size[1] > _limit(max_pixels):  # TIFF pages each have their own size
                raise _too_large(f"frame {index} is {img.size[0]}x{img.size[1]}", _limit(max_pixels))
            out.append(_save(_upright(_normalize(img), orientation), "PNG"))
        return out


def _decode(data: bytes, size: tuple[int, int], max_pixels: int) -> tuple[ImageFile.ImageFile, int]:
    """The first image decoded (JPEG at reduced DCT scale), and its EXIF orientation."""
    img = _open(data, max_pixels)
    orientation = _orientation(img)
    if img.format in ("JPEG", "MPO"):
        stored = (size[1], size[0]) if orientation in (5, 6, 7, 8) else size
        img.draft(None, stored)  # keeps the mode; scales by 1/2, 1/4 or 1/8 while still >= stored
    img.load()
    return img, orientation


def _upright(img: Image.Image, orientation: int) -> Image.Image:
    return img.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else img


def decode_scaled(data: bytes, *, size: tuple[int, int], max_pixels: int) -> Image.Image:
    """Decode the first image, EXIF-rotated, at no less than `size` (displayed orientation).

    JPEGs are decoded through the DCT at the smallest 1/2, 1/4 or 1/8 scale that still
    covers `size`, which is several times cheaper than a full decode of a large photo.
    """
    with _decoding():
        img, orientation = _decode(data, size, max_pixels)
        return _upright(img, orientation)


def _to_8bit_gray(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit grayscale to 8 bits by scaling (Pillow's convert would clip at 255)."""
    as_float = img.convert("F")
    if img.mode.startswith("I;16"):
        top = 65535.0
    else:  # "I" or "F": no bit depth recorded, so scale by the values present
        low, high = (float(v) for v in as_float.getextrema())  # type: ignore[arg-type]
        top = 1.0 if low >= 0 and high <= 1.0 else max(high, 255.0)
    return as_float.point(lambda v: v * (255.0 / top)).convert("L")


def _normalize(img: Image.Image) -> Image.Image:
    """Convert to L, RGB, LA or RGBA in sRGB; drop an alpha channel that is fully opaque."""
    mode = img.mode
    icc = img.info.get("icc_profile")
    if mode.startswith("I") or mode == "F":
        img = _to_8bit_gray(img)
    elif mode in ("1", "L"):
        img = img.convert("L")
    elif mode in ("LA", "La"):
        img = img.convert("LA")
    elif mode in ("P", "PA"):
        img = img.convert("RGBA" if _has_alpha(img) else "RGB")
    elif mode in ("RGB", "RGBA", "CMYK") and icc:
        img = _to_srgb(img, icc)
    elif mode in ("RGBA", "RGBa"):
        img = img.convert("RGBA")
    elif mode != "RGB":  # CMYK, YCbCr, LAB, HSV, RGBX ...
        img = img.convert("RGB")
    # The pixels are sRGB now; a PNG encoder would otherwise re-attach the old profile.
    img.info.pop("icc_profile", None)
    if img.mode in ("RGBA", "LA") and img.getchannel("A").getextrema() == (255, 255):
        img = img.convert(img.mode[:-1])
    return img


def _to_srgb(img: Image.Image, icc: bytes) -> Image.Image:
    # The model reads pixel values as sRGB: a Display P3 photo or a CMYK print file looks
    # wrong unless converted through its embedded profile.
    out_mode = "RGBA" if img.mode == "RGBA" else "RGB"
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if img.mode != "CMYK" and "srgb" in ImageCms.getProfileDescription(source).lower():
            return img  # already sRGB
        srgb = ImageCms.createProfile("sRGB")
        converted = ImageCms.profileToProfile(img, source, srgb, outputMode=out_mode)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        converted = None  # unusable profile: plain conversion
    return converted if converted is not None else img.convert(out_mode)


def _save(img: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


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


# libwebp's method 2 came within 3% of method 4's size at two thirds of its time on photos with alpha.
_WEBP_METHOD = 2


def _encode(img: Image.Image, quality: int) -> tuple[bytes, str]:
    """JPEG when opaque; with real transparency, the smaller of WebP and PNG (PNG on a tie)."""
    if img.mode in ("RGBA", "LA"):
        webp = _save(img.convert("RGBA"), "WEBP", quality=quality, method=_WEBP_METHOD)
        png = _save_within(img, "PNG", len(webp))
        return (webp, "image/webp") if png is None else (png, "image/png")
    return _save(img, "JPEG", quality=quality, optimize=True), "image/jpeg"


def prepare(data: bytes, *, detail: Detail, model: str, max_pixels: int, quality: int = 85) -> Prepared:
    """The image as the model will look at it: right size, upright, compactly encoded.

    Never upscales. The token estimate of the result equals that of the original image,
    because OpenAI's own resizing leaves an image of the target size unchanged.
    Raises ImageRejected for bad input, DetailNotSupported when the model refuses `detail`.
    """
    info = inspect_image(data, max_pixels=max_pixels, max_frames=1)
    size = target_size(info.width, info.height, detail=detail, model=model)
    tokens = image_tokens(info.width, info.height, detail=detail, model=model)
    with _decoding():
        decoded, orientation = _decode(data, size, max_pixels)
        plain = decoded.format == "JPEG" and decoded.mode in ("RGB", "L") and orientation == 1
        if plain and "icc_profile" not in decoded.info and decoded.size == size == (info.width, info.height):
            return Prepared(data, "image/jpeg", *size, tokens)  # already what the model sees: no re-encode
        img = _upright(decoded, orientation)
        if img.mode not in ("L", "RGB", "RGBA", "LA", "CMYK"):  # e.g. palette, 16-bit: convert to resize well
            img = _normalize(img)
        if img.size != size:
            img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        img = _normalize(img)
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
    with _decoding():
        img = _normalize(decode_scaled(data, size=size, max_pixels=max_pixels))
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
