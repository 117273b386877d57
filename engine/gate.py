"""The step gate (`run --gate`): a container's start held before each kernel step until released.

The supervisor waits on a FIFO in the container's runtime directory before each step and
publishes the step it waits on in gate.json; `labtui gate next` and the app's Steps panel write
one byte to the FIFO per step to let go (fifo(7)).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from engine import state
from engine.errors import Conflict


class FifoGate:
    """The supervisor's side: before each step, wait for one byte from a FIFO that readers write to."""

    def __init__(self, run_dir: str) -> None:
        self.fifo = os.path.join(run_dir, "gate")
        self.pending = Path(run_dir, "gate.json")
        if not os.path.exists(self.fifo):
            os.mkfifo(self.fifo, 0o600)
        # O_RDWR: we are also a writer, so read() blocks instead of returning EOF (fifo(7)).
        self.fd = os.open(self.fifo, os.O_RDWR | os.O_CLOEXEC)

    def __call__(self, rec: dict) -> None:
        state.write_json_atomic(self.pending, {"waiting": True, "step": rec, "since": time.time()})
        os.read(self.fd, 1)
        state.write_json_atomic(self.pending, {"waiting": False})


def gate_release(ref: str, count: int = 1) -> None:
    """Let `count` gated steps go (writes to the gate FIFO the supervisor reads from)."""
    c = state.resolve(ref)
    fifo = c.run_dir / "gate"
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, OSError) as e:
        raise Conflict(f"container {c.name} has no step gate waiting ({e.strerror})") from None
    try:
        os.write(fd, b"n" * count)
    finally:
        os.close(fd)


def gate_waiting(ref: str) -> tuple[dict, float] | None:
    """The step the gate holds and when the gate took it (time.time()), or None when nothing
    waits. Two held steps with the same content are told apart by that time (the walkthrough
    lets exactly one go per key press)."""
    c = state.resolve(ref)
    try:
        with open(c.run_dir / "gate.json") as f:
            info = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(info, dict) or not info.get("waiting") or not isinstance(info.get("step"), dict):
        return None
    return info["step"], float(info.get("since") or 0.0)


def gate_pending(ref: str) -> dict | None:
    """The step the gate holds, or None when nothing waits."""
    held = gate_waiting(ref)
    return held[0] if held else None
