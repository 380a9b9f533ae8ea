"""tools.image_resize: a large resize split in two bands of rows gives the pixels of one whole resize (within the
one level Pillow's rounding between its passes allows), and an image whose band finds the helper thread busy
resizes it itself instead of waiting. And the pixel memory Pillow frees is kept, within a bound, for the next
image (tools/image_decode.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from tests.images import noisy_photo
from tools import image_resize


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Banding is taken whatever the machine running the tests has (a one-core runner would never band)."""
    monkeypatch.setattr(image_resize, "_cores", lambda: 2)


def whole(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    return img.resize(size, image_resize.RESIZE_FILTER, reducing_gap=image_resize.REDUCING_GAP)


def assert_same_pixels(banded: Image.Image, reference: Image.Image) -> None:
    """At most one level apart anywhere (a band misplaced by even one row is tens of levels off on noise), and
    mostly equal."""
    difference = np.abs(np.asarray(banded, dtype=np.int16) - np.asarray(reference, dtype=np.int16))
    assert difference.max() <= 1
    assert difference.mean() < 0.5


@pytest.mark.usefixtures("two_cores")
@pytest.mark.parametrize(
    ("source", "size", "mode"),
    [
        ((1500, 1000), (1152, 768), "RGB"),  # the benchmark photo drafted, to a tile model's size
        ((1000, 1500), (768, 1152), "RGB"),  # the same, upright
        ((2001, 1333), (1024, 683), "RGB"),  # odd output rows: the bands differ by one
        ((4000, 2600), (768, 499), "RGB"),  # past the reducing gap: blocks averaged first
        ((1600, 1200), (800, 600), "L"),
    ],
)
def test_two_bands_give_the_pixels_of_one_whole_resize(
    source: tuple[int, int], size: tuple[int, int], mode: str
) -> None:
    img = noisy_photo(*source).convert(mode)
    banded = image_resize.resized(img, size)
    assert banded.size == size and banded.mode == mode
    assert_same_pixels(banded, whole(img, size))


@pytest.fixture
def busy_helper() -> Iterator[threading.Event]:
    """The helper thread held by another image's band until the test lets it go."""
    release = threading.Event()
    started = threading.Event()

    def hold() -> None:
        started.set()
        release.wait(30)

    held = image_resize._helper_pool().submit(hold)
    assert started.wait(10)
    try:
        yield release
    finally:
        release.set()
        held.result(10)


@pytest.mark.usefixtures("two_cores")
def test_a_band_that_finds_the_helper_busy_is_resized_by_its_own_thread(busy_helper: threading.Event) -> None:
    img = noisy_photo(1500, 1000)
    result: list[Image.Image] = []
    worker = threading.Thread(target=lambda: result.append(image_resize.resized(img, (1152, 768))))
    worker.start()
    worker.join(20)
    done_while_busy = not worker.is_alive()
    busy_helper.set()
    worker.join(20)
    assert done_while_busy, "the resize waited for the helper thread held by another image"
    assert_same_pixels(result[0], whole(img, (1152, 768)))


@pytest.mark.usefixtures("two_cores")
def test_small_or_premultiplied_images_are_resized_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    handed: list[object] = []
    real = image_resize._helper_pool

    def counting() -> object:
        handed.append(True)
        return real()

    monkeypatch.setattr(image_resize, "_helper_pool", counting)
    small = image_resize.resized(noisy_photo(800, 600), (512, 384))
    rgba = image_resize.resized(noisy_photo(1500, 1000).convert("RGBA"), (1152, 768))
    assert (small.size, rgba.size, rgba.mode) == ((512, 384), (1152, 768), "RGBA")
    assert handed == []
    image_resize.resized(noisy_photo(1500, 1000), (1152, 768))
    assert handed == [True]


def test_a_second_preparation_reuses_the_memory_of_the_first_and_at_most_64_mb_stay_held() -> None:
    """The pixel memory of a prepared image is kept for the next one (fresh pages cost a kernel fault each: 4 ms a
    photo on a virtual machine), four blocks of at most 16 MB at most."""
    from PIL import _imaging

    from tests.images import jpeg
    from tools import image_decode, image_sizing, imaging

    data = jpeg(3000, 2000)
    target = image_sizing.target(3000, 2000, detail="high", model="gpt-5")
    imaging.prepare(data, target=target, max_pixels=10**8)
    before = _imaging.get_stats()
    imaging.prepare(data, target=target, max_pixels=10**8)
    after = _imaging.get_stats()
    assert after["reused_blocks"] > before["reused_blocks"]
    assert after["blocks_cached"] <= image_decode.RETAINED_BLOCKS == _imaging.get_blocks_max() == 4
    assert _imaging.get_block_size() <= 16 * 2**20


def test_pillows_own_setting_decides_how_many_blocks_stay_held() -> None:
    script = "import tools.image_decode; from PIL import _imaging; print(_imaging.get_blocks_max())"
    env = {**os.environ, "PILLOW_BLOCKS_MAX": "0"}
    shown = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "0"
