"""The pages a process forked from labtui's helper writes, and copying just those ahead of time.

A forked process shares its parent's pages until it writes one; the kernel then copies it
(copy-on-write), ~3 us a page. The helper's spares copy ahead, while the machine is idle, the
pages their command will write (prefault), so that the command itself takes no such fault.
Copying every private page (~6,500, 26 MB) cost ~20 ms of CPU per spare per command and flushed
the caches of whatever ran next; a command writes only ~1,300 (a worker) to ~1,800 (a
supervisor) of them, and nearly the same ones each time.

So each process learns: when it is done, the pages it maps alone (present and exclusively mapped,
/proc/self/pagemap bits 63 and 56, proc(5)) are the ones it copied or made. Their addresses
are added to a file per kind of process, and the next spare of that kind copies those (and
nothing else: a spare with nothing learned yet takes its faults, and teaches). Addresses are
only meaningful in the helper's address space, so the files live and die with one helper.
"""

from __future__ import annotations

import os
from array import array
from bisect import bisect_left

PAGE = os.sysconf("SC_PAGE_SIZE")
PM_PRESENT = 1 << 63
PM_EXCLUSIVE = 1 << 56  # "page exclusively mapped" (Linux 4.2)
MADV_POPULATE_WRITE = 23  # Linux 5.14: fault the range in for writing, as a write would (madvise(2))


def private_writable() -> list[tuple[int, int]]:
    """(start, end) of this process's private writable mappings: the ones a fork shares."""
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            perms = parts[1]
            name = parts[5] if len(parts) > 5 else ""
            if perms.startswith("rw") and perms[3] == "p" and name not in ("[vvar]", "[vdso]", "[vsyscall]"):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                out.append((lo, hi))
    return out


def written() -> array:
    """Sorted addresses of the pages this process maps alone."""
    pages = array("Q")
    fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for lo, hi in private_writable():
            entries = array("Q", os.pread(fd, (hi - lo) // PAGE * 8, lo // PAGE * 8))
            pages.extend(lo + i * PAGE for i, e in enumerate(entries)
                         if e & PM_PRESENT and e & PM_EXCLUSIVE)
    finally:
        os.close(fd)
    return pages


def load(path: str) -> array | None:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    pages = array("Q")
    pages.frombytes(data[: len(data) // 8 * 8])
    return pages


def remember(path: str) -> None:
    """Add the pages this process wrote to the file (its union with what is there)."""
    pages = set(written())
    old = load(path)
    if old is not None:
        pages.update(old)
    tmp = f"{path}.{os.getpid()}.tmp"
    # 0600 whatever the umask: the process writing is a worker that took its caller's.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    with open(fd, "wb") as f:
        array("Q", sorted(pages)).tofile(f)
    os.rename(tmp, path)


def ranges(pages: array, lo: int, hi: int) -> list[tuple[int, int]]:
    """Runs of consecutive pages of the sorted `pages` within [lo, hi), as (start, length)."""
    out: list[tuple[int, int]] = []
    i = bisect_left(pages, lo)
    while i < len(pages) and pages[i] < hi:
        start = end = pages[i]
        i += 1
        while i < len(pages) and pages[i] == end + PAGE and pages[i] < hi:
            end = pages[i]
            i += 1
        out.append((start, end + PAGE - start))
    return out


def prefault(pages: array | None) -> int:
    """Copy those of the pages that are mapped here now; returns how many bytes were asked for."""
    if not pages:
        return 0
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    done = 0
    for lo, hi in private_writable():
        for start, length in ranges(pages, lo, hi):
            libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(length), MADV_POPULATE_WRITE)
            done += length
    return done
