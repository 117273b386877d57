"""The criu process: forked by the supervisor (in_supervisor.py), it takes a private mount
namespace with the container's overlay root mounted again, then execs `criu restore`.
"""

from __future__ import annotations

import os
import time

from engine import init, rootfs
from engine import syscalls as sc
from engine.checkpoint.criu import RestorePlan
from engine.errors import StepError
from engine.state import Container
from engine.steps import Recorder


def restore_child(c: Container, gated: bool, plan: RestorePlan, chan_w: int, go_r: int) -> None:
    """The criu process-to-be: wait until the supervisor put us in the container's cgroup, take
    a private mount namespace, mount the container's overlay root there, exec criu. Steps go up
    the channel as in the container's own setup (engine.init); the channel closes on execve."""
    chan = init.Channel(chan_w, go_r)
    code = 125
    try:
        keep = {0, 1, 2, chan_w, go_r, *plan.pass_fds}
        init.close_other_fds(keep)
        rec = Recorder(c.id, chan.step_sink, chan.gate if gated else None)
        chan.wait_go()
        with rec.step("namespace", "unshare", value="CLONE_NEWNS", shell="unshare --mount  # for criu only"):
            sc.unshare(sc.CLONE_NEWNS)
        rootfs.make_private(rec)
        cfg = c.config
        merged = str(c.dir / "merged")
        rootfs.mount_overlay(rec, cfg["layers"], str(c.dir / "upper"), str(c.dir / "work"), merged)
        if cfg.get("read_only"):
            # CRIU makes the container's / from --root (a bind keeps this per-mount flag); it does
            # not re-apply the dumped root's flags.
            rootfs.mount(rec, None, merged, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY,
                         shell=f"mount -o remount,bind,ro {merged}", op="remount / ro")
        for fd in plan.pass_fds:
            os.set_inheritable(fd, True)
        chan.send({"t": "exec", "argv": ["criu", "restore"], "ts": time.time(), "pid": os.getpid()})
        os.execv(plan.argv[0], plan.argv)
    except StepError as e:
        chan.send({"t": "error", "message": str(e), "exit_code": 125, "step": e.step})
    except BaseException as e:
        try:
            chan.send({"t": "error", "message": f"cannot run criu restore: {e!r}", "exit_code": 125})
        except OSError:
            pass
    finally:
        os._exit(code)
