"""labtui-oci exec: one more process inside a running container (what `podman exec` asks for).

    runtime ──fork──▶ joiner: prctl(PR_SET_DUMPABLE, 0); its PID into each of the container's
                      cgroup.procs; setns(user, cgroup, ipc, uts, net, pid, mnt), one step each
                      clone(CLONE_PARENT) ──▶ the process (in the container's PID namespace:
                      setns(CLONE_NEWPID) only moves children), the runtime's child
                      exits
    process: setsid, [terminal: a pty from the container's devpts, master over --console-socket],
             rlimits, bounding set, user, capabilities, no_new_privs, seccomp, cwd, execve
    runtime: pid file; EOF on the O_CLOEXEC pipe = execve done; --detach returns now (conmon,
             a subreaper, adopts the process), else waits for it and exits with its code.
"""

from __future__ import annotations

import json
import os

from engine import init
from engine import syscalls as sc
from engine.errors import EngineError, StepError
from engine.oci import child as oci_child
from engine.steps import Recorder

ORDER = ("user", "cgroup", "ipc", "uts", "net", "pid", "mnt")
NSTYPE = {"user": sc.CLONE_NEWUSER, "cgroup": sc.CLONE_NEWCGROUP, "ipc": sc.CLONE_NEWIPC, "uts": sc.CLONE_NEWUTS,
          "net": sc.CLONE_NEWNET, "pid": sc.CLONE_NEWPID, "mnt": sc.CLONE_NEWNS}


def run(rec: Recorder, st: dict, cfg: dict, proc: dict, detach: bool, pid_file: str | None,
        console_socket: str | None, write_pid_file) -> int:
    from engine import cgroups, state

    cfg = dict(cfg, process=proc)
    init_pid = st["pid"]
    c = state.load(st["labtui_id"])
    procs = cgroups.for_container(c, rec).procs_paths()
    flt = oci_child.build_filter(rec, cfg)
    console = None
    if console_socket:
        import socket

        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(console_socket)
        console = s.detach()
    chan_r, chan_w = os.pipe2(os.O_CLOEXEC)
    joiner = os.fork()
    if joiner == 0:
        _joiner_main(rec, cfg, init_pid, procs, flt, console, chan_w)  # never returns
    os.close(chan_w)
    if console is not None:
        os.close(console)
    pid, error = _follow(chan_r)
    _, status = os.waitpid(joiner, 0)
    if error is not None:
        if error.get("step"):
            rec.record(error["step"])
        if pid:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        raise EngineError(error.get("message", "exec failed"), exit_code=int(error.get("exit_code", 125)))
    if pid is None:
        raise EngineError(f"exec failed: the joining process exited {os.waitstatus_to_exitcode(status)}")
    argv = proc["args"]
    rec.record({"mechanism": "exec", "op": "execve", "target": argv[0], "value": " ".join(argv),
                "shell": f"nsenter -t {init_pid} -a {' '.join(argv)}", "pid": pid, "result": "ok", "errno": 0,
                "via": "EOF on the O_CLOEXEC pipe: execve succeeded"})
    if pid_file:
        write_pid_file(pid_file, pid)
    if detach:
        return 0
    _, status = os.waitpid(pid, 0)
    return init.exit_code(status)


def _follow(fd: int) -> tuple[int | None, dict | None]:
    buf = b""
    while True:
        data = os.read(fd, 65536)
        if not data:
            break
        buf += data
    os.close(fd)
    pid, error = None, None
    for line in buf.splitlines():
        msg = json.loads(line)
        if msg.get("t") == "pid":
            pid = msg["pid"]
        elif msg.get("t") == "error":
            error = msg
    return pid, error


def _joiner_main(rec: Recorder, cfg: dict, init_pid: int, procs: list[str], flt, console: int | None,
                 chan_w: int) -> None:
    code = 125
    try:
        with rec.step("process", "prctl", target="joiner", value="PR_SET_DUMPABLE 0",
                      shell="# prctl(PR_SET_DUMPABLE, 0): no ptrace, no /proc/PID/fd from the container "
                            "(CVE-2019-5736)"):
            sc.prctl(sc.PR_SET_DUMPABLE, 0)
        fds = {}
        for kind in ORDER:
            mine, theirs = f"/proc/self/ns/{kind}", f"/proc/{init_pid}/ns/{kind}"
            if os.stat(mine).st_ino != os.stat(theirs).st_ino:
                fds[kind] = os.open(theirs, os.O_RDONLY | os.O_CLOEXEC)
        for path in procs:
            with rec.step("cgroup", "write", target=path, value=str(os.getpid()), shell=f"echo $$ > {path}"):
                with open(path, "w") as f:
                    f.write(str(os.getpid()))
        for kind in ORDER:
            if kind in fds:
                with rec.step("namespace", "setns", target=f"/proc/{init_pid}/ns/{kind}", value=kind,
                              shell=f"nsenter --{kind}=/proc/{init_pid}/ns/{kind}"):
                    sc.setns(fds.pop(kind), NSTYPE[kind])
        pid = sc.clone(sc.CLONE_PARENT)
        if pid == 0:
            _process_main(rec, cfg, flt, console, chan_w)  # never returns
        oci_child.send(chan_w, {"t": "pid", "pid": pid})
        code = 0
    except StepError as e:
        _error(chan_w, str(e), 125, e.step)
    except EngineError as e:
        _error(chan_w, str(e), e.exit_code)
    except BaseException as e:
        _error(chan_w, f"exec: joining the container failed: {e!r}", 125)
    finally:
        os._exit(code)


def _process_main(rec: Recorder, cfg: dict, flt, console: int | None, chan_w: int) -> None:
    code = 125
    try:
        os.setsid()
        proc = cfg["process"]
        if console is not None:
            plan = oci_child.ChildPlan(cid=rec.container or "", cfg=cfg, chan_w=chan_w, go_r=-1, fifo_go=-1,
                                       fifo_result=-1, console=console)
            oci_child.open_terminal(rec, plan, proc)
        oci_child.set_rlimits(rec, proc)
        if not proc.get("noNewPrivileges") and flt is not None:
            oci_child.load_seccomp(rec, flt, "before the capabilities are dropped: without no_new_privs, "
                                   "loading needs CAP_SYS_ADMIN")
        oci_child.become_user(rec, proc)
        if proc.get("noNewPrivileges"):
            with rec.step("process", "prctl", target="self", value="PR_SET_NO_NEW_PRIVS 1",
                          shell="setpriv --no-new-privs"):
                sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
        with rec.step("process", "chdir", target=proc["cwd"], shell=f"cd {proc['cwd']}"):
            os.chdir(proc["cwd"])
        path = oci_child.lookup(rec, proc)
        if flt is not None and proc.get("noNewPrivileges"):
            oci_child.load_seccomp(rec, flt, "last before execve")
        env = dict(e.split("=", 1) for e in proc["env"])
        import signal

        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        os.execve(path, proc["args"], env)
    except StepError as e:
        _error(chan_w, str(e), 125, e.step)
    except EngineError as e:
        _error(chan_w, str(e), e.exit_code)
    except OSError as e:
        _error(chan_w, f'exec: "{cfg["process"]["args"][0]}": {e.strerror}', 127 if e.errno in (2, 20) else 126)
        code = 127 if e.errno in (2, 20) else 126
    except BaseException as e:
        _error(chan_w, f"exec: {e!r}", 125)
    finally:
        os._exit(code)


def _error(fd: int, message: str, code: int, step: dict | None = None) -> None:
    try:
        oci_child.send(fd, {"t": "error", "message": message, "exit_code": code, "step": step})
    except OSError:
        pass
