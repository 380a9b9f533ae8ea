"""How close a prepared image is to the best one possible, and what the cheapest preparation costs.

- `ssim` and `psnr` against a reference: the 24 MP photo decoded in full and resized with Lanczos, i.e. what
  the model would see if time were free. SSIM is the usual one (Wang et al. 2004: 11x11 Gaussian window,
  sigma 1.5, on luma) when numpy is installed (the dev extras bring it), else a pure-Pillow variant over 8x8
  blocks (within 0.002 of it on the benchmark photo); `SSIM_KIND` says which.
- `filters`: the resize filters Pillow offers after a draft (reduced-scale) decode, each with its quality as
  sent (after the JPEG encode) and its CPU time per step, so the filter in `tools.imaging` is picked by
  measurement.
- `floors`: the whole job (decode at reduced scale, resize, encode) per image library installed: Pillow always,
  pyvips and simplejpeg when present. The fastest one that keeps SSIM >= 0.85 is the floor.
"""

from __future__ import annotations

import functools
import io
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageChops, ImageMath, ImageStat

from benchmarks._common import say, table
from tools import imaging

MIN_SSIM = 0.85
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

try:
    import numpy as np

    SSIM_KIND = "Gaussian 11x11, sigma 1.5, luma (numpy)"
except ImportError:  # pragma: no cover - numpy is in the dev extras
    np = None  # type: ignore[assignment]
    SSIM_KIND = "8x8 blocks, luma (Pillow only: install numpy for the usual Gaussian SSIM)"


def _gaussian_ssim(x: Image.Image, y: Image.Image) -> float:
    a = np.asarray(x.convert("L"), dtype=np.float64)
    b = np.asarray(y.convert("L"), dtype=np.float64)
    taps = np.exp(-(np.arange(-5, 6, dtype=np.float64) ** 2) / (2 * 1.5**2))
    taps /= taps.sum()

    def blur(m: Any) -> Any:  # separable, "valid" region only
        rows = sum(w * m[:, i : i + m.shape[1] - 10] for i, w in enumerate(taps))
        return sum(w * rows[i : i + rows.shape[0] - 10, :] for i, w in enumerate(taps))

    mx, my = blur(a), blur(b)
    vx, vy, cov = blur(a * a) - mx * mx, blur(b * b) - my * my, blur(a * b) - mx * my
    index = ((2 * mx * my + _C1) * (2 * cov + _C2)) / ((mx * mx + my * my + _C1) * (vx + vy + _C2))
    return float(index.mean())


def _block_ssim(x: Image.Image, y: Image.Image) -> float:
    a, b = x.convert("L").convert("F"), y.convert("L").convert("F")

    def mean(img: Image.Image) -> Image.Image:
        return img.reduce(8)

    product = ImageMath.lambda_eval(lambda v: v["a"] * v["b"], a=a, b=b)
    squares = [ImageMath.lambda_eval(lambda v: v["m"] * v["m"], m=m) for m in (a, b)]
    mx, my, mxy, mxx, myy = mean(a), mean(b), mean(product), mean(squares[0]), mean(squares[1])
    index = ImageMath.lambda_eval(
        lambda v: (
            ((2 * v["mx"] * v["my"] + _C1) * (2 * (v["mxy"] - v["mx"] * v["my"]) + _C2))
            / (
                (v["mx"] * v["mx"] + v["my"] * v["my"] + _C1)
                * (v["mxx"] - v["mx"] * v["mx"] + v["myy"] - v["my"] * v["my"] + _C2)
            )
        ),
        mx=mx,
        my=my,
        mxy=mxy,
        mxx=mxx,
        myy=myy,
    )
    mean_index = index.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))  # ImageStat bins "F" images
    assert isinstance(mean_index, float)
    return mean_index


def ssim(x: Image.Image, y: Image.Image) -> float:
    """Structural similarity of two images of the same size (1.0: identical)."""
    return _gaussian_ssim(x, y) if np is not None else _block_ssim(x, y)


def psnr(x: Image.Image, y: Image.Image) -> float:
    """Peak signal-to-noise ratio over RGB, in dB."""
    diff = ImageChops.difference(x.convert("RGB"), y.convert("RGB"))
    mse = statistics.fmean(rms * rms for rms in ImageStat.Stat(diff).rms)
    return math.inf if mse == 0 else 10 * math.log10(255 * 255 / mse)


def reference(data: bytes, size: tuple[int, int]) -> Image.Image:
    """The photo as if time were free: decoded in full, resized with Lanczos."""
    img = Image.open(io.BytesIO(data))
    img.load()
    return img.convert("RGB").resize(size, Image.Resampling.LANCZOS)


