"""Image preparation: bytes on the wire and time per image, against sending the original and ComfyUI's method.

    python -m benchmarks.bench_images [--repeat 5] [--quick]

Three generated pictures (a 24 MP photo-like JPEG, a 12 MP PNG with real alpha, a 4 MP WebP) are turned
into the data URL an upstream request carries, three ways, in this process and interleaved:

- original: the file as it is, base64-encoded;
- comfyui: what ComfyUI's OpenAI Chat node does (LoadImage, then `tensor_to_base64_string` in
  comfy_api_nodes/util/conversions.py): full decode, EXIF transpose, RGB, Lanczos downscale only above
  2048 x 2048 pixels in total, PNG, base64. Its float32 tensor round trips are left out, which only makes
  this baseline faster than ComfyUI really is;
- imagechat: `tools.imaging.prepare` for the model and detail, then base64.

Time is decode + resize + encode + base64 (the bytes are already in memory), the median of the repetitions.
Bytes are the length of the data URL. Tokens are what OpenAI bills for the image as sent
(`tools.image_sizing.target`): equal to the original's whenever nothing the model uses was lost.
Writes benchmarks/results/bench_images.json.
"""

from __future__ import annotations

import argparse
import base64
import functools
import io
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image, ImageOps

from benchmarks._common import cutout, encode, median, photo, say, table, write_json
from tools import image_decode, image_sizing, imaging
from tools.image_sizing import Detail

COMFY_TOTAL_PIXELS = 2048 * 2048
MAX_PIXELS = 100_000_000
# The targets of issue 4, on the 24 MP JPEG at detail="high".
TARGET_BYTES_RATIO = 20.0
TARGET_TIME_RATIO = 8.0


@dataclass(frozen=True)
class Sent:
    url_chars: int
    width: int
    height: int
    mime: str


@dataclass(frozen=True)
class Picture:
    name: str
    data: bytes
    mime: str
    width: int
    height: int


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def send_original(picture: Picture) -> Sent:
    url = data_url(picture.mime, picture.data)
    return Sent(len(url), picture.width, picture.height, picture.mime)


