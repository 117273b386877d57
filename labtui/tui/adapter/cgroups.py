"""The cgroups tab: the container's cgroup directories and their files, and the dashboard's cheap
CPU and memory reading."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from engine import cgroups, hooks, state
from engine.cgroups.stats import read_int, read_keyed
from engine.errors import EngineError
from engine.procfs import read_text
from engine.steps import null_recorder
from labtui.tui.adapter.base import load


class CgroupHandle:
    """The container's cgroup directories, through its engine.cgroups driver."""

    def __init__(self, driver: cgroups.CgroupDriver) -> None:
        self.driver = driver
        self._usage_files: tuple[tuple[str, str | None], str] | None = None
        self._usage_known = False

    def dirs(self) -> dict[str, str]:
        return {k: v for k, v in self.driver.paths().items() if os.path.isdir(v)}

    def exists(self) -> bool:
        return bool(self.dirs())

    def version(self) -> str:
        return str(self.driver.version)

    def cgroup_path(self) -> str:
        """The container's path inside each hierarchy, e.g. /labtui/<id> (what its cgroup
        namespace shows as /)."""
        return str(self.driver.namespace_path())

    def usage(self) -> tuple[int, int] | None:
        """(CPU ns, memory bytes) from two files: all the dashboard needs, 5 times a second for
        every container (the full stats read a dozen files). None when the cgroup is gone."""
        if not self._usage_known:
            self._usage_known = True
            p = self.driver.paths()
            if "unified" in p:
                u = p["unified"]
                self._usage_files = ((u + "/cpu.stat", "usage_usec"), u + "/memory.current")
            elif "cpuacct" in p and "memory" in p:
                self._usage_files = ((p["cpuacct"] + "/cpuacct.usage", None), p["memory"] + "/memory.usage_in_bytes")
        if self._usage_files is None:
            return None
        (cpu_path, cpu_key), mem_path = self._usage_files
        cpu = read_keyed(cpu_path).get(cpu_key) if cpu_key else read_int(cpu_path)
        mem = read_int(mem_path)
        if cpu is None or mem is None:
            return None
        return (cpu * 1000 if cpu_key == "usage_usec" else cpu), mem

    def stats(self) -> dict:
        return cgroups.read_stats(self.driver)


def cgroup_handle(c: state.Container) -> CgroupHandle | None:
    try:
        return CgroupHandle(hooks.cgroup_driver(c, null_recorder()))
    except (EngineError, OSError):  # a driver its config asks for that this host lacks; no mountinfo
        return None


CGROUP_FILES = (
    "cgroup.procs", "cgroup.freeze", "cgroup.events", "cpu.max", "cpu.weight", "cpu.stat", "cpu.shares",
    "cpu.cfs_quota_us", "cpu.cfs_period_us", "cpuacct.usage", "cpuset.cpus", "cpuset.mems", "memory.current",
    "memory.max", "memory.high", "memory.peak", "memory.swap.max", "memory.events", "memory.usage_in_bytes",
    "memory.limit_in_bytes", "memory.max_usage_in_bytes", "memory.failcnt", "memory.oom_control",
    "memory.memsw.limit_in_bytes", "pids.current", "pids.max", "pids.events", "io.max", "io.stat",
    "blkio.throttle.io_service_bytes_recursive", "freezer.state", "devices.list",
)


@dataclass
class CgroupView:
    available: bool
    reason: str = ""
    version: str = ""
    cgroup_path: str = ""
    dirs: dict[str, str] = field(default_factory=dict)
    files: list[tuple[str, str]] = field(default_factory=list)  # (path shown, value)
    stats: dict = field(default_factory=dict)


def _one_line(text: str, width: int = 70) -> str:
    s = "; ".join(ln.strip() for ln in text.strip().splitlines() if ln.strip())
    return s if len(s) <= width else s[: width - 1] + "…"


def cgroup_view(cid: str) -> CgroupView:
    c = load(cid)
    if c is None:
        return CgroupView(False, "the container is gone")
    cg = cgroup_handle(c)
    dirs = cg.dirs() if cg else {}
    if cg is None or not dirs:
        return CgroupView(False, "no cgroup directory for this container (not running, or not created)")
    files: list[tuple[str, str]] = []
    seen: set[str] = set()
    for controller, d in sorted(dirs.items()):
        if d in seen:
            continue  # cpu and cpuacct often share one v1 directory
        seen.add(d)
        for name in CGROUP_FILES:
            if name == "cgroup.procs" and files:
                continue  # the same processes in every v1 hierarchy: show them once
            text = read_text(os.path.join(d, name))
            if text is not None:
                files.append((f"{controller}: {name}" if len(dirs) > 1 else name, _one_line(text)))
    return CgroupView(True, version=cg.version(), cgroup_path=cg.cgroup_path(), dirs=dirs, files=files,
                      stats=cg.stats())
