"""`labtui exec`: start one more process inside a running container (docs/exec.md).

What runc exec and nsenter(1) do, step by step, each kernel operation a recorded step:

    CLI (single-threaded) ──fork──▶ joiner
      joiner: prctl(PR_SET_DUMPABLE, 0)         nothing in the container may ptrace it or open
                                                 its host fds through /proc/PID (CVE-2019-5736)
              open /proc/<init>/ns/* first       only the kinds that differ from ours
              echo $$ > <cgroup>/cgroup.procs    through the cgroup driver, before the cgroup
                                                 namespace hides the host's cgroup tree
              setns(user, cgroup, ipc, uts, net, pid, mnt)   nsenter(1)'s order, one step each
              [-t] open /dev/pts/ptmx            a pty from the container's own devpts; the
                                                 master goes to the CLI with SCM_RIGHTS
              clone(CLONE_PARENT)  ──────────▶ the command's process (in the container's PID
                                                 namespace: setns(CLONE_NEWPID) only moves
                                                 children), a child of the CLI, which waits for it
              [-d] fork ─▶ fork ─▶ the command; the middle one exits at once, so the command is
                                                 adopted by the container's PID 1, which reaps it
      command: setsid [+ TIOCSCTTY], stdio, chdir, setgroups/setgid/setuid,
               security.apply_before_exec (no_new_privs, seccomp, capabilities), execve

The joiner reports over a SOCK_SEQPACKET socketpair (JSON messages, the pty master as SCM_RIGHTS):
steps, the command's PID, errors. The command's end is O_CLOEXEC, so end-of-file means execve
succeeded, exactly as between the supervisor and the container's init. The CLI receives with
SO_PASSCRED, so each message carries its sender's PID as the host sees it (unix(7)).

Why a fork and not the CLI itself: setns(CLONE_NEWUSER) refuses a multi-threaded caller and
setns(CLONE_NEWPID) never moves the caller itself, and the CLI must stay on the host to record
steps and relay the terminal. Callers with threads (the terminal app, a supervisor's health
checks) must not fork without exec: they run exec as a program of its own, `python -m
engine.exec_main ...` (engine/exec_main.py's command_line(), which also holds the foreground part
of `labtui exec`: the terminal relay and signal forwarding). Who -u is, and becoming that user,
is engine/exec_user.py.
"""

from __future__ import annotations

# Everything the joiner and the command need is imported here, up front: after setns(CLONE_NEWNS)
# the host's filesystem (and so Python's sys.path) is gone, and a lazy import would fail.
import array  # noqa: F401  (socket.send_fds imports it lazily)
import errno
import fcntl
import json
import os
import re
import signal
import socket
import struct
import sys
import termios
import threading
import time

from engine import events, init, rootfs, security, state
from engine import syscalls as sc
from engine.errors import Conflict, EngineError, ExecError, InvalidArgument, StepError
from engine.exec_user import ExecUser, read_container_file, resolve_user, set_user
from engine.record import dataclass, field
from engine.state import Container
from engine.steps import Recorder, container_recorder

CLONE_PARENT = 0x00008000

# nsenter(1)'s order (util-linux sys-utils/nsenter.c): user first (it grants the capabilities
# the other setns calls need inside a user namespace), pid before mnt (mnt changes our root, and
# the pid namespace only matters for the fork that follows), time last.
NS_ORDER: list[tuple[str, int, str]] = [
    ("user", sc.CLONE_NEWUSER, "--user"),
    ("cgroup", sc.CLONE_NEWCGROUP, "--cgroup"),
    ("ipc", sc.CLONE_NEWIPC, "--ipc"),
    ("uts", sc.CLONE_NEWUTS, "--uts"),
    ("net", sc.CLONE_NEWNET, "--net"),
    ("pid", sc.CLONE_NEWPID, "--pid"),
    ("mnt", sc.CLONE_NEWNS, "--mount"),
    ("time", sc.CLONE_NEWTIME, "--time"),
]
NS_FLAG_NAME = {"user": "CLONE_NEWUSER", "cgroup": "CLONE_NEWCGROUP", "ipc": "CLONE_NEWIPC",
                "uts": "CLONE_NEWUTS", "net": "CLONE_NEWNET", "pid": "CLONE_NEWPID", "mnt": "CLONE_NEWNS",
                "time": "CLONE_NEWTIME"}

USER_RE = re.compile(r"^[^:\s]+(:[^:\s]+)?$")
_RECV_BUF = 1 << 18
_ANC_BUF = socket.CMSG_SPACE(4 * 8) + socket.CMSG_SPACE(12)