def send_comfyui(picture: Picture) -> Sent:
    """ComfyUI's LoadImage + tensor_to_base64_string(total_pixels=2048*2048, mime_type="image/png")."""
    image: Image.Image = Image.open(io.BytesIO(picture.data))
    image = ImageOps.exif_transpose(image).convert("RGB")  # LoadImage: alpha goes to a separate mask
    width, height = image.size
    scale = math.sqrt(COMFY_TOTAL_PIXELS / (width * height))
    if scale < 1:  # downscale_image_tensor: round(), Lanczos (comfy.utils.lanczos resizes with Pillow)
        image = image.resize((round(width * scale), round(height * scale)), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG")  # pil_to_bytesio: Pillow's default PNG settings
    url = data_url("image/png", out.getvalue())
    return Sent(len(url), image.width, image.height, "image/png")


def send_imagechat(picture: Picture, detail: Detail, model: str) -> Sent:
    # What request.prepared_image does: the size the model works at, then the image prepared at it.
    info = image_decode.inspect_image(picture.data, max_pixels=MAX_PIXELS, max_frames=1)
    target = image_sizing.target(info.width, info.height, detail=detail, model=model)
    prepared = imaging.prepare(picture.data, target=target, max_pixels=MAX_PIXELS)
    url = data_url(prepared.mime, prepared.data)
    return Sent(len(url), prepared.width, prepared.height, prepared.mime)


def pictures() -> list[Picture]:
    jpeg = encode(photo(6000, 4000, seed=1), "JPEG", quality=92)
    png = encode(cutout(4240, 2832, seed=2), "PNG")
    webp = encode(photo(2448, 1632, seed=3), "WEBP", quality=80)
    return [
        Picture("24 MP JPEG", jpeg, "image/jpeg", 6000, 4000),
        Picture("12 MP PNG, alpha", png, "image/png", 4240, 2832),
        Picture("4 MP WebP", webp, "image/webp", 2448, 1632),
    ]


def cases(picture: Picture, quick: bool) -> list[tuple[str, Detail]]:
    """(model, detail) pairs: gpt-5 (tiles; ComfyUI's default model) and gpt-4.1-mini (patches; ours), high detail."""
    chosen: list[tuple[str, Detail]] = [("gpt-5", "high"), ("gpt-4.1-mini", "high")]
    if picture.name == "24 MP JPEG" and not quick:
        chosen += [("gpt-5", "low"), ("gpt-5.4", "original")]
    return chosen


def timed(fn: Callable[[], Sent]) -> tuple[Sent, float]:
    start = time.perf_counter()
    sent = fn()
    return sent, time.perf_counter() - start


def measure(picture: Picture, repeat: int, quick: bool) -> list[dict[str, Any]]:
    """Every method once per repetition, interleaved, so machine noise hits all of them alike."""
    methods: dict[str, Callable[[], Sent]] = {
        "original": functools.partial(send_original, picture),
        "comfyui": functools.partial(send_comfyui, picture),
    }
    for model, detail in cases(picture, quick):
        methods[f"imagechat/{model}/{detail}"] = functools.partial(send_imagechat, picture, detail, model)
    times: dict[str, list[float]] = {name: [] for name in methods}
    sent: dict[str, Sent] = {}
    for _ in range(repeat):
        for name, fn in methods.items():
            sent[name], seconds = timed(fn)
            times[name].append(seconds)
    rows = []
    for model, detail in cases(picture, quick):
        ours = f"imagechat/{model}/{detail}"
        for method in ("original", "comfyui", ours):
            s = sent[method]
            rows.append(
                {
                    "image": picture.name,
                    "source_bytes": len(picture.data),
                    "model": model,
                    "detail": detail,
                    "method": method.split("/")[0],
                    "sent": asdict(s),
                    "median_ms": round(median(times[method]) * 1000, 1),
                    "times_ms": [round(t * 1000, 1) for t in times[method]],
                    "tokens": image_sizing.target(s.width, s.height, detail=detail, model=model).tokens,
                }
            )
    return rows


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (image, model, detail): how many times fewer bytes and less time than ComfyUI's method."""
    out = []
    for row in rows:
        if row["method"] != "imagechat":
            continue
        same = [r for r in rows if (r["image"], r["model"], r["detail"]) == (row["image"], row["model"], row["detail"])]
        by = {r["method"]: r for r in same}
        comfy, original = by["comfyui"], by["original"]
        out.append(
            {
                "image": row["image"],
                "model": row["model"],
                "detail": row["detail"],
                "bytes_vs_comfyui": round(comfy["sent"]["url_chars"] / row["sent"]["url_chars"], 1),
                "time_vs_comfyui": round(comfy["median_ms"] / row["median_ms"], 1),
                "bytes_vs_original": round(original["sent"]["url_chars"] / row["sent"]["url_chars"], 1),
                "same_tokens_as_original": row["tokens"] == original["tokens"],
                "comfyui_same_tokens": comfy["tokens"] == original["tokens"],
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per method (median reported)")
    parser.add_argument("--quick", action="store_true", help="only detail='high' on gpt-5 and gpt-4.1-mini")
    args = parser.parse_args()
    say("Generating the pictures ...")
    rows: list[dict[str, Any]] = []
    for picture in pictures():
        say(f"  {picture.name}: {picture.width}x{picture.height}, {len(picture.data):,} bytes")
        rows.extend(measure(picture, args.repeat, args.quick))
    say()
    say(
        table(
            ["image", "model", "detail", "method", "sent", "bytes on the wire", "time (ms)", "tokens"],
            [
                [
                    r["image"],
                    r["model"],
                    r["detail"],
                    r["method"],
                    f"{r['sent']['width']}x{r['sent']['height']} {r['sent']['mime'].split('/')[1]}",
                    f"{r['sent']['url_chars']:,}",
                    f"{r['median_ms']:.1f}",
                    r["tokens"],
                ]
                for r in rows
            ],
        )
    )
    summary = summarize(rows)
    say()
    say(
        table(
            ["image", "model", "detail", "x fewer bytes", "x less time", "x fewer bytes than original", "same tokens"],
            [
                [
                    s["image"],
                    s["model"],
                    s["detail"],
                    s["bytes_vs_comfyui"],
                    s["time_vs_comfyui"],
                    s["bytes_vs_original"],
                    "yes" if s["same_tokens_as_original"] else "no",
                ]
                for s in summary
            ],
        )
    )
    say("(x fewer bytes, x less time: ComfyUI's method divided by imagechat's)")
    targets = []
    for s in summary:
        if s["image"] == "24 MP JPEG" and s["detail"] == "high":
            met = (
                s["bytes_vs_comfyui"] >= TARGET_BYTES_RATIO
                and s["time_vs_comfyui"] >= TARGET_TIME_RATIO
                and s["same_tokens_as_original"]
                and s["comfyui_same_tokens"]
            )
            targets.append({"model": s["model"], "met": met})
            say(
                f"Target on the 24 MP JPEG, high, {s['model']}: >= {TARGET_BYTES_RATIO:g}x fewer bytes "
                f"({s['bytes_vs_comfyui']}x), >= {TARGET_TIME_RATIO:g}x less time ({s['time_vs_comfyui']}x), "
                f"same tokens ({'yes' if s['same_tokens_as_original'] else 'no'}): {'met' if met else 'NOT met'}"
            )
    path = write_json("bench_images", {"repeat": args.repeat, "rows": rows, "summary": summary, "targets": targets})
    say(f"Wrote {path}")


if __name__ == "__main__":
    main()
