"""core.heap: memory freed inside ``retained_heap()`` stays mapped until the outermost exit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from prunetui.core import heap

MIB = 1024 * 1024


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise KeyError("VmRSS")


def test_freed_memory_is_kept_inside_and_returned_after() -> None:
    libc = heap._glibc()
    if libc is None:
        pytest.skip("glibc only: elsewhere retained_heap() is a no-op")
    libc.malloc_trim(0)  # earlier tests may have left freed memory mapped that would be reused
    base = _rss()
    with heap.retained_heap():
        with heap.retained_heap():
            pass
        # Leaving the inner block must not end the retention. Six 8 MiB tensors (below the
        # mmap threshold, so from the heap), written so that their pages are resident.
        chunks = [torch.ones(2 * MIB) for _ in range(6)]
        del chunks
        held = _rss() - base
    returned = _rss() - base
    assert held >= 40 * MIB, f"only {held / MIB:.1f} MiB of 48 MiB freed stayed mapped"
    assert returned <= 16 * MIB, f"{returned / MIB:.1f} MiB still mapped after the exit"
