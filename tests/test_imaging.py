"""tools.imaging and tools.image_sizing: sizing rules, decoding, encoding, refusals."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import tempfile
import zlib
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tools import image_decode, image_mime, image_sizing, imaging
from tools.image_decode import ImageRejected
from tools.image_sizing import UNKNOWN, Detail, DetailNotSupported, rule_for, supported_details

LIMIT = 50_000_000


# The two halves of image_sizing.target that the sizing tests below check.
def target_size(width: int, height: int, *, detail: Detail, model: str) -> tuple[int, int]:
    return image_sizing.target(width, height, detail=detail, model=model).size


def image_tokens(width: int, height: int, *, detail: Detail, model: str) -> int:
    return image_sizing.target(width, height, detail=detail, model=model).tokens


def prepare(data: bytes, *, detail: Detail, model: str, max_pixels: int) -> imaging.Prepared:
    """imaging.prepare at the size the model works at, computed first as request.prepared_image does.
    The header is read here without a pixel limit, so prepare's own limit is what a test sees."""
    info = image_decode.inspect_image(data, max_pixels=2**62, max_frames=1)
    target = image_sizing.target(info.width, info.height, detail=detail, model=model)
    return imaging.prepare(data, target=target, max_pixels=max_pixels)


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def pixel(img: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = img.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@cache
def noisy_jpeg(width: int = 4000, height: int = 3000) -> bytes:
    noise = Image.merge("RGB", [Image.effect_noise((width, height), 80) for _ in range(3)])
    return encode(noise, "JPEG", quality=92)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a size but holds no pixel data: tests the limit without allocating."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def animated_gif(colors: list[tuple[int, int, int]], size: tuple[int, int] = (40, 30)) -> bytes:
    frames = [Image.new("RGB", size, color) for color in colors]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0)


# --- sizing: hand-checked against OpenAI's "Images and vision" guide ---------------------------

SIZING = [
    # model, detail, original size, size the model works at, tokens
    ("gpt-4o", "high", (1024, 1024), (768, 768), 765),  # guide: 4 tiles, 85 + 4 x 170
    ("gpt-4o", "high", (2048, 4096), (768, 1536), 1105),  # guide: 1024x2048 -> 768x1536, 6 tiles
    ("gpt-4o", "low", (4096, 8192), (256, 512), 85),  # low: 512 box, base tokens only
    ("gpt-4.1", "auto", (1024, 1024), (768, 768), 765),  # auto sizes like high on tile models
    ("gpt-4o-mini", "high", (1024, 1024), (768, 768), 2833 + 4 * 5667),
    ("o3", "high", (1024, 1024), (768, 768), 75 + 4 * 150),
    ("gpt-5", "high", (2048, 4096), (768, 1536), 70 + 6 * 140),
    ("gpt-5.4", "high", (1024, 1024), (1024, 1024), 1229),  # guide: ceil(1024 x 1.2)
    ("gpt-5.4", "high", (2048, 2048), (1600, 1600), 3000),  # guide: 2,500-patch budget
    ("gpt-5.4", "auto", (2048, 2048), (1600, 1600), 3000),  # gpt-5.4: auto = high
    ("gpt-5.4", "original", (2048, 2048), (2048, 2048), 4916),  # 4096 patches, within 10,000
    ("gpt-5.4-mini", "low", (4000, 3000), (2048, 1536), 3687),  # low: 2048 box, 3072 patches
    ("o4-mini", "high", (1800, 2400), (1056, 1408), 2498),  # guide: 1,536 budget -> 33x44 patches
    ("gpt-4.1-nano", "high", (1800, 2400), (1056, 1408), 3572),  # 1452 x 2.46
    ("gpt-4.1-mini", "high", (1024, 1024), (1024, 1024), 1659),  # 1024 x 1.62
    ("gpt-5.5", "auto", (8000, 6000), (3669, 2752), 11868),  # auto = original: 6000 px, 10,000 patches
    ("gpt-5.5", "low", (1024, 1024), (512, 512), 308),  # 256 patches x 1.2
    ("gpt-5.6-sol", "auto", (8000, 6000), (6400, 4800), 36000),  # 30,000 patches, the API's limit
    ("gpt-5.6-luna", "high", (2048, 2048), (1600, 1600), 3000),
    ("my-local-llava", "high", (4000, 3000), (2048, 1536), 3687),  # unknown: 2048 box
    ("my-local-llava", "auto", (4000, 3000), (2048, 1536), 3687),  # unknown auto: at most 2048 px a side
    ("my-local-llava", "original", (4000, 3000), (4000, 3000), 14100),  # unknown original: up to 30,000 patches
]


