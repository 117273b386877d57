"""Checks of the host side: processes, records against the kernel, mounts and cgroups."""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from engine import state
from engine.doctor.base import GRACE, Ctx, Finding

# ------------------------------------------------------------------------------------ processes

def _ticks_age(start: int) -> float:
    """Seconds since a process started (proc(5): starttime in clock ticks after boot)."""
    with open("/proc/uptime") as f:
        up = float(f.read().split()[0])
    return up - start / os.sysconf("SC_CLK_TCK")


def _kill_fix(pid: int, start: int, what: str) -> Callable[[], str]:
    def fix() -> str:
        # The start time is compared again right before the signal: the PID may have been reused.
        if state.proc_start_time(pid) == start:
            os.kill(pid, signal.SIGKILL)
        return f"Killed {what} {pid}"
    return fix


def processes(ctx: Ctx) -> list[Finding]:
    """Supervisors and inits of this state whose container record is gone (a directory removed
    by hand, a crash between rm's steps), older than GRACE."""
    known = set()
    for c in ctx.containers.values():
        s = c.state
        known.add((s.get("pid"), s.get("pid_start")))
        known.add((s.get("supervisor_pid"), s.get("supervisor_start")))
    out = []
    for p in ctx.procs:
        if p.cid in ctx.containers or (p.pid, p.start) in known or _ticks_age(p.start) < GRACE:
            continue
        what = "supervisor" if p.comm == "labtui-sup" else "container init"
        out.append(Finding("process", f"{p.comm} {p.pid}", f"a {what} whose container record is gone",
                           _kill_fix(p.pid, p.start, p.comm)))
    return out


# ------------------------------------------------------------------------- records vs the kernel

def records(ctx: Ctx) -> list[Finding]:
    """Recorded as running (a PID and no exit record) while the init is gone or its PID reused;
    or running while its supervisor is gone (not fixable by prune, which stops nothing: docker's
    prune leaves running containers alone too)."""
    out = []
    served = {p.cid for p in ctx.procs if p.comm == "labtui-sup"}
    for cid, c in ctx.containers.items():
        s = c.state
        if c.init_alive() and not c.supervisor_alive() and cid not in served and not c.removal_alive():
            why = (f"running, but its supervisor (PID {s.get('supervisor_pid')}) is gone: nobody records its exit, "
                   f"serves its logs or restarts it; stop it (labtui stop {c.name}) and start it again")
            out.append(Finding("state", ctx.label(cid), why))
            continue
        if cid in ctx.busy or c.removal_alive() or not s.get("pid") or s.get("finished_at"):
            continue
        why = f"recorded as running, but its init (PID {s['pid']}) is gone or the PID was reused"
        out.append(Finding("state", ctx.label(cid), why, _record_exit(cid)))
    return out


def _record_exit(cid: str) -> Callable[[], str]:
    def fix() -> str:
        state.update_state(cid, exit_code=137, finished_at=state.now_iso(),  # takes the record's lock
                           error="its processes were killed outside labtui (system prune recorded the exit)")
        return f"Recorded the exit of container {cid[:12]}"
    return fix


# ---------------------------------------------------------------------------------------- mounts

