"""The supervisor's idle phase: exec labtui-monitor (engine/native/monitor.c) while nothing needs
Python, and come back as the Python supervisor when something does.

Why: a container's supervisor is a Python interpreter of ~7 MB PSS that, for most of a
container's life, only waits. conmon (podman) and containerd-shim (docker) are small for the
same reason. Once the container has run for IDLE_AFTER seconds with no client attached and no
alert episode going on, hand_off() writes what the supervisor knows to <run dir>/idle.json,
clears close-on-exec on the descriptors the monitor needs and execs it. The monitor keeps the
PID (so it stays PID 1's parent) and the descriptors; it writes the log itself and execs
`python -m engine.supervisor --resume CID` on anything else (the exit, a client, a published
port's connection, a seccomp denial, a counter that moved, a nearly full disk), with that event
still pending. load() rebuilds the supervisor from idle.json and the monitor's arguments.

LABTUI_MONITOR=0 keeps the supervisor in Python; LABTUI_NATIVE=0 keeps PID 1 in Python too (the
A/B in bench/bench_idle.py).
"""

from __future__ import annotations

import json
import os
import socket
import sys

from engine import native, paths
from engine.record import dataclass, field

IDLE_AFTER = 1.0  # seconds without a client or an alert before the supervisor hands off
MONITOR = "labtui-monitor"


@dataclass
class Resumed:
    """What a supervisor exec'd back from the monitor continues with."""

    pid: int
    pidfd: int
    listener: socket.socket
    count: int
    delay: float
    t0: float
    wake: str
    outs: list[tuple[int, str]] = field(default_factory=list)


def enabled() -> bool:
    return os.environ.get("LABTUI_MONITOR", "1") != "0" and native.binary(MONITOR) is not None


def blockers(sup: object) -> list[str]:
    """Why the supervisor must stay in Python now (empty: it may hand off)."""
    s = sup  # engine.supervisor.Supervisor (not imported: that module imports this one)
    why = []
    if s.clients:
        why.append("a client is attached")
    if s.health is not None:
        why.append("a healthcheck runs from the supervisor")
    if s.gate is not None or s.cfg.get("strace"):
        why.append("watched step by step")
    if s.c.state.get("restore"):
        why.append("restored by CRIU")
    if s.deferred or s.log.full:
        why.append("log work pending")
    if s.alerts is not None and (any(s.alerts.episode.values()) or s.alerts.efd is not None
                                 or s.alerts.pids_at_max or not s.alerts._pids_events_exist()):
        why.append("an alert episode is going on")
    dw = _denials()
    if dw is not None and dw.sock is None:
        why.append("seccomp denials come from /dev/kmsg")
    if s.net is not None and any(not p.idle() for p in s.net.proxies):
        why.append("a published port has connections")
    return why


def _denials():
    from engine import security

    return security.denial_watcher()


