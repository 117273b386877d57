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
What that changes in the engine goes through its one hook, engine/prefork.py.

The helper serves only root callers confined exactly as it is (trust.py: namespaces,
capabilities, cgroup, seccomp; its socket is 0600 in a 0700 directory), keeps one serving
instance per state directory (flock on helper.lock, which names its PID from the start and is
let go when it stops taking work), leaves when idle for LABTUI_HELPER_IDLE seconds (default
900), and refuses work when any file whose code it holds changed since it imported it
(stamp.py): the client then runs the command the ordinary way and starts a new helper. What it
refuses, and why, goes to helper.log.

It once kept a spare worker and a spare supervisor forked ahead, their pages copied in advance;
an interleaved A/B showed they saved under 3 ms back to back, so they went (docs/launcher.md).
"""

from __future__ import annotations

import fcntl
import gc
import io
import os
import resource
import selectors
import signal
import socket
import sys
import time

from labtui.launcher import trust
from labtui.launcher.launch import PROTOCOL, run_dir, socket_path
from labtui.launcher.spare import RLIMITS, SUPERVISOR_MODULES, set_comm, warm
from labtui.launcher.stamp import changed as stamp_changed
from labtui.launcher.stamp import source_stamp

IDLE_DEFAULT = 900.0
HELPER_LAYOUT_TTL = 60.0  # seconds; refreshed after a command once half of it has passed
CHECK_EVERY = 2.0  # seconds between checks that helper.sock is still ours
COMM = b"labtui-helper"
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

    # The cgroup mounts: detected again after the layout's TTL; a helper keeps its copy fresh
    # after commands (reap), so its workers never parse mountinfo.
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


class Helper:
    def __init__(self, idle: float) -> None:
        self.idle = idle
        self.sel = selectors.DefaultSelector()
        self.workers: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, client connection)
        self.listener: socket.socket | None = None
        self.sock_ino = 0
        self.stamp: dict[str, tuple[int, int, int]] = {}  # stamp.py
        self.own: dict[str, str | None] = {}  # what confines the helper (trust.py), read once ready
        self.last = time.monotonic()
        self.stopping = False
        self.terminate = False
        self.lock_fd: int | None = None
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
        self.release_lock()

    def release_lock(self) -> None:
        """Let a new helper serve this state directory now, while this one finishes its workers
        (an attached `run` may keep one for hours): a stale helper's successor, started by the
        command it turned away, would otherwise find the lock taken and leave at once. The PID
        goes first, so the lock never names a helper that no longer serves."""
        if self.lock_fd is None:
            return
        os.ftruncate(self.lock_fd, 0)
        os.close(self.lock_fd)  # the only descriptor of it: workers close theirs (close_inherited)
        self.lock_fd = None

    def serve(self) -> None:
        while True:
            if self.stopping and not self.workers:
                return
            if self.stopping:
                timeout = None
            elif self.workers:
                timeout = CHECK_EVERY
            else:
                timeout = min(CHECK_EVERY, max(0.0, self.last + self.idle - time.monotonic()))
            events = self.sel.select(timeout)
            if not events:
                if not self.workers and time.monotonic() >= self.last + self.idle:
                    self.stop_listening()
                elif not self.stopping and not self.still_ours():
                    self.stop_listening()  # e.g. the run directory was wiped: nobody can reach us
                continue
            for key, _ in events:
                if self.sel.get_map().get(key.fd) is not key:
                    # Unregistered by an earlier event of this same batch: a worker reaped
                    # (reap closes its caller's connection) whose caller also closed its end.
                    # Handling the stale event crashed the helper on the closed socket, and the
                    # next command, run cold, started another helper.
                    continue
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
                else:  # ("client", the worker's pidfd): the caller's end closed
                    self.client_gone(key.fileobj, key.data[1])

    def accept(self) -> None:
        if self.listener is None:
            return
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self.sel.register(conn, selectors.EVENT_READ, "conn")

    def fork_child(self, main, *args) -> int:
        """Fork a child that closes the helper's descriptors and leaves with main(*args) as its
        exit code."""
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                self.close_inherited()
                code = main(*args)
            finally:
                os._exit(code)
        return pid

    def close_inherited(self) -> None:
        """In a forked child: none of the helper's own descriptors stay open."""
        signal.set_wakeup_fd(-1)
        self.sel.close()
        for fd in (self.wake_r, self.wake_w, self.lock_fd):
            if fd is not None:
                os.close(fd)  # the lock above all: a long-lived supervisor would hold it forever
        if self.listener is not None:
            self.listener.close()
        for pidfd, (_, other) in self.workers.items():
            os.close(pidfd)
            other.close()

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
            changed = stamp_changed(self.stamp)
            if changed is not None:
                conn.send(b"S")
                print(f"labtui helper: stale for PID {pid}: {changed} changed; leaving", file=sys.stderr)
                self.stop_listening()
                raise ValueError("stale")
            req = parse_request(data)
        except (OSError, ValueError):
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        child = self.fork_child(serve_request, conn, fds, pid, *req)
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

            # Kept fresh for the workers (past its TTL they would parse mountinfo again), but not
            # after every command: what it allocates, a running worker's first write copies.
            age = cgroups.layout_age()
            if age is None or age > HELPER_LAYOUT_TTL / 2:
                cgroups.host_layout(refresh=True)


def serve_request(conn: socket.socket, fds: list[int], client: int, cwd: str, umask: int,
                  argv: list[str], env: dict[str, str]) -> int:
    """A worker: become the client's process, run the command, report its code."""
    os.setsid()
    become_client(fds, client, cwd, umask, env)
    set_comm(b"labtui-worker")
    sys.argv = ["labtui", *argv]
    conn.send(b"P%d" % os.getpid())
    die_with_client(conn)
    from engine import prefork

    prefork.close_in_supervisor(conn.fileno())  # supervisors forked from here must not keep it
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
    h = Helper(idle)  # SIGTERM from here on only asks it to stop (stop() below)
    h.lock_fd = lock
    # The PID at once, not once ready: stop() must find a helper that is still importing too, or
    # it would go on to serve for LABTUI_HELPER_IDLE seconds (its socket says when it is ready).
    os.ftruncate(lock, 0)
    os.pwrite(lock, b"%d\n" % os.getpid(), 0)
    # The command that started us (and the supervisor it forked) have the CPUs first: we import
    # at nice 19 (not SCHED_IDLE, which a busy machine could starve for good), then serve at the
    # usual priority.
    _set_nice(19)
    preload()
    _set_nice(0)
    if h.terminate:  # stopped while importing
        h.release_lock()
        return
    h.stamp = source_stamp()
    h.own = trust.facts("self") or {}
    gc.collect()
    gc.freeze()  # forked workers then never touch these objects' pages to collect them
    h.listen()
    try:
        h.serve()
    finally:
        h.stop_listening()
        h.release_lock()


if __name__ == "__main__":
    main()
