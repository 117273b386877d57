"""The per-container supervisor: the container's parent, in its own session, for its whole life.

It clones the container's init with its namespaces, records every step (its own and the child's,
which arrive over a pipe), owns the container's stdio (json-file log + attached clients), waits
for the init to exit, records the exit code and time, and removes the container after exit when
asked (--rm), whether or not the CLI that started it is still there. It is started by
engine/spawn.py; its log writer is engine/logs.py, its step gate engine/gate.py, and in restore
mode it runs engine/checkpoint/in_supervisor.py instead of clone.
"""

from __future__ import annotations

import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import sys
import termios
import time

from engine import attach, events, idle, init, namespaces, paths, state
from engine import syscalls as sc
from engine.errors import EngineError
from engine.gate import FifoGate
from engine.logs import LogWriter, drop_recorder
from engine.steps import FileSink, Recorder

WATCH_INTERVAL = 0.25  # seconds between reads of the cgroup counters and audit records


class Supervisor:
    def __init__(self, cid: str, status_fd: int | None, client: socket.socket | None,
                 winsize: tuple[int, int] | None = None, container: state.Container | None = None) -> None:
        # The record of the process that forked us (it just read or made it), else from disk.
        self.c = container if container is not None and container.id == cid else state.load(cid)
        self.cid = cid
        self.cfg = self.c.config
        self.status_fd = status_fd
        self.clients: list[socket.socket] = [client] if client is not None else []
        self.readers: dict[int, attach.FrameReader] = {}
        self.winsize = winsize
        self.sink = FileSink(str(self.c.dir / "steps.jsonl"))
        self.c.run_dir.mkdir(parents=True, exist_ok=True)
        self.gate = FifoGate(str(self.c.run_dir)) if self.cfg.get("gate") else None
        self.rec = Recorder(cid, self.sink, self.gate)
        self.log = LogWriter(str(self.c.dir / "container.log"), on_drop=drop_recorder(cid, self.c.name))
        self.sel = selectors.DefaultSelector()
        self.stdin_w: int | None = None
        self.master: int | None = None
        self.console_sock: socket.socket | None = None
        self.cgroup = None
        self.net = None
        self.oom_before: int | None = None
        self.force_restart = False
        self.first_run: dict = {}
        self.pid1 = 0
        self.health = None  # health.HealthMonitor while serving a container with a healthcheck
        self.alerts = None  # cgroups.AlertWatcher while serving
        self.loop: dict = {"count": 0, "delay": 0.0, "t0": 0.0}  # run_loop's, for engine/idle.py
        self.deferred: list = []  # callables run once the clients are released (finalize)

    # ---- reporting to the CLI that started us -------------------------------------------------
    def report(self, msg: dict) -> None:
        if self.status_fd is None:
            return
        try:
            os.write(self.status_fd, (json.dumps(msg) + "\n").encode())
            os.close(self.status_fd)
        except OSError:
            pass
        self.status_fd = None

    # ---- start -------------------------------------------------------------------------------
    def prepare_stdio(self) -> dict:
        """Pipes (or a pty) for the container's stdio; returns the child's ends."""
        devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        if self.cfg.get("tty"):
            # The child allocates the pty inside its own devpts and sends us the master.
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            self.console_sock = mine
            return {"stdin": devnull, "stdout": devnull, "stderr": devnull, "tty": None,
                    "console": theirs.detach()}
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        self.sel.register(out_r, selectors.EVENT_READ, ("out", "stdout"))
        self.sel.register(err_r, selectors.EVENT_READ, ("out", "stderr"))
        stdin = devnull
        if self.cfg.get("interactive"):
            in_r, in_w = os.pipe2(os.O_CLOEXEC)
            self.stdin_w = in_w
            stdin = in_r
        return {"stdin": stdin, "stdout": out_w, "stderr": err_w, "tty": None, "console": None}

    def run_loop(self, resumed: idle.Resumed | None = None) -> int:
        """Start the container, and start it again as its restart policy says (docker's rules:
        a manual stop never restarts; the delay starts at 100 ms and doubles up to 1 min, and
        goes back to 100 ms once a run lasted 10 s). resumed: back from the idle monitor, in the
        middle of a run (engine/idle.py)."""
        from engine import restart

        self.c.run_dir.mkdir(parents=True, exist_ok=True)
        if resumed is not None:
            listener = resumed.listener
            self.register_listener(listener)
            count, delay = resumed.count, resumed.delay
        else:
            listener = self.listen()
            count, delay = 0, restart.FIRST_DELAY
        if resumed is None:
            self.first_run = {"restart_count": 0, "restarting": None}  # written with the first start's PID
        while True:
            if resumed is not None:
                t0 = resumed.t0
                self.loop = {"count": count, "delay": delay, "t0": t0}
                for fd, stream in resumed.outs:
                    self.sel.register(fd, selectors.EVENT_READ, ("out", stream))
                code, started = self.serve(resumed.pid, listener, resumed.pidfd), True
                resumed = None
            else:
                t0 = time.monotonic()
                self.loop = {"count": count, "delay": delay, "t0": t0}
                code, started = self.start_once(listener)
            ran = time.monotonic() - t0
            forced, self.force_restart = self.force_restart, False
            st = state.load(self.cid).state
            if not started or not (forced and not st.get("manual_stop")
                                   or restart.should_restart(self.cfg, st, code, count)):
                break
            delay = restart.next_delay(delay, ran, count)
            state.update_state(self.cid, restarting=True)
            if not restart.wait_backoff(self.cid, delay):
                state.update_state(self.cid, restarting=None)
                break  # stopped by hand while waiting
            count += 1
            state.update_state(self.cid, restart_count=count, restarting=None)
            self.reload_config()
            events.emit("restarted", self.cid, self.c.name, restart_count=count, delay_ms=round(delay * 1000))
        self.finalize()
        return code

    def reload_config(self) -> None:
        """`update` may have changed the limits since the last start."""
        self.c = state.load(self.cid)
        self.cfg = self.c.config
        self.cgroup = None
        self.net = None

    def start_once(self, listener: socket.socket) -> tuple[int, bool]:
        """One run: clone, set up, exec, serve until PID 1 exits. Returns (exit code, whether the
        command started)."""
        if self.c.state.get("restore"):  # `labtui restore`: criu restore instead of clone
            from engine.checkpoint import in_supervisor

            return in_supervisor.start_restored(self, listener)
        c = self.c
        fds = self.prepare_stdio()
        chan_r, chan_w = os.pipe2(os.O_CLOEXEC)
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        plan = init.ChildPlan(
            container_id=self.cid, config=self.cfg, lowers=self.cfg["layers"],
            upper=str(c.dir / "upper"), work=str(c.dir / "work"), merged=str(c.dir / "merged"),
            etc_files={"/etc/hostname": str(c.dir / "hostname"), "/etc/hosts": str(c.dir / "hosts"),
                       "/etc/resolv.conf": str(c.dir / "resolv.conf")},
            stdin_fd=fds["stdin"], stdout_fd=fds["stdout"], stderr_fd=fds["stderr"], tty_fd=fds["tty"],
            chan_w=chan_w, chan_r=go_r, console_sock=fds["console"],
        )
        from engine import security

        plan.security = security.prepare(self.cfg, self.rec, joining=False)
        from engine import cgroups, userns

        self.cgroup = cgroups.for_container(c, self.rec)
        if not userns.is_private(self.cfg):  # in its own user namespace it may not write the host's files
            plan.cgroup_join = self.cgroup.self_join_plan()
        plan.init_fd = self.native_init()
        flags = namespaces.clone_flags(self.cfg)
        pid = self.pid1 = self.clone(flags, plan)
        # Only the child's copies of these are needed now; ours would hide EOF.
        for fd in {fds["stdin"], fds["stdout"], fds["stderr"], fds["console"], chan_w, go_r, plan.init_fd}:
            if fd is not None:
                os.close(fd)
        if self.gate is not None:  # watched step by step: `ps` shows it running from the clone on
            self.record_started(pid)
        try:
            self.before_go(pid, child_joins=bool(plan.cgroup_join))
        except EngineError as e:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return self.fail(str(e), 125, pid), False
        try:
            os.write(go_w, b"g")  # (1)
        except BrokenPipeError:
            pass  # the child failed while building its root, before waiting: its error is queued
        if self.gate is None:
            # Once the child is on its way: the write is then off the start's critical path, and
            # the container runs nothing of its own before the exec that follow_child waits for.
            self.record_started(pid)
        error, exec_msg = self.follow_child(chan_r, go_w)
        os.close(go_w)
        if error:
            return self.fail_after_exec(error, pid), False
        if exec_msg:
            self.rec.record({
                "mechanism": "exec", "op": "execve", "target": exec_msg["argv"][0],
                "value": " ".join(exec_msg["argv"]), "shell": " ".join(exec_msg["argv"]),
                "pid": exec_msg.get("pid"), "result": "ok", "errno": 0, "ts": exec_msg["ts"],
                "duration_ms": round((time.time() - exec_msg["ts"]) * 1000, 3),
            })
        events.emit("started", self.cid, c.name, pid=pid)
        self.report({"t": "started", "pid": pid})
        self.rec.gate = None  # the gate is for watching a start; teardown runs freely
        return self.serve(pid, listener), True

    def native_init(self) -> int | None:
        """A descriptor of labtui-init that PID 1 will exec (engine/native), or None: not
        built, or --strace (strace follows PID 1 and would report the exec as the command's)."""
        from engine import native

        if self.cfg.get("strace") or native.binary("labtui-init") is None:
            return None
        with self.rec.step("process", "open", target=native.binary("labtui-init") or "", value="O_PATH|O_CLOEXEC",
                           shell="# PID 1 will fexecve(3) this descriptor once the command runs",
                           why="a mode-0111 file: its exec leaves PID 1 non-dumpable, /proc/1/exe closed "
                               "to the container (CVE-2019-5736)") as st:
            fd = native.init_fd()
            st["fd"] = fd
        return fd

    def record_started(self, pid: int) -> None:
        """The init's PID with its start time (the PID-reuse guard), and ours."""
        state.update_state(self.cid, pid=pid, pid_start=state.proc_start_time(pid), boot_id=state.boot_id(),
                           main_pid=None, exit_code=None, finished_at=None, error=None, paused=None,
                           started_at=state.now_iso(), supervisor_pid=os.getpid(),
                           supervisor_start=state.proc_start_time(os.getpid()), **self.first_run)
        self.first_run = {}

    def clone(self, flags: int, plan: init.ChildPlan) -> int:
        shell = namespaces.unshare_shell(flags)
        step = {"mechanism": "namespace", "op": "clone", "target": "init",
                "value": sc.flags_names(flags) + "|SIGCHLD", "shell": shell, "container": self.cid}
        if self.gate is not None:
            step["gated"] = True
            self.gate(step)
        step["ts"] = time.time()
        t0 = time.perf_counter()
        try:
            pid = sc.clone(flags)
        except OSError as e:
            import errno as _e

            step.update(result=_e.errorcode.get(e.errno, str(e.errno)), errno=e.errno, strerror=e.strerror,
                        duration_ms=round((time.perf_counter() - t0) * 1000, 3), pid=os.getpid())
            self.rec.record(step)
            raise EngineError(f"namespace: clone({step['value']}) failed: {e.strerror}") from e
        if pid == 0:
            sc.set_comm("labtui-init")
            init.child_main(plan)  # never returns
        step.update(result="ok", errno=0, pid=os.getpid(), child_pid=pid,
                    duration_ms=round((time.perf_counter() - t0) * 1000, 3))
        self.rec.record(step)
        return pid

    def before_go(self, pid: int, child_joins: bool = False) -> None:
        """Supervisor-side setup between clone and go: cgroup, network (their issues)."""
        from engine import hooks, restart

        self.cgroup, self.net = hooks.before_go(self.rec, self.c, pid, self.cgroup, child_joins)
        self.oom_before = restart.oom_count(self.cgroup)

    def follow_child(self, chan_r: int, go_w: int) -> tuple[dict | None, dict | None]:
        """(2) Record the child's steps as they arrive; release gated ones; stop at EOF (3)."""
        buf = b""
        error = None
        exec_msg = None
        native: dict | None = None
        while True:
            data = os.read(chan_r, 65536)
            if not data:
                break
            buf += data
            *lines, buf = buf.split(b"\n")
            steps: list[dict] = []  # what arrived together is written together, in order
            for line in lines:
                msg = json.loads(line)
                t = msg["t"]
                if t == "step":
                    steps.append(msg["step"])
                    continue
                if steps:
                    self.rec.record_many(steps)
                    steps = []
                if t == "gate":
                    if self.gate is not None:
                        self.gate(msg["step"])
                    try:
                        os.write(go_w, b"g")
                    except BrokenPipeError:
                        pass  # the child is gone; its error (if any) is read next
                elif t == "console":
                    self.receive_console()
                elif t == "exec":
                    exec_msg = msg
                elif t == "native_init":
                    native = msg
                elif t == "error":
                    error = msg
                    if msg.get("step"):
                        self.rec.record(msg["step"])
            if steps:
                self.rec.record_many(steps)
        os.close(chan_r)
        if native is not None and error is None:
            self.record_native_init(native)
        return error, exec_msg

    def record_native_init(self, msg: dict) -> None:
        """PID 1 said it was about to fexecve labtui-init; EOF on the channel (close-on-exec)
        came after. What it runs now is read from the kernel: /proc/PID/exe."""
        pid = self.pid1
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            return  # gone already (a command that exited at once): nothing to say of it
        if "labtui-init" not in exe:
            return  # the exec failed: PID 1 sent that step with its errno
        self.rec.record({
            "mechanism": "process", "op": "execve", "target": "init", "value": "labtui-init",
            "shell": "# fexecve(fd): PID 1 is now engine/native/init.c, not a Python interpreter",
            "why": "tini's job (forward signals, reap orphans) in a few pages",
            "exe": exe, "pid": pid, "result": "ok", "errno": 0, "ts": msg["ts"],
            "duration_ms": round((time.time() - msg["ts"]) * 1000, 3)})

    def receive_console(self) -> None:
        _, fds, _, _ = socket.recv_fds(self.console_sock, 16, 1)
        self.console_sock.close()
        self.console_sock = None
        master = fds[0]
        os.set_inheritable(master, False)
        if self.winsize:
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", *self.winsize, 0, 0))
        self.master = master
        self.sel.register(master, selectors.EVENT_READ, ("out", "stdout"))

    def fail(self, message: str, code: int, pid: int | None) -> int:
        self.finish(code, message)
        self.report({"t": "error", "message": message, "exit_code": code})
        self.send_exit(code)
        self.after_exit()
        return code

    def fail_after_exec(self, error: dict, pid: int) -> int:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        self.drain()
        return self.fail(error["message"], int(error.get("exit_code", 125)), pid)

    # ---- running -------------------------------------------------------------------------------
    def listen(self) -> socket.socket:
        paths.attach_socket(self.cid).parent.mkdir(parents=True, exist_ok=True)
        srv = attach.listen_unix(str(paths.attach_socket(self.cid)))
        self.register_listener(srv)
        for cl in self.clients:
            self.add_client(cl, registered=False)
        return srv

    def register_listener(self, srv: socket.socket) -> None:
        srv.setblocking(False)
        self.sel.register(srv, selectors.EVENT_READ, ("listen", None))

    def add_client(self, cl: socket.socket, registered: bool = False) -> None:
        if cl not in self.clients:
            self.clients.append(cl)
        cl.setblocking(True)
        cl.settimeout(5)
        self.readers[cl.fileno()] = attach.FrameReader()
        self.sel.register(cl, selectors.EVENT_READ, ("client", cl))

    def drop_client(self, cl: socket.socket) -> None:
        try:
            self.sel.unregister(cl)
        except (KeyError, ValueError):
            pass
        if cl in self.clients:
            self.clients.remove(cl)
        self.readers.pop(cl.fileno(), None)
        cl.close()

    def broadcast(self, kind: int, data: bytes) -> None:
        for cl in list(self.clients):
            try:
                attach.send(cl, kind, data)
            except OSError:
                self.drop_client(cl)

    def on_output(self, fd: int, stream: str) -> bool:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO from a pty master once the last slave fd is closed
            data = b""
        if not data:
            self.sel.unregister(fd)
            os.close(fd)
            if fd == self.master:
                self.master = None
            return False
        self.log.write(stream, data)
        self.broadcast(attach.STDOUT if stream == "stdout" else attach.STDERR, data)
        return True

    def on_client(self, cl: socket.socket) -> None:
        try:
            data = cl.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.drop_client(cl)
            return
        for kind, payload in self.readers[cl.fileno()].feed(data):
            if kind == attach.STDIN:
                self.write_stdin(payload)
            elif kind == attach.STDIN_EOF:
                self.close_stdin()
            elif kind == attach.RESIZE and self.master is not None:
                rows, cols = attach.parse_resize(payload)
                # The kernel sends SIGWINCH to the pty's foreground process group (tty_ioctl(4)).
                fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def write_stdin(self, data: bytes) -> None:
        fd = self.master if self.master is not None else self.stdin_w
        if fd is None:
            return
        try:
            os.write(fd, data)
        except OSError:
            self.close_stdin()

    def close_stdin(self) -> None:
        if self.master is not None:
            self.write_stdin(b"\x04")  # ^D: EOF for a terminal in canonical mode
        elif self.stdin_w is not None:
            os.close(self.stdin_w)
            self.stdin_w = None

    def serve(self, pid: int, listener: socket.socket, pidfd: int | None = None) -> int:
        """Until PID 1 exits: its output to the log and the clients, the clients' input to it,
        the counters every WATCH_INTERVAL; and, when nothing needs Python for IDLE_AFTER
        seconds, the idle monitor in its place (engine/idle.py; it execs us back)."""
        if pidfd is None:
            pidfd = os.pidfd_open(pid)
        self.sel.register(pidfd, selectors.EVENT_READ, ("exit", None))
        self.alerts = self.alert_watcher()
        self.health = self.health_monitor()
        denials = self.denials()
        may_idle = idle.enabled()
        busy_at = time.monotonic()
        exited = False
        tick = time.monotonic() + WATCH_INTERVAL
        while not exited:
            for key, _ in self.sel.select(max(0.0, tick - time.monotonic())):
                kind, arg = key.data
                if kind == "out":
                    self.on_output(key.fd, arg)
                elif kind == "listen":
                    try:
                        cl, _ = listener.accept()
                        self.add_client(cl)
                    except BlockingIOError:
                        pass
                elif kind == "client":
                    self.on_client(arg)
                elif kind == "exit":
                    exited = True
            # Counters are read every 250 ms, not on every wake-up (output, clients), and once
            # more when the container has exited, so an OOM kill at the very end is still seen.
            if exited or time.monotonic() >= tick:
                tick = time.monotonic() + WATCH_INTERVAL
                if self.alerts is not None and self.alerts.check():
                    busy_at = time.monotonic()
                if denials:
                    denials()
                if not exited and self.health and self.health.tick() == "unhealthy" \
                        and self.health.spec.get("on_failure") == "restart":
                    self.force_restart = True  # --health-on-failure restart: whatever the policy
                    os.kill(pid, signal.SIGKILL)
                if not exited and may_idle:
                    if idle.blockers(self):
                        busy_at = time.monotonic()
                    elif time.monotonic() - busy_at >= idle.IDLE_AFTER:
                        idle.hand_off(self, pid, listener, pidfd)  # returns if a port got busy
                        busy_at = time.monotonic()
        if self.health:
            self.health.close()
        _, status = os.waitpid(pid, 0)
        code = init.exit_code(status)
        self.sel.unregister(pidfd)
        os.close(pidfd)
        self.drain()
        self.finish(code, None)
        self.send_exit(code)
        self.after_exit()
        return code

    def health_monitor(self):
        spec = self.cfg.get("health")
        if not spec:
            return None
        from engine import health

        def set_state(h: dict) -> None:
            state.update_state(self.cid, health=h)

        def emit(status: str) -> None:
            events.emit("health_status", self.cid, self.c.name, status=status)

        return health.HealthMonitor(spec, lambda argv: health.spawn_in_container(self.cid, argv), set_state, emit)

    def alert_watcher(self):
        from engine import hooks

        return self.alerts if self.alerts is not None else hooks.alert_watcher(self.c, self.cgroup)

    def denials(self):
        """The seccomp denial poll of this run (None when unconfined)."""
        from engine import security

        return security.poll_denials if security.denial_watcher() is not None else None

    def drain(self) -> None:
        """Read what is left in the output pipes: after PID 1 exits the kernel kills the whole
        PID namespace, so every write end closes soon."""
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            outs = [k for k in self.sel.get_map().values() if k.data[0] == "out"]
            if not outs:
                break
            for key, _ in self.sel.select(0.1):
                if key.data[0] == "out":
                    self.on_output(key.fd, key.data[1])
        self.log.flush()

    def finish(self, code: int, error: str | None) -> None:
        """Record how it ended: code, time, the signal by name, and whether the OOM killer or a
        person did it (a SIGKILL is only the OOM killer's when the cgroup's oom_kill rose)."""
        from engine import restart

        oom = restart.oom_killed(self.cgroup, self.oom_before)
        # A --rm container (which never restarts: the CLI refuses --rm with --restart) is marked
        # for removal in the same write: `ps` shows it being removed, a concurrent rm backs off.
        removing = self.cfg.get("autoremove") and not self.force_restart \
            and (self.cfg.get("restart") or {}).get("name", "no") in ("no", None)
        # Only a --rm container's mark is written here: a concurrent `rm`'s own mark must stay.
        mark = {"removing": "supervisor"} if removing else {}
        st = state.update_state_unless_full(self.cid, exit_code=code, finished_at=state.now_iso(), error=error,
                                oom_killed=oom or None, step_seq=self.sink.seq,
                                log_dropped=self.log.summary(), **mark)
        info = restart.describe_exit(code, oom, st)
        events.emit("died", self.cid, self.c.name, exit_code=code, error=error, **info)
        if info.get("crash"):
            events.emit("crash", self.cid, self.c.name, exit_code=code, **info)
        if oom:
            events.emit("oom", self.cid, self.c.name, exit_code=code)

    def send_exit(self, code: int) -> None:
        self.broadcast(attach.EXIT, str(code).encode())

    def after_exit(self) -> None:
        from engine import hooks

        # A --rm container's veth goes after the caller is released (finalize): see deferred.
        later = self.deferred if self.cfg.get("autoremove") and not self.force_restart else None
        hooks.after_exit(self.rec, self.c, self.cgroup, self.net, later)
        self.cgroup = None
        self.net = None

    def finalize(self) -> None:
        """No more restarts: remove the container if asked (--rm), let the clients go."""
        if self.cfg.get("autoremove"):
            from engine import teardown

            try:
                teardown.remove(self.cid, force=True, from_supervisor=True, deferred=self.deferred)
            except EngineError:
                pass
        for cl in list(self.clients):
            self.drop_client(cl)  # `run --rm` returns now: the container is gone for everyone
        if self.deferred:
            try:  # after the caller, who may be exiting right now on a busy CPU
                os.setpriority(os.PRIO_PROCESS, 0, 10)
            except OSError:
                pass
        self.run_deferred()

    def run_deferred(self) -> None:
        """What a --rm removal left for after its caller was released: the veth, the files."""
        work, self.deferred = self.deferred, []
        for fn in work:
            try:
                fn()
            except Exception as e:  # one failure must not keep the rest from running
                print(f"labtui supervisor: deferred cleanup failed: {e!r}", file=sys.stderr)


