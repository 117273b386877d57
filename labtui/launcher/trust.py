"""Whom the warm helper serves: a root caller confined exactly as the helper is, and no one else.

A worker runs the caller's command with the helper's rights, not the caller's: its namespaces,
capabilities, cgroup and seccomp state are the helper's, and so are those of the container's
supervisor it starts. Being root (uid 0) is not enough to be served. A root process whose
bounding set lost a capability, that lives in another mount, network or PID namespace (a
container, `unshare`), in another cgroup, under a seccomp filter or with no_new_privs would
otherwise have its command run unconfined, outside the world it was put in.

So the helper compares, for each request, what proc(5) says of the caller with what it says of
the helper itself:
  - every namespace, /proc/PID/ns/* (namespaces(7)): mnt, net, pid, uts, ipc, user, cgroup,
    time, and the pid/time namespaces for children;
  - the capability sets CapInh, CapPrm, CapEff, CapBnd and CapAmb (capabilities(7));
  - /proc/PID/cgroup, every hierarchy's line (cgroups(7));
  - Seccomp, Seccomp_filters and NoNewPrivs (seccomp(2), PR_SET_NO_NEW_PRIVS in prctl(2)).
Any difference, and the caller is refused ("R"): its launcher runs the command the cold way, in
its own process and so in its own confinement. A filter's program cannot be read back and
compared, so a helper that runs under a seccomp filter itself serves no one.

The facts are read by PID, and a PID can be reused once its process is gone. So they are read
through a pidfd of the peer: SO_PEERPIDFD (socket(7), Linux 6.5) names the very process that
connected; after reading, the pidfd's fdinfo still showing that PID proves the process was not
reaped meanwhile, so the PID was still its own (pidfd_open(2)).
"""

from __future__ import annotations

import os
import socket
import struct

from engine import procfs

SO_PEERPIDFD = getattr(socket, "SO_PEERPIDFD", 77)  # Linux 6.5 (socket(7)); Python 3.11 lacks the name
STATUS_KEYS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "Seccomp", "Seccomp_filters", "NoNewPrivs")
LABELS = {"CapInh": "inheritable capabilities", "CapPrm": "permitted capabilities",
          "CapEff": "effective capabilities", "CapBnd": "capability bounding set",
          "CapAmb": "ambient capabilities", "Seccomp": "seccomp mode", "Seccomp_filters": "seccomp filters",
          "NoNewPrivs": "no_new_privs", "cgroup": "cgroup"}


def facts(pid: int | str) -> dict[str, str | None] | None:
    """What confines a process, from /proc/PID ("ns:KIND" keys for its namespaces, as
    "device:inode"); None when it is gone."""
    try:
        status = procfs.status(pid)
    except OSError:
        return None
    out: dict[str, str | None] = {k: status.get(k) for k in STATUS_KEYS}
    out["cgroup"] = procfs.read_text(f"/proc/{pid}/cgroup")
    for kind, (dev, ino) in procfs.namespaces(pid).items():
        out[f"ns:{kind}"] = f"{dev}:{ino}"
    return out


def own_facts(cached: dict[str, str | None]) -> dict[str, str | None]:
    """The helper's facts: its namespaces, capabilities and seccomp state cannot change unless it
    changes them, but anyone may move it to another cgroup, so that is read again."""
    return {**cached, "cgroup": procfs.read_text("/proc/self/cgroup")}


def differences(own: dict[str, str | None], theirs: dict[str, str | None]) -> list[str]:
    """What differs between two processes' facts(), in words (empty: the same confinement)."""
    out = []
    for key in sorted(set(own) | set(theirs)):
        if own.get(key) != theirs.get(key) or own.get(key) is None:
            out.append(f"{key[3:]} namespace" if key.startswith("ns:") else LABELS[key])
    if own.get("Seccomp") != "0":
        out.append("seccomp filter (the helper's own cannot be compared)")
    return out


def peer(conn: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process that connected (SO_PEERCRED, unix(7))."""
    pid, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return pid, uid


def _peer_pidfd(conn: socket.socket, pid: int) -> int:
    try:
        return conn.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD)
    except OSError:  # before Linux 6.5: a pidfd opened now, which at least pins the PID from here on
        return os.pidfd_open(pid)


def pidfd_pid(pidfd: int) -> int:
    """The PID a pidfd refers to, -1 once its process has been reaped (fdinfo "Pid:", proc(5))."""
    for line in (procfs.read_text(f"/proc/self/fdinfo/{pidfd}") or "").splitlines():
        if line.startswith("Pid:"):
            return int(line.split()[1])
    return -1


def refusal(conn: socket.socket, own: dict[str, str | None]) -> tuple[int, str | None]:
    """The caller's PID, and why it is not served (for the helper's log) or None: it may be."""
    pid, uid = peer(conn)
    if uid != 0:
        return pid, "not root"
    try:
        pidfd = _peer_pidfd(conn, pid)
    except OSError:
        return pid, "gone before it was checked"
    try:
        theirs = facts(pid)
        if theirs is None or pidfd_pid(pidfd) != pid:
            return pid, "gone before it was checked"
    finally:
        os.close(pidfd)
    diff = differences(own, theirs)
    return pid, ("its " + ", ".join(diff) + " differ from the helper's") if diff else None
