"""A container supervisor made ready before it is needed, when no helper runs.

A `run` spends most of its time importing and starting Python code, first in the command, then
in the supervisor it forks (engine.supervisor, engine.init, the seccomp and cgroup modules). The
supervisor's share need not wait for the command's: a process forked early imports it on the
other CPU while the command parses its arguments and makes the container's records, then waits
on a socket. engine.prefork's supervisor spawner hands it the container instead of forking.

labtui/launcher/launch.py makes one (prefork(), right after start-up) when it runs a `run`,
`start` or `restart` the ordinary way. The warm helper (helper.py) imports these modules once
(warm()) and its workers fork supervisors as usual: the fork of a process that imported
everything already costs less than the hand-over.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import sys

RLIMITS = [getattr(resource, n) for n in dir(resource) if n.startswith("RLIMIT_")]
# What a supervisor imports on its way to clone(2): done while waiting, off the command's path.
SUPERVISOR_MODULES = [
    "engine.supervisor", "engine.init", "engine.rootfs", "engine.security", "engine.seccomp",
    "engine.capabilities", "engine.devices", "engine.userns", "engine.hooks", "engine.restart",
    "engine.cgroups", "engine.cgroups.v1", "engine.cgroups.v2", "engine.cgroups.limits",
    "engine.cgroups.stats", "seccomp",
]


def spawner(pid: int, ctrl: socket.socket):
    """For engine.prefork.set_supervisor_spawner: the first supervisor this command starts is the
    waiting process."""
    def spawn(cid: str, status_w: int, client: socket.socket | None, winsize) -> int | None:
        if ctrl.fileno() < 0:
            return None  # used already: fork as usual
        msg = {"cid": cid, "winsize": winsize, "env": dict(os.environ), "cwd": os.getcwd(),
               "umask": _umask(), "parent": os.getpid()}
        fds = [status_w] + ([client.fileno()] if client is not None else [])
        lock = _start_lock(cid)
        if lock is not None:  # the last fd: the waiting process holds it as a forked one would
            msg["lock"] = len(fds)
            fds.append(lock)
        try:
            socket.send_fds(ctrl, [json.dumps(msg).encode()], fds)
        except OSError:
            return None  # it died: a supervisor is forked as usual
        finally:
            _close(ctrl)
            if lock is not None:
                os.close(lock)
        return pid

    return spawn


def _close(ctrl: socket.socket) -> None:
    """Close it, and take it off the list of fds a forked supervisor closes: its number may be
    reused by the next descriptor opened."""
    from engine import prefork

    prefork.keep_in_supervisor(ctrl.fileno())
    ctrl.close()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def receive(ctrl: socket.socket) -> tuple[bytes, list[int]] | None:
    """The one message a waiting process is sent (with its fds), or None when the other end
    closed instead: it is let go."""
    try:
        data, fds, _, _ = socket.recv_fds(ctrl, 1 << 20, 8)
    except OSError:
        return None
    ctrl.close()
    return (data, fds) if data else None


def wait_for_work(ctrl: socket.socket) -> int:
    """Block until the container arrives (then supervise it) or the other end closes (leave)."""
    got = receive(ctrl)
    return supervise(*got) if got is not None else 0


def supervise(data: bytes, fds: list[int]) -> int:
    """Take on the caller's environment, then be the container's supervisor."""
    from engine import supervisor

    msg = json.loads(data)
    status_w = fds[0]
    rest = fds[1:msg["lock"]] if "lock" in msg else fds[1:]  # the start lock, if any, comes last
    client = socket.socket(fileno=rest[0]) if rest else None
    try:
        os.chdir(msg["cwd"])
    except OSError:
        os.chdir("/")
    os.umask(msg["umask"])
    os.environ.clear()
    os.environ.update(msg["env"])
    for res in RLIMITS:
        try:
            resource.setrlimit(res, resource.prlimit(msg["parent"], res))
        except (OSError, ValueError):
            pass
    winsize = tuple(msg["winsize"]) if msg.get("winsize") else None
    # msg["lock"]: the start lock's descriptor, kept open (never closed: held for as long as this
    # process supervises; the container's init closes it with every other descriptor).
    supervisor.become_supervisor()
    return supervisor.run(msg["cid"], status_w, client, winsize)


def _start_lock(cid: str) -> int | None:
    """The container's start lock (engine/api.py _claim_start), taken shared on a descriptor of
    its own: sent with the container, the waiting process holds it for as long as it supervises,
    as a supervisor forked by the command inherits the command's. Taken here, before the
    hand-over, so that no moment passes without a holder (a killed command, and then a second
    start, would otherwise find it free while this supervisor sets the container up)."""
    import fcntl

    from engine import state

    try:
        fd = os.open(state.start_lock(cid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # the command holds it shared already: at once
    except OSError:
        os.close(fd)
        return None
    return fd


def set_comm(name: bytes) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(15, ctypes.c_char_p(name[:15]), 0, 0, 0)  # PR_SET_NAME, prctl(2)


def prefork(network: bool = False) -> None:
    """In a command started without the helper: fork now, import the supervisor's modules in the
    child while this process goes on, and let engine.api hand the container to it. The child
    leaves when this process's end of the socket closes unused (exit, or a command that starts
    no container). network: the command asks for a network of its own (a bridge): the child
    imports pyroute2's IPRoute too (~60 ms), which the supervisor needs for the veth."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        pid = os.fork()
    except OSError:
        mine.close()
        theirs.close()
        return
    if pid == 0:
        code = 0
        try:
            mine.close()
            _prepare_child(network)
            code = wait_for_work(theirs)
        finally:
            os._exit(code)
    theirs.close()
    from engine import prefork

    prefork.set_supervisor_spawner(spawner(pid, mine))
    prefork.close_in_supervisor(mine.fileno())  # a supervisor forked after all must not hold it


