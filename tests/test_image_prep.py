"""Images as they reach the upstream: sized for the model and detail, upright, compact, cached, in order."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from server.settings import Settings
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream
from tests.helpers import call, decoded_image, user_content
from tools import image_sizing, imaging
from tools.image_sizing import Detail

# The model families, plus a name no rule knows (a local OpenAI-compatible server).
MODELS = ("gpt-4.1-mini", "gpt-4o", "gpt-5", "gpt-5.4", "my-local-llava")


def image_tokens(width: int, height: int, *, detail: Detail, model: str) -> int:
    return image_sizing.target(width, height, detail=detail, model=model).tokens


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(models=MODELS) as fake:
        yield fake


def encode(img: Image.Image, fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def photo(width: int, height: int) -> Image.Image:
    """Noise over a two-colour split, so it compresses like a photo and shows which side is which."""
    noise = Image.effect_noise((width, height), 20).convert("RGB")
    base = Image.new("RGB", (width, height), (220, 40, 40))
    base.paste((40, 40, 220), (0, 0, width // 2, height))  # left half blue
    return Image.blend(base, noise, 0.1)


def save(folder: Path, name: str, data: bytes) -> str:
    (folder / name).write_bytes(data)
    return str(folder / name)


def sent_images(upstream: FakeUpstream, request: int = -1) -> list[tuple[str, Image.Image, dict[str, Any]]]:
    """(mime, decoded image, part) for every image of the last user message of a request sent upstream."""
    out: list[tuple[str, Image.Image, dict[str, Any]]] = []
    for part in user_content(upstream.responses_bodies()[request]):
        if part["type"] == "input_image":
            mime, data = decoded_image(part)
            img = Image.open(io.BytesIO(data))
            img.load()
            out.append((mime, img, part))
    return out


def alpha(img: Image.Image, xy: tuple[int, int]) -> int:
    value = img.convert("RGBA").getpixel(xy)
    assert isinstance(value, tuple)
    return int(value[3])


def rgb(img: Image.Image, xy: tuple[int, int]) -> tuple[int, int, int]:
    value = img.convert("RGB").getpixel(xy)
    assert isinstance(value, tuple)
    return value[0], value[1], value[2]


async def chat_with(settings: Settings, sources: list[str], model: str, detail: str, **load: Any) -> dict[str, Any]:
    async with connect(settings) as client:
        await call(client, "set_options", {"model": model, "detail": detail})
        await call(client, "load_image", {"source": sources, **load})
        return await call(client, "chat", {"prompt": "What is this?"})


# 3000 x 2000 under each family's rule, as OpenAI's guide computes it.
RULES = [
    ("gpt-4o", "high", (1152, 768)),  # tile: 2048 box, then the shortest side to 768
    ("gpt-4o", "auto", (1152, 768)),  # tile models size auto like high
    ("gpt-4o", "low", (512, 341)),  # tile: a 512 x 512 box
    ("gpt-5", "high", (1152, 768)),
    ("gpt-4.1-mini", "high", (2048, 1365)),  # patch: 2048 box, 6,144-patch budget not reached
    ("gpt-4.1-mini", "low", (2048, 1365)),  # no separate low rule published
    ("gpt-5.4", "high", (1920, 1280)),  # patch: 2,500-patch budget, whole patches
    ("gpt-5.4", "original", (3000, 2000)),  # within 6000 px and 10,000 patches: full resolution
    ("my-local-llava", "high", (2048, 1365)),  # unknown: the largest box any model uses for high
    ("my-local-llava", "original", (3000, 2000)),  # unknown: up to 30,000 patches
    ("my-local-llava", "auto", (2048, 1365)),  # unknown auto: at most 2048 px a side; original sends more
]


@pytest.mark.parametrize(("model", "detail", "size"), RULES)
async def test_each_detail_level_sends_the_size_its_rule_gives(
    settings: Settings, pictures: Path, upstream: FakeUpstream, model: str, detail: Detail, size: tuple[int, int]
) -> None:
    path = save(pictures, "photo.jpg", encode(photo(3000, 2000), "JPEG", quality=90))
    await chat_with(settings, [path], model, detail)
    [(mime, img, part)] = sent_images(upstream)
    assert img.size == size
    assert mime == "image/jpeg" and part["detail"] == detail
    # Same tokens as the full-size original: the model sees exactly what it would have seen.
    assert image_tokens(*img.size, detail=detail, model=model) == image_tokens(3000, 2000, detail=detail, model=model)


@pytest.mark.parametrize(("model", "detail"), [("gpt-4o", "high"), ("gpt-5.4", "original"), ("gpt-4o", "low")])
async def test_an_image_smaller_than_the_model_size_is_sent_as_it_is(
    settings: Settings, pictures: Path, upstream: FakeUpstream, model: str, detail: str
) -> None:
    original = encode(photo(300, 200), "JPEG", quality=90)
    await chat_with(settings, [save(pictures, "small.jpg", original)], model, detail)
    [(_, img, part)] = sent_images(upstream)
    assert img.size == (300, 200)
    assert decoded_image(part) == ("image/jpeg", original)  # not even re-encoded


async def test_a_small_png_is_not_upscaled_either(settings: Settings, pictures: Path, upstream: FakeUpstream) -> None:
    await chat_with(settings, [save(pictures, "icon.png", encode(photo(120, 90), "PNG"))], "gpt-4o", "high")
    [(mime, img, _)] = sent_images(upstream)
    assert img.size == (120, 90) and mime == "image/jpeg"


async def test_exif_rotation_is_applied_before_sizing(
    settings: Settings, pictures: Path, upstream: FakeUpstream
) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown turned 90 degrees clockwise
    path = save(pictures, "turned.jpg", encode(photo(3000, 2000), "JPEG", quality=90, exif=exif.tobytes()))
    await chat_with(settings, [path], "gpt-4o", "high")
    [(_, img, _)] = sent_images(upstream)
    assert img.size == (768, 1152)
    assert not img.getexif().get(0x0112)  # no orientation left for the upstream to apply twice
    top, bottom = rgb(img, (384, 100)), rgb(img, (384, 1050))
    assert top[2] > 150 > top[0]  # the stored left (blue) half is on top
    assert bottom[0] > 150 > bottom[2]


async def test_transparency_is_kept_and_opaque_images_become_jpeg(
    settings: Settings, pictures: Path, upstream: FakeUpstream
) -> None:
    cutout = photo(1600, 1200).convert("RGBA")
    cutout.paste((0, 0, 0, 0), (0, 0, 400, 1200))  # a transparent strip on the left
    opaque = photo(1600, 1200).convert("RGBA")  # has an alpha channel, but every pixel is opaque
    sources = [save(pictures, "cutout.png", encode(cutout, "PNG")), save(pictures, "opaque.png", encode(opaque, "PNG"))]
    await chat_with(settings, sources, "gpt-4o", "high")
    [(cut_mime, cut, _), (opaque_mime, flat, _)] = sent_images(upstream)
    assert cut_mime in ("image/png", "image/webp") and cut.size == (1024, 768)
    assert alpha(cut, (50, 400)) == 0
    assert alpha(cut, (900, 400)) == 255
    assert opaque_mime == "image/jpeg" and flat.mode == "RGB"


async def test_the_prepared_image_is_reused_across_turns_and_conversations(
    settings: Settings, pictures: Path, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared: list[tuple[int, str]] = []
    real_prepare = imaging.prepare

    def counting(data: bytes, **kwargs: Any) -> imaging.Prepared:
        result = real_prepare(data, **kwargs)
        prepared.append((result.width, kwargs["target"].detail))
        return result

    monkeypatch.setattr(imaging, "prepare", counting)
    path = save(pictures, "photo.jpg", encode(photo(3000, 2000), "JPEG", quality=90))
    async with connect(settings) as client:
        await call(client, "set_options", {"model": "gpt-4o"})
        [image] = (await call(client, "load_image", {"source": path}))["images"]
        await call(client, "chat", {"prompt": "What is this?"})
        await call(client, "chat", {"prompt": "Look again.", "images": [image["image_id"]]})
        await call(client, "chat", {"prompt": "Afresh.", "images": [image["image_id"]], "persist_context": False})
        # Another conversation, another model with the same working size: the same prepared image.
        await call(client, "set_options", {"conversation_id": "other", "model": "gpt-5"})
        await call(client, "load_image", {"source": path, "conversation_id": "other"})
        await call(client, "chat", {"prompt": "And you?", "conversation_id": "other"})
        assert prepared == [(1152, "auto")]
        # A different working size is prepared once more.
        await call(client, "set_options", {"conversation_id": "other", "detail": "low"})
        await call(client, "chat", {"prompt": "Roughly?", "conversation_id": "other", "images": [image["image_id"]]})
    assert prepared == [(1152, "auto"), (512, "low")]
    sent = [img.size for body in range(len(upstream.responses_bodies())) for _, img, _ in sent_images(upstream, body)]
    assert sent == [(1152, 768)] * 4 + [(512, 341)]
    first = sent_images(upstream, 0)[0][2]["image_url"]
    assert all(sent_images(upstream, n)[0][2]["image_url"] == first for n in (1, 2, 3))  # byte for byte


async def test_a_batch_arrives_in_the_order_it_was_loaded(
    settings: Settings, pictures: Path, upstream: FakeUpstream
) -> None:
    # The large one first: prepared concurrently, it finishes last, yet must stay first.
    sizes = [(3000, 2000), (300, 200), (310, 200), (320, 200), (330, 200), (340, 200)]
    sources = [
        save(pictures, f"batch-{i}.jpg", encode(photo(*size), "JPEG", quality=90)) for i, size in enumerate(sizes)
    ]
    reply = await chat_with(settings, sources, "gpt-4o", "high")
    assert [img.size for _, img, _ in sent_images(upstream)] == [(1152, 768), *sizes[1:]]
    assert len(reply["images"]) == len(sizes)


async def test_all_frames_are_capped_and_sampled_evenly(
    settings: Settings, pictures: Path, upstream: FakeUpstream
) -> None:
    colours = [(i * 12, 250 - i * 12, 128) for i in range(20)]
    frames = [Image.new("RGB", (64, 48), colour) for colour in colours]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0)
    path = save(pictures, "clip.gif", out.getvalue())
    async with connect(settings, max_frames=4) as client:
        loaded = await call(client, "load_image", {"source": path, "frames": "all"})
        await call(client, "chat", {"prompt": "What happens?"})
    assert len(loaded["images"]) == 4
    sent = [rgb(img, (32, 24)) for _, img, _ in sent_images(upstream)]
    expected = [colours[i] for i in (0, 6, 13, 19)]  # first, last, and evenly between
    assert len(sent) == 4
    for got, want in zip(sent, expected, strict=True):
        assert all(abs(a - b) <= 8 for a, b in zip(got, want, strict=True)), (sent, expected)


class CountedDecoder:
    """Pillow's JPEG decoder, noting in `finished` each decode that reached the end of the image."""

    def __init__(self, real: Any, mode: str, finished: list[str]) -> None:
        self.real, self.mode, self.finished = real, mode, finished

    def decode(self, data: bytes) -> tuple[int, int]:
        n, err_code = self.real.decode(data)
        if n < 0 and err_code >= 0:
            self.finished.append(self.mode)
        return n, err_code

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@dataclass
class Decodes:
    started: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)

    def clear(self) -> None:
        self.started.clear()
        self.finished.clear()