@pytest.mark.parametrize(("model", "detail", "size", "expected", "tokens"), SIZING)
def test_sizing_matches_the_published_rules(
    model: str, detail: Detail, size: tuple[int, int], expected: tuple[int, int], tokens: int
) -> None:
    assert target_size(*size, detail=detail, model=model) == expected
    assert image_tokens(*size, detail=detail, model=model) == tokens


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("gpt-4o-2024-08-06", "tile"),
        ("gpt-4o-mini-2024-07-18", "tile"),
        ("openai/gpt-4.1-mini", "patch"),
        ("gpt-5.4-nano", "patch"),
        ("o4-mini-2025-04-16", "patch"),
        ("gpt-5-chat-latest", "tile"),
        ("gpt-5.7", "unknown"),
        ("llava:13b", "unknown"),
    ],
)
def test_model_family_matches_names_with_dates_and_router_prefixes(model: str, family: str) -> None:
    assert image_sizing.model_family(model) == family


def test_original_detail_is_refused_for_models_without_it() -> None:
    assert "original" not in supported_details("gpt-4o")
    assert "original" in supported_details("gpt-5.4-mini")
    with pytest.raises(DetailNotSupported, match="auto, low, high"):
        target_size(1000, 1000, detail="original", model="gpt-4o")


MODELS = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-5",
    "gpt-5.1",
    "o3",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o4-mini",
    "gpt-5-mini",
    "gpt-5.2",
    "gpt-5.4",
    "gpt-5.5",
    "gpt-5.6-terra",
    "unknown-model",
]
sides = st.integers(min_value=1, max_value=40_000)
details = st.sampled_from(["auto", "low", "high", "original"])


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(MODELS), details, sides, sides)
def test_target_size_never_upscales_and_keeps_the_token_estimate(
    model: str, detail: Detail, width: int, height: int
) -> None:
    if detail not in supported_details(model):
        return
    target = target_size(width, height, detail=detail, model=model)
    assert 1 <= target[0] <= width and 1 <= target[1] <= height
    assert target_size(*target, detail=detail, model=model) == target  # OpenAI would not resize it again
    assert image_tokens(*target, detail=detail, model=model) == image_tokens(width, height, detail=detail, model=model)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(MODELS[:-1]), details, sides, sides)
def test_unknown_models_are_never_sized_smaller_than_a_known_one(
    model: str, detail: Detail, width: int, height: int
) -> None:
    assert rule_for("unknown-model") is UNKNOWN
    if detail not in supported_details(model):
        return
    known = target_size(width, height, detail=detail, model=model)
    # `auto` on an unknown model (a local VLM, mostly) is at most 2048 px a side; `original` is how to send more.
    asked: Detail = "original" if detail == "auto" else detail
    unknown = target_size(width, height, detail=asked, model="unknown-model")
    assert unknown[0] >= known[0] and unknown[1] >= known[1]


# --- prepare -----------------------------------------------------------------------------------


def test_prepare_sends_the_model_size_as_jpeg_with_the_same_tokens() -> None:
    prepared = prepare(noisy_jpeg(), detail="high", model="gpt-4o", max_pixels=LIMIT)
    assert (prepared.width, prepared.height, prepared.mime, prepared.tokens) == (1024, 768, "image/jpeg", 765)
    assert decode(prepared.data).size == (1024, 768)
    assert len(prepared.data) < len(noisy_jpeg()) / 10


def test_prepare_never_upscales_a_small_image() -> None:
    data = encode(Image.new("RGB", (300, 200), "green"), "PNG")
    prepared = prepare(data, detail="high", model="gpt-5.4", max_pixels=LIMIT)
    assert (prepared.width, prepared.height) == (300, 200)
    assert decode(prepared.data).size == (300, 200)


