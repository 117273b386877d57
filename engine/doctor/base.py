"""The shared part of the checks: a finding, and one snapshot of the state directory."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from engine import paths, state
from engine.state import Container
from engine.steps import FileSink, Recorder

GRACE = 3.0  # seconds: a creation in flight has no record yet


class Finding:
    """One leaked or inconsistent thing: kind, object, why, and whether prune can fix it."""

    __slots__ = ("kind", "object", "why", "fix")

    def __init__(self, kind: str, obj: str, why: str, fix: Callable[[], str] | None = None) -> None:
        self.kind, self.object, self.why, self.fix = kind, obj, why, fix

    @property
    def fixable(self) -> bool:
        return self.fix is not None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "object": self.object, "why": self.why, "fixable": self.fixable}


class Ctx:
    """One snapshot of the state directory, shared by every check."""

    def __init__(self) -> None:
        # Real paths: the kernel's (mountinfo, /proc/PID/fd) never show a symlink or a trailing /.
        self.lib, self.run = Path(os.path.realpath(paths.lib_dir())), Path(os.path.realpath(paths.run_dir()))
        self.containers: dict[str, Container] = {c.id: c for c in state.all_containers()}
        self.procs, self.served = scan_processes(self.lib)
        # Busy: a live init or supervisor, recorded or not yet (a start records both PIDs only
        # once set-up is done, which a walkthrough's gate can hold for minutes).
        self.busy = {cid for cid, c in self.containers.items() if c.supervisor_alive() or c.init_alive()}
        self.busy |= {p.cid for p in self.procs if p.cid in self.containers}
        self._created: dict[str, set[str]] | None = None

    def created(self) -> dict[str, set[str]]:
        """What this state's step stream (lib/steps.jsonl: every step of every container and of
        the host) records creating: {"link_add": link names, "mkdir": cgroup directories}. This
        is how a link or cgroup left by a removed container is known to be ours and not another
        state directory's (a real install's, another test run's)."""
        if self._created is None:
            self._created = _scan_steps()
        return self._created

    def label(self, cid: str) -> str:
        c = self.containers.get(cid)
        return f"{c.name} ({cid[:12]})" if c else cid[:12]


def host_recorder() -> Recorder:
    """Repairs are steps of the host stream, as engine.api.host_recorder's (a module below the
    facade does not import it)."""
    return Recorder(None, FileSink(None))


class Proc:
    """A labtui-sup or labtui-init process of this state directory, and its container's id."""

    __slots__ = ("pid", "start", "comm", "cid")

    def __init__(self, pid: int, start: int, comm: str, cid: str | None) -> None:
        self.pid, self.start, self.comm, self.cid = pid, start, comm, cid


def _stat(pid: str) -> tuple[str, int, int] | None:
    """(comm, ppid, starttime) from /proc/PID/stat (proc(5)); None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    comm = data[data.index(b"(") + 1:data.rindex(b")")].decode(errors="replace")
    rest = data[data.rindex(b")") + 2:].split()
    if rest[0] in (b"Z", b"X"):
        return None
    return comm, int(rest[1]), int(rest[19])


def _supervisor_log(pid: str) -> tuple[str, str] | None:
    """(lib directory, container id) of a supervisor: its stderr is <lib>/containers/<id>/
    supervisor.log (engine/supervisor.py's run), also after rm renamed the directory to
    .trash/<id> or deleted it (readlink then ends in " (deleted)")."""
    try:
        target = os.readlink(f"/proc/{pid}/fd/2")
    except OSError:
        return None
    head, sep, _tail = target.partition("/supervisor.log")
    parts = head.rsplit("/", 2)
    if not sep or len(parts) != 3 or parts[1] not in ("containers", ".trash"):
        return None
    return parts[0], parts[2]


def _init_of_ours(pid: str, lib: Path) -> bool:
    """An init shows its container's environment (engine/proctitle.py); its mounts tell: the
    layers and upper directory of its root are below our lib directory."""
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            return f" {lib}/" in f.read()
    except OSError:
        return False


def scan_processes(lib: Path) -> tuple[list[Proc], set[str]]:
    """Every labtui-sup and labtui-init of this state directory (an init's container is its
    supervisor's, its parent; None when that is gone), and the containers every live supervisor
    of the machine serves, whatever its state directory."""
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(name)
            if st is not None and st[0] in ("labtui-sup", "labtui-init"):
                stats[name] = st
    logs = {name: _supervisor_log(name) for name, st in stats.items() if st[0] == "labtui-sup"}
    sups = {name: log[1] for name, log in logs.items() if log and log[0] == str(lib)}
    out = [Proc(int(n), stats[n][2], "labtui-sup", cid) for n, cid in sups.items()]
    for name, (comm, ppid, start) in stats.items():
        if comm == "labtui-init" and _init_of_ours(name, lib):
            out.append(Proc(int(name), start, comm, sups.get(str(ppid))))
    return out, {log[1] for log in logs.values() if log}


def _scan_steps() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"link_add": set(), "mkdir": set()}
    try:
        f = open(paths.steps_stream(), "rb")
    except FileNotFoundError:
        return out
    with f:
        for line in f:
            if b'"link_add"' not in line and b'"mkdir"' not in line:
                continue  # a cheap filter before parsing: few steps create anything
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a half-written last line
            op, target = rec.get("op"), rec.get("target")
            if op in out and target and not rec.get("errno"):
                out[op].add(target)
    return out
