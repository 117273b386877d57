"""System V IPC objects (sysvipc(7)): shared memory, semaphore sets and message queues, each IPC
namespace with its own (ipc_namespaces(7)).

/proc/sysvipc/{shm,sem,msg} list the objects of the IPC namespace of the task that opens them,
whichever procfs they are read through (/proc/PID/root/proc/sysvipc included), and shmget(2)
creates in the caller's. So to read or create in a container's namespace a task has to join it:
a short-lived thread does, since setns(2) with CLONE_NEWIPC moves only the calling thread (as
engine/network/netlink.py does for a network namespace's socket), and exits; the process, and
a multi-threaded app, stays on the host.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from engine import syscalls
from engine.procfs import read_text

KINDS = ("shm", "sem", "msg")
_SIZE_COLUMN = {"shm": "size", "sem": "nsems", "msg": "qnum"}
_ID_COLUMN = {"shm": "shmid", "sem": "semid", "msg": "msqid"}

# <sys/ipc.h>
IPC_PRIVATE = 0
IPC_CREAT = 0o1000
IPC_RMID = 0

T = TypeVar("T")


@dataclass
class IpcObject:
    kind: str
    key: str
    id: str
    perms: str
    size: str  # bytes (shm), semaphores in the set (sem), messages queued (msg)
    owner: str  # uid


def parse_sysvipc(kind: str, text: str) -> list[IpcObject]:
    """One /proc/sysvipc/KIND file (a header line naming the columns, one object a line)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    header = lines[0].split()
    out = []
    for line in lines[1:]:
        row = dict(zip(header, line.split(), strict=False))
        out.append(IpcObject(kind, f"0x{int(row.get('key', '0')) & 0xFFFFFFFF:08x}", row.get(_ID_COLUMN[kind], "?"),
                             row.get("perms", "?"), row.get(_SIZE_COLUMN[kind], "?"), row.get("uid", "?")))
    return out


def objects() -> list[IpcObject]:
    """Every object of the calling thread's IPC namespace."""
    out = []
    for kind in KINDS:
        out += parse_sysvipc(kind, read_text(f"/proc/sysvipc/{kind}") or "")
    return out


def in_namespace_of(pid: int, fn: Callable[[], T]) -> T:
    """fn() in a thread that joined pid's IPC namespace; raises what fn or setns(2) raised
    (OSError when pid is gone)."""
    from engine.namespaces import call_in

    fd = os.open(f"/proc/{pid}/ns/ipc", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return call_in(fd, syscalls.CLONE_NEWIPC, fn, "labtui-ipcns")
    finally:
        os.close(fd)


def namespace_objects(pid: int) -> list[IpcObject]:
    """Every object of pid's IPC namespace (a container's, through its init)."""
    return in_namespace_of(pid, objects)


# ---- shared memory segments (shmget(2), shmat(2), shmctl(2)) ----------------------------------------

_LIBC: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    global _LIBC
    if _LIBC is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
        libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
        libc.shmat.restype = ctypes.c_void_p
        libc.shmdt.argtypes = [ctypes.c_void_p]
        libc.shmctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
        _LIBC = libc
    return _LIBC


def _error(call: str) -> OSError:
    e = ctypes.get_errno()
    return OSError(e, f"{call}: {os.strerror(e)}")


def shm_create(size: int = 4096) -> int:
    """A new private segment (mode 0600) in the calling thread's IPC namespace; its shmid. Nobody
    attaches it: it lives until removed or until its namespace dies."""
    shmid = _libc().shmget(IPC_PRIVATE, size, IPC_CREAT | 0o600)
    if shmid < 0:
        raise _error("shmget")
    return shmid


def shm_hold(size: int = 4096) -> tuple[int, int]:
    """A private segment attached to this process and marked for removal at once: it stays listed
    while the process holds it, and the kernel frees it when the process detaches or exits, crash
    or not (shmctl(2) IPC_RMID). Returns (shmid, address)."""
    libc = _libc()
    shmid = shm_create(size)
    addr = libc.shmat(shmid, None, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        err = _error("shmat")
        libc.shmctl(shmid, IPC_RMID, None)
        raise err
    libc.shmctl(shmid, IPC_RMID, None)
    return shmid, addr


def shm_detach(addr: int) -> None:
    """Detach a segment shm_hold attached (the kernel frees it: it was marked for removal)."""
    _libc().shmdt(addr)


def shm_create_in(pid: int, size: int = 4096) -> int:
    """shm_create in pid's IPC namespace: the segment lives until that namespace dies."""
    return in_namespace_of(pid, lambda: shm_create(size))
