"""The warm helper: a process that has imported labtui once and forks a worker per command.

`labtui` (labtui/launcher/launch.py) connects to $RUN/helper.sock and sends its arguments, environment,
working directory, umask and stdio descriptors. The helper forks; the worker takes on all of that
(the client's stdio become its 0, 1 and 2, its rlimits are copied with prlimit(2)), says its PID,
and runs labtui.cli exactly as a freshly started `labtui` would. The helper reaps the worker and
sends its wait status back, so the client exits the same way. A worker whose client dies (even by
SIGKILL) is killed too: the client's end closing raises SIGIO on the worker's socket (O_ASYNC,
fcntl(2)), just as if the command had been running in the killed process itself.

Everything a container's supervisor needs is imported here before the first fork, pyroute2
included, and then frozen (gc.freeze) so that forked workers do not copy pages just to walk them.

The helper is root's only (the socket is 0600 in a root-owned directory, and SO_PEERCRED is
checked), keeps one instance per state directory (flock on helper.lock), leaves when idle for
LABTUI_HELPER_IDLE seconds (default 900), and refuses work when any of its source files changed
since it imported them: the client then runs the command the ordinary way and starts a new helper.
"""

from __future__ import annotations

import fcntl
import gc
import io
import json
import os
import resource
import selectors
import signal
import socket
import sys
import time

from labtui.launcher import trust
from labtui.launcher import written_pages as pages
from labtui.launcher.launch import PROTOCOL, run_dir, socket_path
from labtui.launcher.spare import (
    RLIMITS,
    SUPERVISED_COMMANDS,
    SUPERVISOR_MODULES,
    receive,
    set_comm,
    spawner,
    supervise,
    warm,
)
from labtui.launcher.stamp import is_stale, source_stamp

IDLE_DEFAULT = 900.0
HELPER_LAYOUT_TTL = 60.0  # seconds; refreshed after a command once half of it has passed
CHECK_EVERY = 2.0  # seconds between checks that helper.sock is still ours
# New spares are made this long after the last command ended: its caller and the supervisor's
# cleanup have the CPUs first. (LABTUI_HELPER_SPARE_DELAY: for measuring other values.)
SPARE_DELAY = float(os.environ.get("LABTUI_HELPER_SPARE_DELAY", "0.05"))
COMM = b"labtui-helper"
# LABTUI_HELPER_SPARES=0 (in the environment the helper starts with): no spares, no maker, and no
# worker learns its pages for them: the helper as it would be without them (bench_run.py --spares-ab).
SPARES = os.environ.get("LABTUI_HELPER_SPARES", "1") != "0"
LEARN_WITHIN = 30.0  # seconds: processes that lived longer do not teach spares (labtui/launcher/written_pages.py)
# The first this many commands of each kind (run, ps, ...) teach the spares which pages they write;
# the later ones write nearly the same pages, and reading them back costs ~2 ms per process.
TEACHERS = 3
# Everything a supervisor imports (labtui/launcher/spare.py; libseccomp's binding among them: the denial
# watcher names syscalls with it), and what the commands import.
PRELOAD = [
    *SUPERVISOR_MODULES, "engine.api", "engine.health", "engine.exec", "engine.strace", "engine.cgroups.alerts",
    "engine.network", "engine.network.netlink", "engine.images", "engine.events", "engine.digest",
    "engine.procfs", "labtui.cli", "labtui.cli.attach_client",
]


def preload() -> None:
    """Everything imported and read once here, inherited by every worker and supervisor for free."""
    from engine import prefork

    # The cgroup mounts: detected again after the layout's TTL; a helper keeps its copy (and its
    # maker's) fresh after commands (reap, maker_main), so its workers never parse mountinfo.
    prefork.set_layout_ttl(HELPER_LAYOUT_TTL)
    err = warm(PRELOAD, network=True)
    if err is not None:  # the worker will say so, in its command
        print(f"labtui helper: seccomp warm-up failed: {err!r}", file=sys.stderr)
    from labtui.cli import main as cli

    cli.warm_parsers()
    cli.warm_regexes()