@pytest.fixture
def jpeg_decodes(monkeypatch: pytest.MonkeyPatch) -> Decodes:
    """Every JPEG decode Pillow starts in this process, and those that decoded the whole image, by mode."""
    decodes = Decodes()
    core: Any = vars(Image)["core"]  # Pillow's C module, which every decode goes through
    real = core.jpeg_decoder

    def counting(mode: str, *args: Any) -> Any:
        decodes.started.append(mode)
        return CountedDecoder(real(mode, *args), mode, decodes.finished)

    monkeypatch.setattr(core, "jpeg_decoder", counting)
    return decodes


async def test_load_image_and_chat_decode_a_photo_once(
    settings: Settings, pictures: Path, upstream: FakeUpstream, jpeg_decodes: Decodes
) -> None:
    path = save(pictures, "photo.jpg", encode(photo(3000, 2000), "JPEG", quality=90))
    jpeg_decodes.clear()  # the picture made above
    async with connect(settings) as client:
        await call(client, "set_options", {"model": "gpt-4o", "detail": "high"})
        await call(client, "load_image", {"source": path})
        assert jpeg_decodes.finished == ["RGB"]  # the check at load time is the preparation
        await call(client, "chat", {"prompt": "What is this?"})
        await call(client, "chat", {"prompt": "Look again.", "persist_context": False, "images": []})
        # The same file loaded again (another conversation, same model) is neither checked nor prepared again:
        # the decode that starts beside its hash is stopped once the hash finds the image stored.
        await call(client, "set_options", {"conversation_id": "other", "model": "gpt-4o"})
        await call(client, "load_image", {"source": path, "conversation_id": "other"})
        await call(client, "chat", {"prompt": "And you?", "conversation_id": "other"})
    assert jpeg_decodes.finished == ["RGB"]
    assert len(jpeg_decodes.started) <= 2
    assert [img.size for _, img, _ in sent_images(upstream, 0)] == [(1152, 768)]
    assert sent_images(upstream, 2)[0][2]["image_url"] == sent_images(upstream, 0)[0][2]["image_url"]


