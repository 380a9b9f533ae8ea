"""glibc's allocator, set for a process whose work is image buffers of a few megabytes each.

By default glibc gives each thread that allocates an arena of its own (up to eight per core), and gives back to
the system any free memory at the top of a heap past a threshold that follows the largest block freed so far.
Each image operation runs in whichever worker thread is free, so its buffers (the file's bytes, the decoded
pixels, the resized copy: some 20 MB for a 24 MP photo) mostly land on pages the kernel has to fault in again,
one by one: about 1,500 faults for reading the photo and 300 to 900 in preparing it, at 2 to 3 us each on a
virtual machine, every time.

One arena for every thread, blocks under 32 MB taken from the heap, and 64 MB of free heap kept rather than
given back: the next image reuses the last one's pages. Measured side by side on the 24 MP photo, `load_image`
+ `chat` over stdio (SQLite store, 2 cores, two server processes a side): 3% and 7% less time in a slower hour
(60 and 40 pairs), the same time in a fast one, when a fault costs little. Two groups of processes running the
same code later differed by 6% in that harness, so the faults saved are the firm part of that measurement. The
cost: up to 64 MB more resident memory kept between images. Blocks of 32 MB and more are still mapped alone, and
returned as soon as they are freed.

A user's own settings win: with any malloc tunable in the environment (GLIBC_TUNABLES, MALLOC_ARENA_MAX, ...)
nothing is changed. Other C libraries (musl, macOS, Windows) are left as they are.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

log = logging.getLogger(__name__)

# mallopt(3) parameters (malloc.h) and the values set.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
SETTINGS = {M_ARENA_MAX: 1, M_MMAP_THRESHOLD: 32 * 1024 * 1024, M_TRIM_THRESHOLD: 64 * 1024 * 1024}
# The environment variables through which glibc takes malloc settings at start-up.
_USER_SETTINGS = (
    "MALLOC_ARENA_MAX",
    "MALLOC_ARENA_TEST",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
)


def user_chose(environ: Mapping[str, str]) -> bool:
    """Whether the environment sets glibc's malloc itself."""
    return "glibc.malloc." in environ.get("GLIBC_TUNABLES", "") or any(name in environ for name in _USER_SETTINGS)


def glibc() -> bool:
    if sys.platform != "linux":
        return False
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None  # None on musl; no file is read (platform.libc_ver would)
    except (ValueError, OSError):
        return False


def tune(environ: Mapping[str, str] = os.environ) -> bool:
    """Set glibc's malloc as described above; whether it was. Call it before the process starts threads: a thread
    that already has an arena of its own keeps it."""
    if not glibc() or user_chose(environ):
        return False
    import ctypes  # 2 to 5 ms: only where it is used

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = all(mallopt(parameter, value) == 1 for parameter, value in SETTINGS.items())
    if not done:
        log.warning("glibc refused a malloc setting; image buffers may be faulted in afresh each time")
    return done