def parse_request(data: bytes) -> tuple[str, int, list[str], dict[str, str]]:
    parts = data.split(b"\0")
    if parts[0] != PROTOCOL:
        raise ValueError("unknown protocol")
    cwd, umask, argc = os.fsdecode(parts[1]), int(parts[2]), int(parts[3])
    argv = [os.fsdecode(a) for a in parts[4:4 + argc]]
    env = {}
    for item in parts[4 + argc:]:
        k, sep, v = item.partition(b"=")
        if sep:
            env[os.fsdecode(k)] = os.fsdecode(v)
    return cwd, umask, argv, env


class Spare:
    """A process forked ahead of time that waits on ctrl for work (a command, or a container to
    supervise). It copied the pages its work will write into its own first (prefault), while nothing else
    ran: what a fork costs after the fact - a page copied at each first write, ~3 us each and
    thousands per command - is paid before the command arrives."""

    def __init__(self, kind: str, pid: int, pidfd: int, ctrl: socket.socket) -> None:
        self.kind, self.pid, self.pidfd, self.ctrl = kind, pid, pidfd, ctrl
        self.ready = False  # it says so on ctrl once its memory is its own


class Helper:
    def __init__(self, idle: float) -> None:
        self.idle = idle
        self.sel = selectors.DefaultSelector()
        self.workers: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, client connection)
        self.spares: dict[str, Spare] = {}  # "worker" / "supervisor" -> the one waiting
        self.adopted: dict[int, int] = {}  # pidfd -> pid: spare supervisors now supervising
        self.listener: socket.socket | None = None
        self.sock_ino = 0
        self.stamp: dict[str, tuple[int, int, int]] = {}  # stamp.py
        self.own: dict[str, str | None] = {}  # what confines the helper (trust.py), read once ready
        self.last = time.monotonic()
        self.stopping = False
        self.terminate = False
        self.lock_fd: int | None = None
        self.maker: socket.socket | None = None  # to the process that forks the spares (start_maker)
        self.maker_pid = 0
        self.taught: dict[str, int] = {}  # command word -> how many of its commands taught spares
        # SIGTERM wakes select through this pipe (signal.set_wakeup_fd); the handler only flags.
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, signum: int, frame: object) -> None:
        self.terminate = True

    def listen(self) -> None:
        from engine import attach

        old = os.umask(0o177)  # bind(2) makes the socket's node: never wider than 0600, even
        try:                   # before listen_unix's chmod
            srv = attach.listen_unix(socket_path(), socket.SOCK_SEQPACKET, 64)
        finally:
            os.umask(old)
        self.sock_ino = os.stat(socket_path()).st_ino  # to remove the path only while it is still ours
        self.listener = srv
        self.sel.register(srv, selectors.EVENT_READ, "listen")

    def still_ours(self) -> bool:
        try:
            return os.stat(socket_path()).st_ino == self.sock_ino
        except OSError:
            return False

    def stop_listening(self) -> None:
        """No new work; finish the workers that run (their clients wait for their status)."""
        self.drop_spares()
        if self.maker is not None:
            self.maker.close()  # EOF: it leaves (reaped through its pidfd, or by init)
            self.maker = None
        if self.listener is None:
            return
        try:
            if os.stat(socket_path()).st_ino == self.sock_ino:
                os.unlink(socket_path())
        except OSError:
            pass
        self.sel.unregister(self.listener)
        self.listener.close()
        self.listener = None
        self.stopping = True

    def serve(self) -> None:
        while True:
            if self.stopping and not self.workers:
                return
            quiet = time.monotonic() - self.last
            if not self.stopping and not self.workers and quiet >= SPARE_DELAY:
                self.make_spares()
            if self.stopping:
                timeout = None
            elif self.workers:
                timeout = CHECK_EVERY
            else:
                timeout = min(CHECK_EVERY, max(0.0, self.last + self.idle - time.monotonic()))
                if len(self.spares) < 2 and quiet < SPARE_DELAY:
                    timeout = min(timeout, SPARE_DELAY - quiet)
            events = self.sel.select(timeout)
            if not events:
                if not self.workers and time.monotonic() >= self.last + self.idle:
                    self.stop_listening()
                elif not self.stopping and not self.still_ours():
                    self.stop_listening()  # e.g. the run directory was wiped: nobody can reach us
                continue
            for key, _ in events:
                if key.data == "wake":
                    while True:
                        try:
                            if not os.read(self.wake_r, 64):
                                break
                        except BlockingIOError:
                            break
                    if self.terminate:
                        self.stop_listening()
                elif key.data == "listen":
                    self.accept()
                elif key.data == "conn":
                    self.take(key.fileobj)
                elif key.data == "worker":
                    self.reap(key.fd)
                elif key.data == "ready":
                    self.on_ready(key.fileobj)
                elif isinstance(key.data, tuple):  # ("client", the worker's pidfd)
                    self.client_gone(key.fileobj, key.data[1])
                elif key.data == "maker":
                    self.reap_maker(key.fd)
                else:  # a spare that died, or an adopted supervisor that finished
                    self.reap_other(key.fd, key.data)

    def accept(self) -> None:
        if self.listener is None:
            return
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self.sel.register(conn, selectors.EVENT_READ, "conn")

    # ---- spares ---------------------------------------------------------------------------------
    def make_spares(self) -> None:
        """A spare worker and a spare supervisor, when none waits (only while nothing runs: the
        copying is cheap but not free, and a running command should have both CPUs)."""
        if not SPARES:
            return
        for kind in ("worker", "supervisor"):
            if kind not in self.spares:
                self.spares[kind] = self.fork_spare(kind)

    def start_maker(self) -> None:
        """Fork the process that forks the spares. A fork shares every page of the parent with
        the child, and the parent's next write to each one copies it: were the helper the parent
        of every spare, it would copy ~1,000 pages per command, some while taking the next one.
        The maker, forked once, writes almost nothing, and makes each spare with
        clone(CLONE_PARENT) (clone(2)): the helper is still its parent, reaps it and gets its
        status, as if it had forked it."""
        if not SPARES:
            return
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        pid = self.fork_child(mine, maker_main, theirs)
        theirs.close()
        self.maker, self.maker_pid = mine, pid
        pidfd = os.pidfd_open(pid)
        self.sel.register(pidfd, selectors.EVENT_READ, "maker")

    def fork_spare(self, kind: str) -> Spare:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = self.ask_maker(kind, theirs)
        if pid is None:  # no maker (it died): fork here
            pid = self.fork_child(mine, spare_main, kind, theirs)
        theirs.close()
        pidfd = os.pidfd_open(pid)
        self.sel.register(pidfd, selectors.EVENT_READ, "spare")
        self.sel.register(mine, selectors.EVENT_READ, "ready")
        return Spare(kind, pid, pidfd, mine)

    def fork_child(self, drop: socket.socket | None, main, *args) -> int:
        """Fork a child that closes the helper's descriptors (and `drop`, our end of its socket)
        and leaves with main(*args) as its exit code."""
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                if drop is not None:
                    drop.close()
                self.close_inherited()
                code = main(*args)
            finally:
                os._exit(code)
        return pid

    def ask_maker(self, kind: str, ctrl: socket.socket) -> int | None:
        if self.maker is None:
            return None
        try:
            socket.send_fds(self.maker, [kind.encode()], [ctrl.fileno()])
            answer = self.maker.recv(32)
            return int(answer) if answer else None
        except (OSError, ValueError):
            return None

    def on_ready(self, ctrl: socket.socket) -> None:
        self.sel.unregister(ctrl)
        for sp in self.spares.values():
            if sp.ctrl is ctrl:
                try:
                    sp.ready = ctrl.recv(16) == b"ready"
                except OSError:
                    sp.ready = False

    def take_spare(self, kind: str) -> Spare | None:
        """The spare of that kind if it is ready; one still copying is left to finish (a fork now
        is quicker than waiting for it)."""
        sp = self.spares.get(kind)
        if sp is None or not sp.ready:
            return None
        return self.spares.pop(kind)

    def drop_spares(self) -> None:
        for sp in self.spares.values():
            if not sp.ready:
                self.sel.unregister(sp.ctrl)
            sp.ctrl.close()  # EOF: it leaves
            try:
                os.kill(sp.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.sel.unregister(sp.pidfd)
            os.close(sp.pidfd)
            try:
                os.waitpid(sp.pid, 0)
            except ChildProcessError:
                pass
        self.spares = {}

    def reap_maker(self, pidfd: int) -> None:
        """The maker died (or was told to go): spares are forked here from now on."""
        self.sel.unregister(pidfd)
        os.close(pidfd)
        if self.maker is not None:
            self.maker.close()
            self.maker = None
        try:
            os.waitpid(self.maker_pid, 0)
        except ChildProcessError:
            pass

    def reap_other(self, pidfd: int, what: str) -> None:
        self.sel.unregister(pidfd)
        os.close(pidfd)
        pid = self.adopted.pop(pidfd, None)
        for kind, sp in list(self.spares.items()):
            if sp.pidfd == pidfd:
                pid = sp.pid
                if not sp.ready:
                    self.sel.unregister(sp.ctrl)
                sp.ctrl.close()
                del self.spares[kind]
        if pid is not None:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass

    def close_inherited(self) -> None:
        """In a forked child: none of the helper's own descriptors stay open."""
        signal.set_wakeup_fd(-1)
        self.sel.close()
        for fd in (self.wake_r, self.wake_w, self.lock_fd):
            if fd is not None:
                os.close(fd)  # the lock above all: a long-lived supervisor would hold it forever
        if self.listener is not None:
            self.listener.close()
        if self.maker is not None:
            self.maker.close()
        for pidfd, (_, other) in self.workers.items():
            os.close(pidfd)
            other.close()
        for sp in self.spares.values():
            os.close(sp.pidfd)
            sp.ctrl.close()
        for pidfd in self.adopted:
            os.close(pidfd)

    # ---- requests -------------------------------------------------------------------------------
    def take(self, conn: socket.socket) -> None:
        """One request: check who asks and whether we are current, then hand it to a worker."""
        self.sel.unregister(conn)
        self.last = time.monotonic()
        fds: list[int] = []
        try:
            data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
            pid, why = trust.refusal(conn, trust.own_facts(self.own))
            if why is not None or len(fds) != 3:
                conn.send(b"R")  # its launcher runs the command itself, confined as it is
                print(f"labtui helper: refused PID {pid}: {why or 'no stdio'}", file=sys.stderr)
                raise ValueError("refused")
            if is_stale(self.stamp):
                conn.send(b"S")
                self.stop_listening()
                raise ValueError("stale")
            req = parse_request(data)
        except (OSError, ValueError):
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        word = next((a for a in req[2] if not a.startswith("-")), "")
        teach = SPARES and self.taught.get(word, 0) < TEACHERS
        if teach:
            self.taught[word] = self.taught.get(word, 0) + 1
        sp = self.take_spare("worker")
        if sp is not None:
            child, pidfd = sp.pid, sp.pidfd
            self.sel.modify(pidfd, selectors.EVENT_READ, "worker")
            self.dispatch(sp, conn, fds, pid, word, data, teach)
        else:
            child = self.fork_child(None, serve_request, conn, fds, pid, *req, (0, None), teach)
            pidfd = os.pidfd_open(child)
            self.sel.register(pidfd, selectors.EVENT_READ, "worker")
        for fd in fds:
            os.close(fd)
        self.workers[pidfd] = (child, conn)
        self.sel.register(conn, selectors.EVENT_READ, ("client", pidfd))

    def client_gone(self, conn: socket.socket, pidfd: int) -> None:
        """The caller closed its end (it sends nothing after its request): it exited or was
        killed. The worker kills itself on that (die_with_client), unless it is stopped: a
        caller killed after ^Z (or whose own stop the kernel discarded) leaves it stopped,
        with SIGIO pending and no one to resume it. SIGCONT lets it run and die."""
        self.sel.unregister(conn)
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGCONT)
        except OSError:
            pass

    def dispatch(self, sp: Spare, conn: socket.socket, fds: list[int], client: int, word: str,
                 data: bytes, teach: bool) -> None:
        """The request to the waiting spare worker, with the spare supervisor if the command
        (word: run, ps, ...) may need one."""
        sup = self.take_spare("supervisor") if word in SUPERVISED_COMMANDS else None
        send = [conn.fileno(), *fds]
        if sup is not None:
            send.append(sup.ctrl.fileno())
            self.sel.modify(sup.pidfd, selectors.EVENT_READ, "adopted")
            self.adopted[sup.pidfd] = sup.pid
        header = b"%d %d %d\n" % (client, sup.pid if sup is not None else 0, teach)
        try:
            socket.send_fds(sp.ctrl, [header + data], send)
        finally:
            sp.ctrl.close()
            if sup is not None:
                sup.ctrl.close()

    def reap(self, pidfd: int) -> None:
        child, conn = self.workers.pop(pidfd)
        self.sel.unregister(pidfd)
        try:
            self.sel.unregister(conn)  # unless client_gone did
        except KeyError:
            pass
        os.close(pidfd)
        _, status = os.waitpid(child, 0)
        try:
            conn.send(b"X%d" % status)
        except OSError:
            pass
        conn.close()
        self.last = time.monotonic()
        if not self.workers:
            from engine import cgroups

            # Kept fresh for the workers (past LAYOUT_TTL they would parse mountinfo again), but
            # not after every command: what it allocates, the helper copies on write (its pages
            # are shared with the spares).
            age = cgroups.layout_age()
            if age is None or age > HELPER_LAYOUT_TTL / 2:
                cgroups.host_layout(refresh=True)