def become_supervisor() -> None:
    """Detach from the caller: own session and process group, stdio away from the terminal."""
    if os.getsid(0) != os.getpid():  # the exec'd form was started in a new session already
        os.setsid()
    # The caller's supplementary groups (sudo gives root's, gid 0 among them) must not reach the
    # container: in a user namespace they cannot even be dropped once setgroups is "deny", and
    # host gid 0 would open every root-group directory to the container (user_namespaces(7)).
    os.setgroups([])
    sc.set_comm("labtui-sup")
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def run(cid: str, status_fd: int | None, client: socket.socket | None,
        winsize: tuple[int, int] | None, container: state.Container | None = None) -> int:
    errlog = os.open(str(paths.container_dir(cid) / "supervisor.log"),
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    os.dup2(errlog, 2)
    os.close(errlog)
    try:
        state.hold_start_lock(cid)
        sup = Supervisor(cid, status_fd, client, winsize, container)
        try:
            code = sup.run_loop()
        finally:
            sup.run_deferred()  # normally done in finalize; after an error here
        from engine import security

        security.finish_denials()  # late audit records, once nobody waits for us any more
        return code
    except EngineError as e:
        print(f"labtui supervisor: {e}", file=sys.stderr)
        _report_failure(cid, status_fd, str(e), e.exit_code)
        return e.exit_code
    except BaseException as e:  # never a silent death: say why in the log and to the CLI
        import traceback

        traceback.print_exc()
        _report_failure(cid, status_fd, f"supervisor failed: {e!r}", 125)
        return 125


def _report_failure(cid: str, status_fd: int | None, message: str, code: int) -> None:
    try:
        state.update_state(cid, exit_code=code, finished_at=state.now_iso(), error=message)
    except OSError:
        pass
    if status_fd is not None:
        try:
            os.write(status_fd, (json.dumps({"t": "error", "message": message, "exit_code": code}) + "\n").encode())
        except OSError:
            pass


def resume(cid: str, args: list[str]) -> int:
    """Back from the idle monitor (engine/idle.py), in the middle of a run: serve it to its end."""
    sc.set_comm("labtui-sup")
    if not (paths.container_dir(cid) / "state.json").exists():
        # The record was removed under the running container (by hand; `system prune` then kills
        # its processes): nothing to serve, and nothing of it may be made again.
        print(f"labtui supervisor: the record of {cid[:12]} is gone; exiting", file=sys.stderr)
        return 125
    try:
        sup = Supervisor(cid, None, None)
        try:
            code = sup.run_loop(idle.load(sup, args))
        finally:
            sup.run_deferred()
        from engine import security

        security.finish_denials()
        return code
    except BaseException as e:  # never a silent death: say why in the log
        import traceback

        traceback.print_exc()
        try:
            state.update_state(cid, error=f"supervisor failed after its idle phase: {e!r}")
        except OSError:
            pass
        return 125


def main(argv: list[str] | None = None) -> None:
    """`python -m engine.supervisor CID STATUS_FD [CLIENT_FD] [ROWS COLS]`: the exec'd form, used by
    callers that have threads (the terminal app), where fork without exec is unsafe.
    `python -m engine.supervisor --resume CID ...`: exec'd by the idle monitor."""
    args = argv if argv is not None else sys.argv[1:]
    if args and args[0] == "--resume":
        os._exit(resume(args[1], args[2:]))
    cid, status_fd = args[0], int(args[1])
    client = socket.socket(fileno=int(args[2])) if len(args) > 2 and args[2] != "-" else None
    winsize = (int(args[3]), int(args[4])) if len(args) > 4 else None
    become_supervisor()
    os._exit(run(cid, status_fd, client, winsize))


if __name__ == "__main__":
    main()
