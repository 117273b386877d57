"""labtui/launcher/written_pages.py: learning which pages a process wrote, and the runs a spare copies."""

from __future__ import annotations

import mmap
import os
from array import array

import pytest

from labtui.launcher import written_pages as pages

P = pages.PAGE


def test_ranges_coalesce_consecutive_pages_within_the_mapping():
    hot = array("Q", [0x1000 * i for i in (1, 2, 3, 7, 8, 20)])
    assert pages.ranges(hot, 0, 0x100000) == [(0x1000, 3 * P), (0x7000, 2 * P), (0x14000, P)]
    assert pages.ranges(hot, 0x2000, 0x8000) == [(0x2000, 2 * P), (0x7000, P)]  # clipped to [lo, hi)
    assert pages.ranges(hot, 0x30000, 0x40000) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="pagemap's flags are root's to read")
def test_a_child_has_written_exactly_the_pages_it_touched(tmp_path):
    """Forked, a page is shared until written: the child maps alone only what it wrote."""
    buf = mmap.mmap(-1, 64 * P, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buf.write(b"x" * (64 * P))  # present in the parent
    import ctypes

    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            buf[5 * P] = 1
            buf[6 * P] = 1
            mine = set(pages.written())
            os.write(w, bytes([base + 5 * P in mine, base + 6 * P in mine, base + 7 * P in mine]))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(r, 3) == b"\x01\x01\x00"
    os.close(r)
    os.close(w)