# ---- in a spare -------------------------------------------------------------------------------

def spare_main(kind: str, ctrl: socket.socket) -> int:
    """Copy now, at the lowest priority, the pages the work will write (labtui/launcher/written_pages.py), then
    wait for it."""
    set_comm(b"labtui-spare")
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # only when nothing else runs
        pages.prefault(pages.load(hot_path(kind)))
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        ctrl.send(b"ready")
    except OSError:
        return 0
    got = receive(ctrl)
    if got is None:
        return 0  # the helper let us go
    data, fds = got
    if kind == "worker":
        header, _, request = data.partition(b"\n")
        client, sup_pid, teach = (int(x) for x in header.split())
        conn = socket.socket(fileno=fds[0])
        sup_ctrl = socket.socket(fileno=fds[4]) if len(fds) > 4 else None
        return serve_request(conn, fds[1:4], client, *parse_request(request), (sup_pid, sup_ctrl), bool(teach))
    started = time.monotonic()
    code = supervise(data, fds)
    if json.loads(data).get("teach", True):
        learn("supervisor", started)
    return code


HELPER_PID = 0  # set in main(), before the first fork


def maker_main(sock: socket.socket) -> int:
    """Fork a spare of the kind asked, with the helper as its parent (CLONE_PARENT), and answer
    with its PID; leave when the helper closes its end."""
    from engine import cgroups
    from engine import syscalls as sc

    set_comm(b"labtui-spare")
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the helper's handler
    # At the usual priority: the helper waits for each answer, and at SCHED_IDLE a busy machine
    # could starve the maker, and so the helper. Only the spares' copying is SCHED_IDLE.
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, 64, 1)
        except OSError:
            return 0
        if not data or not fds:
            return 0
        kind = data.decode()
        ctrl = socket.socket(fileno=fds[0])
        age = cgroups.layout_age()  # what the spares inherit: fresh, as the helper keeps its own
        if age is None or age > HELPER_LAYOUT_TTL / 2:
            cgroups.host_layout(refresh=True)
        pid = sc.clone(sc.CLONE_PARENT)
        if pid == 0:
            code = 1
            try:
                sock.close()
                code = spare_main(kind, ctrl)
            finally:
                os._exit(code)
        ctrl.close()
        try:
            sock.send(b"%d" % pid)
        except OSError:
            return 0


