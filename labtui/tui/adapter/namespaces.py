"""The namespaces tab (each namespace of the container next to the host's, the user namespace's
maps) and the processes tab (the container's processes as a tree, with their PIDs inside)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from engine import api, procfs
from labtui.tui.adapter.base import ERRORS, host_ns_ref, init_pid, load, status_fields

NS_KINDS = ("cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time", "user", "uts")


@dataclass
class NsRow:
    kind: str
    inside: int | None
    host: int | None

    @property
    def isolated(self) -> bool:
        return self.inside is not None and self.host is not None and self.inside != self.host


@dataclass
class Proc:
    pid: int
    ppid: int
    nspid: list[int]
    state: str
    uid: int
    cmd: str
    depth: int = 0

    @property
    def zombie(self) -> bool:
        return self.state == "Z"


@dataclass
class NamespacesView:
    running: bool
    host_ref: str = ""
    rows: list[NsRow] = field(default_factory=list)
    uid_map: str = ""
    gid_map: str = ""
    procs: list[Proc] = field(default_factory=list)


def namespaces_view(cid: str) -> NamespacesView:
    pid = init_pid(load(cid))
    if not pid:
        return NamespacesView(running=False)
    ref = host_ns_ref()
    rows = [NsRow(k, procfs.ns_inode(pid, k), procfs.ns_inode(ref, k)) for k in NS_KINDS]
    return NamespacesView(
        running=True, host_ref=f"/proc/{ref}/ns", rows=[r for r in rows if r.inside or r.host],
        uid_map=(procfs.read_text(f"/proc/{pid}/uid_map") or "").rstrip(),
        gid_map=(procfs.read_text(f"/proc/{pid}/gid_map") or "").rstrip(), procs=processes(cid),
    )


def processes(cid: str) -> list[Proc]:
    """The container's processes (engine.api.top) with their NSpid chain, as a depth-first tree."""
    try:
        top = api.top(cid)
    except ERRORS:
        return []
    procs = []
    for p in top:
        fields = status_fields(p["pid"])
        nspid = fields.get("NSpid", str(p["pid"])).split()
        procs.append(Proc(p["pid"], p["ppid"], [int(x) for x in nspid if x.isdigit()], p["state"],
                          p["uid"], _command(fields.get("Name", ""), p["cmd"])))
    return _as_tree(procs)


def _command(comm: str, cmd: str) -> str:
    """The command line, named by comm when they differ: the init forked from a Python CLI keeps
    that CLI's argv but calls itself labtui-init."""
    first = os.path.basename(cmd.split(" ", 1)[0]) if cmd else ""
    return cmd if not comm or first.startswith(comm[:15]) or comm in first else f"[{comm}] {cmd}"


def _as_tree(procs: list[Proc]) -> list[Proc]:
    by_pid = {p.pid: p for p in procs}
    kids: dict[int, list[Proc]] = {}
    roots = []
    for p in procs:
        if p.ppid in by_pid:
            kids.setdefault(p.ppid, []).append(p)
        else:
            roots.append(p)
    out: list[Proc] = []

    def walk(p: Proc, depth: int) -> None:
        p.depth = depth
        out.append(p)
        for k in kids.get(p.pid, []):
            walk(k, depth + 1)

    for r in roots:
        walk(r, 0)
    return out
