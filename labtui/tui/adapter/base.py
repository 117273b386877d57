"""What every panel's reader needs: the errors an action may raise, a container's state, formats."""

from __future__ import annotations

import os

from engine import procfs, state
from engine.errors import EngineError, NotFound

ERRORS: tuple[type[BaseException], ...] = (EngineError, OSError, ValueError)
"""What an action or a reading may fail with for expected reasons (a container removed meanwhile,
a process gone, a bad value typed): screens turn these into notifications. Anything else is a bug
and is left to surface."""

RUNNING_STATES = (state.RUNNING, state.PAUSED)


def load(cid: str) -> state.Container | None:
    """The container, or None once it is removed (or half-written: its files are read again next tick)."""
    try:
        return state.load(cid)
    except (NotFound, ValueError, OSError):
        return None


def init_pid(c: state.Container | None) -> int | None:
    """The host PID of labtui's init in the container, while it runs."""
    if c is None or c.status not in RUNNING_STATES:
        return None
    return c.state.get("pid")


def status_fields(pid: int) -> dict[str, str]:
    """/proc/PID/status as a dict, {} once the process is gone."""
    try:
        return procfs.status(pid)
    except OSError:
        return {}


def host_ns_ref() -> str:
    """The host's namespaces: PID 1's when we may read them, else our own."""
    return "1" if os.access("/proc/1/ns/pid", os.F_OK) and procfs.ns_inode("1", "pid") else "self"


def short_duration(seconds: float) -> str:
    """3s, 4m05s, 2h07m, 3d04h: uptime in a narrow column."""
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}GiB"