def test_prepare_passes_a_jpeg_of_the_right_size_through_unchanged() -> None:
    data = encode(Image.new("RGB", (640, 480), "navy"), "JPEG")
    assert prepare(data, detail="high", model="gpt-4o", max_pixels=LIMIT).data == data


def test_opaque_rgba_becomes_jpeg() -> None:
    data = encode(Image.new("RGBA", (64, 64), (10, 200, 30, 255)), "PNG")
    prepared = prepare(data, detail="high", model="gpt-4o", max_pixels=LIMIT)
    assert prepared.mime == "image/jpeg"
    assert decode(prepared.data).mode == "RGB"


def test_real_alpha_is_kept_in_png_or_webp() -> None:
    img = Image.new("RGBA", (1600, 1600), (255, 0, 0, 255))
    img.paste((0, 0, 0, 0), (0, 0, 800, 1600))  # left half transparent
    prepared = prepare(encode(img, "PNG"), detail="high", model="gpt-4o", max_pixels=LIMIT)
    assert prepared.mime in ("image/png", "image/webp")
    out = decode(prepared.data).convert("RGBA")
    assert out.size == (768, 768)
    assert pixel(out, (100, 384))[3] == 0
    red = pixel(out, (700, 384))
    assert red[3] == 255 and red[0] > 245 and max(red[1], red[2]) < 10  # lossy WebP may shift a level