async def test_a_change_of_model_or_detail_prepares_again_once(
    settings: Settings, pictures: Path, upstream: FakeUpstream, jpeg_decodes: Decodes
) -> None:
    path = save(pictures, "photo.jpg", encode(photo(3000, 2000), "JPEG", quality=90))
    jpeg_decodes.clear()
    async with connect(settings) as client:
        await call(client, "set_options", {"model": "gpt-4o", "detail": "high"})
        [image] = (await call(client, "load_image", {"source": path}))["images"]
        await call(client, "chat", {"prompt": "First."})
        await call(client, "set_options", {"detail": "low"})
        for prompt in ("Roughly?", "Again, roughly?"):
            await call(client, "chat", {"prompt": prompt, "images": [image["image_id"]]})
        await call(client, "set_options", {"model": "gpt-5.4", "detail": "high"})
        for prompt in ("Closer?", "Closer still?"):
            await call(client, "chat", {"prompt": prompt, "images": [image["image_id"]], "persist_context": False})
    # load (gpt-4o high), then once for low, once for gpt-5.4 high: each decode whole and the only one started
    assert len(jpeg_decodes.finished) == len(jpeg_decodes.started) == 3
    sent = [img.size for body in range(len(upstream.responses_bodies())) for _, img, _ in sent_images(upstream, body)]
    assert sent == [(1152, 768), (512, 341), (512, 341), (1920, 1280), (1920, 1280)]


async def test_the_prepared_variant_survives_a_restart(
    settings: Settings, pictures: Path, upstream: FakeUpstream, jpeg_decodes: Decodes
) -> None:
    path = save(pictures, "photo.jpg", encode(photo(3000, 2000), "JPEG", quality=90))
    jpeg_decodes.clear()
    async with connect(settings, store="sqlite") as client:
        await call(client, "set_options", {"model": "gpt-4o"})
        await call(client, "load_image", {"source": path})
    assert len(jpeg_decodes.started) == 1
    async with connect(settings, store="sqlite") as client:
        await call(client, "chat", {"prompt": "What is this?"})
    assert len(jpeg_decodes.started) == 1  # the new process found the variant the old one prepared
    [(mime, img, _)] = sent_images(upstream)
    assert mime == "image/jpeg" and img.size == (1152, 768)
