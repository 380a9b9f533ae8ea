"""`imagechat-mcp batch` in direct mode: images per second against the ideal, and peak memory.

    python -m benchmarks.bench_batch [--images 1000] [--latency 0.3] [--concurrency 32]

The command runs as a script would run it (a subprocess) over a folder of small JPEGs (320x240, each distinct),
against the fake OpenAI server in a process of its own (benchmarks/upstream_process.py), which answers each
request after a fixed latency. The ideal rate is concurrency / latency (32 / 0.3 s = 107 images/s). Peak memory
is the subprocess's maximum resident set; it is measured for a quarter of the images too, to show it stays
flat as the run grows (images are streamed through, not held).

Writes benchmarks/results/bench_batch.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import encode, load_line, photo, say, table, upstream_process, write_json

REPO = Path(__file__).resolve().parent.parent


def make_images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    base = photo(320, 240, seed=7)
    for index in range(count):
        picture = base.copy()
        picture.putpixel((index % 320, index // 320), (index % 256, 0, 255))  # each one distinct
        (folder / f"img{index:05d}.jpg").write_bytes(encode(picture, "JPEG", quality=85))


def run_once(folder: Path, count: int, latency: float, concurrency: int, work: Path) -> dict[str, Any]:
    report: dict[str, Any] = {}
    with upstream_process(count, latency, report) as base_url:
        env = {
            **os.environ,
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": base_url,
            "IMAGECHAT_STATE_DIR": str(work / f"state-{count}"),
        }
        command = [sys.executable, "-m", "server", "batch", str(folder), "--prompt", "Caption it."]
        command += ["--out", str(work / f"out-{count}.jsonl"), "--concurrency", str(concurrency), "--via", "direct"]
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak memory, not the fake's
        seconds = time.perf_counter() - started
        errors = process.stderr.read().decode() if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"batch failed ({status}): {errors[-2000:]}")
    peak_mb = usage.ru_maxrss / 1024  # kB on Linux
    return {"images": count, "seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb, 1), "sent": report}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    ideal = args.concurrency / args.latency
    rows = []
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for count in (args.images // 4, args.images):
            folder = work / f"images-{count}"
            make_images(folder, count)
            found = run_once(folder, count, args.latency, args.concurrency, work)
            rate = count / found["seconds"]
            found.update(rate=round(rate, 1), ideal=round(ideal, 1), ratio=round(rate / ideal, 2))
            results.append(found)
            rows.append([count, found["seconds"], found["rate"], found["ideal"], found["ratio"], found["peak_rss_mb"]])
    say(table(["images", "wall s", "images/s", "ideal/s", "of ideal", "peak RSS MB"], rows))
    say("(wall time includes the process start, imports and the cost estimate)")
    say(load_line())
    write_json("bench_batch", {"latency": args.latency, "concurrency": args.concurrency, "runs": results})


if __name__ == "__main__":
    main()
