"""The engine's one hook for a process that imported it ahead of time and forks from there.

labtui's warm helper (labtui/launcher/helper.py) imports the engine once and forks a worker per
command; a `labtui run` without a helper forks its supervisor-to-be before it even parses its
arguments (labtui/launcher/spare.py). What such a process changes in how the engine behaves,
it changes here and nowhere else:

  set_supervisor_spawner(fn)   engine.spawn.spawn_supervisor asks fn(cid, status_w, client,
                               winsize) first, and forks a supervisor only if it returns None:
                               fn hands the container to a process already waiting for it.
  close_in_supervisor(fd)      a descriptor of this process that a supervisor forked from it
  keep_in_supervisor(fd)       must close (the connection of the caller a worker serves), and
                               the same taken back (it was closed: its number may be reused).
  set_layout_ttl(seconds)      how long engine.cgroups.host_layout() reuses the cgroup layout it
                               detected (a helper keeps it fresh, so its workers never parse
                               /proc/self/mountinfo).
  import_network()             import pyroute2's IPRoute now, in the process that will fork, not
                               in the first `--network bridge` command (~60 ms).

The engine reads the first three through supervisor_spawner(), fork_close_fds() and
layout_ttl(); nothing in engine/ calls a setter, so a process that never imports labtui's
launcher behaves exactly as before. This module imports nothing of the engine at module level:
engine.spawn and engine.cgroups import it.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~3 ms to import; the annotations are strings
if TYPE_CHECKING:
    from collections.abc import Callable

    # (cid, status write fd, client socket or None, winsize or None) -> PID, or None: fork
    Spawner = Callable[[str, int, object, object], "int | None"]

_spawner: Spawner | None = None
_fork_close_fds: list[int] = []
_layout_ttl: float | None = None


def set_supervisor_spawner(fn: Spawner | None) -> None:
    """fn takes the next containers' supervision instead of a fork (None: fork again)."""
    global _spawner
    _spawner = fn


def supervisor_spawner() -> Spawner | None:
    return _spawner


def close_in_supervisor(fd: int) -> None:
    """A supervisor forked from this process closes fd first."""
    _fork_close_fds.append(fd)


def keep_in_supervisor(fd: int) -> None:
    """Undo close_in_supervisor(fd): fd was closed here, and the number may be reused by a
    descriptor the supervisor needs (its status pipe, say)."""
    if fd in _fork_close_fds:
        _fork_close_fds.remove(fd)


def fork_close_fds() -> list[int]:
    """The descriptors a supervisor forked from this process closes (the list itself: the
    facade's engine.api.FORK_CLOSE_FDS is the same list, from engine.spawn)."""
    return _fork_close_fds


def set_layout_ttl(seconds: float | None) -> None:
    """Seconds engine.cgroups.host_layout() reuses a detected layout (None: its default)."""
    global _layout_ttl
    _layout_ttl = seconds


def layout_ttl(default: float) -> float:
    return default if _layout_ttl is None else _layout_ttl


def import_network() -> None:
    """Import pyroute2's IPRoute as engine.network.netlink will use it (only the module that
    defines it, not the whole package: netlink explains why)."""
    from engine.network import netlink

    netlink._iproute_class()
