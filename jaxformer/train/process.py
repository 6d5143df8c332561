"""Process tuning for training, applied by the training entry points (not on import).

XLA:CPU allocates each step's scratch buffer (hundreds of MB) afresh from one of its
threads; glibc serves a block that large from a new mmap and unmaps it on free, so
every step page-faults and zeroes it again (~15% of a CPU step). With one arena, no
mmap and no trimming, the next step gets the same pages back. It is best applied
before JAX's threads first allocate (``jaxformer train`` does so before importing
JAX); elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import sys


@functools.cache
def keep_freed_memory() -> None:
    """Make glibc malloc reuse the memory XLA frees instead of returning it to the OS."""
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
    mallopt(M_ARENA_MAX, 1)
    mallopt(M_MMAP_MAX, 0)
    mallopt(M_TRIM_THRESHOLD, -1)  # never trim: a medium model's scratch exceeds any int limit
