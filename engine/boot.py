"""After a reboot: what docker's daemon does when it starts, done by the first labtui command.

labtui has no daemon. A reboot (or a runtime directory wiped by hand) leaves the persistent
records (/var/lib/labtui) saying what ran, while the kernel lost every process, mount, cgroup,
veth and bridge, and /run/labtui (a tmpfs) is empty. The records never make `ps` lie (a PID
counts only with its start time and boot id: engine/state.py), but somebody must still record
how those containers ended and start again the ones whose restart policy says so.

The signal is the runtime directory's stamp, run/boot_id, holding the boot id
(/proc/sys/kernel/random/boot_id) of the last sweep: missing (a new boot emptied /run, or the
directory was wiped) or different (a /run that is not a tmpfs). Every command checks it: one
open and one read (on_startup, called by engine.api.on_startup from the CLI and the app). When
it says so, the first command to take the lock (a POSIX record lock on the stamp: not inherited
by the supervisors it forks) sweeps, then writes the stamp; commands meanwhile wait for it, as
docker's API waits for its daemon's restore.

The sweep (docs/reliability.md, "After a reboot"):
1. every container recorded as running (a PID, no exit record) whose init and supervisor are
   gone gets its exit recorded: 255, "the machine restarted" (docker's code for a container
   that ended while its daemon was away), and its lease is marked detached;
2. every exited container whose policy is `always`, or `unless-stopped` and not stopped by hand
   (engine/restart.py's rules), is started again, in creation order; one that fails to start
   is reported on stderr and does not stop the others. A container that was never started
   (created) stays so, as in docker; one watched step by step (the walkthrough's gate) is not
   started unattended.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Callable

from engine import events, paths, state

STAMP = "boot_id"
EXIT_CODE = 255
WHY = "the machine restarted (or labtui's runtime directory was wiped) while it ran"


def stamp_path() -> str:
    return f"{paths.run_dir()}/{STAMP}"


def needed() -> bool:
    """Whether this boot was not swept yet: the stamp is missing or names another boot."""
    try:
        with open(stamp_path()) as f:
            return f.read().strip() != state.boot_id()
    except OSError:
        return True


def on_startup(start: Callable[[str], object]) -> list[str]:
    """Sweep once per boot (start is the facade's engine.api.start); returns the ids started."""
    if not needed():
        return []
    if not paths.lib_dir().is_dir():  # nothing recorded yet (a fresh install): nothing to do or make
        return []
    old = os.umask(0o077)
    try:
        os.makedirs(paths.run_dir(), mode=0o700, exist_ok=True)
        fd = os.open(stamp_path(), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return []  # a read-only or full runtime directory: the records still tell the truth
    finally:
        os.umask(old)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)  # POSIX: a forked supervisor does not inherit it
        if os.pread(fd, 128, 0).decode(errors="replace").strip() == state.boot_id():
            return []  # swept by the command we waited for
        started = sweep(start)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (state.boot_id() + "\n").encode(), 0)
        return started
    finally:
        os.close(fd)  # releases the lock


def sweep(start: Callable[[str], object]) -> list[str]:
    containers = state.all_containers()
    for c in containers:
        _record_lost(c)
    started = []
    for c in sorted(containers, key=lambda c: c.config.get("created", "")):
        if not _comes_back(c):
            continue
        try:
            start(c.id)
            started.append(c.id)
        except Exception as e:  # one broken container must not keep the others (or the command) down
            print(f"labtui: container {c.name} (restart policy "
                  f"{(c.config.get('restart') or {}).get('name')}) did not start again after the "
                  f"machine restarted: {e}", file=sys.stderr)
    return started


def _record_lost(c: state.Container) -> None:
    """A container that was running when its processes were lost: its exit, as docker records it."""
    s = c.state
    if not s.get("pid") or s.get("finished_at") or c.init_alive() or c.supervisor_alive():
        return
    try:
        state.update_state(c.id, exit_code=EXIT_CODE, finished_at=state.now_iso(), error=WHY,
                           paused=None, restarting=None)
        c.reload()
        events.emit("died", c.id, c.name, exit_code=EXIT_CODE, error=WHY, reason="reboot")
    except OSError:
        return  # a full disk: `ps` shows it exited all the same (its PID is not alive)
    net = c.config.get("network")
    if net not in (None, "none", "host"):
        try:
            from engine import network

            network.detach_container(c.id, net)  # its veth went with its namespace
        except Exception:  # the lease is `system check`'s to report then
            pass


def _comes_back(c: state.Container) -> bool:
    policy = (c.config.get("restart") or {}).get("name", "no")
    if c.status != state.EXITED or policy not in ("always", "unless-stopped") or c.config.get("gate"):
        return False
    return not (policy == "unless-stopped" and c.state.get("manual_stop"))
