"""What the benchmarks share: statistics, the table printer, the JSON writer and the generated pictures."""

from __future__ import annotations

import io
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from PIL import Image, ImageChops, ImageDraw, ImageFilter

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def p95(values: Sequence[float]) -> float:
    """The nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def machine() -> dict[str, Any]:
    import PIL

    return {
        "python": platform.python_version(),
        "pillow": PIL.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def load_line() -> str:
    """The machine's load, printed beside results measured on a machine that may be shared."""
    if not hasattr(os, "getloadavg"):
        return f"{os.cpu_count()} CPUs"
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table, so the output can be pasted into the README as it is."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def write_json(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2) + "\n", encoding="utf-8")
    return path


def imagechat_stdio(folder: Path, base_url: str, store: str) -> StdioServerParameters:
    """imagechat as an agent starts it (`python -m server` over stdio), its state and allowed folder in `folder`."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "server"],
        cwd=str(REPO),
        env={
            "OPENAI_API_KEY": "sk-benchmark-not-a-key",
            "OPENAI_BASE_URL": base_url,
            "IMAGECHAT_STORE": store,
            "IMAGECHAT_STATE_DIR": str(folder / f"state-{store}"),
            "IMAGECHAT_ALLOWED_DIRS": str(folder),
        },
    )


@contextmanager
def upstream_process(replies: int, latency: float, report: dict[str, Any], *, check_spec: bool = True) -> Iterator[str]:
    """The fake upstream's base URL; what it received is put in `report` when it stops. `check_spec=False`: it
    answers without checking bodies against OpenAI's spec (see benchmarks/upstream_process.py)."""
    flags = [] if check_spec else ["--no-spec-check"]
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.upstream_process", str(replies), str(latency), *flags],
        cwd=str(REPO),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        yield process.stdout.readline().strip()
    finally:
        process.stdin.close()
        report.update(json.loads(process.stdout.readline() or "{}"))
        process.wait(10)


async def call(client: Client, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A tool call's structured result; a refusal stops the benchmark with its text."""
    result = await client.call_tool(name, arguments)
    if result.is_error or result.structured_content is None:
        text = " ".join(getattr(block, "text", "") for block in result.content)
        raise RuntimeError(f"{name} failed: {text}")
    content: dict[str, Any] = result.structured_content
    return content


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# -- generated pictures -------------------------------------------------------------------------


def photo(width: int, height: int, seed: int = 1) -> Image.Image:
    """An RGB picture that compresses like a photo, not like a flat colour.

    A low-frequency scene (gradients and soft-edged shapes), texture in some regions (foliage, fabric)
    and smooth ones elsewhere (sky, walls), and sensor grain over everything.
    """
    rnd = random.Random(seed)
    sw, sh = max(8, width // 16), max(8, height // 16)
    channels = []
    for _ in range(3):
        gradient = Image.linear_gradient("L").rotate(
            rnd.uniform(0, 360), resample=Image.Resampling.BILINEAR, fillcolor=128
        )
        scale, offset = rnd.uniform(0.3, 0.7), rnd.uniform(40, 110)
        channels.append(gradient.resize((sw, sh)).point(lambda v, a=scale, b=offset: int(v * a + b)))
    small = Image.merge("RGB", channels)
    draw = ImageDraw.Draw(small)
    for _ in range(40):
        x, y, r = rnd.uniform(0, sw), rnd.uniform(0, sh), rnd.uniform(2, sw / 6)
        color = (rnd.randrange(30, 230), rnd.randrange(30, 230), rnd.randrange(30, 230))
        if rnd.random() < 0.6:
            draw.ellipse((x - r, y - r * rnd.uniform(0.3, 1.0), x + r, y + r), fill=color)
        else:
            draw.polygon([(x + rnd.uniform(-r, r), y + rnd.uniform(-r, r)) for _ in range(5)], fill=color)
    scene = small.filter(ImageFilter.GaussianBlur(1.0)).resize((width, height), Image.Resampling.BICUBIC)
    texture = Image.effect_noise((width // 3, height // 3), 30).resize((width, height), Image.Resampling.BICUBIC)
    where = Image.effect_noise((max(1, sw // 4), max(1, sh // 4)), 90).resize((width, height), Image.Resampling.BICUBIC)
    grain = Image.effect_noise((width, height), 10)
    detail = Image.blend(Image.composite(texture, Image.new("L", (width, height), 128), where), grain, 0.25)
    return ImageChops.add(scene, Image.merge("RGB", [detail] * 3), 1, -128)


def cutout(width: int, height: int, seed: int = 2) -> Image.Image:
    """An RGBA product shot: a photo-like subject with soft edges on a fully transparent background."""
    rgb = photo(width, height, seed)
    rnd = random.Random(seed)
    mask = Image.new("L", (width // 8, height // 8), 0)
    draw = ImageDraw.Draw(mask)
    w, h = mask.size
    draw.ellipse((w * 0.15, h * 0.1, w * 0.85, h * 0.9), fill=255)
    for _ in range(6):
        x, y, r = rnd.uniform(w * 0.2, w * 0.8), rnd.uniform(h * 0.2, h * 0.8), rnd.uniform(w * 0.05, w * 0.15)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=rnd.choice((0, 160)))
    alpha = mask.filter(ImageFilter.GaussianBlur(2)).resize((width, height), Image.Resampling.BICUBIC)
    rgb.putalpha(alpha)
    return rgb


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()
