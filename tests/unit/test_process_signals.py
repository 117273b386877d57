"""engine/process.py: a signal to a container's PID 1 that exited meanwhile."""

from __future__ import annotations

import os
import signal

import pytest

from engine import process, steps
from engine.errors import Conflict


class Raced:
    """A container whose PID 1 was alive when checked and was reaped by its supervisor just
    after: pidfd_open(2) then fails with ESRCH (what a stop's SIGKILL meets when PID 1 is ending
    of the SIGTERM, or rm -f when the command just finished)."""

    id = "0" * 64
    name = "raced"

    def __init__(self, pid: int) -> None:
        self.state = {"pid": pid}

    def init_alive(self) -> bool:
        return True  # as it was when checked


def test_a_signal_that_finds_pid_1_gone_is_not_running_not_a_failure(monkeypatch):
    recorded = []
    rec = steps.null_recorder()
    step = rec.step

    def recording(mechanism, op, **kw):
        recorded.append(op)
        return step(mechanism, op, **kw)

    monkeypatch.setattr(steps, "container_recorder", lambda cid: rec)
    monkeypatch.setattr(rec, "step", recording)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    with pytest.raises(Conflict, match="is not running"):
        process.send_signal(Raced(pid), signal.SIGKILL)
    assert recorded == ["pidfd_send_signal"]  # the step is still recorded, as it happened
