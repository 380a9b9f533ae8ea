"""Whatever bytes arrive, the image and document loaders either accept them or refuse them cleanly.

A refusal is `ImageRejected` (images) or `ToolError` (documents), which the tools turn into a message the
model can act on; anything else would reach the client as an opaque crash. Inputs are random bytes, and
valid files of each accepted format with bytes flipped, cut off, or spliced in, which reach far deeper
into the decoders than noise does.
"""

from __future__ import annotations

import io
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.server.mcpserver.exceptions import ToolError
from PIL import Image

from tests import images
from tools import image_decode, imaging
from tools.attach_file import DOCUMENT_TYPES, check_content, document_type
from tools.sanitize import clean_text

# Small limits keep every example cheap: a mutated header may claim any size.
MAX_PIXELS = 4_000_000
MAX_FRAMES = 4
HANGUL_FILLERS = "\u115f\u1160\u3164\uffa0"  # letters to Unicode, but invisible (and removed)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _save(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def _seeds() -> list[bytes]:
    rgba = Image.new("RGBA", (24, 16), (10, 200, 30, 128))
    frames = [Image.new("RGB", (12, 12), (i * 60, 0, 0)) for i in range(3)]
    exif = Image.Exif()
    exif[0x0112] = 6
    return [
        images.png(20, 12),
        images.jpeg(24, 16),
        _save(Image.new("RGB", (24, 16), "blue"), "JPEG", exif=exif.tobytes(), icc_profile=b"\0" * 132),
        images.gif(3, (12, 12)),
        _save(rgba, "PNG"),
        _save(frames[0], "PNG", save_all=True, append_images=frames[1:]),  # APNG
        _save(rgba, "WEBP"),
        _save(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
        _save(Image.new("L", (16, 8), 90), "TIFF"),
        _save(Image.new("RGB", (16, 8), "red"), "TIFF", compression="tiff_deflate"),
        _save(Image.new("RGB", (8, 8), "red"), "BMP"),
    ]


SEEDS = _seeds()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid image with a few bytes changed, cut short, or with bytes inserted."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "truncate", "insert", "header"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if how == "flip" and data:
            data[position] = draw(st.integers(0, 255))
        elif how == "truncate":
            del data[position:]
        elif how == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif how == "header" and len(data) > 40:  # widths, heights, counts and offsets live up front
            spot = draw(st.integers(0, 40))
            data[spot] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]))
    return bytes(data)


def load_or_refuse(data: bytes) -> None:
    """What load_image does with the bytes: inspect the header, then decode the frames."""
    try:
        info = image_decode.inspect_image(data, max_pixels=MAX_PIXELS, max_frames=MAX_FRAMES)
        for mode in ("first", "all"):
            frames = imaging.load_frames(data, mode=mode, max_frames=MAX_FRAMES, max_pixels=MAX_PIXELS)
            assert 1 <= len(frames) <= MAX_FRAMES
    except image_decode.ImageRejected as refusal:
        assert str(refusal).strip()  # always says something
        return
    assert info.width * info.height <= MAX_PIXELS and info.format in image_decode.ALLOWED_FORMATS


def test_every_seed_loads() -> None:
    # Otherwise the mutations below start from files that were refused already.
    for seed in SEEDS:
        assert image_decode.inspect_image(seed, max_pixels=MAX_PIXELS, max_frames=MAX_FRAMES).width > 0
        assert imaging.load_frames(seed, mode="all", max_frames=MAX_FRAMES, max_pixels=MAX_PIXELS)


@FAST
@given(st.binary(max_size=2048))
def test_random_bytes_are_loaded_or_refused(data: bytes) -> None:
    load_or_refuse(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_damaged_images_are_loaded_or_refused(data: bytes) -> None:
    load_or_refuse(data)


@FAST
@given(st.sampled_from(SEEDS), st.data())
def test_a_cut_off_image_is_never_half_loaded(seed: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(1, len(seed) - 1))
    try:
        frames = imaging.load_frames(seed[:cut], mode="first", max_frames=1, max_pixels=MAX_PIXELS)
    except image_decode.ImageRejected:
        return
    # Accepted only when the cut removed nothing the picture needs (a trailer, padding): same pixels.
    with Image.open(io.BytesIO(frames[0])) as got, Image.open(io.BytesIO(seed)) as want:
        assert got.convert("RGBA").tobytes() == want.convert("RGBA").tobytes()


@FAST
@given(
    st.sampled_from(sorted(DOCUMENT_TYPES)),
    st.one_of(
        st.binary(max_size=512),
        st.text(max_size=200).map(str.encode),
        st.binary(max_size=256).map(lambda tail: b"%PDF-1.7\n" + tail),
    ),
)
def test_documents_are_accepted_or_refused(suffix: str, data: bytes) -> None:
    name = "doc" + suffix
    mime = document_type(name, None)
    try:
        check_content(name, mime, data)
    except ToolError as refusal:
        assert name in str(refusal)
        return
    if mime == "application/pdf":
        assert data.lstrip().startswith(b"%PDF-")
    else:
        assert "\x00" not in data.decode("utf-8-sig")


@FAST
@given(st.text(max_size=40), st.one_of(st.none(), st.text(max_size=40)))
def test_any_name_and_media_type_give_a_document_type_or_a_refusal(name: str, media_type: str | None) -> None:
    try:
        mime = document_type(name, media_type)
    except ToolError as refusal:
        assert "attach_file takes" in str(refusal)
        return
    assert mime in DOCUMENT_TYPES.values()


@FAST
@given(st.text())
def test_cleaned_text_is_stable_and_keeps_what_is_visible(text: str) -> None:
    cleaned = clean_text(text)
    assert clean_text(cleaned) == cleaned
    for char in cleaned:  # no control, format, surrogate or line-separator character survives
        kept = char in "\t\n\u200c\u200d" or 0xFE00 <= ord(char) <= 0xFE0F or 0xE0100 <= ord(char) <= 0xE01EF
        assert kept or unicodedata.category(char) not in ("Cc", "Cf", "Cs", "Zl", "Zp")
    visible = [c for c in text if c.isprintable() and c.isalnum() and c not in HANGUL_FILLERS]
    assert [c for c in cleaned if c.isalnum()] == visible


@pytest.mark.parametrize("seed", range(len(SEEDS)))
def test_each_seed_survives_a_flip_at_every_header_byte(seed: int) -> None:
    # Exhaustive where fuzzing is thin: the first 64 bytes hold the sizes and counts decoders trust.
    original = SEEDS[seed]
    for position in range(min(64, len(original))):
        for value in (0x00, 0xFF):
            data = bytearray(original)
            data[position] = value
            load_or_refuse(bytes(data))
