"""Cheap resource readings for a container, from its cgroup files.

The supervisor reads every container each tick, so this reads only a dozen small files per
container with os.open/os.read (each ~3 us on cgroupfs): no subprocess, no psutil.
Every key is always present; a value the kernel does not offer here is None.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # typing itself costs ~3 ms to import; annotations are strings here

if TYPE_CHECKING:
    from typing import Protocol

    class Readable(Protocol):
        """What a reading needs of a cgroup driver (engine/cgroups/base.py builds on this module,
        not the other way round): its version and its directories."""

        version: str

        def paths(self) -> dict[str, str]: ...

UNLIMITED = 1 << 62  # v1 reports "no limit" as PAGE_COUNTER_MAX pages; treat as None

_KEYS = (
    "cpu_usage_ns", "nr_periods", "nr_throttled", "throttled_time_ns",
    "memory_usage", "memory_limit", "memory_working_set", "memory_max_usage", "memory_failcnt",
    "memory_events", "oom_kill", "pids_current", "pids_limit", "pids_max_events",
    "blkio_read_bytes", "blkio_write_bytes", "frozen",
)


def read_file(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 65536).decode()
    except OSError:
        return None
    finally:
        os.close(fd)


def read_int(path: str | None) -> int | None:
    text = read_file(path)
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return None
    try:
        n = int(text)
    except ValueError:
        return None
    return None if n >= UNLIMITED else n


def read_keyed(path: str | None) -> dict[str, int]:
    """A flat keyed file ("key value" per line) as a dict; {} if unreadable."""
    text = read_file(path)
    out: dict[str, int] = {}
    if text:
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            try:
                out[key] = int(value)
            except ValueError:
                continue
    return out


def read_stats(driver: Readable) -> dict:
    """One reading: cpu, memory, pids, block I/O and freezer counters, normalised across v1/v2."""
    out: dict = dict.fromkeys(_KEYS)
    out["version"] = driver.version
    out["t"] = time.monotonic()
    if driver.version == "v1":
        _read_v1(driver.paths(), out)
    elif driver.version == "v2":
        _read_v2(driver.paths()["unified"], out)
    return out


def _join(d: str | None, name: str) -> str | None:
    return None if d is None else d + "/" + name


def _working_set(usage: int | None, inactive_file: int | None) -> int | None:
    # What docker stats and the kubelet call memory usage: page cache that can be dropped for
    # free (inactive file pages) is not counted against the container.
    if usage is None:
        return None
    return max(usage - (inactive_file or 0), 0)


def _read_v1(paths: dict[str, str], out: dict) -> None:
    mem, cpu = paths.get("memory"), paths.get("cpu")
    out["cpu_usage_ns"] = read_int(_join(paths.get("cpuacct"), "cpuacct.usage"))
    cpu_stat = read_keyed(_join(cpu, "cpu.stat"))
    out["nr_periods"] = cpu_stat.get("nr_periods")
    out["nr_throttled"] = cpu_stat.get("nr_throttled")
    out["throttled_time_ns"] = cpu_stat.get("throttled_time")
    out["memory_usage"] = read_int(_join(mem, "memory.usage_in_bytes"))
    out["memory_limit"] = read_int(_join(mem, "memory.limit_in_bytes"))
    out["memory_max_usage"] = read_int(_join(mem, "memory.max_usage_in_bytes"))
    out["memory_failcnt"] = read_int(_join(mem, "memory.failcnt"))
    mstat = read_keyed(_join(mem, "memory.stat"))
    out["memory_working_set"] = _working_set(out["memory_usage"], mstat.get("total_inactive_file"))
    oom = read_keyed(_join(mem, "memory.oom_control"))
    out["oom_kill"] = oom.get("oom_kill")
    if mem is not None:
        out["memory_events"] = {"failcnt": out["memory_failcnt"], "oom_kill": out["oom_kill"],
                                "under_oom": oom.get("under_oom")}
    pids = paths.get("pids")
    out["pids_current"] = read_int(_join(pids, "pids.current"))
    out["pids_limit"] = read_int(_join(pids, "pids.max"))
    out["pids_max_events"] = read_keyed(_join(pids, "pids.events")).get("max")
    blkio = paths.get("blkio")
    text = read_file(_join(blkio, "blkio.throttle.io_service_bytes_recursive"))
    if text is not None:
        out["blkio_read_bytes"], out["blkio_write_bytes"] = _blkio_v1(text)
    state = read_file(_join(paths.get("freezer"), "freezer.state"))
    out["frozen"] = None if state is None else state.strip() == "FROZEN"


def _blkio_v1(text: str) -> tuple[int, int]:
    """Sum "MAJ:MIN Read N" / "MAJ:MIN Write N" lines over devices (cgroup-v1/blkio-controller.rst)."""
    read = write = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "Read":
            read += int(parts[2])
        elif len(parts) == 3 and parts[1] == "Write":
            write += int(parts[2])
    return read, write


def _read_v2(d: str, out: dict) -> None:
    cpu_stat = read_keyed(d + "/cpu.stat")  # present in every v2 cgroup, cpu controller or not
    if "usage_usec" in cpu_stat:
        out["cpu_usage_ns"] = cpu_stat["usage_usec"] * 1000
    out["nr_periods"] = cpu_stat.get("nr_periods")
    out["nr_throttled"] = cpu_stat.get("nr_throttled")
    if "throttled_usec" in cpu_stat:
        out["throttled_time_ns"] = cpu_stat["throttled_usec"] * 1000
    out["memory_usage"] = read_int(d + "/memory.current")
    out["memory_limit"] = read_int(d + "/memory.max")
    out["memory_max_usage"] = read_int(d + "/memory.peak")
    events = read_keyed(d + "/memory.events")
    if events:
        out["memory_events"] = events
        out["oom_kill"] = events.get("oom_kill")
        out["memory_failcnt"] = events.get("max")  # times usage hit memory.max: v1's failcnt
    mstat = read_keyed(d + "/memory.stat")
    out["memory_working_set"] = _working_set(out["memory_usage"], mstat.get("inactive_file"))
    out["pids_current"] = read_int(d + "/pids.current")
    out["pids_limit"] = read_int(d + "/pids.max")
    out["pids_max_events"] = read_keyed(d + "/pids.events").get("max")
    text = read_file(d + "/io.stat")
    if text is not None:
        out["blkio_read_bytes"], out["blkio_write_bytes"] = _io_v2(text)
    frozen = read_keyed(d + "/cgroup.events").get("frozen")
    out["frozen"] = None if frozen is None else frozen == 1


def _io_v2(text: str) -> tuple[int, int]:
    """Sum rbytes=/wbytes= over devices in io.stat ("8:0 rbytes=1 wbytes=2 ...")."""
    read = write = 0
    for line in text.splitlines():
        for field in line.split()[1:]:
            key, _, value = field.partition("=")
            if key == "rbytes":
                read += int(value)
            elif key == "wbytes":
                write += int(value)
    return read, write


def cpu_percent(prev: dict, cur: dict, interval: float | None = None) -> float:
    """CPU use between two readings, in percent of one CPU (docker stats' scale: 2 CPUs = 200%)."""
    a, b = prev.get("cpu_usage_ns"), cur.get("cpu_usage_ns")
    if a is None or b is None:
        return 0.0
    if interval is None:
        interval = cur.get("t", 0.0) - prev.get("t", 0.0)
    if interval <= 0:
        return 0.0
    return max(b - a, 0) / (interval * 1e9) * 100.0


def memory_percent(stats: dict) -> float | None:
    """Working set as a percentage of the memory limit; None when there is no limit."""
    ws, limit = stats.get("memory_working_set"), stats.get("memory_limit")
    if ws is None or not limit:
        return None
    return ws / limit * 100.0