def _prepare_child(network: bool = False) -> None:
    # Until it supervises, it must not be mistaken for the command: not its stdio (a caller
    # reading our output to EOF would wait for it), not its signals (^C is the command's). As a
    # supervisor it writes its errors to the container's log (engine.supervisor.run).
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_comm(b"labtui-spare")
    mask = _away_from_parent()
    try:
        if sys.flags.no_site:  # forked by labtui/launcher/launch.py before it found site-packages
            import site

            site.main()
        warm(SUPERVISOR_MODULES, network)
    finally:
        if mask:
            os.sched_setaffinity(0, mask)  # the supervisor, and the container it clones, run anywhere


def _away_from_parent() -> set[int] | None:
    """Move to a CPU other than the command's while importing; returns the mask to restore.
    A new child is queued on its parent's CPU (sched(7): the scheduler balances forks lazily),
    and here the two took turns in 4 ms slices on one CPU for the first ~10 ms while the other
    one idled: the imports that were to overlap the command's own did not."""
    try:
        mask = os.sched_getaffinity(0)
        with open(f"/proc/{os.getppid()}/stat") as f:
            parent_cpu = int(f.read().rsplit(")", 1)[1].split()[36])  # field 39: "processor"
        others = mask - {parent_cpu}
        if not others or others == mask:
            return None
        os.sched_setaffinity(0, others)
        return mask
    except (OSError, ValueError, IndexError):
        return None


def warm(modules: list[str], network: bool = False) -> Exception | None:
    """Import `modules` (and pyroute2's IPRoute, which a bridge network needs, if asked), then read
    what every container start reads and that does not change under a running process: the
    cgroup layout, the boot id, the compiled default seccomp program. A failure here is met again
    by the command, which reports it; the seccomp warm-up's is returned for a log."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    if network:
        from engine import prefork

        try:
            prefork.import_network()
        except Exception:  # pyroute2 missing or broken: the bridge network's command says so
            pass
    from engine import cgroups, security, state

    cgroups.host_layout()
    state.boot_id()
    try:
        security.warm_up()
    except Exception as e:  # a broken cache or libseccomp
        return e
    return None
