"""Signalling a container's processes and waiting for them (kill, stop, rm and checkpoint use these).

A container's processes are named by the PIDs its supervisor recorded (state.json). Signals go
through a pidfd (pidfd_open(2), pidfd_send_signal(2)) and waits poll one, so a PID recycled by
another process in the meantime is never signalled nor waited for by mistake.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import time
from typing import TYPE_CHECKING

from engine import state
from engine.errors import Conflict, InvalidArgument, NotFound, StepError
from engine.state import Container

if TYPE_CHECKING:
    from engine.steps import Recorder

SIGNAL_ALIASES = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM}


def parse_signal(s: str) -> int:
    """`kill -s` as docker takes it: a number, or a name with or without SIG."""
    s = s.strip().upper()
    if s.isdigit():
        n = int(s)
        if n in signal.Signals._value2member_map_:
            return n
    else:
        name = s if s.startswith("SIG") else "SIG" + s
        try:
            return int(signal.Signals[name])
        except KeyError:
            pass
    raise InvalidArgument(f"invalid signal '{s}'")


def send_signal(c: Container, sig: int, pid: int | None = None) -> None:
    """Signal a recorded PID through a pidfd (pidfd_send_signal(2)): once the pidfd is open the
    number cannot be recycled under us, closing the race a plain kill(2) has."""
    from engine.steps import container_recorder

    target = pid or c.state.get("pid")
    if not target or not c.init_alive():
        raise Conflict(f"container {c.name} is not running")
    try:
        pidfd_signal(container_recorder(c.id), target, sig)
    except StepError as e:
        # ESRCH: it exited after the check above (a stop's SIGKILL as PID 1 ends of the SIGTERM,
        # rm -f as the command finishes). Recorded as it happened; to the caller, not running.
        if e.step.get("errno") == errno.ESRCH:
            raise Conflict(f"container {c.name} is not running") from None
        raise


def pidfd_signal(rec: Recorder, pid: int, sig: int) -> None:
    """Send sig to pid through a pidfd, recorded as a step (StepError carries its errno)."""
    name = signal.Signals(sig).name
    with rec.step("signal", "pidfd_send_signal", target=f"pid {pid}", value=name,
                  shell=f"kill -{name[3:]} {pid}"):
        fd = os.pidfd_open(pid)
        try:
            signal.pidfd_send_signal(fd, sig)
        finally:
            os.close(fd)


def wait_pid_exit(pid: int, timeout: float | None) -> bool:
    """True once pid has exited (a pidfd polls readable then: pidfd_open(2)), False on timeout."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        r, _, _ = select.select([fd], [], [], timeout)
        return bool(r)
    finally:
        os.close(fd)


def term_then_kill(c: Container, timeout: float) -> None:
    """docker stop's signals: SIGTERM to PID 1 (which forwards it), SIGKILL after `timeout`."""
    pid = c.state["pid"]
    try:
        send_signal(c, signal.SIGTERM)
    except Conflict:
        return
    if not wait_pid_exit(pid, timeout):
        try:
            send_signal(c, signal.SIGKILL)
        except Conflict:
            pass
        wait_pid_exit(pid, 10)


def wait_recorded(c: Container, timeout: float = 5) -> Container:
    """After the init died, give its supervisor a moment to record the exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c = state.load(c.id)
        except NotFound:
            return c
        if c.state.get("finished_at") or not c.supervisor_alive():
            return c
        time.sleep(0.01)
    return c


def main_pid(c: Container) -> int | None:
    """The command's host PID: the child of our init."""
    from engine import procfs  # only kill needs it: kept off every command's import

    return procfs.first_child(c.state.get("pid"))
