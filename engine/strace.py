"""System-call tracing of a container with strace(1), run on the host (docs/exec.md, "strace").

strace runs outside the container and attaches with ptrace(2) to its processes, so the image
needs nothing (no strace binary, no capabilities inside). Two ways in:

- `run --strace`: the supervisor calls start_for_new_container() right after clone, while the
  child still waits for "go": strace attaches to the container's init with -f, so it follows the
  init's fork of the command and the trace begins before the command's first instruction
  (including the init's own setup: mounts, pivot_root, ...).
- `labtui trace NAME [-f]`: attach() to every process of a running container, until Ctrl-C or
  the container's exit; strace detaches cleanly on SIGINT/SIGTERM. Of a container that is no
  longer running, it prints the trace kept in its directory instead.

Both append to <container dir>/strace.log (strace -f -tt -T: PID, wall time, call, result,
time spent in the call); summary() turns it into per-syscall counts of the program's calls:
classify() tells them from labtui's own (the init's, and everything before the command's execve).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from engine import state
from engine.errors import Conflict, EngineError
from engine.state import Container

ATTACH_TIMEOUT = 5.0
LOG_NAME = "strace.log"
ERR_NAME = "strace.err"

_RUNNING: dict[str, subprocess.Popen] = {}  # container id -> the strace the supervisor started


def strace_binary() -> str:
    path = shutil.which("strace") or "/usr/bin/strace"
    if not os.access(path, os.X_OK):
        raise EngineError("strace is not installed on the host: apt-get install strace")
    return path


def log_path(c: Container) -> Path:
    return c.dir / LOG_NAME


def tracer_pid(pid: int) -> int | None:
    """TracerPid from /proc/PID/status (0: not traced); None if the process is gone."""
    from engine import procfs

    v = procfs.status_field(pid, "TracerPid")
    return int(v) if v else None


def _header(log: Path, text: str) -> None:
    with open(log, "a") as f:
        f.write(f"# labtui: {text} at {state.now_iso()}\n")


def _start(c: Container, pids: list[int]) -> subprocess.Popen:
    log = log_path(c)
    args = [strace_binary(), "-f", "-tt", "-T", "-A", "-o", str(log)]
    for pid in pids:
        args += ["-p", str(pid)]
    err = open(c.dir / ERR_NAME, "ab")
    try:
        # Its own process group: a Ctrl-C on the terminal is for us, and we pass it on as we choose.
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                close_fds=True, process_group=0)
    finally:
        err.close()


def _wait_attached(c: Container, proc: subprocess.Popen, pids: list[int], timeout: float = ATTACH_TIMEOUT) -> None:
    """Return once strace is the tracer of every listed process still alive (TracerPid)."""
    deadline = time.monotonic() + timeout
    while True:
        tracers = {pid: tracer_pid(pid) for pid in pids}
        if all(t is None or t == proc.pid for t in tracers.values()) and any(tracers.values()):
            return
        if proc.poll() is not None:
            raise EngineError(f"strace exited with {proc.returncode} before attaching: {_err_tail(c)}")
        if time.monotonic() > deadline:
            stop(proc, 1)
            raise EngineError(f"strace did not attach within {timeout:.0f} s: {_err_tail(c)}")
        time.sleep(0.002)


def _err_tail(c: Container) -> str:
    try:
        lines = (c.dir / ERR_NAME).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no output)"
    return lines[-1] if lines else "(no output)"


def start_for_new_container(c: Container, init_pid: int) -> subprocess.Popen:
    """`run --strace`: trace the container's init and, with -f, everything it forks. Called by
    the supervisor between clone and "go"; returns once strace has attached."""
    _header(log_path(c), f"run --strace, init pid {init_pid}")
    proc = _start(c, [init_pid])
    _wait_attached(c, proc, [init_pid])
    _RUNNING[c.id] = proc
    return proc


def stop(proc: subprocess.Popen, timeout: float = 5) -> int | None:
    """Let strace finish (it exits once its tracees are gone), else SIGINT: it detaches cleanly."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    for sig, wait in ((signal.SIGINT, 2.0), (signal.SIGKILL, 2.0)):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            return proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
    return None


def finish_for_container(c: Container, timeout: float = 5) -> None:
    """After the container's init exited (hooks.after_exit): reap the strace started for it."""
    proc = _RUNNING.pop(c.id, None)
    if proc is not None:
        stop(proc, timeout)


# ---- labtui trace ------------------------------------------------------------------------------------

def container_pids(c: Container) -> list[int]:
    """Host PIDs of every process in the container's PID namespace."""
    from engine import procfs

    return procfs.pidns_members(c.state["pid"])