# ---- the request ------------------------------------------------------------------------------

@dataclass
class ExecRequest:
    """What `labtui exec` was asked for (docker exec's flags)."""

    argv: list[str]
    tty: bool = False
    interactive: bool = False
    detach: bool = False
    env: list[str] = field(default_factory=list)
    user: str | None = None
    workdir: str | None = None
    winsize: tuple[int, int] | None = None  # rows, cols of the pty (-t)

    def validate(self) -> None:
        from engine import spec

        if not self.argv or not self.argv[0]:
            raise InvalidArgument("exec needs a command: labtui exec CONTAINER COMMAND [ARG...]")
        if self.workdir is not None and not self.workdir.startswith("/"):
            raise InvalidArgument(f"invalid working directory '{self.workdir}': it must be an absolute path")
        if self.user is not None:
            if not USER_RE.match(self.user):
                raise InvalidArgument(f"invalid user '{self.user}': expected USER[:GROUP] (names or numeric ids)")
            for part in self.user.split(":"):
                if part.isdigit() and int(part) > 0xFFFFFFFE:
                    raise InvalidArgument(f"invalid user '{self.user}': id {part} is out of range")
        self.env = spec.parse_env(list(self.env))
        if self.winsize is not None:
            rows, cols = self.winsize
            if not (0 <= rows <= 0xFFFF and 0 <= cols <= 0xFFFF):
                raise InvalidArgument(f"invalid terminal size {rows}x{cols}")


def build_env(cfg: dict, req: ExecRequest, user: ExecUser) -> dict[str, str]:
    """The container's environment, then -e, then HOME from passwd and TERM for a tty when unset
    (as docker exec does)."""
    from engine import spec

    env = dict(item.split("=", 1) for item in spec.merge_env(cfg.get("env") or [], req.env))
    env.setdefault("HOME", user.home)
    if req.tty:
        env.setdefault("TERM", "xterm")
    return env


# ---- checks --------------------------------------------------------------------------------------

def check_can_exec(c: Container) -> None:
    st = c.status
    if st == state.PAUSED:
        raise Conflict(f"container {c.name} is paused, unpause the container before exec")
    if not state.can_exec(st):
        raise Conflict(f"container {c.name} is not running")


def ns_differences(init_pid: int) -> list[str]:
    """The namespace kinds in which the container's init differs from us (nsenter order)."""
    out = []
    for kind, _, _ in NS_ORDER:
        try:
            theirs = os.stat(f"/proc/{init_pid}/ns/{kind}")
            ours = os.stat(f"/proc/self/ns/{kind}")
        except FileNotFoundError:
            continue  # a kind this kernel does not have
        if (theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino):
            out.append(kind)
    return out


# ---- the CLI's side ------------------------------------------------------------------------------

class ExecProcess:
    """A started exec: the command's host PID, and the pty master when it has a terminal."""

    def __init__(self, c: Container, req: ExecRequest, pid: int | None, master: int | None) -> None:
        self.container = c
        self.req = req
        self.pid = pid
        self.master = master
        self.returncode: int | None = None

    def wait(self) -> int:
        """Wait for the command (the caller's child) and return docker's exit code."""
        if self.returncode is not None:
            return self.returncode
        if self.pid is None or self.req.detach:
            self.returncode = 0
            return 0
        while True:
            try:
                _, status = os.waitpid(self.pid, 0)
                break
            except ChildProcessError:
                status = 255 << 8
                break
        self.returncode = init.exit_code(status)
        return self.returncode

    def signal(self, sig: int) -> None:
        if self.pid is not None and self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass


