"""glibc's malloc set for image buffers: the next image reuses the last one's pages, and a user's settings win."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from server import cli, malloc_tuning

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not malloc_tuning.glibc(), reason="glibc's malloc only (Linux with glibc)")

# In a fresh interpreter: tune (as the server's entry point does first), then an image operation's buffers, each
# time in a new worker thread, as load_image's run: the page faults of each round, as JSON.
ROUNDS = """
import json, resource, sys, threading
from server import malloc_tuning

tuned = malloc_tuning.tune()

def faults_of_one_image():
    out = []
    def run():
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        buffers = [bytearray(8 << 20), bytearray(6 << 20), bytearray(3 << 20)]  # file, pixels, resized
        del buffers
        out.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return out[0]

sys.stdout.write(json.dumps({"tuned": tuned, "faults": [faults_of_one_image() for _ in range(4)]}))
"""


def rounds(extra_env: dict[str, str]) -> tuple[bool, list[int]]:
    env = {key: value for key, value in os.environ.items() if not malloc_tuning.user_chose({key: value})}
    env.update(extra_env)
    done = subprocess.run(
        [sys.executable, "-c", ROUNDS], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    found = json.loads(done.stdout)
    return bool(found["tuned"]), [int(count) for count in found["faults"]]


def test_the_next_image_reuses_the_pages_of_the_last() -> None:
    tuned, faults = rounds({})
    assert tuned
    # 17 MB of buffers are about 4,300 pages: faulted in once, then reused by every image after.
    assert faults[0] > 2000
    assert all(count < faults[0] // 10 for count in faults[1:]), faults


def test_a_users_own_malloc_settings_are_left_alone() -> None:
    # arena_test=8 is glibc's own default: the process runs exactly as glibc would, and the buffers of every
    # image are faulted in afresh (what tuning saves).
    tuned, faults = rounds({"GLIBC_TUNABLES": "glibc.malloc.arena_test=8"})
    assert not tuned
    assert all(count > faults[0] // 2 for count in faults[1:]), faults


@pytest.mark.parametrize(
    "environ",
    [
        {"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"},
        {"GLIBC_TUNABLES": "glibc.rtld.nns=2:glibc.malloc.trim_threshold=1000000"},
        {"MALLOC_ARENA_MAX": "2"},
        {"MALLOC_TRIM_THRESHOLD_": "0"},
    ],
)
def test_any_malloc_setting_counts_as_the_users_choice(environ: dict[str, str]) -> None:
    assert malloc_tuning.user_chose(environ)
    assert not malloc_tuning.tune(environ)


def test_other_glibc_settings_do_not_count() -> None:
    assert not malloc_tuning.user_chose({"GLIBC_TUNABLES": "glibc.rtld.nns=2", "PATH": "/usr/bin"})


def test_the_entry_point_tunes_before_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    from server import settings

    calls: list[str] = []

    def tune() -> bool:
        calls.append("tune")
        return True

    def table() -> str:
        calls.append("settings")
        return ""

    monkeypatch.setattr(malloc_tuning, "tune", tune)
    monkeypatch.setattr(settings, "markdown_table", table)
    cli.main(["settings"])
    assert calls == ["tune", "settings"]
