"""Keep a long-running process's resident memory at what it uses, not at the most it ever used.

glibc's malloc serves a request above its mmap threshold with a mapping of its own, returned to the
system on free; below it, from heaps that rarely shrink. The threshold starts at 128 KiB but rises to the
size of every mapped block freed (up to 32 MiB), so after the first KV slot, logits batch or protobuf
buffer of some size is freed, blocks of that size come from the heap, where a freed slot leaves a hole
that later, differently sized blocks only partly fill: resident memory climbs with the high-water mark of
the load (the soak test's "+9%"), though nothing leaks. Fixing the threshold keeps large blocks mapped,
so freeing them gives the memory back; capping the arenas keeps the event loop's, gRPC's and the model
thread's small allocations from spreading over one heap per thread.

Elsewhere than glibc (macOS, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value, held fixed
ARENA_MAX = 2


def steady_allocator() -> bool:
    """Fix glibc's mmap and trim thresholds and cap its arenas for this process; False where there is no
    glibc. Call it before the process starts its threads (arenas already made stay)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(option, value) == 1 for option, value in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), (M_TRIM_THRESHOLD, MMAP_THRESHOLD_BYTES), (M_ARENA_MAX, ARENA_MAX)))