def hot_path(kind: str) -> str:
    """Where the pages a `kind` process wrote are kept (labtui/launcher/written_pages.py): addresses in this
    helper's address space, so one file per helper."""
    return os.path.join(run_dir(), f"helper-hot.{HELPER_PID}.{kind}")


def learn(kind: str, started: float) -> None:
    """Add the pages this process wrote to what the next spare of its kind copies ahead. Only
    after a short life (a supervisor that ran for hours has written nearly everything), and only
    while our helper is still our parent (a helper that left has no more spares to teach)."""
    if time.monotonic() - started > LEARN_WITHIN or os.getppid() != HELPER_PID:
        return
    try:
        pages.remember(hot_path(kind))
    except OSError:
        pass


def forget_pages(all_dead: bool = False) -> None:
    """Remove our files (and, at start, those of helpers that died without removing theirs)."""
    d = run_dir()
    for name in os.listdir(d):
        if not name.startswith("helper-hot."):
            continue
        owner = name.split(".")[1]
        if owner == str(HELPER_PID) or (all_dead and owner.isdigit() and not os.path.exists(f"/proc/{owner}")):
            try:
                os.unlink(os.path.join(d, name))
            except FileNotFoundError:
                pass


def serve_request(conn: socket.socket, fds: list[int], client: int, cwd: str, umask: int,
                  argv: list[str], env: dict[str, str], sup: tuple[int, socket.socket | None] = (0, None),
                  teach: bool = True) -> int:
    """A worker: become the client's process, run the command, report its code. teach: tell
    the next spares which pages it wrote (and its spare supervisor, if it gets one)."""
    started = time.monotonic()
    os.setsid()
    become_client(fds, client, cwd, umask, env)
    set_comm(b"labtui-worker")
    sys.argv = ["labtui", *argv]
    conn.send(b"P%d" % os.getpid())
    die_with_client(conn)
    from engine import prefork

    prefork.close_in_supervisor(conn.fileno())  # supervisors forked from here must not keep it
    sup_pid, sup_ctrl = sup
    if sup_ctrl is not None:
        prefork.close_in_supervisor(sup_ctrl.fileno())
        prefork.set_supervisor_spawner(spawner(sup_pid, sup_ctrl, teach))
    code = run_cli(argv)  # (it flushed sys.stdout and sys.stderr)
    # The caller's stdin, stdout and stderr go back now: whoever reads them to EOF
    # (`$(labtui ...)`, a pipe) must not wait for this process to free its memory (~2 ms).
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    # Tell the client now: tearing down this process's memory takes a while. (The helper's
    # own report, from waitpid, still covers a worker that dies before getting here.)
    signal.signal(signal.SIGIO, signal.SIG_IGN)  # the command is done: its caller may go now
    try:
        conn.send(b"X%d" % ((code & 0xFF) << 8))
        os.setpriority(os.PRIO_PROCESS, 0, 19)  # freeing our memory must not delay the caller's exit
    except OSError:
        pass
    if teach:
        learn("worker", started)
    return code


