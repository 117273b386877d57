"""The container's side: set up the namespaces' contents, then be PID 1 (runs in the cloned child).

Sync points with the supervisor (numbered as in crun):
  (1) child: wait for "go" — the supervisor has put it in its cgroup and wired its network
      (the root filesystem is built before this wait, in parallel, unless the user namespace's
      maps or the step gate require waiting first);
  (2) child: every step goes up the channel as it is performed (and waits for "go" per step
      when the step gate is on);
  (3) main process: sends "exec" and calls execve; the channel is O_CLOEXEC, so the supervisor
      sees EOF exactly when execve succeeded, or an "error" message when it failed.
"""

from __future__ import annotations

import json
import os
import signal
import stat as stat_mod
import sys
import termios
import time

from engine import namespaces, procfs, proctitle, rootfs, sched, security, userns
from engine import syscalls as sc
from engine.errors import EngineError, StepError
from engine.record import dataclass, field
from engine.steps import Recorder

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


class Channel:
    """Child → supervisor messages (JSON lines) and supervisor → child "go" bytes."""

    def __init__(self, wfd: int, rfd: int) -> None:
        self.wfd = wfd
        self.rfd = rfd

    def send(self, msg: dict) -> None:
        data = (json.dumps(msg, default=str) + "\n").encode()
        while data:
            n = os.write(self.wfd, data)
            data = data[n:]

    def wait_go(self) -> None:
        if os.read(self.rfd, 1) != b"g":
            raise EngineError("the supervisor went away during container setup")

    def step_sink(self, rec: dict) -> None:
        self.send({"t": "step", "step": rec})

    def gate(self, rec: dict) -> None:
        self.send({"t": "gate", "step": rec})
        self.wait_go()


@dataclass
class ChildPlan:
    """Everything the child needs, prepared by the supervisor before clone."""

    container_id: str
    config: dict
    lowers: list[str]
    upper: str
    work: str
    merged: str
    etc_files: dict[str, str]  # container path -> host file to bind
    stdin_fd: int
    stdout_fd: int
    stderr_fd: int
    tty_fd: int | None
    chan_w: int
    chan_r: int
    console_sock: int | None = None
    cgroup_join: list = field(default_factory=list)  # [(mount point, relative dir)]: joined by the child
    security: object | None = None  # what security.prepare() built before clone
    keep_fds: list[int] = field(default_factory=list)
    init_fd: int | None = None  # labtui-init, O_PATH (engine/native): PID 1's next program


