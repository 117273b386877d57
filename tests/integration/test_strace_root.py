"""strace from the host: `run --strace` from the first instruction, `trace` attach/detach, summaries."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import LABTUI, inspect, labtui, lib, proc_status, run_d, wait_for

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("clean_containers"),
              pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed (scripts/install)")]

# Until engine/hooks.py starts strace for config["strace"], the test wires it the same way
# in-process (the supervisor is forked from the CLI, so the patch reaches it); once the runtime
# does it, this is the plain CLI.
WIRED_CLI = r"""
import inspect, sys
import engine.hooks as h
from engine import strace, supervisor
if "strace" not in inspect.getsource(h) + inspect.getsource(supervisor):
    bg, ae = h.before_go, h.after_exit
    def before_go(rec, c, pid):
        r = bg(rec, c, pid)
        if c.config.get("strace"):
            strace.start_for_new_container(c, pid)
        return r
    def after_exit(rec, c, cgroup, net):
        strace.finish_for_container(c)
        return ae(rec, c, cgroup, net)
    h.before_go, h.after_exit = before_go, after_exit
from labtui.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def labtui_wired(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WIRED_CLI, *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def strace_log(cid: str) -> str:
    return (lib() / "containers" / cid / "strace.log").read_text()


def stracers_of(cid: str) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if b"strace" in cmd and cid.encode() in cmd:
                out.append(int(name))
    return out


def test_run_strace_traces_the_command_from_its_first_instruction():
    p = labtui_wired("run", "-d", "--strace", "busybox", "sh", "-c", "echo hi; sleep 1")
    assert p.returncode == 0, p.stderr
    cid = p.stdout.strip()
    # strace holds every process of the container: a second tracer is refused with a reason
    q = labtui("trace", cid, check=False)
    assert q.returncode == 125 and "already being traced" in q.stderr
    assert labtui("wait", cid).stdout.strip() == "0"
    wait_for(lambda: not stracers_of(cid), timeout=10, what="strace to finish")
    log = strace_log(cid)
    # the command's execve and its write, and before them the init's own setup
    assert 'execve("/bin/sh", ["sh", "-c", "echo hi; sleep 1"]' in log and ") = 0 <" in log
    # (strace splits a call into "<unfinished ...>" and "<... resumed>" when another process of
    # the container, PID 1 here, makes a call in between)
    assert 'write(1, "hi\\n", 3) = 3' in log or 'write(1, "hi\\n", 3 <unfinished ...>' in log
    assert log.index("pivot_root(") < log.index('execve("/bin/sh"')
    rows = {r["name"]: r for r in json.loads(labtui("trace", "--summary", "--format", "json", cid).stdout)}
    assert rows["execve"]["calls"] >= 1 and rows["write"]["calls"] >= 1
    # PID 1 looks the command up in each $PATH entry before it spawns it (misses are ENOENT): that
    # is labtui's init at work, kept in the log but left out of the summary of the program's calls
    assert "ENOENT" in log.split('execve("/bin/sh"')[0]
    assert not {"pivot_root", "mount", "sethostname", "rt_sigtimedwait"} & set(rows), rows
    table = labtui("trace", "--summary", cid).stdout
    assert "execve" in table and table.splitlines()[-1].split()[-1] == "total"


def test_trace_follows_a_running_container_and_detaches_on_ctrl_c():
    cid = run_d("busybox", "sh", "-c", "while true; do echo x > /dev/null; sleep 0.2; done")
    init_pid = inspect(cid)["State"]["Pid"]
    p = subprocess.Popen(LABTUI + ["trace", "-f", cid], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    t0 = time.monotonic()
    try:
        for line in p.stdout:
            lines.append(line)
            if sum("execve(" in x for x in lines) >= 2 or time.monotonic() - t0 > 10:
                break
        t1 = time.monotonic()
        p.send_signal(signal.SIGINT)
        p.wait(timeout=10)
        assert time.monotonic() - t1 < 5
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, p.stderr.read()
    assert sum("execve(" in x for x in lines) >= 2  # each loop forks and execs sleep
    # detached cleanly: the container goes on, untraced
    assert inspect(cid)["State"]["Running"]
    wait_for(lambda: proc_status(init_pid)["TracerPid"] == "0", timeout=5, what="strace to detach")
    rows = {r["name"]: r for r in json.loads(labtui("trace", "--summary", "--format", "json", cid).stdout)}
    assert rows["execve"]["calls"] >= 2 and rows["clone"]["calls"] >= 2


def test_trace_returns_when_the_container_exits():
    cid = run_d("busybox", "sh", "-c", "sleep 1; echo bye")
    t0 = time.monotonic()
    p = labtui("trace", cid, timeout=20)
    assert p.returncode == 0 and time.monotonic() - t0 < 10
    assert "write(1, \"bye\\n\", 4)" in strace_log(cid)


def test_trace_bad_input():
    p = labtui("trace", "nosuchcontainer", check=False)
    assert p.returncode == 125 and "no such container: nosuchcontainer" in p.stderr
    cid = run_d("--name", "trace-stopped", "busybox", "true")
    labtui("wait", cid)
    p = labtui("trace", cid, check=False)
    assert p.returncode == 125 and "container trace-stopped is not running" in p.stderr
    p = labtui("trace", "--summary", cid, check=False)
    assert p.returncode == 125 and "has no trace yet" in p.stderr and "Traceback" not in p.stderr


RUNTIME_CALLS = {"pivot_root", "mount", "umount2", "sethostname", "capset", "seccomp", "setns", "unshare",
                 "rt_sigtimedwait", "wait4", "mkdir", "mknodat", "symlink", "chdir", "chmod", "dup2"}


def test_run_strace_summary_counts_the_programs_calls_not_labtuis():
    """`run --strace busybox true`: the log keeps the init's set-up, the summary is `true`'s alone."""
    p = labtui("run", "--strace", "--name", "strace-true", "busybox", "true")
    cid = inspect("strace-true")["Id"]
    wait_for(lambda: not stracers_of(cid), timeout=10, what="strace to finish")
    log = strace_log(cid)
    assert "pivot_root(" in log and "sethostname(" in log and "prctl(" in log  # kept in the log
    rows = {r["name"]: r for r in json.loads(labtui("trace", "--summary", "--format", "json", cid).stdout)}
    assert rows["execve"]["calls"] == 1 and rows["execve"]["errors"] == 0, rows
    assert "exit_group" in rows
    assert not RUNTIME_CALLS & set(rows), rows
    # labtui's init calls prctl dozens of times (PR_SET_MM_MAP, PR_CAPBSET_DROP, ...); busybox once
    # (PR_GET_NAME, to learn its applet)
    assert log.count("prctl(") > 20 and rows.get("prctl", {"calls": 0})["calls"] <= 1, rows
    assert sum(r["calls"] for r in rows.values()) < 30, rows  # a static `true`: a handful of calls
    assert p.returncode == 0


def test_trace_of_an_exited_container_prints_its_kept_trace():
    p = labtui("run", "-d", "--strace", "--name", "strace-kept", "busybox", "sh", "-c", "echo kept")
    cid = p.stdout.strip()
    assert labtui("wait", cid).stdout.strip() == "0"
    wait_for(lambda: not stracers_of(cid), timeout=10, what="strace to finish")
    q = labtui("trace", "strace-kept")
    assert q.returncode == 0, q.stderr
    assert "container strace-kept is not running; its kept trace: " in q.stderr
    out = q.stdout
    assert out.startswith("# labtui: run --strace, init pid ")
    assert 'write(1, "kept\\n", 5' in out  # maybe "<unfinished ...>": PID 1 makes a call in between
    # the command's start is marked: labtui's set-up above it, the program below
    mark = out.index("# labtui: ---- the command starts here")
    assert out.index("pivot_root(") < mark < out.index('write(1, "kept')
    assert out.replace(out[mark:out.index("\n", mark) + 1], "") == strace_log(cid)