def start(ref: str, req: ExecRequest) -> ExecProcess:
    """Start req.argv inside the running container `ref`. Returns once execve succeeded (or
    raises: ExecError 126/127 from inside, EngineError 125 before). The caller must be
    single-threaded; it becomes the parent of the command (unless detached) and must wait()."""
    if threading.active_count() != 1:
        raise EngineError("exec must start from a single-threaded process (setns and fork): run "
                          "`python -m engine.exec_main ...` instead (engine.exec_main.command_line)")
    req.validate()
    c = state.resolve(ref)
    check_can_exec(c)
    from engine import cgroups

    rec = container_recorder(c.id)
    # Built here, not in the joiner: the driver's imports and layout detection are paid before
    # the joiner turns non-dumpable, and nothing is imported lazily after fork.
    cgroup = cgroups.for_container(c, rec)
    prepared = security.prepare(c.config)  # the seccomp filter is built here, loaded in the command
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    mine.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):
            pass
    joiner = os.fork()
    if joiner == 0:
        mine.close()
        _joiner_main(c, req, prepared, cgroup, theirs)  # never returns
    theirs.close()
    try:
        result = _follow(mine, rec)
    finally:
        mine.close()
        _reap(joiner)
    pid, master, error, exec_msg = result
    if error is not None:
        if pid is not None and not req.detach:
            _reap(pid)
        if master is not None:
            os.close(master)
        code = int(error.get("exit_code", 125))
        events.emit("exec", c.id, c.name, argv=req.argv, exit_code=code, error=error.get("message"))
        raise ExecError(error.get("message", "exec failed"), exit_code=code)
    if exec_msg is None:  # the joiner died without a word
        if pid is not None and not req.detach:
            _reap(pid)
        raise EngineError(f"exec into {c.name} failed: the joining process died (see labtui steps {c.name})")
    host_pid = exec_msg.get("host_pid") or pid
    rec.record({
        "mechanism": "exec", "op": "execve", "target": req.argv[0], "value": " ".join(req.argv),
        "shell": " ".join(req.argv), "pid": host_pid, "pid_inside": exec_msg.get("pid"), "result": "ok",
        "errno": 0, "ts": exec_msg["ts"], "duration_ms": round((time.time() - exec_msg["ts"]) * 1000, 3),
    })
    events.emit("exec", c.id, c.name, argv=req.argv, pid=host_pid, pid_inside=exec_msg.get("pid"),
                user=req.user, tty=req.tty or None, detach=req.detach or None)
    return ExecProcess(c, req, None if req.detach else pid, master)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _recv(sock: socket.socket) -> tuple[dict | None, list[int], int | None]:
    """One message: (decoded JSON or None at EOF, passed fds, sender's host PID)."""
    data, anc, _flags, _addr = sock.recvmsg(_RECV_BUF, _ANC_BUF)
    fds: list[int] = []
    sender = None
    for level, kind, cdata in anc:
        if level != socket.SOL_SOCKET:
            continue
        if kind == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(cdata[: len(cdata) - len(cdata) % a.itemsize])
            fds.extend(a)
        elif kind == socket.SCM_CREDENTIALS and len(cdata) >= 12:
            sender = struct.unpack("iII", cdata[:12])[0]
    if not data:
        for fd in fds:
            os.close(fd)
        return None, [], sender
    return json.loads(data), fds, sender


def _host_pid(step: dict, sender: int | None) -> dict:
    """Steps carry the host PID of the process that performed them; inside the container's PID
    namespace getpid() gives another number, kept as pid_inside."""
    if sender and step.get("pid") != sender:
        step["pid_inside"], step["pid"] = step.get("pid"), sender
    return step


def _follow(sock: socket.socket, rec: Recorder) -> tuple[int | None, int | None, dict | None, dict | None]:
    """Record the joiner's steps as they arrive; stop at EOF (execve done, or everyone gone)."""
    pid = master = error = exec_msg = None
    while True:
        msg, fds, sender = _recv(sock)
        if msg is None:
            break
        t = msg.get("t")
        if t == "step":
            rec.record(_host_pid(msg["step"], sender))
        elif t == "pid":
            pid = msg["pid"]
        elif t == "pty" and fds:
            master = fds[0]
            os.set_inheritable(master, False)
            fds = fds[1:]
        elif t == "exec":
            exec_msg = dict(msg, host_pid=sender)
        elif t == "error":
            error = msg
            if msg.get("step"):
                rec.record(_host_pid(msg["step"], sender))
            if sender and pid is None:
                pid = sender
        for fd in fds:
            os.close(fd)
    return pid, master, error, exec_msg


# ---- the joiner (a fork of the CLI) ----------------------------------------------------------------

class _Chan:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, msg: dict, fds: list[int] | None = None) -> None:
        data = json.dumps(msg, default=str).encode()
        if fds:
            socket.send_fds(self.sock, [data], fds)
        else:
            self.sock.send(data)

    def step(self, rec: dict) -> None:
        self.send({"t": "step", "step": rec})


def _joiner_main(c: Container, req: ExecRequest, prepared: object, cgroup, sock: socket.socket) -> None:
    chan = _Chan(sock)
    code = 125
    try:
        rec = Recorder(c.id, chan.step)
        cgroup.rec = rec  # its steps now go up the channel, like every step of the joiner
        _join(rec, chan, c, req, prepared, cgroup)
        code = 0
    except StepError as e:
        _send_error(chan, str(e), 125)
    except EngineError as e:
        _send_error(chan, str(e), e.exit_code)
    except BaseException as e:  # never die silently: the CLI prints it
        _send_error(chan, f"exec failed: {e!r}", 125)
    finally:
        os._exit(code)


