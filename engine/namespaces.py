"""Namespaces: which ones a container gets, and the small operations done inside them."""

from __future__ import annotations

import fcntl
import os
import socket
import struct
from collections.abc import Callable
from typing import TypeVar

from engine import syscalls as sc
from engine.steps import Recorder

T = TypeVar("T")

NS_KINDS = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def clone_flags(config: dict) -> int:
    """Namespaces created by clone(2) itself. The cgroup namespace comes later, by unshare(2),
    once the supervisor has moved the child into its cgroup: a cgroup namespace's root is the
    cgroup its creator is in at that moment (cgroup_namespaces(7))."""
    flags = sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC
    if config.get("pid_mode") != "host":  # docker --pid=host (used by the attack lab's weak ptrace)
        flags |= sc.CLONE_NEWPID
    if config.get("network", "none") != "host":
        flags |= sc.CLONE_NEWNET
    if config.get("userns") == "private":
        # In the same clone, so the other new namespaces are owned by the new user namespace and
        # its root has capabilities over them (user_namespaces(7)); the supervisor writes the maps.
        flags |= sc.CLONE_NEWUSER
    return flags


def unshare_shell(flags: int) -> str:
    opts = " ".join(opt for bit, opt in sc.NS_UNSHARE_OPT.items() if flags & bit)
    return f"unshare {opts} --fork"


def unshare(rec: Recorder, flags: int) -> None:
    shell = unshare_shell(flags).replace(" --fork", "")
    with rec.step("namespace", "unshare", value=sc.flags_names(flags), shell=shell):
        sc.unshare(flags)


def set_hostname(rec: Recorder, name: str) -> None:
    with rec.step("uts", "sethostname", value=name, shell=f"hostname {name}"):
        sc.sethostname(name)


def loopback_up(rec: Recorder) -> None:
    """A new network namespace has only `lo`, and it is down (network_namespaces(7)).

    Done with the SIOCSIFFLAGS ioctl (netdevice(7)) rather than netlink, so a container without
    a network never pays for importing pyroute2.
    """
    with rec.step("network", "link set up", target="lo", value="IFF_UP", shell="ip link set lo up"):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            ifr = struct.pack("16sH14x", b"lo", 0)
            flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, ifr))[1]
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
        finally:
            s.close()


def ns_inodes(pid: int | str = "self") -> dict[str, int]:
    """The namespace identities of a process: the inode numbers behind /proc/PID/ns/*."""
    out = {}
    for kind in NS_KINDS:
        try:
            out[kind] = os.stat(f"/proc/{pid}/ns/{kind}").st_ino
        except OSError:
            continue
    return out


def call_in(ns_fd: int, nstype: int, fn: Callable[[], T], name: str = "labtui-setns") -> T:
    """fn() in a short-lived thread that joined the namespace open as ns_fd; returns what fn
    returned, raises the OSError of setns(2) or of fn.

    Why a thread: setns(2) with CLONE_NEWNET or CLONE_NEWIPC moves only the calling thread, so the
    process itself stays where it is; and what fn makes there keeps its namespace after the thread
    is gone (a socket belongs to the network namespace it was created in: socket(7)). Used for
    netlink and probe sockets inside a container's network namespace and for a container's SysV
    IPC objects.
    """
    import threading  # only the readers need it: a plain `labtui run` never starts a thread

    box: dict[str, object] = {}

    def enter_and_call() -> None:
        try:
            sc.setns(ns_fd, nstype)
            box["result"] = fn()
        except OSError as e:
            box["err"] = e

    t = threading.Thread(target=enter_and_call, name=name, daemon=True)
    t.start()
    t.join()
    if "err" in box:
        raise box["err"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]
