"""The dashboard's rows (one per container, CPU % and memory included) and a container screen's
title line."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field

from engine import api, procfs, state
from labtui.tui.adapter.base import ERRORS, RUNNING_STATES, init_pid, load, short_duration
from labtui.tui.adapter.cgroups import CgroupHandle, cgroup_handle

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class ContainerRow:
    """One line of the dashboard, recomputed on every poll."""

    id: str
    name: str
    image: str
    status: str
    status_text: str
    pid: int | None
    cpu_percent: float | None
    mem_bytes: int | None
    restarts: int
    health: str
    uptime: str
    command: str


class _LazyGroups:
    """procfs.pidns_groups(), computed on first use only (a scan of every /proc/PID)."""

    def __init__(self) -> None:
        self._m: dict[int, list[int]] | None = None

    def get(self, key: int, default: list[int]) -> list[int]:
        if self._m is None:
            self._m = procfs.pidns_groups()
        return self._m.get(key, default)


def _health(c: state.Container) -> str:
    h = c.state.get("health")
    if isinstance(h, dict):
        return str(h.get("status") or "-")
    return str(h) if h else "-"


def _uptime(c: state.Container) -> str:
    since = c.state.get("started_at")
    if c.status not in RUNNING_STATES or not since:
        return "-"
    try:
        return short_duration(time.time() - state.parse_iso(since))
    except ValueError:
        return "-"


class Sampler:
    """Polls every container; keeps the previous CPU reading of each to compute CPU %.

    CPU and memory come from the container's cgroup when it has one (cpuacct usage / memory
    usage), else from /proc: the utime+stime and resident pages of every process in the
    container's PID namespace.
    """

    def __init__(self) -> None:
        self._prev: dict[str, tuple[float, float]] = {}  # cid -> (monotonic, cpu seconds)
        self._cgroups: dict[str, CgroupHandle | None] = {}

    def rows(self) -> list[ContainerRow]:
        containers = state.all_containers()
        groups = _LazyGroups()  # /proc scanned only if some container has no cgroup to read
        rows = [self._row(c, groups) for c in containers]
        live = {r.id for r in rows}
        self._prev = {k: v for k, v in self._prev.items() if k in live}
        return rows

    def _row(self, c: state.Container, groups: _LazyGroups) -> ContainerRow:
        status = c.status
        pid = c.state.get("pid") if status in RUNNING_STATES else None
        cpu = mem = None
        if pid:
            cpu_s, mem = self._usage(c, pid, groups)
            cpu = self._percent(c.id, cpu_s)
        return ContainerRow(
            id=c.id, name=c.name, image=c.config.get("image", "?"), status=status,
            status_text=state.status_text(c), pid=pid, cpu_percent=cpu, mem_bytes=mem,
            restarts=int(c.state.get("restart_count") or 0), health=_health(c), uptime=_uptime(c),
            command=" ".join(c.config.get("argv", [])),
        )

    def _usage(self, c: state.Container, pid: int, groups: _LazyGroups) -> tuple[float, int]:
        cg = self._cgroups.get(c.id)
        if cg is None:
            cg = self._cgroups[c.id] = cgroup_handle(c)
        light = cg.usage() if cg is not None else None
        if light is not None:
            return light[0] / 1e9, light[1]
        self._cgroups.pop(c.id, None)  # look again next time: it may be created later
        ino = procfs.ns_inode(pid, "pid")
        pids = groups.get(ino, [pid]) if ino is not None else [pid]
        return (sum(procfs.cpu_ticks(p) for p in pids) / CLK_TCK,
                sum(procfs.rss_pages(p) for p in pids) * PAGE_SIZE)

    def _percent(self, cid: str, cpu_seconds: float) -> float | None:
        now = time.monotonic()
        prev = self._prev.get(cid)
        self._prev[cid] = (now, cpu_seconds)
        if prev is None or now <= prev[0]:
            return None
        return max(cpu_seconds - prev[1], 0.0) / (now - prev[0]) * 100


@dataclass
class ContainerInfo:
    """What a container screen's title shows, refreshed every second."""

    id: str
    name: str
    image: str
    status: str
    status_text: str
    pid: int | None
    exists: bool = True
    gate_step: dict | None = None
    config: dict = field(default_factory=dict)


def container_info(cid: str) -> ContainerInfo:
    c = load(cid)
    if c is None:
        return ContainerInfo(cid, cid[:12], "", "removed", "Removed", None, exists=False)
    status = c.status
    gate = None
    if c.config.get("gate"):
        with contextlib.suppress(*ERRORS):
            gate = api.gate_pending(cid)
    return ContainerInfo(c.id, c.name, c.config.get("image", ""), status, state.status_text(c),
                         init_pid(c), gate_step=gate, config=c.config)