def close_other_fds(keep: set[int]) -> None:
    """Close every fd not explicitly passed: a leaked host directory fd is CVE-2024-21626."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def child_main(plan: ChildPlan) -> None:
    """Entry point right after clone(2) in the child. Never returns."""
    chan = Channel(plan.chan_w, plan.chan_r)
    code = 125
    try:
        # Its own session, as runc's init: CRIU cannot dump a PID namespace whose init belongs
        # to a session led from outside it (the supervisor's).
        os.setsid()
        keep = {0, 1, 2, plan.chan_w, plan.chan_r, plan.stdin_fd, plan.stdout_fd, plan.stderr_fd}
        if plan.console_sock is not None:
            keep.add(plan.console_sock)
        keep.update(plan.keep_fds)
        if plan.init_fd is not None:
            keep.add(plan.init_fd)
        # Directory fds of the cgroup mounts, opened while the host's tree is still visible
        # (before pivot_root); used once, after "go", and closed before anything else runs.
        join_fds = [(os.open(m, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), m, rel) for m, rel in plan.cgroup_join]
        keep.update(fd for fd, _, _ in join_fds)
        keep.update(security.child_keep_fds(plan.security))  # only the attack lab's deliberate leak
        if plan.tty_fd is not None:
            keep.add(plan.tty_fd)
        close_other_fds(keep)
        gate = chan.gate if plan.config.get("gate") else None
        rec = Recorder(plan.container_id, chan.step_sink, gate)
        # The root filesystem needs nothing from the supervisor's side (cgroup, network), so it
        # is built while the supervisor works, unless the user namespace's maps must come first
        # (mounts in it need them), the step gate wants one step at a time, or strace is to
        # see the whole setup.
        # With --strace the whole setup is traced: strace attaches before "go".
        early = gate is None and not userns.is_private(plan.config) and not plan.config.get("strace")
        if not early:
            chan.wait_go()  # (1)
            userns.enter(rec, plan.config)  # --userns=private: the maps are written; become its root
        setup_container(rec, plan, chan)
        if early:
            chan.wait_go()  # (1)
        join_cgroups(rec, join_fds)
        if plan.config.get("cgroupns", True):
            # Only now: a cgroup namespace's root is the cgroup its creator is in when it is
            # made (cgroup_namespaces(7)), and the supervisor has just put us in ours.
            namespaces.unshare(rec, sc.CLONE_NEWCGROUP)
        code = run_init(rec, plan, chan)
    except StepError as e:
        chan.send({"t": "error", "message": str(e), "exit_code": 125, "step": e.step})
    except EngineError as e:
        chan.send({"t": "error", "message": str(e), "exit_code": e.exit_code})
    except BaseException as e:  # report anything to the supervisor rather than dying silently
        chan.send({"t": "error", "message": f"container setup failed: {e!r}", "exit_code": 125})
    finally:
        os._exit(code)


def join_cgroups(rec: Recorder, join_fds: list[tuple[int, str, str]]) -> None:
    """Move this process into the cgroups the supervisor made: "0" written to each v1 `tasks`
    file moves the writing thread itself, without the kernel's global threadgroup lock that a
    write of a PID to cgroup.procs takes (see CgroupDriver.self_join_plan)."""
    for fd, mount, rel in join_fds:
        path = f"{mount}/{rel}/tasks"
        try:
            with rec.step("cgroup", "join", target=path, value="0", shell=f"echo 0 > {path}  # the shell itself"):
                tfd = os.open(f"{rel}/tasks", os.O_WRONLY | os.O_CLOEXEC, dir_fd=fd)
                try:
                    os.write(tfd, b"0")
                finally:
                    os.close(tfd)
        finally:
            os.close(fd)


def hide_host_args(rec: Recorder, name: str, env: list[str], target: str = "init") -> None:
    """/proc/PID/cmdline reads `name`, /proc/PID/environ `env`: nothing of the host's paths.

    This process is a fork of a Python interpreter started on the host: its argv and environment
    name the interpreter, labtui's checkout and the host's variables, and cmdline is readable by
    every process of the container (engine/proctitle.py). Recorded, not fatal: a kernel without
    CONFIG_CHECKPOINT_RESTORE refuses the call, and the container still runs.
    """
    try:
        with rec.step("process", "prctl PR_SET_MM_MAP", target=target, value=f"cmdline {name!r}",
                      shell=f"# prctl(PR_SET_MM, PR_SET_MM_MAP): /proc/self/cmdline reads {name}, "
                            "environ the container's variables, as docker-init's"):
            proctitle.set_cmdline_environ([name], env)
    except StepError:
        pass  # the step carries the errno


def setup_container(rec: Recorder, plan: ChildPlan, chan: Channel) -> None:
    cfg = plan.config
    # First: from here on a process of the container (an exec) could read our /proc/1/cmdline.
    hide_host_args(rec, "labtui-init", list(cfg["env"]))
    rootfs.make_private(rec)
    root = plan.merged
    in_userns = userns.is_private(cfg)
    lowers = getattr(plan.security, "lowers", None) or plan.lowers  # userns: the mapped copies
    rootfs.mount_overlay(rec, lowers, plan.upper, plan.work, root, userxattr=in_userns,
                         volatile=bool(cfg.get("autoremove")))
    for v in cfg.get("volumes", []):
        rootfs.mount_volume(rec, root, v["host"], v["container"], v["readonly"])
    rootfs.mount_proc_sys(rec, root, bind_sys=in_userns and cfg.get("network", "none") == "host")
    rootfs.setup_dev(rec, root, with_console=plan.console_sock is None, bind_nodes=in_userns)
    from engine import devices

    devices.add_devices(rec, root, cfg, bind=in_userns)  # --device
    if plan.console_sock is not None:
        slave = rootfs.open_console(rec, root, plan.console_sock, chan.send)
        plan.tty_fd = plan.stdin_fd = plan.stdout_fd = plan.stderr_fd = slave
        plan.console_sock = None
    for ctr_path, host_file in plan.etc_files.items():
        rootfs.bind_file(rec, root, host_file, ctr_path)
    tmpfs = list(cfg.get("tmpfs", []))
    if cfg.get("read_only"):
        tmpfs += [p for p in ("/tmp", "/run") if p not in tmpfs]
    for path in tmpfs:
        rootfs.mount_tmpfs(rec, root, path)
    workdir = cfg.get("workdir") or "/"
    rootfs.ensure_mountpoint(rootfs.secure_join(root, workdir), True)  # docker creates WorkingDir
    if cfg.get("rootfs_mode") == "chroot":
        rootfs.chroot_into(rec, root)  # the attack lab's weak "chroot" profile only
    else:
        rootfs.pivot(rec, root)
    if cfg.get("read_only"):
        rootfs.remount_root_ro(rec)
    security.mask_paths(rec, cfg)
    namespaces.set_hostname(rec, cfg["hostname"])
    if cfg.get("network", "none") != "host":
        namespaces.loopback_up(rec)


def run_init(rec: Recorder, plan: ChildPlan, chan: Channel) -> int:
    """PID 1: start the command, forward signals to it, reap every orphan (tini semantics)."""
    watched = set(FORWARDED) | {signal.SIGCHLD}
    # Block before fork so no signal slips between fork and the wait loop; the kernel queues
    # blocked signals even for a namespace's init (which otherwise ignores SIG_DFL signals).
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    with rec.step("process", "prctl", target="init", value="PR_SET_DUMPABLE 0",
                  shell="# prctl(PR_SET_DUMPABLE, 0): /proc/1/{mem,exe,fd} closed to the container"):
        # Why: the container must not ptrace PID 1 or reopen its host fds and executable through
        # /proc/1 (CVE-2019-5736 class); non-dumpable makes ptrace_may_access() refuse them.
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
    if can_spawn(plan.config, plan):
        main = spawn_main(rec, plan, chan, watched)
        if main < 0:
            return -main  # the command could not be started (126/127); the supervisor was told
    else:
        main = os.fork()
        if main == 0:
            exec_main(rec, plan, chan)  # never returns
    # PID 1 needs no capability: it keeps none. Recorded but not gated: a forked command's
    # process waits on the same gate pipe from now on, and a release must reach exactly one.
    security.harden_init(Recorder(rec.container, rec.sink, None), plan.config)
    # The init keeps nothing of the container's stdio or the channel: EOF on them must mean the
    # command's side is done. (The channel's write end goes last: see become_native_init.)
    for fd in {plan.chan_r, plan.stdin_fd, plan.stdout_fd, plan.stderr_fd, plan.tty_fd}:
        if fd is not None and fd > 2:
            try:
                os.close(fd)
            except OSError:
                pass
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    if plan.init_fd is not None:
        become_native_init(chan, plan.init_fd, main, plan)  # returns only if the exec failed
    os.close(plan.chan_w)
    return init_loop(main, watched)


def become_native_init(chan: Channel, init_fd: int, main: int, plan: ChildPlan) -> None:
    """Replace this interpreter by labtui-init (engine/native/init.c), which does what
    init_loop does in a few pages: the container's idle cost is then its supervisor's.

    The signal mask and pending signals survive execve(2), so nothing sent to PID 1 meanwhile is
    lost. The channel is close-on-exec: the supervisor sees EOF once the exec succeeded, and then
    records the step, having checked /proc/PID/exe (Supervisor.record_native_init); a failure
    (a seccomp profile denying execveat, say) is sent as a step with its errno, and PID 1 stays
    in Python."""
    chan.send({"t": "native_init", "ts": time.time()})
    try:
        # The container's environment, as the Python init showed it (engine/proctitle.py).
        env = dict(item.split("=", 1) for item in plan.config["env"])
        os.execve(init_fd, ["labtui-init"], {"INIT_MAIN_PID": str(main), **env})
    except OSError as e:
        chan.send({"t": "step", "step": {
            "mechanism": "process", "op": "execve", "target": "init", "value": "labtui-init",
            "shell": "# fexecve(fd of labtui-init)", "errno": e.errno, "result": _errname(e.errno),
            "strerror": e.strerror, "pid": os.getpid(), "ts": time.time(),
            "why": "PID 1 stays the Python init: it works the same, at an interpreter's memory cost"}})


def init_loop(main: int, watched: set[int]) -> int:
    while True:
        info = signal.sigwaitinfo(watched)
        if info.si_signo != signal.SIGCHLD:
            try:
                os.kill(main, info.si_signo)
            except ProcessLookupError:
                pass
            continue
        while True:  # SIGCHLDs coalesce: reap until nothing is left
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == main:
                return exit_code(status)


def exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def reset_ignored_signals() -> None:
    """Ignored signals stay ignored across execve(2) (caught ones are reset by it): Python
    ignores SIGPIPE and SIGXFSZ and the supervisor SIGHUP/SIGINT. The command must start with
    every default - a shell cannot even trap a signal that was ignored when it started. The
    kernel lists them in SigIgn (proc(5)); only those need a sigaction. (procfs is imported at
    the top: this runs after pivot_root, where the engine's files are out of reach.)"""
    for sig in _ignored_signals():
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass


def can_spawn(cfg: dict, plan: ChildPlan) -> bool:
    """Whether the command can be started with posix_spawn from PID 1 (see spawn_main): not when
    it needs a controlling terminal (TIOCSCTTY has no spawn attribute) or its own scheduling."""
    return plan.tty_fd is None and cfg.get("nice") is None and cfg.get("sched_policy") is None


def spawn_main(rec: Recorder, plan: ChildPlan, chan: Channel, blocked: set[int]) -> int:
    """Start the command from PID 1 with posix_spawn(3), returning its PID (or -exit code).

    Why not fork then exec: a fork of this interpreter copies page after page as the child's
    Python touches them (copy-on-write), milliseconds before the command even starts. Everything
    the command must inherit is set up here, in PID 1, before the spawn: working directory,
    close-on-exec fds, no_new_privs, capabilities, the seccomp filter. glibc's posix_spawn then
    clones with CLONE_VM|CLONE_VFORK and execs at once; its attributes give the child its own
    session, an empty signal mask and default dispositions, and its stdio. PID 1 drops every
    capability right after (harden_init) and keeps the seccomp filter: it needs only wait4,
    rt_sigtimedwait and kill, which the profile allows."""
    cfg = plan.config
    argv = cfg["argv"]
    env = dict(item.split("=", 1) for item in cfg["env"])
    os.chdir(cfg.get("workdir") or "/")
    security.apply_before_exec(rec, cfg, plan.security)
    ignored = _ignored_signals()
    step = {"mechanism": "exec", "op": "execve", "target": argv[0], "value": " ".join(argv),
            "shell": " ".join(argv), "container": plan.container_id, "pid": os.getpid(),
            "via": "posix_spawn (clone CLONE_VM|CLONE_VFORK, then execve)"}
    step["ts"] = time.time()
    t0 = time.perf_counter()
    try:
        path = find_executable(argv[0], env.get("PATH", DEFAULT_PATH))
        fds = (plan.stdin_fd, plan.stdout_fd, plan.stderr_fd)
        pid = os.posix_spawn(path, argv, env, setsid=True, setsigmask=(),
                             setsigdef=ignored | blocked,
                             file_actions=[(os.POSIX_SPAWN_DUP2, fd, n) for n, fd in enumerate(fds)])
    except OSError as e:
        code = 127 if e.errno in (2, 20) else 126  # ENOENT/ENOTDIR: not found
        what = "executable file not found in $PATH" if code == 127 else e.strerror
        step.update(errno=e.errno, result=_errname(e.errno), strerror=e.strerror,
                    duration_ms=round((time.perf_counter() - t0) * 1000, 3))
        chan.send({"t": "error", "exit_code": code, "step": step, "message": f'exec: "{argv[0]}": {what}'})
        return -code
    step.update(errno=0, result="ok", child_pid=pid, duration_ms=round((time.perf_counter() - t0) * 1000, 3))
    rec.sink(step)
    return pid


DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def find_executable(name: str, search: str) -> str:
    """execvp(3)'s search in the container's PATH (posix_spawnp would search PID 1's own): the
    first regular, executable file; else the first error that is not "not there" (EACCES
    gives 126, as execvp does), else ENOENT."""
    if "/" in name:
        return name
    first_error: OSError | None = None
    for d in search.split(":"):
        path = os.path.join(d or ".", name)
        try:
            st = os.stat(path)
        except OSError as e:
            if e.errno not in (2, 20) and first_error is None:  # ENOENT, ENOTDIR
                first_error = e
            continue
        if stat_mod.S_ISREG(st.st_mode) and os.access(path, os.X_OK):
            return path
        if first_error is None:
            first_error = PermissionError(13, "permission denied", path)
    raise first_error or FileNotFoundError(2, "no such file or directory", name)


def _ignored_signals() -> set[int]:
    mask = int(procfs.status_field("self", "SigIgn") or "0", 16)
    # valid_signals(): glibc keeps 32 and 33 for itself (nptl(7)); a C parent may leave them
    # ignored, and Python refuses to name them.
    valid = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}
    return {sig for sig in range(1, 65) if mask >> (sig - 1) & 1 and sig in valid}