def _mountinfo() -> list[tuple[str, str]]:
    """(mount point, fstype) of the host's mount namespace; proc(5) escapes spaces as \\040."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
            out.append((point, fields[sep + 1]))
    return out


def _owner_of_path(path: str) -> str | None:
    """The container id a path below the state directory belongs to, if any."""
    parts = Path(path).parts
    for i, p in enumerate(parts[:-1]):
        if p == "containers" and len(parts[i + 1]) == 64:
            return parts[i + 1]
    return None


def mounts(ctx: Ctx) -> list[Finding]:
    out = []
    prefixes = (f"{ctx.lib}/", f"{ctx.run}/")
    for point, fstype in reversed(_mountinfo()):  # deepest (latest) first: unmounted in this order
        if not point.startswith(prefixes):
            continue
        cid = _owner_of_path(point)
        if cid in ctx.busy:
            continue
        kind = "netns" if fstype == "nsfs" else "mount"
        why = (f"{fstype} mount of container {ctx.label(cid)}, which is not running" if cid in ctx.containers
               else f"{fstype} mount below the state directory that no running container uses")
        out.append(Finding(kind, point, why, _umount(point)))
    return out


def _umount(point: str) -> Callable[[], str]:
    def fix() -> str:
        from engine import syscalls

        # MNT_DETACH (umount(2)): a mount some process still has open goes away lazily.
        syscalls.umount2(point, syscalls.MNT_DETACH)
        return f"Unmounted {point}"
    return fix


# --------------------------------------------------------------------------------------- cgroups

def _hierarchies() -> list[str]:
    from engine import cgroups

    layout = cgroups.host_layout()
    bases = list(dict.fromkeys(layout.v1.values()))
    if layout.v2_mount:
        bases.append(layout.v2_mount)
    return bases


def remove_empty_parents() -> None:
    """rmdir LABTUI_CGROUP_PARENT where it is empty, in every hierarchy (a stray directory may
    have been made in one no driver uses); a concurrent creator's EBUSY/ENOTEMPTY is fine."""
    from engine import cgroups

    for base in _hierarchies():
        try:
            os.rmdir(os.path.join(base, cgroups.cgroup_parent()))
        except OSError:
            pass


def _cgroup_pids(d: str) -> list[int]:
    pids: list[int] = []
    for sub, _dirs, _files in os.walk(d):
        try:
            with open(os.path.join(sub, "cgroup.procs")) as f:
                pids += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return pids


def cgroups(ctx: Ctx) -> list[Finding]:
    from engine import cgroups

    parent = cgroups.cgroup_parent()
    by_cid: dict[str, list[str]] = {}
    for base in _hierarchies():
        top = os.path.join(base, parent)
        try:
            names = [e.name for e in os.scandir(top) if e.is_dir()]
        except OSError:
            continue
        for name in names:
            if name not in ctx.busy:
                by_cid.setdefault(name, []).append(os.path.join(top, name))
    out = []
    made = ctx.created()["mkdir"]
    for cid, dirs in sorted(by_cid.items()):
        pids = sorted({p for d in dirs for p in _cgroup_pids(d)})
        label = f"{parent}/{cid}"
        if cid in ctx.containers and pids:
            kind, obj = "state", ctx.label(cid)
            why = f"recorded as not running, but processes {', '.join(map(str, pids[:8]))} still run in its cgroup"
        elif cid in ctx.containers:
            kind, obj = "cgroup", label
            why = f"cgroup of container {ctx.label(cid)}, which is not running ({len(dirs)} hierarchies)"
        elif made.intersection(dirs):
            kind, obj = "cgroup", label
            procs = f", {len(pids)} processes" if pids else ""
            why = f"no container {cid[:12]} exists ({len(dirs)} hierarchies{procs})"
        elif not pids and cid not in ctx.served:
            # Not made by this state: another state directory may share the parent (the default
            # "labtui"), so only an empty directory that no live supervisor of the machine is
            # setting up is judged (a supervisor's stderr names its container before it makes
            # any cgroup); its removal harms nobody. (cgroupfs times are no guide: kernfs
            # refreshes them.)
            kind, obj = "cgroup", label
            why = f"empty cgroup of no container ({len(dirs)} hierarchies)"
        else:
            continue  # with processes and not ours: another state directory's container
        out.append(Finding(kind, obj, why, _remove_cgroup(dirs, label)))
    return out


def _remove_cgroup(dirs: list[str], label: str) -> Callable[[], str]:
    def fix() -> str:
        for d in dirs:
            _thaw(d)  # a frozen task does not act on SIGKILL until thawed (cgroup v1 freezer)
            for pid in _cgroup_pids(d):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for d in dirs:
            for sub, _dirs, _files in sorted(os.walk(d), key=lambda t: -len(t[0])):
                _rmdir_retry(sub)
        return f"Removed cgroup {label}"
    return fix


def _thaw(d: str) -> None:
    for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
        try:
            with open(os.path.join(d, name), "w") as f:
                f.write(value)
        except OSError:
            pass


def _rmdir_retry(d: str, timeout: float = 2.0) -> None:
    """rmdir(2) fails with EBUSY until the killed tasks have left the cgroup."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(d)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


