"""Restore, the supervisor's side: `criu restore` instead of clone(2) (docs/checkpoint.md).

Supervisor.start_once calls start_restored() when the container's state asks for a restore
(caller.py's restore() set it). The restored tree becomes the supervisor's child
(--restore-sibling), so exit codes, logs and attach work as after a normal start.
"""

from __future__ import annotations

import os
import shlex
import signal
import time

from engine import events, init, procfs, state
from engine.checkpoint.criu import build_restore, log_reason, require_criu
from engine.checkpoint.criu_child import restore_child
from engine.checkpoint.store import read_manifest
from engine.errors import EngineError


def restore_in_supervisor(sup) -> int:
    """Called by Supervisor.start_once in restore mode INSTEAD of clone: make new stdio pipes, put
    `criu restore` in the container's cgroup, mount the overlay root in a private mount namespace
    for it, run it with the dumped pipes mapped to the new ones; returns the restored init's
    host PID (a child of the supervisor thanks to --restore-sibling). Raises EngineError."""
    c = sup.c
    name = c.state.pop("restore", None) or "checkpoint"
    state.update_state(c.id, restore=None)  # once: a restart by policy starts afresh
    manifest = read_manifest(c, name)
    criu, version = require_criu(check=False)  # `restore` ran `criu check` before starting us
    fds = sup.prepare_stdio()
    plan = build_restore(c, manifest, criu, {"stdin": fds["stdin"], "stdout": fds["stdout"],
                                              "stderr": fds["stderr"]})
    chan_r, chan_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        restore_child(c, sup.gate is not None, plan, chan_w, go_r)  # never returns
    for fd in {*plan.pass_fds, fds["stdin"], fds["stdout"], fds["stderr"], chan_w, go_r}:
        try:
            os.close(fd)
        except OSError:
            pass
    try:
        sup.before_go(child)  # the criu process enters the container's cgroup; its children stay there
    except BaseException:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        os.close(go_w)
        os.close(chan_r)
        raise
    os.write(go_w, b"g")
    t0 = time.time()
    error, exec_msg = sup.follow_child(chan_r, go_w)
    os.close(go_w)
    _, status = os.waitpid(child, 0)
    code = init.exit_code(status)
    dur = round((time.time() - (exec_msg or {}).get("ts", t0)) * 1000, 3)
    step = {"mechanism": "checkpoint", "op": "criu restore", "target": name, "value": f"CRIU {version}",
            "shell": shlex.join(plan.argv), "pid": child, "ts": (exec_msg or {}).get("ts", t0),
            "duration_ms": dur, "errno": 0, "result": "ok"}
    if error or code != 0:
        reason = error["message"] if error else log_reason(plan.log, "")
        step.update(result="failed", criu_exit=code)
        if not error:
            sup.rec.record(step)
        _undo_cgroup(sup)
        raise EngineError(f"restore {c.name} from '{name}': criu restore failed: {reason} (full log: {plan.log})")
    try:
        pid = int(plan.pidfile.read_text().strip())
    except (OSError, ValueError):
        step.update(result="failed", criu_exit=code)
        sup.rec.record(step)
        _undo_cgroup(sup)
        raise EngineError(f"restore {c.name}: criu restore wrote no pid file ({plan.pidfile})") from None
    step["child_pid"] = pid
    sup.rec.record(step)
    if _ppid(pid) != os.getpid():  # --restore-sibling not honoured: we could not wait for it
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _undo_cgroup(sup)
        raise EngineError(f"restore {c.name}: the restored init {pid} is not a child of the supervisor")
    state.update_state(c.id, pid=pid, pid_start=state.proc_start_time(pid), boot_id=state.boot_id(),
                       main_pid=None, exit_code=None, finished_at=None, error=None, paused=None,
                       started_at=state.now_iso(), supervisor_pid=os.getpid(),
                       supervisor_start=state.proc_start_time(os.getpid()), restored_from=name)
    events.emit("restored", c.id, c.name, checkpoint=name, pid=pid, criu=version)
    return pid


def start_restored(sup, listener) -> tuple[int, bool]:
    """One run of the supervisor in restore mode: restore, report to the CLI, serve until the
    init exits. Same contract as Supervisor.start_once: (exit code, whether it started)."""
    try:
        pid = restore_in_supervisor(sup)
    except EngineError as e:
        sup.report({"t": "error", "message": str(e), "exit_code": e.exit_code})
        return e.exit_code, False
    sup.report({"t": "started", "pid": pid})
    return sup.serve(pid, listener), True


def _undo_cgroup(sup) -> None:
    try:
        sup.after_exit()
    except Exception:
        pass


def _ppid(pid: int) -> int | None:
    v = procfs.status_field(pid, "PPid")
    return int(v) if v else None