def cut_out(img: Image.Image) -> bytes:
    """The image with a transparent rim, as a PNG."""
    rgba = img.convert("RGBA")
    alpha = Image.new("L", img.size, 0)
    alpha.paste(255, (img.width // 8, img.height // 8, img.width * 7 // 8, img.height * 7 // 8))
    rgba.putalpha(alpha)
    return encode(rgba, "PNG")


def hatching(size: tuple[int, int]) -> Image.Image:
    """Thin sharp lines, like a chart or a diagram: lossy WebP blurs them into more bytes than PNG needs."""
    img = Image.new("RGB", size, "white")
    for x in range(0, size[0], 6):
        img.paste((0, 0, 0), (x, 0, x + 1, size[1]))
    return img


@pytest.mark.parametrize(
    ("picture", "winner", "loser"),
    [
        (hatching((900, 600)), "image/png", "WEBP"),
        (Image.merge("RGB", [Image.effect_noise((900, 600), 60) for _ in range(3)]), "image/webp", "PNG"),
    ],
    ids=["diagram", "photo"],
)
def test_with_transparency_the_smaller_of_png_and_webp_is_sent(picture: Image.Image, winner: str, loser: str) -> None:
    data = cut_out(picture)
    prepared = prepare(data, detail="high", model="gpt-4o", max_pixels=LIMIT)
    assert prepared.mime == winner
    assert len(prepared.data) < len(encode(decode(data), loser, quality=85))
    out = decode(prepared.data).convert("RGBA")
    assert out.size == (900, 600)
    assert pixel(out, (10, 10))[3] == 0 and pixel(out, (450, 300))[3] == 255


def exif_rotated_jpeg(size: tuple[int, int], orientation: int) -> bytes:
    img = Image.new("RGB", size, (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, size[0] // 2, size[1]))  # left half blue as stored
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, "JPEG", exif=exif.tobytes(), quality=95)


def test_exif_orientation_is_applied_and_decides_the_size() -> None:
    data = exif_rotated_jpeg((2000, 1000), orientation=6)  # stored landscape, shown portrait
    info = image_decode.inspect_image(data, max_pixels=LIMIT, max_frames=1)
    assert (info.width, info.height) == (1000, 2000)
    prepared = prepare(data, detail="high", model="gpt-4o", max_pixels=LIMIT)
    assert (prepared.width, prepared.height) == (768, 1536)
    out = decode(prepared.data)
    assert out.size == (768, 1536)
    # Orientation 6 turns the image 90 degrees clockwise: the stored left half ends up on top.
    top, bottom = pixel(out, (384, 100)), pixel(out, (384, 1400))
    assert top[2] > 200 and top[0] < 50
    assert bottom[0] > 200 and bottom[2] < 50


def test_large_jpeg_is_decoded_in_draft_mode() -> None:
    scaled = image_decode.decode_scaled(noisy_jpeg(), size=(1024, 768), max_pixels=LIMIT)
    assert scaled.size == (2000, 1500)  # 1/2 scale is the smallest that still covers 1024x768
    assert image_decode.decode_scaled(noisy_jpeg(), size=(400, 300), max_pixels=LIMIT).size == (500, 375)


def test_draft_size_follows_the_displayed_orientation() -> None:
    data = exif_rotated_jpeg((4000, 3000), orientation=6)
    assert image_decode.decode_scaled(data, size=(768, 1024), max_pixels=LIMIT).size == (1500, 2000)


def test_cmyk_jpeg_becomes_rgb_with_its_colour() -> None:
    data = encode(Image.new("CMYK", (100, 100), (0, 255, 255, 0)), "JPEG")  # full magenta + yellow
    out = decode(prepare(data, detail="high", model="gpt-4o", max_pixels=LIMIT).data)
    red = pixel(out, (50, 50))
    assert out.mode == "RGB"
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_palette_images_keep_transparency_only_when_they_have_it() -> None:
    opaque = Image.new("RGB", (50, 50), "orange").convert("P")
    assert prepare(encode(opaque, "PNG"), detail="low", model="gpt-4o", max_pixels=LIMIT).mime == ("image/jpeg")
    clear = Image.new("P", (50, 50), 0)
    clear.putpalette([0, 0, 0, 255, 255, 255])
    clear.paste(1, (25, 0, 50, 50))
    data = encode(clear, "PNG", transparency=0)
    prepared = prepare(data, detail="low", model="gpt-4o", max_pixels=LIMIT)
    out = decode(prepared.data).convert("RGBA")
    assert pixel(out, (5, 5))[3] == 0 and pixel(out, (45, 5)) == (255, 255, 255, 255)


def test_16_bit_grayscale_is_scaled_not_clipped() -> None:
    img = Image.new("I;16", (256, 16))
    img.putdata([x * 257 for x in range(256)] * 16)  # 0 .. 65535 left to right
    out = decode(prepare(encode(img, "PNG"), detail="high", model="gpt-4o", max_pixels=LIMIT).data)
    assert out.mode == "L"
    left, middle, right = (out.getpixel((x, 8)) for x in (2, 128, 253))
    assert isinstance(left, int) and isinstance(middle, int) and isinstance(right, int)
    assert left < 10 and 110 < middle < 145 and right > 245


# --- inspection and refusals -------------------------------------------------------------------


def test_inspect_reports_format_size_frames_and_alpha() -> None:
    info = image_decode.inspect_image(encode(Image.new("LA", (30, 20)), "PNG"), max_pixels=LIMIT, max_frames=1)
    assert info == image_decode.ImageInfo("PNG", "image/png", 30, 20, 1, True)
    colors = [(i * 50, 0, 0) for i in range(5)]  # distinct: Pillow merges identical frames
    gif = image_decode.inspect_image(animated_gif(colors), max_pixels=LIMIT, max_frames=2)
    assert (gif.format, gif.mime, gif.frames) == ("GIF", "image/gif", 5)


def test_multi_picture_jpeg_counts_as_one_jpeg() -> None:
    main, preview = Image.new("RGB", (64, 48), "red"), Image.new("RGB", (64, 48), "blue")
    data = encode(main, "MPO", save_all=True, append_images=[preview])
    info = image_decode.inspect_image(data, max_pixels=LIMIT, max_frames=4)
    assert (info.format, info.frames) == ("JPEG", 1)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    ("size", "max_pixels", "limit_text"),
    [
        ((8000, 8000), LIMIT, "50.0 megapixels"),  # over our limit only
        ((10_000, 10_000), 90_000_000, "90.0 megapixels"),  # where Pillow alone would only warn
        ((20_000, 20_000), 200_000_000, "200.0 megapixels"),  # where Pillow alone would raise
    ],
)
def test_pixel_limit_is_checked_before_decoding(size: tuple[int, int], max_pixels: int, limit_text: str) -> None:
    with pytest.raises(ImageRejected, match=f"too large.*{limit_text}.*IMAGECHAT_MAX_PIXELS"):
        image_decode.inspect_image(png_header_only(*size), max_pixels=max_pixels, max_frames=1)


def test_the_configured_limit_may_exceed_pillows_default() -> None:
    # 10000 x 10000 is over Pillow's 89.5 MP default: a user who raised IMAGECHAT_MAX_PIXELS can load it.
    info = image_decode.inspect_image(png_header_only(10_000, 10_000), max_pixels=120_000_000, max_frames=1)
    assert (info.width, info.height) == (10_000, 10_000)


def test_pixel_limit_applies_to_prepare_and_load_frames() -> None:
    data = encode(Image.new("RGB", (200, 200)), "PNG")
    with pytest.raises(ImageRejected, match="too large"):
        prepare(data, detail="high", model="gpt-4o", max_pixels=10_000)
    with pytest.raises(ImageRejected, match="too large"):
        imaging.load_frames(data, mode="first", max_frames=1, max_pixels=10_000)


@pytest.mark.parametrize("fmt", ["PPM", "ICO", "PCX", "TGA"])
def test_formats_outside_the_allow_list_are_refused(fmt: str) -> None:
    data = encode(Image.new("RGB", (16, 16), "red"), fmt)
    with pytest.raises(ImageRejected, match="Not a supported image"):
        image_decode.inspect_image(data, max_pixels=LIMIT, max_frames=1)


def test_non_images_are_refused_with_what_to_do() -> None:
    with pytest.raises(ImageRejected, match="Convert it to PNG or JPEG"):
        image_decode.inspect_image(b"%PDF-1.7 not an image", max_pixels=LIMIT, max_frames=1)


def test_truncated_jpeg_is_refused() -> None:
    data = noisy_jpeg(800, 600)
    cut = data[: len(data) * 2 // 3]
    image_decode.inspect_image(cut, max_pixels=LIMIT, max_frames=1)  # the header alone looks fine
    for call in (
        lambda: image_decode.decode_check(cut, max_pixels=LIMIT),
        lambda: imaging.load_frames(cut, mode="first", max_frames=1, max_pixels=LIMIT),
        lambda: prepare(cut, detail="high", model="gpt-4o", max_pixels=LIMIT),
    ):
        with pytest.raises(ImageRejected, match="truncated"):
            call()


# --- frames ------------------------------------------------------------------------------------

COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def frame_color(data: bytes) -> tuple[int, ...]:
    return pixel(decode(data).convert("RGB"), (5, 5))


def test_still_image_frames_are_the_file_itself() -> None:
    data = encode(Image.new("RGB", (20, 20)), "PNG")
    for mode in ("first", "all"):
        frames = imaging.load_frames(data, mode=mode, max_frames=4, max_pixels=LIMIT)
        assert frames == [data]


def test_animated_gif_first_frame_and_all_frames() -> None:
    data = animated_gif(COLORS)
    first = imaging.load_frames(data, mode="first", max_frames=8, max_pixels=LIMIT)
    assert len(first) == 1 and first[0].startswith(b"\x89PNG")
    assert frame_color(first[0]) == COLORS[0]
    every = imaging.load_frames(data, mode="all", max_frames=8, max_pixels=LIMIT)
    assert [frame_color(frame) for frame in every] == COLORS


def test_long_animation_is_sampled_evenly_down_to_the_cap() -> None:
    colors = [(i * 25, 0, 255 - i * 25) for i in range(10)]
    frames = imaging.load_frames(animated_gif(colors), mode="all", max_frames=4, max_pixels=LIMIT)
    assert [frame_color(frame) for frame in frames] == [colors[0], colors[3], colors[6], colors[9]]


def test_animation_too_costly_to_sample_is_refused() -> None:
    data = animated_gif([(i, i, i) for i in range(10)], size=(100, 100))
    with pytest.raises(ImageRejected, match="frames='first'"):
        imaging.load_frames(data, mode="all", max_frames=2, max_pixels=20_000)


# --- thumbnail and sniffing --------------------------------------------------------------------


def test_thumbnail_of_a_noisy_photo_fits_the_budget() -> None:
    data, mime = imaging.thumbnail(noisy_jpeg(), max_bytes=100_000)
    assert mime == "image/jpeg" and len(data) <= 100_000
    assert max(decode(data).size) <= 1024


def test_thumbnail_keeps_transparency() -> None:
    img = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    img.paste((255, 0, 0, 255), (150, 0, 300, 300))
    data, mime = imaging.thumbnail(encode(img, "PNG"), max_bytes=50_000, max_side=100)
    out = decode(data).convert("RGBA")
    assert mime == "image/webp" and out.size == (100, 100)
    assert pixel(out, (10, 50))[3] == 0


def test_thumbnail_budget_too_small_for_any_image_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="too small") as caught:
        imaging.thumbnail(encode(Image.new("RGB", (64, 64), "red"), "PNG"), max_bytes=50)
    assert not isinstance(caught.value, ImageRejected)  # the caller's budget, not the image, is wrong


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [
        ("JPEG", "image/jpeg"),
        ("PNG", "image/png"),
        ("GIF", "image/gif"),
        ("WEBP", "image/webp"),
        ("BMP", "image/bmp"),
        ("TIFF", "image/tiff"),
        ("AVIF", "image/avif"),
    ],
)
def test_sniff_mime_from_magic_bytes(fmt: str, mime: str) -> None:
    assert image_mime.sniff_mime(encode(Image.new("RGB", (8, 8)), fmt)) == mime


def test_sniff_mime_of_non_images_is_none() -> None:
    assert image_mime.sniff_mime(b"hello world, this is text") is None
    assert image_mime.sniff_mime(b"") is None


# --- hostile bytes -----------------------------------------------------------------------------


@cache
def samples() -> list[bytes]:
    base = Image.new("RGB", (24, 16), "purple")
    out = [encode(base, fmt) for fmt in ("JPEG", "PNG", "WEBP", "BMP", "TIFF")]
    return [*out, animated_gif(COLORS, size=(12, 8))]


@st.composite
def damaged_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(samples())))
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


