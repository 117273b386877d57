"""Reading /proc (proc(5)): one reader per fact, for every part of labtui that needs it.

The engine, the CLI, the app and the lessons read a process's status, its children, the members
of a PID namespace, its mount table and its network counters through these functions, so each
fact has one parser. Each takes the /proc root as an argument where a unit test needs a fake one.
"""

from __future__ import annotations

import os
import re

PROC = "/proc"


def status(pid: int | str, proc: str = PROC) -> dict[str, str]:
    """Every "Key:\\tvalue" line of /proc/PID/status. Raises OSError when the process is gone."""
    out: dict[str, str] = {}
    with open(f"{proc}/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def status_field(pid: int | str, key: str) -> str | None:
    """One field, or None when the process is gone or has no such field."""
    try:
        return status(pid).get(key)
    except OSError:
        return None


def read_text(path: str) -> str | None:
    """A whole (small) file, or None when it cannot be read (the process went away, a v1 file
    absent on v2, ...)."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def children(pid: int, tid: int | None = None, proc: str = PROC) -> list[int]:
    """The children of one thread (/proc/PID/task/TID/children; TID defaults to the main thread,
    the only one labtui's init and a container's shell have). [] when the process is gone."""
    text = read_text(f"{proc}/{pid}/task/{pid if tid is None else tid}/children")
    return [int(x) for x in text.split()] if text else []


def first_child(pid: int | None) -> int | None:
    """A container's main process: the one child of labtui's init (engine/init.py forks one)."""
    if pid is None:
        return None
    kids = children(pid)
    return kids[0] if kids else None


def descendants(pid: int, proc: str = PROC) -> list[int]:
    """pid and every process below it, breadth first, through the children file of every thread
    (a thread may fork too, and its child's parent is the thread: proc(5))."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        out.append(p)
        try:
            tasks = os.listdir(f"{proc}/{p}/task")
        except OSError:
            continue
        for t in tasks:
            todo += children(p, int(t), proc)
    return out


def ns_inode(pid: int | str, kind: str, proc: str = PROC) -> int | None:
    """The inode of /proc/PID/ns/KIND (the namespace's identity), None when the process is gone."""
    try:
        return os.stat(f"{proc}/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def pids(proc: str = PROC) -> list[int]:
    """Every process on the host (the numeric entries of /proc)."""
    return [int(n) for n in os.listdir(proc) if n.isdigit()]


def pidns_groups(proc: str = PROC) -> dict[int, list[int]]:
    """Every process on the host grouped by PID namespace (inode of /proc/PID/ns/pid): one scan
    of /proc for many containers at once."""
    out: dict[int, list[int]] = {}
    for pid in pids(proc):
        ino = ns_inode(pid, "pid", proc)
        if ino is not None:
            out.setdefault(ino, []).append(pid)
    return out


def pidns_members(pid: int, proc: str = PROC) -> list[int]:
    """Host PIDs of every process in pid's PID namespace, sorted; [] when pid is gone."""
    target = ns_inode(pid, "pid", proc)
    if target is None:
        return []
    return sorted(p for p in pids(proc) if ns_inode(p, "pid", proc) == target)


def cmdline(pid: int, proc: str = PROC) -> list[str]:
    """argv of a process ([] for a kernel thread or a process that is gone)."""
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]] if raw else []


def _unescape_mount(path: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as three octal digits (proc(5)).
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def parse_mountinfo(text: str) -> list[dict[str, str]]:
    """Lines of /proc/PID/mountinfo as dicts: id, parent, root, mountpoint, options, fstype,
    source, super_options, optional (the propagation fields: shared:N, master:N)."""
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        f = left.split()
        r = right.split()
        if len(f) < 6 or len(r) < 2:
            continue
        out.append({"id": f[0], "parent": f[1], "root": _unescape_mount(f[3]),
                    "mountpoint": _unescape_mount(f[4]), "options": f[5], "optional": " ".join(f[6:]),
                    "fstype": r[0], "source": r[1], "super_options": r[2] if len(r) > 2 else ""})
    return out


def mountinfo(pid: int | str = "self", proc: str = PROC) -> list[dict[str, str]]:
    """The mount table as a process sees it ([] when the process is gone)."""
    return parse_mountinfo(read_text(f"{proc}/{pid}/mountinfo") or "")


def cpu_ticks(pid: int, proc: str = PROC) -> int:
    """CPU time the process used, utime + stime (fields 14 and 15 of /proc/PID/stat), in clock
    ticks (os.sysconf("SC_CLK_TCK") a second); 0 when it is gone. The fields are counted after
    the command name's closing parenthesis: the name itself may hold spaces and parentheses."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            data = f.read()
        rest = data[data.rindex(b")") + 2:].split()
        return int(rest[11]) + int(rest[12])
    except (OSError, ValueError, IndexError):
        return 0


def rss_pages(pid: int, proc: str = PROC) -> int:
    """Resident pages of the process (second field of /proc/PID/statm); 0 when it is gone."""
    text = read_text(f"{proc}/{pid}/statm")
    try:
        return int(text.split()[1]) if text else 0
    except (ValueError, IndexError):
        return 0


def namespaces(pid: int | str, proc: str = PROC) -> dict[str, tuple[int, int]]:
    """Every namespace of a process, /proc/PID/ns/* (cgroup, ipc, mnt, net, pid,
    pid_for_children, time, time_for_children, user, uts), as (device, inode): two processes
    are in the same namespace exactly when these are equal (namespaces(7)). {} when the process
    is gone; a kind the kernel lacks is simply absent."""
    try:
        kinds = os.listdir(f"{proc}/{pid}/ns")
    except OSError:
        return {}
    out = {}
    for kind in kinds:
        try:
            st = os.stat(f"{proc}/{pid}/ns/{kind}")
        except OSError:
            continue
        out[kind] = (st.st_dev, st.st_ino)
    return out
