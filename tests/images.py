"""Test images made in memory, so no binary fixtures are committed."""

from __future__ import annotations

import io

from PIL import Image


def png(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def jpeg(
    width: int = 64,
    height: int = 48,
    color: tuple[int, int, int] = (30, 30, 200),
    orientation: int | None = None,
) -> bytes:
    image = Image.new("RGB", (width, height), color)
    # A marker in the top-left corner makes a rotation visible in the pixels.
    image.paste((255, 255, 255), (0, 0, max(1, width // 4), max(1, height // 4)))
    out = io.BytesIO()
    if orientation is None:
        image.save(out, "JPEG", quality=90)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(out, "JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


def gif(frames: int = 5, size: tuple[int, int] = (32, 32)) -> bytes:
    images = [Image.new("RGB", size, (i * 40 % 256, 100, 200 - i * 30 % 200)) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, "GIF", save_all=True, append_images=images[1:], duration=50, loop=0)
    return out.getvalue()


def minimal_pdf() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
        b"trailer<</Root 1 0 R>>\n%%EOF\n"
    )


def noisy_photo(width: int, height: int) -> Image.Image:
    """Pixels unlike their neighbours (noise over a gradient): the case where a resize's rows differ most."""
    noise = Image.merge("RGB", [Image.effect_noise((width, height), 60) for _ in range(3)])
    gradient = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    return Image.blend(noise, gradient, 0.5)