def _send_error(chan: _Chan, message: str, code: int, step: dict | None = None) -> None:
    try:
        chan.send({"t": "error", "message": message, "exit_code": code, "step": step})
    except OSError:
        pass


def _join(rec: Recorder, chan: _Chan, c: Container, req: ExecRequest, prepared: object, cgroup) -> None:
    init_pid = c.state["pid"]
    with rec.step("process", "prctl", target="exec", value="PR_SET_DUMPABLE 0",
                  shell="# prctl(PR_SET_DUMPABLE, 0): until execve, nothing in the container may ptrace "
                        "this process or open its host fds through /proc/PID"):
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
    init.hide_host_args(rec, "labtui-exec", [], target="exec")  # its fork is in the container until execve
    kinds = ns_differences(init_pid)
    fds = _open_namespaces(rec, init_pid, kinds)
    # The PID we read could have been recycled between the status check and the opens: trust the
    # fds only if the process behind it is still the container's init (same start time).
    if state.proc_start_time(init_pid) != c.state.get("pid_start"):
        raise Conflict(f"container {c.name} is not running")
    _join_cgroup(cgroup)
    if "user" in fds:
        # In a user namespace whose setgroups is "deny" (CVE-2014-8989) we could never drop them
        # again: the host root's supplementary groups must not follow us in.
        with rec.step("process", "setgroups", target="exec", value="[]", shell="setpriv --clear-groups",
                      why="before setns(CLONE_NEWUSER): host groups must not enter the container"):
            os.setgroups([])
    for kind, flag, opt in NS_ORDER:
        if kind not in fds:
            continue
        with rec.step("namespace", "setns", target=f"/proc/{init_pid}/ns/{kind}", value=NS_FLAG_NAME[kind],
                      shell=f"nsenter --target {init_pid} {opt}", inode=os.fstat(fds[kind]).st_ino):
            sc.setns(fds[kind], flag)
        os.close(fds[kind])
    # Now in the container's mount namespace: setns(CLONE_NEWNS) set our root and cwd to its root
    # (the pivoted root filesystem). Its own /etc/passwd decides who -u is.
    user = resolve_user(req.user or c.config.get("user"), read_container_file("/etc/passwd"),
                        read_container_file("/etc/group"))
    env = build_env(c.config, req, user)
    master = slave = None
    if req.tty and not req.detach:
        master, slave = _open_pty(rec, req.winsize)
        chan.send({"t": "pty"}, [master])
        os.close(master)
    if req.detach:
        _spawn_detached(rec, chan, c, req, prepared, user, env)
        return
    with rec.step("process", "clone", target="exec", value="CLONE_PARENT|SIGCHLD",
                  shell="# after setns(CLONE_NEWPID) only children enter the PID namespace: fork") as s:
        pid = sc.clone(CLONE_PARENT)
        if pid == 0:
            _command_main(rec, chan, c, req, prepared, user, env, slave)  # never returns
        s["child_pid"] = pid
    chan.send({"t": "pid", "pid": pid})


def _open_namespaces(rec: Recorder, init_pid: int, kinds: list[str]) -> dict[str, int]:
    """Open every namespace first: once we are in the new mount namespace, /proc/<init> may no
    longer be reachable (the container's /proc shows only its own PIDs)."""
    fds: dict[str, int] = {}
    paths = [f"/proc/{init_pid}/ns/{k}" for k in kinds]
    with rec.step("namespace", "open", target=f"/proc/{init_pid}/ns/{{{','.join(kinds)}}}",
                  value=" ".join(kinds) or "(none differ)",
                  shell=f"ls -l /proc/{init_pid}/ns  # compare with /proc/self/ns"):
        for kind, path in zip(kinds, paths, strict=True):
            fds[kind] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    return fds


def _join_cgroup(cgroup) -> None:
    """Join the container's cgroup(s) while the host's cgroup tree is still in view (before the
    cgroup and mount namespaces): echo PID > cgroup.procs in each of the driver's directories.
    Children inherit it, so the command is accounted and limited with the container."""
    if cgroup.procs_paths():
        cgroup.add_pid(os.getpid())