def become_client(fds: list[int], client: int, cwd: str, umask: int, env: dict[str, str]) -> None:
    """Take on the client's stdio, directory, umask, environment, limits and default signals."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    try:
        os.chdir(cwd)
    except OSError:
        os.chdir("/")
    os.umask(umask)
    for key in [k for k in os.environ if k not in env]:
        del os.environ[key]
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
    for res in RLIMITS:
        try:
            theirs = resource.prlimit(client, res)
            if theirs != resource.getrlimit(res):
                resource.setrlimit(res, theirs)
        except (OSError, ValueError):
            pass
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
                signal.SIGWINCH, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    sys.stdin = _text(0, "r", "surrogateescape")
    sys.stdout = _text(1, "w", "surrogateescape")
    sys.stderr = _text(2, "w", "backslashreplace")


def _text(fd: int, mode: str, errors: str) -> io.TextIOWrapper:
    """A fresh sys.stdin/stdout/stderr on fd: line-buffered on a terminal, as at interpreter start."""
    tty = os.isatty(fd)
    raw = io.FileIO(fd, mode, closefd=False)
    buf = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
    return io.TextIOWrapper(buf, encoding="utf-8", errors=errors, line_buffering=tty or fd == 2,
                            write_through=fd == 2)


def die_with_client(conn: socket.socket) -> None:
    """When the client's end closes (it exited or was killed), the kernel raises SIGIO here; a
    command whose caller is gone is killed, as it would have been in the caller's own process."""
    def on_sigio(signum: int, frame: object) -> None:
        try:
            if conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                os.kill(os.getpid(), signal.SIGKILL)
        except BlockingIOError:
            pass
        except OSError:
            os.kill(os.getpid(), signal.SIGKILL)

    signal.signal(signal.SIGIO, on_sigio)
    fcntl.fcntl(conn.fileno(), fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(conn.fileno(), fcntl.F_SETFL, fcntl.fcntl(conn.fileno(), fcntl.F_GETFL) | os.O_ASYNC)
    on_sigio(signal.SIGIO, None)  # it may have gone before O_ASYNC was set


def run_cli(argv: list[str]) -> int:
    """labtui.cli.entry(), returning the code instead of leaving."""
    from labtui.cli import main as cli

    try:
        rc = cli.main(argv)
        code = rc if isinstance(rc, int) else 1
    except SystemExit as e:  # argparse's usage errors and --help
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, OSError):
        pass
    return code