def cpu_ms(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median CPU time of this thread (not wall time: the machine may be busy with other work), and a result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.thread_time()
        result = fn()
        times.append(time.thread_time() - start)
    return statistics.median(times) * 1000, result


def drafted(data: bytes, size: tuple[int, int]) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.draft(None, size)
    img.load()
    return img


def jpeg(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85, optimize=imaging.JPEG_OPTIMIZE)
    return out.getvalue()


FILTERS = (
    Image.Resampling.LANCZOS,
    Image.Resampling.BICUBIC,
    Image.Resampling.HAMMING,
    Image.Resampling.BILINEAR,
    Image.Resampling.BOX,
)


def filters(data: bytes, ref: Image.Image, repeat: int) -> list[dict[str, Any]]:
    """Each resize filter after the draft decode: quality as sent, and CPU ms per step."""
    size = ref.size
    decode_ms, img = cpu_ms(lambda: drafted(data, size), repeat)
    rows = []
    for resample in FILTERS:
        resize_ms, small = cpu_ms(
            functools.partial(img.resize, size, resample, reducing_gap=imaging.REDUCING_GAP), repeat
        )
        encode_ms, sent = cpu_ms(functools.partial(jpeg, small), repeat)
        shown = Image.open(io.BytesIO(sent))
        rows.append(
            {
                "filter": resample.name,
                "chosen": resample == imaging.RESIZE_FILTER,
                "ssim": round(ssim(shown, ref), 4),
                "psnr_db": round(psnr(shown, ref), 2),
                "decode_ms": round(decode_ms, 1),
                "resize_ms": round(resize_ms, 1),
                "encode_ms": round(encode_ms, 1),
                "total_ms": round(decode_ms + resize_ms + encode_ms, 1),
                "bytes": len(sent),
            }
        )
    return rows


def filter_table(name: str, data: bytes, size: tuple[int, int], repeat: int) -> list[dict[str, Any]]:
    """`filters`, printed as a table."""
    say(f"Resize filters on the {name}, drafted and sized to {size[0]}x{size[1]} ...")
    rows = filters(data, reference(data, size), repeat)
    say()
    say(
        table(
            ["filter", "SSIM", "PSNR (dB)", "decode", "resize", "encode", "total CPU ms", "bytes"],
            [
                [
                    f"{r['filter']}{' (chosen)' if r['chosen'] else ''}",
                    f"{r['ssim']:.4f}",
                    f"{r['psnr_db']:.2f}",
                    r["decode_ms"],
                    r["resize_ms"],
                    r["encode_ms"],
                    r["total_ms"],
                    f"{r['bytes']:,}",
                ]
                for r in rows
            ],
        )
    )
    say(f"(SSIM and PSNR as sent, against a full decode resized with Lanczos; SSIM: {SSIM_KIND};")
    say(f" CPU ms of this thread per step, medians; the floor for SSIM is {MIN_SSIM})")
    return rows


@dataclass(frozen=True)
class Floor:
    library: str
    run: Callable[[], bytes]


def floors(data: bytes, size: tuple[int, int]) -> list[Floor]:
    """Decode at reduced scale + resize + encode, per library installed, as plainly as each allows."""
    out = [Floor("Pillow", lambda: jpeg(drafted(data, size).resize(size, imaging.RESIZE_FILTER)))]
    try:
        import pyvips  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except (ImportError, OSError):
        pyvips = None
    if pyvips is not None:
        vips: Any = pyvips

        def with_vips() -> bytes:  # shrink-on-load, then its default (Lanczos 3) kernel
            thumb = vips.Image.thumbnail_buffer(data, size[0], height=size[1], size="force")
            return bytes(thumb.jpegsave_buffer(Q=85))

        out.append(Floor(f"pyvips {vips.version(0)}.{vips.version(1)}", with_vips))
    try:
        import simplejpeg  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError:
        simplejpeg = None
    if simplejpeg is not None:
        turbo: Any = simplejpeg

        def with_turbo() -> bytes:  # libjpeg-turbo's own scaled decode and encode, Pillow's resize between
            pixels = turbo.decode_jpeg(data, colorspace="RGB", min_height=size[1], min_width=size[0])
            small = Image.fromarray(pixels).resize(size, imaging.RESIZE_FILTER)
            return bytes(turbo.encode_jpeg(np.asarray(small), quality=85, colorsubsampling="420"))

        if np is not None:
            out.append(Floor(f"simplejpeg {turbo.__version__} (libjpeg-turbo)", with_turbo))
    return out


def floor_quality(floor: Floor, ref: Image.Image) -> float:
    sent = Image.open(io.BytesIO(floor.run()))
    return ssim(sent, ref) if sent.size == ref.size else 0.0