def exec_main(rec: Recorder, plan: ChildPlan, chan: Channel) -> None:
    cfg = plan.config
    code = 125
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        reset_ignored_signals()
        os.setsid()
        if plan.tty_fd is not None:
            import fcntl

            fcntl.ioctl(plan.tty_fd, termios.TIOCSCTTY, 0)
            fds = (plan.tty_fd, plan.tty_fd, plan.tty_fd)
        else:
            fds = (plan.stdin_fd, plan.stdout_fd, plan.stderr_fd)
        for target, fd in enumerate(fds):
            os.dup2(fd, target, inheritable=True)
        # The channel's read end stays until execve closes it (O_CLOEXEC): gated steps below
        # (scheduling, security) still wait on it.
        for fd in {plan.stdin_fd, plan.stdout_fd, plan.stderr_fd, plan.tty_fd}:
            if fd is not None and fd > 2:
                os.close(fd)
        os.set_inheritable(plan.chan_w, False)  # (3) closed by a successful execve
        os.chdir(cfg.get("workdir") or "/")
        argv = cfg["argv"]
        env = dict(item.split("=", 1) for item in cfg["env"])
        sched.apply(rec, cfg)  # before capabilities go: a higher priority needs CAP_SYS_NICE
        # Last: no_new_privs, then seccomp, then capabilities, right before execve (runc's order).
        security.apply_before_exec(rec, cfg, plan.security)
        chan.send({"t": "exec", "argv": argv, "ts": time.time(), "pid": os.getpid()})
        try:
            os.execvpe(argv[0], argv, env)
        except OSError as e:
            code = 127 if e.errno in (2, 20) else 126  # ENOENT/ENOTDIR: not found
            what = "executable file not found in $PATH" if code == 127 else e.strerror
            rec_ = {"mechanism": "exec", "op": "execve", "target": argv[0], "value": " ".join(argv),
                    "shell": " ".join(argv), "errno": e.errno, "result": _errname(e.errno),
                    "strerror": e.strerror, "container": plan.container_id, "pid": os.getpid(),
                    "ts": time.time()}
            chan.send({"t": "error", "exit_code": code, "step": rec_,
                       "message": f'exec: "{argv[0]}": {what}'})
    except EngineError as e:
        try:
            chan.send({"t": "error", "message": str(e), "exit_code": e.exit_code})
        except OSError:
            pass
    except BaseException as e:
        try:
            chan.send({"t": "error", "message": f"cannot start the command: {e!r}", "exit_code": 125})
        except OSError:
            pass
    finally:
        sys.stdout.flush = lambda: None  # nothing of Python's buffers must reach the container's log
        os._exit(code)


def _errname(num: int | None) -> str:
    import errno

    return errno.errorcode.get(num or 0, str(num))