@pytest.mark.filterwarnings("ignore")  # Pillow warns about the corrupt metadata it skips
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=2048), damaged_images()))
def test_hostile_bytes_are_either_accepted_or_rejected_cleanly(data: bytes) -> None:
    for call in (
        lambda: image_decode.inspect_image(data, max_pixels=1_000_000, max_frames=4),
        lambda: imaging.load_frames(data, mode="all", max_frames=4, max_pixels=1_000_000),
    ):
        with contextlib.suppress(ImageRejected):
            call()


# -- encoding through an anonymous file (Pillow keeps the GIL for an encode into memory) -----------------


@pytest.mark.parametrize(("fmt", "mode"), [("JPEG", "RGB"), ("PNG", "RGBA"), ("WEBP", "RGBA")])
def test_an_image_encoded_through_an_anonymous_file_is_byte_for_byte_the_one_encoded_in_memory(
    fmt: str, mode: str
) -> None:
    img = Image.effect_noise((640, 480), 40).convert(mode)
    assert imaging._save(img, fmt, quality=85) == encode(img, fmt, quality=85)


def test_without_memory_files_or_temporary_files_images_are_still_prepared_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    photo = encode(Image.effect_noise((3000, 2000), 30).convert("RGB"), "JPEG", quality=90)
    expected = prepare(photo, detail="high", model="gpt-4o", max_pixels=LIMIT)

    def forbidden(*args: object) -> int:
        raise PermissionError("memfd_create is not allowed in this sandbox")

    monkeypatch.setattr(os, "memfd_create", forbidden, raising=False)
    with imaging.anonymous_file() as scratch:
        assert scratch.fileno() >= 0  # a temporary file instead
    assert prepare(photo, detail="high", model="gpt-4o", max_pixels=LIMIT) == expected

    def no_folder() -> object:
        raise FileNotFoundError("no temporary folder")

    monkeypatch.setattr(tempfile, "TemporaryFile", no_folder)
    assert prepare(photo, detail="high", model="gpt-4o", max_pixels=LIMIT) == expected  # encoded in memory