def attach(ref: str, follow: bool = False, out=None) -> int:
    """`labtui trace NAME [-f]`: trace every process of a running container (and what they fork)
    into its strace.log, until Ctrl-C, SIGTERM or the container's exit; with follow, print the
    lines as they come."""
    c = state.resolve(ref)
    st = c.status
    if st == state.PAUSED:
        raise Conflict(f"container {c.name} is paused: unpause it before tracing it")
    if st != state.RUNNING:
        return print_kept(c, out or sys.stdout)
    pids = container_pids(c)
    traced = {p: t for p in pids if (t := tracer_pid(p))}
    if traced:
        raise Conflict(f"container {c.name} is already being traced (pid {sorted(traced)[0]} by tracer "
                       f"{next(iter(traced.values()))}; started with run --strace?)")
    if not pids:
        raise Conflict(f"container {c.name} is not running")
    out = out or sys.stdout
    log = log_path(c)
    _header(log, f"trace, pids {' '.join(map(str, pids))}, init pid {c.state['pid']}")
    pos = log.stat().st_size
    stop_sig: list[int] = []

    def on_signal(signum, frame) -> None:
        stop_sig.append(signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    proc = None
    try:
        proc = _start(c, pids)
        _wait_attached(c, proc, pids)
        print(f"labtui: tracing {len(pids)} process(es) of {c.name} into {log}"
              + ("" if follow else "; Ctrl-C to stop"), file=sys.stderr, flush=True)
        while proc.poll() is None and not stop_sig:
            if follow:
                pos = _copy_new(log, pos, out)
            time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # strace detaches from every tracee and exits
        stop(proc, 5)
        if follow:
            _copy_new(log, pos, out)
    finally:
        if proc is not None and proc.poll() is None:
            stop(proc, 0)
        for s, h in old.items():
            signal.signal(s, h)
    return 0


def print_kept(c: Container, out) -> int:
    """The trace kept in the directory of a container that no longer runs (`run --strace`, or an
    earlier `labtui trace`), with the point where the command starts marked."""
    log = log_path(c)
    try:
        f = open(log, errors="replace")
    except FileNotFoundError:
        raise Conflict(f"container {c.name} is not running and has no kept trace: run it with --strace, "
                       f"or use labtui trace {c.name} while it runs") from None
    # On stderr, so stdout is the trace alone (and the app, which runs `labtui trace` to attach,
    # shows why nothing was attached).
    print(f"labtui: container {c.name} is not running; its kept trace: {log}", file=sys.stderr, flush=True)
    with f:
        for line, _rec, _counted, starts in classify(f):
            if starts is not None:
                out.write(f"# labtui: ---- the command starts here; the lines above, and every line of pid {starts}"
                          " (labtui-init), are labtui setting up and running the container, left out of"
                          " --summary ----\n")
            out.write(line if line.endswith("\n") else line + "\n")
    out.flush()
    return 0


def _copy_new(log: Path, pos: int, out) -> int:
    """Print whole lines appended since pos; returns the new position."""
    try:
        with open(log, "rb") as f:
            f.seek(pos)
            data = f.read()
    except FileNotFoundError:
        return pos
    end = data.rfind(b"\n") + 1
    if end:
        out.write(data[:end].decode(errors="replace"))
        out.flush()
    return pos + end


# ---- parsing and the summary -------------------------------------------------------------------------

_PREFIX = re.compile(r"^(?:\[pid\s+)?(?P<pid>\d+)\]?\s+")
_TIME = re.compile(r"^(?P<time>\d{2}:\d{2}:\d{2}(?:\.\d+)?|\d+\.\d+)\s+")
_CALL = re.compile(r"^(?P<name>\w+)\((?P<args>.*)\)\s+=\s+(?P<ret>.*?)(?:\s+<(?P<dur>\d+\.\d+)>)?\s*$")
_UNFINISHED = re.compile(r"^(?P<name>\w+)\((?P<args>.*?)\s*<unfinished \.\.\.>\s*$")
_RESUMED = re.compile(r"^<\.\.\.\s*(?P<name>\w+)?\s*resumed>(?P<args>.*)\)\s+=\s+(?P<ret>.*?)"
                      r"(?:\s+<(?P<dur>\d+\.\d+)>)?\s*$")
_SIGNAL = re.compile(r"^--- (?P<sig>SIG\w+) (?P<info>.*) ---$")
_EXIT = re.compile(r"^\+\+\+ (?P<what>.*) \+\+\+$")


def parse_line(line: str, pending: dict[int, str] | None = None) -> dict | None:
    """One line of `strace -f -tt -T -o` output as a record:

        {"kind": "syscall", "pid", "time", "name", "args", "ret", "error", "duration"}
        {"kind": "unfinished", ...}  {"kind": "signal", "signal"}  {"kind": "exit", "text"}

    `pending` (pid -> name of its unfinished call) lets an old-style `<... resumed>` without a
    name be matched. Comment lines (labtui's run headers) and strace's own notes give None.
    """
    line = line.rstrip("\n")
    if not line.strip() or line.startswith("#"):
        return None
    pid = None
    m = _PREFIX.match(line)
    if m and _TIME.match(line[m.end():]):
        pid = int(m["pid"])
        line = line[m.end():]
    ts = None
    m = _TIME.match(line)
    if m:
        ts = m["time"]
        line = line[m.end():]
    base = {"pid": pid, "time": ts}
    if (m := _SIGNAL.match(line)):
        return base | {"kind": "signal", "signal": m["sig"], "text": m["info"]}
    if (m := _EXIT.match(line)):
        return base | {"kind": "exit", "text": m["what"]}
    if (m := _UNFINISHED.match(line)):
        if pending is not None and pid is not None:
            pending[pid] = m["name"]
        return base | {"kind": "unfinished", "name": m["name"], "args": m["args"]}
    m = _RESUMED.match(line) or _CALL.match(line)
    if not m:
        return None
    name = m["name"]
    if name is None and pending is not None and pid is not None:
        name = pending.get(pid)
    if pending is not None and pid is not None and line.startswith("<..."):
        pending.pop(pid, None)
    if name is None:
        return None
    ret = m["ret"].strip()
    error = None
    parts = ret.split()
    if len(parts) >= 2 and parts[0] == "-1" and parts[1].startswith("E"):
        error = parts[1]
    return base | {"kind": "syscall", "name": name, "args": m["args"], "ret": ret, "error": error,
                   "duration": float(m["dur"]) if m["dur"] else None}


# The headers labtui writes before each trace (_header): which kind of section follows, and its init.
_HEADER = re.compile(r"^# labtui: (?P<kind>run --strace|trace)\b(?:.*?\binit pid (?P<init>\d+))?")


def classify(lines) -> Iterator[tuple[str, dict | None, bool, int | None]]:
    """Each line of a log as (line, record or None, counted, starts): counted when the call is the
    program's, not labtui's; starts is the init's PID on the line where the command begins.

    labtui's own lines: every call of the container's init (labtui-init: its set-up - mounts,
    pivot_root, sethostname, prctl -, its PATH lookup and spawn, then wait4 and rt_sigtimedwait
    for the container's whole life); and, after `run --strace`, everything before the command's
    first successful execve (the spawned child runs glibc's and labtui's code up to it: signal
    resets, stdio, no_new_privs, seccomp, capabilities). The init's PID and the kind of section
    come from the `# labtui:` header of each start or attach; lines before any (older logs) count.
    """
    pending: dict[int, str] = {}
    init: int | None = None
    started = True
    for line in lines:
        rec = parse_line(line, pending)
        if rec is None:
            m = _HEADER.match(line)
            if m:
                init = int(m["init"]) if m["init"] else None
                started = m["kind"] != "run --strace"
            yield line, None, False, None
            continue
        starts = None
        if init is not None and rec["pid"] == init:
            counted = False
        elif started:
            counted = True
        elif rec["kind"] == "syscall" and rec["name"] == "execve" and rec["ret"] == "0":
            started = counted = True  # the command's own execve is its first call
            starts = init
        else:
            counted = False
        yield line, rec, counted, starts


def summarize(lines, program_only: bool = False) -> list[dict]:
    """Per-syscall totals, most time first (as `strace -c`): name, calls, errors, time (seconds
    inside the call, from -T), usecs_per_call, percent (of all the time). Every call of the lines,
    or with program_only only the program's (classify)."""
    acc: dict[str, list] = {}
    for _line, rec, counted, _starts in classify(lines):
        if rec is None or rec["kind"] != "syscall" or (program_only and not counted):
            continue
        a = acc.setdefault(rec["name"], [0, 0, 0.0])
        a[0] += 1
        a[1] += 1 if rec["error"] else 0
        a[2] += rec["duration"] or 0.0
    total = sum(a[2] for a in acc.values()) or 0.0
    out = [{"name": name, "calls": a[0], "errors": a[1], "time": round(a[2], 6),
            "usecs_per_call": round(a[2] * 1e6 / a[0]) if a[0] else 0,
            "percent": round(100 * a[2] / total, 2) if total else 0.0}
           for name, a in acc.items()]
    out.sort(key=lambda r: (-r["time"], -r["calls"], r["name"]))
    return out


def summary(ref: str, runtime: bool = False) -> list[dict]:
    """Per-syscall counts of the program's calls in the container's strace.log (every run in it);
    with runtime, labtui's own calls too (classify)."""
    c = state.resolve(ref)
    log = log_path(c)
    if not log.exists():
        raise EngineError(f"container {c.name} has no trace yet: run it with --strace or use labtui trace {c.name}")
    with open(log, errors="replace") as f:
        return summarize(f, program_only=not runtime)


def format_table(rows: list[dict]) -> str:
    """The `strace -c` table."""
    sep = "------ ----------- ----------- --------- --------- ----------------"
    lines = ["% time     seconds  usecs/call     calls    errors syscall", sep]
    for r in rows:
        lines.append(f"{r['percent']:6.2f} {r['time']:11.6f} {r['usecs_per_call']:11d} {r['calls']:9d} "
                     f"{r['errors'] or '':>9} {r['name']}")
    lines.append(sep)
    calls = sum(r["calls"] for r in rows)
    errors = sum(r["errors"] for r in rows)
    total = sum(r["time"] for r in rows)
    lines.append(f"{100 if rows else 0:6.2f} {total:11.6f} {round(total * 1e6 / calls) if calls else 0:11d} "
                 f"{calls:9d} {errors or '':>9} total")
    return "\n".join(lines)
