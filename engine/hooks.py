"""Supervisor-side setup between clone and "go", watchers while running, teardown after exit.

Each mechanism that needs the container's host PID (its cgroup, its network) plugs in here, so
the supervisor's start sequence stays one readable list.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.state import Container
from engine.steps import Recorder


def before_go(rec: Recorder, c: Container, pid: int) -> tuple[object | None, object | None]:
    return None, None


def watcher(c: Container, cgroup: object | None) -> Callable[[], None] | None:
    return None


def after_exit(rec: Recorder, c: Container, cgroup: object | None, net: object | None) -> None:
    return None


def cleanup(rec: Recorder, c: Container) -> None:
    """Idempotent teardown used by rm: whatever an exited or killed container may have left."""
    return None