def hand_off(sup: object, pid: int, listener: socket.socket, pidfd: int) -> bool:
    """Exec the monitor (returns False, changing nothing, when a port connection came first)."""
    s = sup
    proxies = list(s.net.proxies) if s.net is not None else []
    for p in proxies:
        p.pause()  # its thread must not accept a connection that the exec would then cut
    if any(not p.idle() for p in proxies):
        for p in proxies:
            p.resume()
        return False
    from engine import state

    keep: list[int] = [pidfd, listener.fileno(), s.log.fd]
    if state.START_LOCK_FD is not None:
        keep.append(state.START_LOCK_FD)
    outs = [(k.fd, k.data[1]) for k in s.sel.get_map().values() if k.data[0] == "out"]
    keep += [fd for fd, _ in outs]
    if s.stdin_w is not None:
        keep.append(s.stdin_w)
    argv = [native.binary(MONITOR) or "", "--pidfd", str(pidfd), "--listen", str(listener.fileno()),
            "--log", str(s.log.fd), "--reserve", str(s.log.reserve)]
    for fd, stream in outs:
        argv += ["--out", f"{fd}:{stream}"]
    for stream, rest in s.log.partial.items():
        if rest:
            fd = os.memfd_create("labtui-partial", 0)
            os.write(fd, rest)
            keep.append(fd)
            argv += ["--partial", f"{stream}:{fd}"]
    dw = _denials()
    audit = None
    if dw is not None and dw.sock is not None:
        audit = dw.sock.fileno()
        keep.append(audit)
        argv += ["--audit", str(audit), "--sessions", str(paths.container_dir(s.cid) / "seccomp_sessions")]
        if dw.session is not None:
            argv += ["--session", str(dw.session)]
        if dw.pidns:
            argv += ["--pidns", str(dw.pidns)]
    alerts = s.alerts
    if alerts is not None:
        argv += alerts.wake_conditions()
    ports = []
    for p in proxies:
        fd = p.listener_fd()
        keep.append(fd)
        ports.append({"spec": p.spec.to_dict(), "fd": fd})
        argv += ["--wake-fd", str(fd)]
    saved = {
        "pid": pid, "pidfd": pidfd, "listener": listener.fileno(), "stdin_w": s.stdin_w, "master": s.master,
        "oom_before": s.oom_before, "loop": s.loop, "alerts": alerts.to_state() if alerts is not None else None,
        "audit": audit, "denials": {"session": dw.session, "init_pid": dw.init_pid} if dw is not None else None,
        "net": {"network": s.net.network, "info": s.net.info, "ports": ports} if s.net is not None else None,
        "log_dropped": s.log.dropped, "log_fd": s.log.fd, "start_lock": state.START_LOCK_FD,
    }
    path = s.c.run_dir / "idle.json"
    tmp = path.with_suffix(".tmp")
    before = os.stat(s.c.run_dir)
    tmp.write_text(json.dumps(saved))
    os.replace(tmp, path)
    # The directory keeps its times: `system check` reads them as the container's age (its grace
    # period spares what is being made right now), and an idle phase is not a new container.
    os.utime(s.c.run_dir, ns=(before.st_atime_ns, before.st_mtime_ns))
    for fd in keep:
        os.set_inheritable(fd, True)
    # This tree's engine, whatever the interpreter's own path would find first.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = f"import sys; sys.path.insert(0, {root!r}); from engine.supervisor import main; main()"
    argv += ["--", sys.executable, "-c", code, "--resume", s.cid]
    s.rec.sink.close()
    sys.stderr.flush()
    os.execv(argv[0], argv)
    return False  # not reached


def load(sup: object, args: list[str]) -> Resumed:
    """Rebuild the supervisor's state after the monitor exec'd it back (args: what it appended)."""
    from engine import cgroups, hooks, security
    from engine.cgroups.alerts import AlertWatcher

    s = sup
    s.sink.open_files()
    saved = json.loads((s.c.run_dir / "idle.json").read_text())
    opts = _parse(args)
    for fd in [saved["pidfd"], saved["listener"], saved["stdin_w"]] + [fd for fd, _ in opts["out"]]:
        if fd is not None:
            os.set_inheritable(fd, False)
    os.close(saved["log_fd"])  # the monitor's; the LogWriter has opened its own
    if saved.get("start_lock") is not None:  # still locked: flock(2) locks live with the file
        from engine import state

        state.hold_start_lock(s.cid, saved["start_lock"])
    s.oom_before = saved["oom_before"]
    s.stdin_w = saved["stdin_w"]
    s.master = saved["master"] if any(fd == saved["master"] for fd, _ in opts["out"]) else None
    s.cgroup = cgroups.for_container(s.c, s.rec)
    if saved["alerts"] is not None:
        s.alerts = AlertWatcher.from_state(s.cgroup, s.cid, hooks.alert_emitter(s.c), saved["alerts"])
    if saved["denials"] is not None and saved["audit"] is not None:
        os.set_inheritable(saved["audit"], False)
        security.adopt_denial_watcher(s.cfg, saved["audit"], saved["denials"]["session"],
                                      saved["denials"]["init_pid"])
    if saved["net"] is not None:
        s.net = hooks.adopt_network(saved["net"])
    if saved["log_dropped"]:
        s.log.dropped = saved["log_dropped"]
    for stream, fd in opts["partial"]:
        s.log.partial[stream] = os.pread(fd, 1 << 20, 0) + s.log.partial.get(stream, b"")
        os.close(fd)
    if opts["dropped"]:
        s.log._drop(opts["dropped"])
    listener = socket.socket(fileno=saved["listener"])
    loop = saved["loop"]
    return Resumed(pid=saved["pid"], pidfd=saved["pidfd"], listener=listener, count=loop["count"],
                   delay=loop["delay"], t0=loop["t0"], wake=opts["wake"], outs=opts["out"])


def _parse(args: list[str]) -> dict:
    out: dict = {"wake": "", "out": [], "partial": [], "dropped": 0}
    it = iter(args)
    for a in it:
        v = next(it, "")
        if a == "--wake":
            out["wake"] = v
        elif a == "--out":
            fd, _, stream = v.partition(":")
            out["out"].append((int(fd), stream))
        elif a == "--partial":
            stream, _, fd = v.partition(":")
            out["partial"].append((stream, int(fd)))
        elif a == "--dropped":
            out["dropped"] = int(v)
    return out
