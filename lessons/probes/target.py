"""What a probe looks at: a container by name, one of its processes, its network namespace.

The common fields of the probes (`container`, `process`) are resolved here, once, with the
messages a student reads when the thing is not there ("there is no container named web", "web
is exited, not running"): a probe raises ProbeError, the check fails with that line.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import TYPE_CHECKING

from lessons.probes.registry import ProbeError

if TYPE_CHECKING:
    from engine.state import Container

PROCESSES = ("main", "init")


def container(name: str) -> Container:
    """The container named `name` (or with that ID, or a 12-character prefix of it), whatever its
    status. Why not any unique prefix, as `labtui` accepts: a lesson's short name such as "db"
    or "a" would then find another container whose ID starts with those hex digits."""
    from engine import state
    from engine.errors import EngineError

    try:
        c = state.resolve(name)
    except EngineError:
        c = None
    if c is None or not (c.name == name.lstrip("/") or (len(name) >= 12 and c.id.startswith(name))):
        raise ProbeError(f"there is no container named {name!r}")
    return c


def running(name: str) -> Container:
    """The container, which must have live processes (running or paused) to be looked into."""
    from engine import state

    c = container(name)
    status = c.status
    if status not in (state.RUNNING, state.PAUSED):
        raise ProbeError(f"container {c.name} is {status}, not running: its processes cannot be looked at")
    return c


def pid_of(c: Container, process: str = "main") -> int:
    """The host PID of the container's init (labtui's PID 1) or of its main process (the
    command, init's one child: engine/init.py forks it)."""
    from engine import procfs

    if process not in PROCESSES:
        raise ProbeError(f"process must be 'main' (the command) or 'init' (labtui's PID 1), not {process!r}")
    init = c.state.get("pid")
    if not init:
        raise ProbeError(f"container {c.name} has no process")
    if process == "init":
        return int(init)
    main = procfs.first_child(int(init))
    if main is None:
        raise ProbeError(f"container {c.name} has no main process (its command exited, or it is starting)")
    return main


def process_of(name: str, process: str = "main") -> int:
    return pid_of(running(name), process)


def netns_fd(name: str | None) -> int | None:
    """An open descriptor of the container's network namespace (None for the host's). Holding the
    descriptor, not the PID, pins the namespace while a probe uses it."""
    if name is None or name == "host":
        return None
    pid = process_of(name, "init")
    try:
        return os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise ProbeError(f"cannot open the network namespace of {name}: {e.strerror}") from None


def socket_in(ns_fd: int | None, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket that lives in the namespace open as ns_fd (the host's when None). setns(2) moves
    only the calling thread, and a socket stays in the namespace it was made in: a short-lived
    thread enters, makes it, and exits (engine.namespaces.call_in)."""
    if ns_fd is None:
        return socket.socket(family, kind)
    from engine import syscalls
    from engine.namespaces import call_in

    try:
        return call_in(ns_fd, syscalls.CLONE_NEWNET, lambda: socket.socket(family, kind), "labtui-probe-netns")
    except OSError as e:
        raise ProbeError(f"cannot enter the network namespace: {e}") from None


def addresses_of(c: Container) -> dict[str, str]:
    """network name -> the container's IP address on it (from the runtime's lease)."""
    from engine import api

    nets = api.network_settings(c).get("Networks", {})
    return {n: v["IPAddress"] for n, v in nets.items() if v.get("IPAddress")}


def resolve_host(host: str, from_: str | None = None) -> str:
    """An IP address for `host`: itself when it is one, 127.0.0.1 for localhost, else a
    container's address (on a network it shares with `from_` when that is a container)."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    addrs = addresses_of(container(host))
    if not addrs:
        raise ProbeError(f"container {host} has no address on a network (it runs with --network none or host)")
    if from_ not in (None, "host"):
        shared = [n for n in addresses_of(container(from_)) if n in addrs]  # type: ignore[arg-type]
        if shared:
            return addrs[shared[0]]
    return next(iter(addrs.values()))