def _open_pty(rec: Recorder, winsize: tuple[int, int] | None) -> tuple[int, int]:
    """A pty pair from the container's own devpts instance (we are in its mount namespace now),
    so the command sees /dev/pts/N of the container, as runc's console socket does."""
    ptmx = "/dev/pts/ptmx"
    with rec.step("device", "open ptmx", target=ptmx, value="O_RDWR|O_NOCTTY",
                  shell="# posix_openpt() + unlockpt() in the container's devpts") as s:
        master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        fcntl.ioctl(master, rootfs.TIOCSPTLCK, struct.pack("i", 0))
        num = struct.unpack("I", fcntl.ioctl(master, rootfs.TIOCGPTN, b"\0" * 4))[0]
        slave = os.open(f"/dev/pts/{num}", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        s["pts"] = f"/dev/pts/{num}"
        if winsize:
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", winsize[0], winsize[1], 0, 0))
    return master, slave


def _spawn_detached(rec: Recorder, chan: _Chan, c: Container, req: ExecRequest, prepared: object,
                    user: ExecUser, env: dict[str, str]) -> None:
    """-d: fork inside the PID namespace, fork again, let the middle one exit: an orphan is adopted
    by the child reaper of its parent's PID namespace, here the container's PID 1 (which reaps
    every child, tini-style). Had our host-side process been its parent, the host's init would
    have adopted it instead."""
    with rec.step("process", "fork", target="exec -d", value="SIGCHLD",
                  shell="# after setns(CLONE_NEWPID) only children enter the PID namespace: fork") as s:
        middle = os.fork()
        if middle == 0:
            code = 125
            try:
                if os.fork() == 0:
                    _command_main(rec, chan, c, req, prepared, user, env, None)  # never returns
                code = 0
            finally:
                os._exit(code)
        s["child_pid"] = middle
    os.waitpid(middle, 0)


# ---- the command's process (inside every namespace) ------------------------------------------------

def _command_main(rec: Recorder, chan: _Chan, c: Container, req: ExecRequest, prepared: object,
                  user: ExecUser, env: dict[str, str], slave: int | None) -> None:
    code = 125
    try:
        _prepare_process(rec, chan, c, req, prepared, user, slave)
        chan.send({"t": "exec", "argv": req.argv, "ts": time.time(), "pid": os.getpid()})
        try:
            os.execvpe(req.argv[0], req.argv, env)
        except OSError as e:
            code = 127 if e.errno in (errno.ENOENT, errno.ENOTDIR) else 126
            what = "executable file not found in $PATH" if code == 127 else _go_strerror(e.errno)
            step = {"mechanism": "exec", "op": "execve", "target": req.argv[0], "value": " ".join(req.argv),
                    "shell": " ".join(req.argv), "errno": e.errno, "result": errno.errorcode.get(e.errno or 0, "?"),
                    "strerror": e.strerror, "container": c.id, "pid": os.getpid(), "ts": time.time()}
            _send_error(chan, f'exec: "{req.argv[0]}": {what}', code, step)
    except StepError as e:
        _send_error(chan, str(e), 126)
    except EngineError as e:
        code = e.exit_code
        _send_error(chan, str(e), e.exit_code)
    except BaseException as e:
        _send_error(chan, f"cannot start the command: {e!r}", 126)
    finally:
        os._exit(code)


def _go_strerror(num: int | None) -> str:
    text = os.strerror(num or 0)
    return text[:1].lower() + text[1:]


def _prepare_process(rec: Recorder, chan: _Chan, c: Container, req: ExecRequest, prepared: object,
                     user: ExecUser, slave: int | None) -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    for sig in signal.valid_signals():  # ignored signals would stay ignored across execve
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
    os.setsid()  # as runc: never in the CLI's session, so never its controlling terminal
    if slave is not None:
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        if user.uid != 0:
            os.fchown(slave, user.uid, -1)
        stdio = (slave, slave, slave)
    else:
        devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        if req.detach:
            stdio = (devnull, devnull, devnull)
        else:
            stdio = (0 if req.interactive else devnull, 1, 2)
    for target, fd in enumerate(stdio):
        if fd != target:
            os.dup2(fd, target, inheritable=True)
        else:
            os.set_inheritable(fd, True)
    # No host fd may leak into the container (CVE-2024-21626): keep stdio and the channel only.
    init.close_other_fds({0, 1, 2, chan.sock.fileno()})
    workdir = req.workdir or c.config.get("workdir") or "/"
    try:
        os.chdir(workdir)
    except OSError as e:
        raise ExecError(f'chdir to cwd ("{workdir}") failed: {_go_strerror(e.errno)}', exit_code=126) from None
    set_user(rec, user)
    # Last, right before execve, exactly as the container's own command: no_new_privs, seccomp,
    # capabilities (security.py).
    security.apply_before_exec(rec, c.config, prepared)
