"""Reading image files with Pillow: header checks (format, pixel limit), decoding, conversion to 8-bit sRGB.

The building blocks `tools.imaging` loads, prepares and previews images with. Every problem with the
input is raised as `ImageRejected` inside `decoding()`. Every file is opened through `open_image`, which first
walks its structure (`tools.image_structure`: hostile block counts are refused before Pillow parses them), then
hands Pillow a `GuardedBytes`, whose reads stop a decode at its deadline or when its caller is gone
(`tools.image_guard`).
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import ExifTags, Image, ImageCms, ImageFile, UnidentifiedImageError, _imaging

from tools.image_guard import GuardedBytes, check_current, structure_of
from tools.image_structure import ImageRejected as ImageRejected  # defined without Pillow; its home for callers

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
# Pillow frees an image's memory blocks as soon as the image is gone, so the next image's pixels land on fresh
# pages, each faulted in by the kernel: about 3,300 faults and 4 ms of system time in every preparation of the
# benchmark photo on a virtual machine (2.4 us a fault). Keeping up to four freed blocks for the next image
# brings that to some 70 faults and nothing measurable. Pillow's blocks are 16 MB at most, so at most 64 MB stay
# held; PILLOW_BLOCKS_MAX, Pillow's own setting, decides instead when it is set.
RETAINED_BLOCKS = 4
if "PILLOW_BLOCKS_MAX" not in os.environ:
    _imaging.set_blocks_max(RETAINED_BLOCKS)
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
# The frame or page count the structure walk found, kept on the opened image: Pillow's own count seeks through
# every frame, and for a TIFF compares each page with every page before it.
_COUNTED_FRAMES = "imagechat_counted_frames"


@dataclass(frozen=True)
class ImageInfo:
    format: str  # Pillow format name, e.g. "JPEG" (a multi-picture JPEG reports "JPEG")
    mime: str
    width: int  # as displayed, i.e. after EXIF orientation
    height: int
    frames: int  # 1 for a still image; pages for a multi-page TIFF
    has_alpha: bool  # an alpha channel or transparent colour exists (it may be all opaque)


@contextmanager
def decoding() -> Iterator[None]:
    """Turns whatever Pillow raises on malformed input into ImageRejected."""
    try:
        yield
    except ImageRejected:
        raise
    except _DECODE_ERRORS as exc:
        raise ImageRejected(f"The image data is corrupt or truncated ({exc}). {_RETRY}") from exc


def open_image(data: bytes, max_pixels: int) -> ImageFile.ImageFile:
    """Open the header only, enforcing the structure limits, the format allow-list and the pixel limit."""
    structure = structure_of(data)
    try:
        img = Image.open(GuardedBytes(data), formats=_OPEN_FORMATS)
    except UnidentifiedImageError as exc:
        allowed = ", ".join(_OPEN_FORMATS)
        raise ImageRejected(f"Not a supported image (accepted formats: {allowed}). Convert it to PNG or JPEG.") from exc
    except Image.DecompressionBombError as exc:
        raise too_large("its header declares a size far over the limit", max_pixels) from exc
    if _format(img) not in ALLOWED_FORMATS:
        raise ImageRejected(f"Image format {img.format} is not accepted. Convert it to PNG or JPEG.")
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageRejected(f"The image has no pixels ({width}x{height}). {_RETRY}")
    if width * height > max_pixels:
        raise too_large(f"{width}x{height}", max_pixels)
    if structure.frames is not None:
        setattr(img, _COUNTED_FRAMES, structure.frames)
    return img


def decoded_pixels(data: bytes, *, max_pixels: int) -> int:
    """The pixels a decode of the (first) image holds, from the header: what the pixel budget admits by."""
    with decoding():
        width, height = open_image(data, max_pixels).size
        return width * height


def too_large(what: object, limit: int) -> ImageRejected:
    return ImageRejected(
        f"The image is too large ({what}); the limit is {limit / 1e6:.1f} megapixels "
        "per image (IMAGECHAT_MAX_PIXELS). Resize it below the limit and load it again."
    )


def _format(img: Image.Image) -> str:
    # A multi-picture JPEG (phone and camera photos with an embedded preview) is a JPEG
    # whose first picture is the photo.
    return "JPEG" if img.format == "MPO" else str(img.format)


def frame_count(img: Image.Image) -> int:
    if img.format == "MPO":
        return 1
    counted = getattr(img, _COUNTED_FRAMES, None)
    return counted if isinstance(counted, int) else int(getattr(img, "n_frames", 1))


def exif_orientation(img: Image.Image) -> int:
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
    with decoding():
        img = open_image(data, max_pixels)
        width, height = img.size
        if exif_orientation(img) in (5, 6, 7, 8):
            width, height = height, width
        fmt = _format(img)
        return ImageInfo(fmt, _MIME[fmt], width, height, frame_count(img), _has_alpha(img))


def decode_check(data: bytes, *, max_pixels: int) -> None:
    """Decode the (first) image fully, so truncated or corrupt files are refused now.

    JPEGs decode at 1/8 scale: every byte is still entropy-decoded, so truncation is
    caught, at a fraction of the cost.
    """
    with decoding():
        decode_first(data, (1, 1), max_pixels)


def decode_first(data: bytes, size: tuple[int, int], max_pixels: int) -> tuple[ImageFile.ImageFile, int]:
    """The first image decoded (JPEG at reduced DCT scale), and its EXIF orientation."""
    img = open_image(data, max_pixels)
    orientation = exif_orientation(img)
    if img.format in ("JPEG", "MPO"):
        stored = (size[1], size[0]) if orientation in (5, 6, 7, 8) else size
        img.draft(None, stored)  # keeps the mode; scales by 1/2, 1/4 or 1/8 while still >= stored
    img.load()
    return img, orientation


def upright(img: Image.Image, orientation: int) -> Image.Image:
    return img.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else img


def decode_scaled(data: bytes, *, size: tuple[int, int], max_pixels: int) -> Image.Image:
    """Decode the first image, EXIF-rotated, at no less than `size` (displayed orientation).

    JPEGs are decoded through the DCT at the smallest 1/2, 1/4 or 1/8 scale that still
    covers `size`, which is several times cheaper than a full decode of a large photo.
    """
    with decoding():
        img, orientation = decode_first(data, size, max_pixels)
        return upright(img, orientation)


def _to_8bit_gray(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit grayscale to 8 bits by scaling (Pillow's convert would clip at 255)."""
    as_float = img.convert("F")
    if img.mode.startswith("I;16"):
        top = 65535.0
    else:  # "I" or "F": no bit depth recorded, so scale by the values present
        low, high = (float(v) for v in as_float.getextrema())  # type: ignore[arg-type]
        top = 1.0 if low >= 0 and high <= 1.0 else max(high, 255.0)
    return as_float.point(lambda v: v * (255.0 / top)).convert("L")


def normalize(img: Image.Image) -> Image.Image:
    """Convert to L, RGB, LA or RGBA in sRGB; drop an alpha channel that is fully opaque."""
    check_current()  # a checkpoint between frames: WebP and AVIF frames decode in C without reading the file
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
