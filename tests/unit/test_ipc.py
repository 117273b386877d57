"""engine.ipc: /proc/sysvipc parsing (no root)."""

from __future__ import annotations

from engine import ipc

SHM = """ key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime rss swap
 0 3 1600 4096 100 100 1 0 0 0 0 0 0 1700000000 0 0
"""


def test_sysvipc_parser():
    objs = ipc.parse_sysvipc("shm", SHM)
    assert len(objs) == 1
    assert (objs[0].kind, objs[0].id, objs[0].perms, objs[0].size, objs[0].key) == ("shm", "3", "1600", "4096",
                                                                                      "0x00000000")
    assert ipc.parse_sysvipc("msg", "") == []
