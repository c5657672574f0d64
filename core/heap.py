"""Keep freed memory in the process while a loop allocates and frees the same large tensors.

Why: glibc's malloc hands memory back to the OS as soon as more than its trim threshold lies
free at the top of the heap (and serves blocks above its mmap threshold by ``mmap``, unmapped
on free). A loop that allocates and frees ~100 MB per iteration, as SynFlow does on vgg16
(magnitudes, gradients, scores), then takes a page fault per 4 KiB on every iteration, and
the kernel zeroes each page: 35 ms of 185 ms per SynFlow iteration on vgg16 on the 2-core dev
box (bench/NOTES.md §2). Inside ``retained_heap()`` freed memory stays mapped and the next
iteration reuses it; on exit it is handed back (``malloc_trim``).

Only glibc has these knobs; elsewhere (macOS, Windows, musl) this is a no-op.
"""

from __future__ import annotations

import ctypes
import platform
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's ceiling for the mmap threshold on 64-bit, and the trim threshold its dynamic
# adjustment settles at next to it: where a long-running PyTorch process ends up anyway (the
# first free of a large mmapped block raises both), so leaving them there changes little.
_MMAP_THRESHOLD = 32 * 1024 * 1024
_TRIM_SETTLED = 2 * _MMAP_THRESHOLD
# While retained: larger than any one free at the top of the heap in a pruning loop.
_TRIM_RETAINED = 1 << 30

_lock = threading.Lock()
_depth = 0


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt  # noqa: B018 - raises AttributeError where the symbol is missing
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


@contextmanager
def retained_heap() -> Iterator[None]:
    """Within the block, memory freed by the process stays mapped for reuse; on leaving the
    outermost block it is returned to the OS. Nests and may be entered from several threads
    (the settings are process-wide: the last one out restores them)."""
    global _depth
    libc = _glibc()
    if libc is None:
        yield
        return
    with _lock:
        if _depth == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
            libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_RETAINED)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_SETTLED)
                libc.malloc_trim(0)
