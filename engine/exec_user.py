"""Who an exec'd command runs as, and becoming that user (engine/exec.py's command process).

`labtui exec -u USER[:GROUP]` is resolved against the container's own /etc/passwd and
/etc/group, read after setns(CLONE_NEWNS) (the joiner is in the container's mount namespace by
then), with runc's rules (libcontainer/user). The command's process then drops to that user:
setgroups, setgid, setuid, in that order, keeping its capabilities across setuid so that
security.apply_before_exec can still drop the bounding set.

Everything here is imported by engine/exec.py up front: after setns(CLONE_NEWNS) the host's
filesystem, and so any lazy import, is gone.
"""

from __future__ import annotations

import ctypes
import os

from engine import syscalls as sc
from engine.errors import ExecError
from engine.record import dataclass
from engine.steps import Recorder

PR_SET_KEEPCAPS = 8
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


@dataclass
class ExecUser:
    uid: int
    gid: int
    groups: list[int]
    home: str
    name: str | None = None


def parse_passwd(text: str) -> list[tuple[str, int, int, str]]:
    """name, uid, gid, home per valid line of an /etc/passwd (passwd(5))."""
    out = []
    for line in text.splitlines():
        f = line.split(":")
        if len(f) < 7 or line.startswith("#"):
            continue
        try:
            out.append((f[0], int(f[2]), int(f[3]), f[5] or "/"))
        except ValueError:
            continue
    return out


def parse_group(text: str) -> list[tuple[str, int, list[str]]]:
    """name, gid, members per valid line of an /etc/group (group(5))."""
    out = []
    for line in text.splitlines():
        f = line.split(":")
        if len(f) < 4 or line.startswith("#"):
            continue
        try:
            out.append((f[0], int(f[2]), [m for m in f[3].split(",") if m]))
        except ValueError:
            continue
    return out


def resolve_user(spec: str | None, passwd: str, group: str) -> ExecUser:
    """USER[:GROUP] against the container's own files, with runc's rules (libcontainer/user):
    a name must exist; a number need not (its gid is then 0 and its home /); supplementary groups
    are the groups that list the user, unless a group was given explicitly."""
    user_part, _, group_part = (spec or "0").partition(":")
    users = parse_passwd(passwd)
    match = None
    if user_part.isdigit():
        uid = int(user_part)
        match = next((u for u in users if u[1] == uid), None)
    else:
        match = next((u for u in users if u[0] == user_part), None)
        if match is None:
            raise ExecError(f"unable to find user {user_part}: no matching entries in passwd file", exit_code=126)
        uid = match[1]
    gid = match[2] if match else 0
    home = match[3] if match else "/"
    name = match[0] if match else None
    groups_db = parse_group(group)
    groups: list[int] = []
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            g = next((g for g in groups_db if g[0] == group_part), None)
            if g is None:
                raise ExecError(f"unable to find group {group_part}: no matching entries in group file",
                                exit_code=126)
            gid = g[1]
    elif name is not None:
        groups = [g[1] for g in groups_db if name in g[2]]
    return ExecUser(uid, gid, list(dict.fromkeys(groups)), home, name)


def read_container_file(path: str) -> str:
    """A file as the process sees it ("" when unreadable). After setns(CLONE_NEWNS) that is the
    container's file, written by whoever controls the container: undecodable bytes are replaced."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def set_user(rec: Recorder, user: ExecUser) -> None:
    """setgroups, setgid, setuid, in that order (after setuid we could no longer change groups).

    For a non-root user the capabilities are kept across setuid (PR_SET_KEEPCAPS) and made
    effective again, so security.apply_before_exec can still drop the bounding set as it does for
    root; execve then clears them anyway for a non-root user without file capabilities.
    """
    groups = ",".join(map(str, user.groups))
    # In a user namespace with setgroups "deny" the call is refused (the joiner already cleared
    # the groups on the host side), as runc skips it.
    may_setgroups = read_container_file("/proc/self/setgroups").strip() != "deny"
    shell = f"setpriv --reuid={user.uid} --regid={user.gid} "
    if may_setgroups:
        shell += f"--groups={groups}" if groups else "--clear-groups"
    else:
        groups = "- (setgroups deny)"
    with rec.step("process", "setuid", target=user.name or str(user.uid),
                  value=f"uid={user.uid} gid={user.gid} groups={groups or '-'}", shell=shell.strip()):
        if user.uid != 0:
            sc.prctl(PR_SET_KEEPCAPS, 1)
        if may_setgroups:
            os.setgroups(user.groups)
        os.setgid(user.gid)
        os.setuid(user.uid)
        if user.uid != 0:
            _effective_from_permitted()
            sc.prctl(PR_SET_KEEPCAPS, 0)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _effective_from_permitted() -> None:
    """capset(2): effective := permitted (setuid to non-zero empties the effective set)."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.capget(ctypes.byref(hdr), data) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    for d in data:
        d.effective = d.permitted
    if _libc.capset(ctypes.byref(hdr), data) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
