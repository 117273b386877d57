"""The strace tab and key: `strace -c`-style totals of a container's system calls, and tracing a
running container on and off."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field

from engine import strace
from engine.errors import EngineError
from labtui.tui.adapter.base import ERRORS


@dataclass
class StraceView:
    """Totals per system call from the container's strace.log, or why there are none."""

    message: str = ""
    rows: list[dict] = field(default_factory=list)


def strace_summary(cid: str) -> StraceView:
    try:
        rows = strace.summary(cid)
    except ERRORS as e:
        return StraceView(str(e))
    return StraceView("", [r for r in rows or [] if isinstance(r, dict)])


_TRACES: dict[str, subprocess.Popen] = {}


def toggle_trace(cid: str) -> str:
    """Start or stop strace on every process of the container (`labtui trace`, a child process
    of the app: strace runs on the host and writes the container's strace.log; the strace tab
    shows its totals). Traces the app started stop when it exits.

    A process of its own because engine.strace.attach runs until SIGINT or SIGTERM, which it
    catches with signal handlers, and Python sets those only in a main thread."""
    proc = _TRACES.get(cid)
    if proc is not None and proc.poll() is None:
        # The whole group (the CLI and its strace): strace detaches from every tracee on SIGINT,
        # even if the CLI was still starting it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
        del _TRACES[cid]
        return "strace stopped"
    proc = subprocess.Popen([sys.executable, "-m", "labtui.cli", "trace", cid], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    _TRACES[cid] = proc  # at once: a second press while it attaches must stop this one
    try:
        proc.wait(timeout=1.0)  # still running after a second: strace is attached
    except subprocess.TimeoutExpired:
        return "strace started"
    _TRACES.pop(cid, None)
    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
    raise EngineError(err.removeprefix("labtui: ") or "strace could not attach")


def stop_traces() -> None:
    """Stop every trace the app started (when it exits; the containers go on)."""
    for cid in list(_TRACES):
        with contextlib.suppress(*ERRORS):  # leaving the app must not fail on a trace
            toggle_trace(cid)
