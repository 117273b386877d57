"""Reading /proc/PID/status (proc(5)): one parser for every part of labtui that needs a field."""

from __future__ import annotations


def status(pid: int | str) -> dict[str, str]:
    """Every "Key:\\tvalue" line of /proc/PID/status. Raises OSError when the process is gone."""
    out: dict[str, str] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def status_field(pid: int | str, key: str) -> str | None:
    """One field, or None when the process is gone or has no such field."""
    try:
        return status(pid).get(key)
    except OSError:
        return None
