"""Restart policies and how a container died (docker's semantics, REFERENCE.md).

    no                  never restart
    on-failure[:N]      restart after a non-zero exit, at most N times (0: no limit)
    always              restart whatever the exit code
    unless-stopped      like always, and also not after a manual stop across reboots

A manual stop never restarts. The delay starts at 100 ms and doubles up to 1 minute; it goes
back to 100 ms after a run that lasted at least 10 seconds.

Policy only: the supervisor (engine/supervisor.py) acts on these answers, and engine/boot.py
(called by the facade) starts the containers a reboot stopped.
"""

from __future__ import annotations

import signal
import time

from engine.errors import InvalidArgument

POLICIES = ("no", "on-failure", "always", "unless-stopped")
FIRST_DELAY = 0.1
MAX_DELAY = 60.0
RESET_AFTER = 10.0
CRASH_SIGNALS = {"SIGSEGV", "SIGABRT", "SIGBUS", "SIGILL", "SIGFPE", "SIGSYS", "SIGTRAP"}


def parse_policy(text: str | None) -> dict:
    """`--restart on-failure:3` -> {"name": "on-failure", "max": 3}."""
    if not text:
        return {"name": "no", "max": 0}
    name, _, count = text.partition(":")
    if name not in POLICIES:
        raise InvalidArgument(f"invalid --restart '{text}': one of no, on-failure[:N], always, unless-stopped")
    if count and name != "on-failure":
        raise InvalidArgument(f"invalid --restart '{text}': only on-failure takes a maximum count")
    maximum = 0
    if count:
        try:
            maximum = int(count)
        except ValueError:
            raise InvalidArgument(f"invalid --restart '{text}': the count must be a number") from None
        if maximum < 0:
            raise InvalidArgument(f"invalid --restart '{text}': the count cannot be negative")
    return {"name": name, "max": maximum}


def should_restart(cfg: dict, st: dict, code: int, restarts: int) -> bool:
    pol = cfg.get("restart") or {"name": "no"}
    name = pol.get("name", "no")
    if name == "no" or st.get("manual_stop") or st.get("removing"):
        return False
    if name == "on-failure":
        return code != 0 and (not pol.get("max") or restarts < pol["max"])
    return True


def next_delay(previous: float, ran_for: float, restarts: int) -> float:
    if restarts == 0 or ran_for >= RESET_AFTER:
        return FIRST_DELAY
    return min(previous * 2, MAX_DELAY)


def wait_backoff(cid: str, delay: float) -> bool:
    """Sleep the restart delay; False when a manual stop or rm arrives meanwhile."""
    from engine import state

    deadline = time.monotonic() + delay
    while True:
        try:
            st = state.load(cid).state
        except Exception:
            return False
        if st.get("manual_stop") or st.get("removing"):
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, 0.05))


def oom_count(cgroup: object | None) -> int | None:
    if cgroup is None or getattr(cgroup, "version", "none") == "none":
        return None
    try:
        return cgroup.stats().get("oom_kill")
    except OSError:
        return None


def oom_killed(cgroup: object | None, before: int | None) -> bool:
    after = oom_count(cgroup)
    return after is not None and after > (before or 0)


def describe_exit(code: int, oom: bool, st: dict) -> dict:
    """What the timeline says about a death: the signal by name, who asked for it, a crash?"""
    out: dict = {}
    if code > 128 and (code - 128) in signal.Signals._value2member_map_:
        out["signal"] = signal.Signals(code - 128).name
    requested = bool(st.get("manual_stop")) or bool(st.get("kill_requested"))
    if oom:
        out["reason"] = "oom-killed"
    elif requested:
        # A kill asked for (`kill`, `rm -f`, which also marks a manual stop) is named as one.
        out["reason"] = f"killed ({st['kill_requested']})" if st.get("kill_requested") else "stopped"
    elif "signal" in out:
        out["reason"] = f"signal {out['signal']}"
    else:
        out["reason"] = f"exit code {code}"
    # Any death nobody asked for is a crash; the signal (SIGSEGV, SIGABRT, ...) says what kind.
    out["crash"] = not requested and code != 0
    if out.get("signal") in CRASH_SIGNALS:
        out["fault"] = True
    return out
