"""Alerts: the kernel enforcing a limit, noticed from the counters it keeps.

The kernel does not tell a process why its sibling died or why it runs slowly; it counts. Each
alert watches one counter and fires when it moves:

  oom         oom_kill in memory.oom_control (v1) / memory.events (v2): tasks killed by the
              cgroup's OOM killer.
  throttled   nr_throttled in cpu.stat: CFS periods in which the group used up its --cpus quota
              and was descheduled until the next period.
  pids_limit  max in pids.events: forks refused with EAGAIN because pids.max was reached. Where
              pids.events is missing, pids.current >= pids.max is used instead.
  memory_high the working set (usage minus inactive file cache) crossing 90% of the limit,
              once per crossing.

The supervisor calls check() periodically (e.g. every 0.25 s). On v1 an eventfd registered
through cgroup.event_control can also wake it on OOM (cgroup-v1/memory.rst 9, "OOM Control").
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable

from engine.cgroups.base import CgroupDriver
from engine.cgroups.stats import read_file, read_int, read_keyed
from engine.record import dataclass

Emit = Callable[[dict], None]
QUIET_CHECKS = 4  # checks without a rise that end a throttling / pids episode


@dataclass
class _Source:
    """A counter: the file it lives in and its key (None for a single-value file)."""

    file: str
    counter: str

    def read(self) -> int | None:
        return read_keyed(self.file).get(self.counter)


def _sources(driver: CgroupDriver) -> dict[str, _Source]:
    p = driver.paths()
    if driver.version == "v1":
        out = {}
        if "memory" in p:
            out["oom"] = _Source(p["memory"] + "/memory.oom_control", "oom_kill")
        if "cpu" in p:
            out["throttled"] = _Source(p["cpu"] + "/cpu.stat", "nr_throttled")
        if "pids" in p:
            out["pids_limit"] = _Source(p["pids"] + "/pids.events", "max")
        return out
    if driver.version == "v2":
        d = p["unified"]
        return {
            "oom": _Source(d + "/memory.events", "oom_kill"),
            "throttled": _Source(d + "/cpu.stat", "nr_throttled"),
            "pids_limit": _Source(d + "/pids.events", "max"),
        }
    return {}


class AlertWatcher:
    """Emits {"type": "alert", ...} events when a container's limit counters move."""

    def __init__(
        self,
        driver: CgroupDriver,
        container_id: str,
        emit: Emit,
        *,
        memory_high_ratio: float = 0.9,
        use_eventfd: bool = False,
    ) -> None:
        self.driver = driver
        self.container_id = container_id
        self.emit = emit
        self.ratio = memory_high_ratio
        self.sources = _sources(driver)
        # A new cgroup's counters start at 0; a missing file (not created yet) counts as 0 too,
        # so an OOM between creation and the first check is not lost.
        self.last = {name: src.read() or 0 for name, src in self.sources.items()}
        self.episode = {"throttled": False, "pids_limit": False}
        self.quiet = {"throttled": 0, "pids_limit": 0}
        self.memory_high = False
        self.pids_at_max = False
        self.efd: int | None = None
        self._oom_fd: int | None = None
        if use_eventfd:
            self._register_oom_eventfd()

    # -- the periodic check -----------------------------------------------------------------

    def check(self) -> list[dict]:
        """Read the counters once; emit and return the alerts that fired."""
        self._drain_eventfd()
        events: list[dict] = []
        self._check_oom(events)
        self._check_episode("throttled", events, self._throttled_message)
        if self._pids_events_exist():
            self._check_episode("pids_limit", events, self._pids_message)
        else:
            self._check_pids_current(events)
        self._check_memory(events)
        for e in events:
            self.emit(e)
        return events

    def _event(self, alert: str, file: str, counter: str, value: int, message: str, **extra: object) -> dict:
        return {"type": "alert", "alert": alert, "container": self.container_id, "file": file,
                "counter": counter, "value": value, "message": message, "ts": time.time(), **extra}

    def _rise(self, name: str) -> tuple[int, int] | None:
        """(value, delta) if the counter rose since the last check."""
        src = self.sources.get(name)
        value = src.read() if src else None
        if value is None:
            return None
        delta = value - self.last[name]
        self.last[name] = value
        return (value, delta) if delta > 0 else None

    def _check_oom(self, events: list[dict]) -> None:
        # Every kill matters: alert on each rise.
        rise = self._rise("oom")
        if rise:
            src = self.sources["oom"]
            value, delta = rise
            limit = self._limit("memory")
            at = f" at the {limit}-byte memory limit" if limit else ""
            events.append(self._event(
                "oom", src.file, src.counter, value,
                f"OOM killer killed {delta} process(es) in {self.container_id}{at} "
                f"({os.path.basename(src.file)}: {src.counter} {value})", delta=delta))

    def _check_episode(self, name: str, events: list[dict], message: Callable[[int, int], str]) -> None:
        # A throttled or fork-limited workload moves these counters every period; alert when an
        # episode starts, and start a new one after QUIET_CHECKS checks without a rise.
        rise = self._rise(name)
        if rise is None:
            self.quiet[name] += 1
            if self.quiet[name] >= QUIET_CHECKS:
                self.episode[name] = False
            return
        self.quiet[name] = 0
        if not self.episode[name]:
            self.episode[name] = True
            src = self.sources[name]
            events.append(self._event(name, src.file, src.counter, rise[0], message(*rise), delta=rise[1]))

    def _throttled_message(self, value: int, delta: int) -> str:
        cpus = self._limit("cpus")
        quota = f" of --cpus {cpus:g}" if cpus else ""
        return (f"CPU throttled: {self.container_id} used up its quota{quota} in {delta} more "
                f"period(s) (cpu.stat nr_throttled {value})")

    def _pids_message(self, value: int, delta: int) -> str:
        limit = self._limit("pids_limit")
        return (f"pids limit{f' {limit}' if limit else ''} reached: {delta} fork(s) failed with "
                f"EAGAIN in {self.container_id} (pids.events max {value})")

    def _limit(self, name: str) -> int | float | None:
        """The limit in force, read from the kernel: `labtui update` changes it under a running
        watcher. Falls back to what the driver applied when the file says "no limit" or is gone."""
        p = self.driver.paths()
        value: int | float | None = None
        if self.driver.version == "v1":
            if name == "memory" and "memory" in p:
                value = read_int(p["memory"] + "/memory.limit_in_bytes")
            elif name == "pids_limit" and "pids" in p:
                value = read_int(p["pids"] + "/pids.max")
            elif name == "cpus" and "cpu" in p:
                quota, period = read_int(p["cpu"] + "/cpu.cfs_quota_us"), read_int(p["cpu"] + "/cpu.cfs_period_us")
                value = quota / period if quota and quota > 0 and period else None
        elif self.driver.version == "v2":
            d = p["unified"]
            if name == "memory":
                value = read_int(d + "/memory.max")
            elif name == "pids_limit":
                value = read_int(d + "/pids.max")
            elif name == "cpus":
                quota, _, period = (read_file(d + "/cpu.max") or "").strip().partition(" ")
                value = int(quota) / int(period) if quota.isdigit() and period.isdigit() and int(period) else None
        return value if value is not None else getattr(self.driver.limits, name)

    def _pids_events_exist(self) -> bool:
        src = self.sources.get("pids_limit")
        return bool(src and read_file(src.file) is not None)

    def _check_pids_current(self, events: list[dict]) -> None:
        d = self.driver.paths().get("pids")
        if d is None:
            return
        current, limit = read_int(d + "/pids.current"), read_int(d + "/pids.max")
        at_max = current is not None and limit is not None and current >= limit
        if at_max and not self.pids_at_max:
            events.append(self._event("pids_limit", d + "/pids.current", "pids.current", current or 0,
                                      f"pids limit reached: {current} of {limit} tasks in {self.container_id}"))
        self.pids_at_max = at_max

    def _check_memory(self, events: list[dict]) -> None:
        usage, limit, file = self._memory()
        if usage is None or not limit:
            return
        high = usage >= self.ratio * limit
        if high and not self.memory_high:
            pct = usage * 100 // limit
            events.append(self._event(
                "memory_high", file, "working_set", usage,
                f"memory at {pct}% of the limit in {self.container_id}: {usage} of {limit} bytes "
                f"(usage minus inactive file cache)", limit=limit))
        self.memory_high = high

    def _memory(self) -> tuple[int | None, int | None, str]:
        p = self.driver.paths()
        if self.driver.version == "v1" and "memory" in p:
            d = p["memory"]
            usage, limit = read_int(d + "/memory.usage_in_bytes"), read_int(d + "/memory.limit_in_bytes")
            inactive = read_keyed(d + "/memory.stat").get("total_inactive_file", 0)
            file = d + "/memory.usage_in_bytes"
        elif self.driver.version == "v2":
            d = p["unified"]
            usage, limit = read_int(d + "/memory.current"), read_int(d + "/memory.max")
            inactive = read_keyed(d + "/memory.stat").get("inactive_file", 0)
            file = d + "/memory.current"
        else:
            return None, None, ""
        return (None if usage is None else max(usage - inactive, 0)), limit, file

    # -- across the supervisor's idle phase (engine/idle.py) ---------------------------------

    def to_state(self) -> dict:
        """What a check depends on besides the kernel's counters, as JSON."""
        return {"last": self.last, "episode": self.episode, "quiet": self.quiet,
                "memory_high": self.memory_high, "pids_at_max": self.pids_at_max}

    @classmethod
    def from_state(cls, driver: CgroupDriver, container_id: str, emit: Emit, saved: dict) -> AlertWatcher:
        w = cls(driver, container_id, emit)
        w.last.update(saved["last"])
        w.episode.update(saved["episode"])
        w.quiet.update(saved["quiet"])
        w.memory_high, w.pids_at_max = saved["memory_high"], saved["pids_at_max"]
        return w

    def wake_conditions(self) -> list[str]:
        """labtui-monitor's options that wake the supervisor when check() would have something
        to say: a counter above its last value, the working set crossing ratio * limit."""
        args = []
        for name, src in self.sources.items():
            args += ["--watch", f"{src.file}:{src.counter}:{self.last[name]}"]
        p = self.driver.paths()
        if self.driver.version == "v1" and "memory" in p:
            d = p["memory"]
            files = (d + "/memory.usage_in_bytes", d + "/memory.stat", "total_inactive_file",
                     d + "/memory.limit_in_bytes")
        elif self.driver.version == "v2":
            d = p["unified"]
            files = (d + "/memory.current", d + "/memory.stat", "inactive_file", d + "/memory.max")
        else:
            return args
        op = "lt" if self.memory_high else "ge"
        args += ["--memory", ":".join(files) + f":{round(self.ratio * 1000)}:{op}"]
        return args

    # -- v1 OOM eventfd (optional) ----------------------------------------------------------

    def fileno(self) -> int | None:
        """An eventfd that becomes readable on OOM (v1 only, use_eventfd=True), for select()."""
        return self.efd

    def _register_oom_eventfd(self) -> None:
        # cgroup-v1/memory.rst 9: write "<eventfd> <fd of memory.oom_control>" to
        # cgroup.event_control and the kernel signals the eventfd whenever the group hits OOM.
        mem = self.driver.paths().get("memory") if self.driver.version == "v1" else None
        if mem is None or not os.path.exists(mem + "/cgroup.event_control"):
            return
        self.efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._oom_fd = os.open(mem + "/memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.driver._write(mem + "/cgroup.event_control", f"{self.efd} {self._oom_fd}",
                               why="ask the kernel to signal an eventfd on OOM (fds of the supervisor)")
        except Exception:
            self.close()
            raise

    def _drain_eventfd(self) -> int:
        if self.efd is None:
            return 0
        try:
            return os.eventfd_read(self.efd)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        for fd in (self.efd, self._oom_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.efd = self._oom_fd = None
