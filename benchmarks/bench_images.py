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

Then, on the 24 MP JPEG at detail="high" (1152x768 for gpt-5):
- the resize filters, each with SSIM and PSNR as sent against a full decode resized with Lanczos, and CPU
  time per step (benchmarks/image_quality.py): how tools/imaging.py's filter was chosen;
- end to end: `load_image` + `chat` over stdio (benchmarks/image_stdio.py), per store, interleaved with
  ComfyUI's method and with the floor (decode at reduced scale + resize + encode, per image library installed),
  printed as the ratios of the targets.
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

import anyio
from PIL import Image, ImageOps

from benchmarks import image_quality, image_stdio
from benchmarks._common import cutout, encode, load_line, median, photo, say, table, write_json
from tools import image_decode, image_sizing, imaging
from tools.image_sizing import Detail

COMFY_TOTAL_PIXELS = 2048 * 2048
MAX_PIXELS = 100_000_000
# The targets on the 24 MP JPEG at detail="high": bytes and time against ComfyUI's method (time end to end, over
# stdio), and time against the floor.
TARGET_BYTES_RATIO = 20.0
TARGET_TIME_RATIO = 12.0
TARGET_FLOOR_RATIO = 1.3
E2E_MODEL: str = "gpt-5"
E2E_DETAIL: Detail = "high"


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


async def end_to_end(picture: Picture, size: tuple[int, int], repeat: int) -> dict[str, Any]:
    reference = image_quality.reference(picture.data, size)
    candidates = image_quality.floors(picture.data, size)
    floors = {
        f"floor: {floor.library}": floor.run
        for floor in candidates
        if image_quality.floor_quality(floor, reference) >= image_quality.MIN_SSIM
    }
    others: dict[str, Callable[[], object]] = {"comfyui": functools.partial(send_comfyui, picture), **floors}
    say()
    say(f"End to end on the {picture.name}, {E2E_MODEL}, detail={E2E_DETAIL}: load_image + chat over stdio ...")
    settle = candidates[0].run  # Pillow's: before every timed method, untimed
    per_server: dict[str, list[list[float]]] = {}
    times = await image_stdio.end_to_end(
        picture.data,
        model=E2E_MODEL,
        detail=E2E_DETAIL,
        repeat=repeat,
        others=others,
        settle=settle,
        per_server=per_server,
    )
    out: dict[str, Any] = {}
    for name, ts in times.items():
        out[name] = {
            "median_ms": round(median(ts) * 1000, 1),
            "best_ms": round(min(ts) * 1000, 1),
            "times_ms": [round(t * 1000, 1) for t in ts],
        }
        if name in per_server:  # how far the server processes of one store differ between themselves
            out[name]["per_server_median_ms"] = [round(median(own) * 1000, 1) for own in per_server[name] if own]
    return out


def e2e_targets(e2e: dict[str, Any], summary: dict[str, Any]) -> list[dict[str, Any]]:
    comfy = e2e["comfyui"]["median_ms"]
    floor_name = min((name for name in e2e if name.startswith("floor: ")), key=lambda name: e2e[name]["median_ms"])
    floor = e2e[floor_name]["median_ms"]
    best_floor = min(value["best_ms"] for name, value in e2e.items() if name.startswith("floor: "))
    say()
    say(
        table(
            ["method", "median ms", "x less time than ComfyUI", "x the floor", "best ms", "best: x the best floor"],
            [
                [
                    name,
                    v["median_ms"],
                    round(comfy / v["median_ms"], 1),
                    round(v["median_ms"] / floor, 2),
                    v["best_ms"],
                    round(v["best_ms"] / best_floor, 2),
                ]
                for name, v in e2e.items()
            ],
        )
    )
    for name, value in e2e.items():
        if "per_server_median_ms" in value:
            spread = ", ".join(f"{ms:g}" for ms in value["per_server_median_ms"])
            say(f"{name}: median per server process {spread} ms (the method's median takes all of them)")
    targets = []
    for name, value in e2e.items():
        if not name.startswith("imagechat"):
            continue
        # Judged on the unrounded ratios: 1.302 the floor is over 1.3, though it prints as 1.3.
        vs_comfy, vs_floor = comfy / value["median_ms"], value["median_ms"] / floor
        met = (
            vs_comfy >= TARGET_TIME_RATIO
            and vs_floor <= TARGET_FLOOR_RATIO
            and summary["bytes_vs_comfyui"] >= TARGET_BYTES_RATIO
            and summary["same_tokens_as_original"]
        )
        targets.append(
            {"method": name, "time_vs_comfyui": round(vs_comfy, 2), "time_vs_floor": round(vs_floor, 3), "met": met}
        )
        same = "yes" if summary["same_tokens_as_original"] else "no"
        say(
            f"Target, {name}: >= {TARGET_TIME_RATIO:g}x less time than ComfyUI ({vs_comfy:.1f}x), within "
            f"{TARGET_FLOOR_RATIO}x of the floor ({vs_floor:.3f}x, {floor_name[7:]}), >= {TARGET_BYTES_RATIO:g}x fewer "
            f"bytes ({summary['bytes_vs_comfyui']}x), same tokens ({same}): {'met' if met else 'NOT met'}"
        )
    return targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per method (median reported)")
    parser.add_argument("--quick", action="store_true", help="only detail='high' on gpt-5 and gpt-4.1-mini")
    args = parser.parse_args()
    say(f"Start: {load_line()}")
    say("Generating the pictures ...")
    rows: list[dict[str, Any]] = []
    pictures_ = pictures()
    for picture in pictures_:
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
    photo_jpeg = pictures_[0]
    size = image_sizing.target(photo_jpeg.width, photo_jpeg.height, detail=E2E_DETAIL, model=E2E_MODEL).size
    quality = image_quality.filter_table(photo_jpeg.name, photo_jpeg.data, size, args.repeat)
    e2e = anyio.run(functools.partial(end_to_end, photo_jpeg, size, args.repeat))
    by_model = {s["model"]: s for s in summary if s["image"] == photo_jpeg.name and s["detail"] == E2E_DETAIL}
    targets = e2e_targets(e2e, by_model[E2E_MODEL])
    say("(medians of interleaved runs decide the targets; the best run shows the cost with the least interference)")
    say(f"End: {load_line()}")
    path = write_json(
        "bench_images",
        {
            "repeat": args.repeat,
            "rows": rows,
            "summary": summary,
            "filters": quality,
            "ssim": image_quality.SSIM_KIND,
            "end_to_end": e2e,
            "targets": targets,
        },
    )
    say(f"Wrote {path}")


if __name__ == "__main__":
    main()
