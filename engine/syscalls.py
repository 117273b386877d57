"""The one seam between labtui and the kernel for calls Python's os module lacks (3.11).

Thin ctypes wrappers that raise OSError with the real errno; callers record them as steps.
"""

from __future__ import annotations

import ctypes
import os

# Not ctypes.util.find_library("c"): it runs `ldconfig -p`, ~35 ms on every container start.
_libc = ctypes.CDLL("libc.so.6", use_errno=True)

# <linux/sched.h>
CLONE_PARENT = 0x00008000  # the new process is the caller's sibling: same parent (clone(2))
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

NS_FLAGS = {
    "mnt": CLONE_NEWNS, "uts": CLONE_NEWUTS, "ipc": CLONE_NEWIPC, "pid": CLONE_NEWPID,
    "net": CLONE_NEWNET, "cgroup": CLONE_NEWCGROUP, "user": CLONE_NEWUSER,
}
# unshare(1) long options, for the shell equivalent of a clone/unshare step.
NS_UNSHARE_OPT = {
    CLONE_NEWNS: "--mount", CLONE_NEWUTS: "--uts", CLONE_NEWIPC: "--ipc", CLONE_NEWPID: "--pid",
    CLONE_NEWNET: "--net", CLONE_NEWCGROUP: "--cgroup", CLONE_NEWUSER: "--user",
}
NS_FLAG_NAMES = {
    CLONE_NEWNS: "CLONE_NEWNS", CLONE_NEWUTS: "CLONE_NEWUTS", CLONE_NEWIPC: "CLONE_NEWIPC",
    CLONE_NEWPID: "CLONE_NEWPID", CLONE_NEWNET: "CLONE_NEWNET", CLONE_NEWCGROUP: "CLONE_NEWCGROUP",
    CLONE_NEWUSER: "CLONE_NEWUSER",
}

# <sys/mount.h>
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

MS_NAMES = [
    (MS_RDONLY, "ro"), (MS_NOSUID, "nosuid"), (MS_NODEV, "nodev"), (MS_NOEXEC, "noexec"),
    (MS_REMOUNT, "remount"), (MS_BIND, "bind"), (MS_MOVE, "move"), (MS_REC, "rec"),
    (MS_PRIVATE, "private"), (MS_SLAVE, "slave"),
]

# <linux/prctl.h>
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NAME = 15
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_SET_CHILD_SUBREAPER = 36
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

SYS_clone = 56
SYS_pivot_root = 155
SYS_setns = 308

_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _check(ret: int) -> int:
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return ret


def _b(s: str | bytes | None) -> bytes | None:
    if s is None or isinstance(s, bytes):
        return s
    return os.fsencode(s)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)))


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags))


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(SYS_pivot_root, _b(new_root), _b(put_old)))


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags))


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype))


def sethostname(name: str) -> None:
    b = name.encode()
    _check(_libc.sethostname(b, len(b)))


def prctl(option: int, a2: int = 0, a3: int = 0, a4: int = 0, a5: int = 0) -> int:
    return _check(_libc.prctl(option, a2, a3, a4, a5))


def set_comm(name: str) -> None:
    """prctl(PR_SET_NAME): the name ps and /proc/PID/comm show (15 bytes at most, prctl(2))."""
    buf = ctypes.create_string_buffer(name.encode()[:15])
    prctl(PR_SET_NAME, ctypes.addressof(buf))


def clone(flags: int) -> int:
    """fork(2) with namespace flags: the raw clone syscall with no new stack.

    Why the raw syscall and not clone(3): without CLONE_VM the child gets a copy of the address
    space, so it simply returns here like fork() does and goes on running Python. The caller
    must be single-threaded (as after fork). Returns the child's PID in the parent, 0 in the child.
    """
    import signal

    pid = _check(_libc.syscall(SYS_clone, ctypes.c_ulong(flags | signal.SIGCHLD), None, None, None, None))
    if pid == 0:
        # Let the interpreter reset its per-process state (threading, locks) as os.fork does.
        ctypes.pythonapi.PyOS_AfterFork_Child()
    return pid


def flags_names(flags: int) -> str:
    return "|".join(name for bit, name in NS_FLAG_NAMES.items() if flags & bit)


def ms_names(flags: int) -> str:
    return ",".join(name for bit, name in MS_NAMES if flags & bit)
