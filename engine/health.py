"""Health checks with docker's semantics (REFERENCE.md, "Health checks").

The supervisor runs the check command inside the container every `interval`:
- exit 0 is a success, anything else a failure; a check running past `timeout` is killed and
  counts as a failure;
- the status starts as "starting"; one success makes it "healthy"; `retries` consecutive
  failures make it "unhealthy"; failures during `start_period` do not count;
- the last 5 results are kept with their output capped at 4 KiB, in the container's state;
- every change of status is an event (health_status) on the stream.
"""

from __future__ import annotations

import os
import signal
import time

from engine.errors import InvalidArgument
from engine.spec import parse_duration

DEFAULTS = {"interval": 30.0, "timeout": 30.0, "retries": 3, "start_period": 0.0}
KEEP = 5
OUTPUT_MAX = 4096
def parse_options(cmd: str, interval=None, timeout=None, retries=None, start_period=None,
                  on_failure=None) -> dict:
    out = dict(DEFAULTS)
    out["cmd"] = ["/bin/sh", "-c", cmd]
    for key, value in (("interval", interval), ("timeout", timeout), ("start_period", start_period)):
        if value is not None:
            d = parse_duration(value, "--health-" + key.replace("_", "-"))
            if key in ("interval", "timeout") and d < 0.001:
                raise InvalidArgument(f"invalid --health-{key} '{value}': it must be at least 1ms")
            out[key] = d
    if retries is not None:
        try:
            n = int(retries)
        except ValueError:
            raise InvalidArgument(f"invalid --health-retries '{retries}': a whole number") from None
        if n < 0:
            raise InvalidArgument(f"invalid --health-retries {n}: it cannot be negative")
        out["retries"] = n or DEFAULTS["retries"]
    out["on_failure"] = on_failure if on_failure not in (None, "none") else None
    return out


class HealthMonitor:
    """Driven by the supervisor's loop: tick() starts due checks and collects finished ones.

    spawn(argv) -> (pid, fd) starts the check inside the container with its output on fd;
    set_state(health) stores the public health record; emit(status) records an event.
    """

    def __init__(self, spec: dict, spawn, set_state, emit) -> None:
        self.spec = spec
        self.spawn = spawn
        self.set_state = set_state
        self.emit = emit
        self.started = time.monotonic()
        self.next_at = self.started + spec["interval"]  # docker: the first check after one interval
        self.status = "starting"
        self.streak = 0
        self.log: list[dict] = []
        self.probe: tuple[int, int, float, str, bytearray] | None = None
        self.publish()

    def publish(self) -> None:
        self.set_state({"Status": self.status, "FailingStreak": self.streak, "Log": self.log})

    def tick(self, now: float | None = None) -> str | None:
        """Returns "unhealthy" when the container just became unhealthy (the caller may act)."""
        now = time.monotonic() if now is None else now
        if self.probe is not None:
            return self.collect(now)
        if now >= self.next_at:
            pid, fd = self.spawn(self.spec["cmd"])
            os.set_blocking(fd, False)
            self.probe = (pid, fd, now, _iso(), bytearray())
        return None

    def collect(self, now: float) -> str | None:
        pid, fd, t0, started_iso, buf = self.probe
        self._read(fd, buf)
        done, status = _reap(pid)
        timed_out = not done and now - t0 > self.spec["timeout"]
        if not done and not timed_out:
            return None
        if timed_out:
            _kill(pid)
            code, out = -1, f"Health check exceeded timeout ({self.spec['timeout']:g}s)"
        else:
            self._read(fd, buf)
            code = os.waitstatus_to_exitcode(status)
            out = bytes(buf[:OUTPUT_MAX]).decode(errors="replace")
        os.close(fd)
        self.probe = None
        self.next_at = now + self.spec["interval"]
        return self.record(code, out, started_iso, now)

    def record(self, code: int, output: str, started_iso: str, now: float) -> str | None:
        self.log = (self.log + [{"Start": started_iso, "End": _iso(), "ExitCode": code, "Output": output}])[-KEEP:]
        in_grace = now - self.started < self.spec["start_period"]
        old = self.status
        if code == 0:
            self.streak = 0
            self.status = "healthy"
        elif not in_grace:
            self.streak += 1
            if self.streak >= self.spec["retries"]:
                self.status = "unhealthy"
        self.publish()
        if self.status != old:
            self.emit(self.status)
            if self.status == "unhealthy":
                return "unhealthy"
        return None

    @staticmethod
    def _read(fd: int, buf: bytearray) -> None:
        while len(buf) < OUTPUT_MAX:
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                return
            if not chunk:
                return
            buf.extend(chunk)

    def close(self) -> None:
        if self.probe is not None:
            _kill(self.probe[0])
            os.close(self.probe[1])
            self.probe = None


def spawn_in_container(cid: str, argv: list[str]) -> tuple[int, int]:
    """Start a check inside the running container; returns (pid, output fd): HealthMonitor's spawn.

    It is exec as a program of its own (engine/exec_main.py), started with posix_spawn: the
    supervisor may have threads (port proxies), and only a spawn (fork+exec at once) is safe
    there. It leads its own process group so a timed-out check can be killed whole."""
    from engine import exec_main

    cmd = exec_main.command_line(cid, argv)
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.posix_spawn(cmd[0], cmd, dict(os.environ), setsid=True, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, w, 1), (os.POSIX_SPAWN_DUP2, w, 2)])
    finally:
        os.close(w)
    return pid, r


def _reap(pid: int) -> tuple[bool, int]:
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True, 255 << 8
    return got == pid, status


def _kill(pid: int) -> None:
    # The probe leads its own process group, which holds what it forked inside the container.
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
        except (ProcessLookupError, PermissionError):
            pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _iso() -> str:
    from engine.state import now_iso

    return now_iso()
