"""The resize that `tools.imaging.prepare` ends with, its rows shared between two cores when it is large.

The decode of a large JPEG cannot be split (its entropy-coded data is one sequence), but the resize after it
can: Pillow computes each output row from a window of input rows, and `Image.resize(size, filter, box)` takes
that window from outside the box when it is there, so two bands of output rows, each resized from its share of
the image, are the rows of one whole resize. Within one level, not always to the bit: Pillow rounds to 8 bits
between its horizontal and vertical pass, and picks their order by the box's shape, so a band may take the
other order than the whole image. Pillow releases the GIL while it resamples, so the second band runs on the
other core: on the benchmark photo (1500x1000 drafted, to 1152x768) the resize takes 6 ms instead of 10.

One helper thread, shared by the process, takes the second band. When it is busy with another image's band,
the band is taken back and resized in the calling thread, so an image never waits behind another one here.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from PIL import Image

__all__ = ["REDUCING_GAP", "RESIZE_FILTER", "resized"]

# Chosen by benchmarks/bench_images.py (SSIM and PSNR against a full decode resized with Lanczos, and time). On
# its 24 MP photo, drafted to 1500x1000 and sized to 1152x768 for a tile model, Hamming scores SSIM 0.86 as sent
# (Lanczos 0.88, bicubic 0.87, bilinear 0.84: under the 0.85 floor) at half Lanczos' cost (about 10 ms of CPU
# against 19; 36 against 74 ms at 2048x1365). Its window grows with the reduction, so large reductions stay
# antialiased.
RESIZE_FILTER = Image.Resampling.HAMMING
# Past 3x, Pillow first averages whole blocks of pixels (Image.reduce), then resamples the rest: indistinguishable
# from a fair resample at that gap, and several times cheaper on a large PNG.
REDUCING_GAP = 3.0
# Below this many output pixels the hand-off and the paste cost about what the second core saves.
BAND_MIN_PIXELS = 300_000
# Modes Pillow resamples as they are. RGBA and LA are premultiplied around the resample (a conversion of the
# whole image per call), so two bands would convert twice.
_BANDED_MODES = frozenset({"RGB", "L"})


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


_helper: ThreadPoolExecutor | None = None
_helper_lock = threading.Lock()


def _helper_pool() -> ThreadPoolExecutor:
    global _helper
    with _helper_lock:
        if _helper is None:
            _helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imagechat-resize")
        return _helper


def resized(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`img.resize(size, RESIZE_FILTER, reducing_gap=REDUCING_GAP)`, in two bands on two cores when it pays."""
    if img.mode not in _BANDED_MODES or size[0] * size[1] < BAND_MIN_PIXELS or size[1] < 2 or _cores() < 2:
        return img.resize(size, RESIZE_FILTER, reducing_gap=REDUCING_GAP)
    width, height = img.size
    # Pillow's own first step for a large reduction (see Image.resize): the whole image averaged in blocks, the
    # resample then taken from the matching box of the smaller image.
    factor_x = int(width / size[0] / REDUCING_GAP) or 1
    factor_y = int(height / size[1] / REDUCING_GAP) or 1
    source = img
    if factor_x > 1 or factor_y > 1:
        source = img.reduce((factor_x, factor_y))
    box = (0.0, 0.0, width / factor_x, height / factor_y)
    return _in_bands(source, size, box)


def _in_bands(img: Image.Image, size: tuple[int, int], box: tuple[float, float, float, float]) -> Image.Image:
    top_rows = size[1] // 2
    cut = box[1] + top_rows * (box[3] - box[1]) / size[1]
    bottom_size, bottom_box = (size[0], size[1] - top_rows), (box[0], cut, box[2], box[3])
    bottom: Future[Image.Image] = _helper_pool().submit(img.resize, bottom_size, RESIZE_FILTER, bottom_box)
    try:
        top = img.resize((size[0], top_rows), RESIZE_FILTER, (box[0], box[1], box[2], cut))
    finally:
        taken_back = bottom.cancel()  # not started: the helper is busy with another image
    lower = img.resize(bottom_size, RESIZE_FILTER, bottom_box) if taken_back else bottom.result()
    out = Image.new(img.mode, size)
    out.paste(top, (0, 0))
    out.paste(lower, (0, top_rows))
    return out