def _set_nice(value: int) -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, 0, value)
    except OSError:
        pass


def stop(timeout: float = 5.0) -> bool:
    """Stop the helper of this state directory (tests, uninstall). Returns whether one ran."""
    try:
        with open(os.path.join(run_dir(), "helper.lock")) as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return False
    if not pid:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    return True


def private_file(path: str, flags: int) -> int:
    """Open (creating it if need be) a file only root may read or write: 0600 whatever the umask
    and whatever mode an older file had (open(2) applies the mode only when it creates)."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def private_run_dir() -> str:
    """The run directory, 0700 (its socket is the helper's door: only root may reach it), made
    or tightened so whatever umask the command that started us had (and its parents, if made
    here, 0700 too: makedirs gives them 0777 less the umask)."""
    d = run_dir()
    old = os.umask(0o077)
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
    finally:
        os.umask(old)
    os.chmod(d, 0o700)
    return d


def main() -> None:
    d = private_run_dir()
    lock = private_file(os.path.join(d, "helper.lock"), os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # one helper per state directory: another one serves (or is finishing)
    log = private_file(os.path.join(d, "helper.log"), os.O_WRONLY | os.O_APPEND)
    os.dup2(log, 2)
    os.close(log)
    set_comm(COMM)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    idle = float(os.environ.get("LABTUI_HELPER_IDLE", IDLE_DEFAULT))
    h = Helper(idle)
    h.lock_fd = lock
    global HELPER_PID
    HELPER_PID = os.getpid()
    forget_pages(all_dead=True)
    # The command that started us (and the supervisor it forked) have the CPUs first: we import
    # at nice 19 (not SCHED_IDLE, which a busy machine could starve for good), then serve at the
    # usual priority.
    _set_nice(19)
    preload()
    _set_nice(0)
    h.stamp = source_stamp()
    h.own = trust.facts("self") or {}
    gc.collect()
    gc.freeze()  # forked workers then never touch these objects' pages to collect them
    h.listen()
    h.start_maker()
    os.ftruncate(lock, 0)
    os.pwrite(lock, b"%d\n" % os.getpid(), 0)
    try:
        h.serve()
    finally:
        h.stop_listening()
        forget_pages()
        os.ftruncate(lock, 0)


if __name__ == "__main__":
    main()
