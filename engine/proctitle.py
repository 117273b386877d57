"""What a container reads of labtui's own processes in /proc/PID/cmdline and /proc/PID/environ.

The container's PID 1 is a fork of the supervisor, a Python interpreter: without this its
/proc/1/cmdline would read "/opt/labtui-venv/bin/python -m engine.supervisor ..." and its
/proc/1/environ the host's environment (PYTHONPATH, the checkout's path, the host's PATH).
cmdline is world-readable (proc(5): no ptrace check, unlike environ, maps or exe), so every
process of the container could learn where labtui lives on the host.

The kernel does not read those files from the process's stack as such: it reads the bytes between
mm->arg_start and mm->arg_end (and env_start..env_end), addresses it recorded at execve(2).
prctl(PR_SET_MM, PR_SET_MM_MAP, &map, sizeof map) (prctl(2); CRIU's call for restoring them)
moves those four pointers to a buffer of our own, holding a short argv and the container's
environment, as docker-init's would show. PR_SET_MM_MAP checks no capability (kernel/sys.c
prctl_set_mm_map: it only validates the addresses; changing exe_fd, which we do not, would need
CAP_CHECKPOINT_RESTORE), so it works in a user namespace too; the single PR_SET_MM_ARG_START
and friends would need CAP_SYS_RESOURCE in the initial user namespace. It needs a kernel built
with CONFIG_CHECKPOINT_RESTORE (Debian's is); elsewhere it fails with EINVAL.

The call sets every field of the map at once, so the others (code, data, heap, stack) are read
back from /proc/self/stat and the current program break from sbrk(0), as LXC's setproctitle does.
"""

from __future__ import annotations

import ctypes
import os

PR_SET_MM = 35  # <linux/prctl.h>
PR_SET_MM_MAP = 14

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.sbrk.argtypes = [ctypes.c_long]
_libc.sbrk.restype = ctypes.c_void_p

_ADDRS = ("start_code", "end_code", "start_data", "end_data", "start_brk", "brk", "start_stack",
          "arg_start", "arg_end", "env_start", "env_end")
# /proc/self/stat field numbers (proc(5)) of the addresses the map must give back unchanged.
_STAT_FIELDS = {"start_code": 26, "end_code": 27, "start_stack": 28, "start_data": 45, "end_data": 46,
                "start_brk": 47}


class PrctlMmMap(ctypes.Structure):
    """struct prctl_mm_map (<linux/prctl.h>)."""

    _fields_ = [*((name, ctypes.c_uint64) for name in _ADDRS),
                ("auxv", ctypes.c_uint64), ("auxv_size", ctypes.c_uint32), ("exe_fd", ctypes.c_uint32)]


# The buffer the kernel now reads cmdline and environ from: it must live as long as the process.
_KEPT: list[ctypes.Array] = []


def _stat_addresses() -> dict[str, int]:
    with open("/proc/self/stat", "rb") as f:
        text = f.read()
    # comm (field 2) may contain spaces and parentheses: fields 3.. start after the last ')'
    rest = text[text.rindex(b")") + 2:].split()
    return {name: int(rest[n - 3]) for name, n in _STAT_FIELDS.items()}


def blob(words: list[str]) -> bytes:
    """argv or envp as the kernel lays them out: each string NUL-terminated, one after another."""
    return b"".join(w.encode() + b"\0" for w in words)


def set_cmdline_environ(argv: list[str], env: list[str]) -> None:
    """Make /proc/self/cmdline read argv and /proc/self/environ read env (KEY=VALUE strings).

    Inherited by fork (the map is part of the address space), replaced by the next execve.
    Raises OSError with the kernel's errno.
    """
    args, envs = blob(argv), blob(env)
    buf = ctypes.create_string_buffer(args + envs, len(args) + len(envs))
    start = ctypes.addressof(buf)
    m = PrctlMmMap(**_stat_addresses())
    m.arg_start, m.arg_end = start, start + len(args)
    m.env_start, m.env_end = start + len(args), start + len(args) + len(envs)
    m.auxv, m.auxv_size = 0, 0  # keep the auxiliary vector
    m.exe_fd = 0xFFFFFFFF  # (u32)-1: keep /proc/self/exe
    # Last, right before the call: the break as it is now (the map sets mm->brk too, and must not
    # move it back under an allocation made since it was read).
    m.brk = _libc.sbrk(0)
    if _libc.prctl(PR_SET_MM, PR_SET_MM_MAP, ctypes.addressof(m), ctypes.sizeof(m), 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_MM, PR_SET_MM_MAP): {os.strerror(err)}")
    _KEPT[:] = [buf]  # the previous buffer (a fork's copy of it) is no longer read by anyone
