"""The idle container (engine/idle.py, engine/native): PID 1 is labtui-init, the supervisor
becomes labtui-monitor while nothing needs Python, and comes back as Python for everything
else - with nothing lost in between. Read on the kernel: /proc/PID/exe, smaps_rollup, the log
file, the attach socket, the cgroup's counters, the audit records' events."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request

import pytest

from engine import attach, native
from tests.helpers import inspect, labtui, lib, run_d, wait_for

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("clean_containers"),
              pytest.mark.skipif(native.binary("labtui-monitor") is None,
                                 reason="engine/native not built (scripts/build-native needs gcc)")]

TRIGGER = "while [ ! -e /tmp/go ]; do sleep 0.05; done; "


def pids(cid: str) -> tuple[int, int]:
    st = inspect(cid)["State"]
    return st["SupervisorPid"], st["Pid"]


def exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def in_monitor(cid: str) -> bool:
    return exe(pids(cid)[0]).endswith("/labtui-monitor")


def wait_monitor(cid: str) -> int:
    wait_for(lambda: in_monitor(cid), timeout=20, what="the supervisor to become labtui-monitor")
    return pids(cid)[0]


def go(cid: str) -> None:
    """Let the container's command past its TRIGGER (a file in its /tmp, made from the host)."""
    pid1 = pids(cid)[1]
    with open(f"/proc/{pid1}/root/tmp/go", "w"):
        pass


def pss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))


def log_lines(cid: str) -> list[bytes]:
    return (lib() / "containers" / cid / "container.log").read_bytes().splitlines()


def test_an_idle_container_costs_under_4_mb():
    """Issue 15's target: PSS of what labtui keeps per container (supervisor + PID 1)."""
    cids = [run_d("busybox", "sleep", "300") for _ in range(5)]
    costs = []
    for cid in cids:
        sup, pid1 = wait_monitor(cid), pids(cid)[1]
        assert exe(pid1).endswith("/labtui-init")
        costs.append(pss_kb(sup) + pss_kb(pid1))
    assert max(costs) <= 4096, f"PSS per container (KiB): {costs}"


def test_pid1_is_labtui_init_and_its_exe_is_closed_to_the_container():
    cid = run_d("busybox", "sleep", "300")
    pid1 = pids(cid)[1]
    wait_for(lambda: exe(pid1).endswith("/labtui-init"), what="PID 1 to exec labtui-init")
    with open(f"/proc/{pid1}/status") as f:
        assert "labtui-init" in f.readline()
    p = labtui("exec", cid, "sh", "-c", "cat /proc/1/exe >/dev/null; echo rc=$?; cat /proc/1/cmdline", check=False)
    assert "rc=1" in p.stdout and p.stdout.rstrip("\0").endswith("labtui-init"), p.stdout + p.stderr
    steps = [json.loads(x) for x in (lib() / "containers" / cid / "steps.jsonl").read_text().splitlines()]
    st = [s for s in steps if s["op"] == "execve" and s["target"] == "init"]
    assert st and st[0]["result"] == "ok" and st[0]["exe"].endswith("/labtui-init")


def test_signals_still_reach_the_command_through_labtui_init():
    cid = run_d("busybox", "sh", "-c", "trap 'exit 42' TERM; while true; do sleep 0.1; done")
    wait_monitor(cid)
    labtui("stop", "-t", "10", cid)
    assert inspect(cid)["State"]["ExitCode"] == 42


def test_output_while_idle_is_logged_as_the_python_log_writer_does():
    # Every kind of byte: quotes, backslash, a tab, a control character, UTF-8 (2, 3, 4 bytes), an
    # invalid byte, a line over 16 KiB (split), a partial line left before the hand-off.
    cid = run_d("busybox", "sh", "-c", "printf 'before-'; " + TRIGGER +
                r"printf 'q\"b\\t\tc\001 é € 😀 bad\377x\n'; head -c 20000 /dev/zero | tr '\0' a; echo;"
                " echo to-stderr >&2; sleep 300")
    sup = wait_monitor(cid)
    go(cid)
    wait_for(lambda: b"to-stderr" in b"".join(log_lines(cid)), what="the output in the log")
    assert exe(sup).endswith("/labtui-monitor"), "the monitor itself must have written it"
    recs = [json.loads(x) for x in log_lines(cid)]
    for raw, rec in zip(log_lines(cid), recs, strict=True):  # byte for byte what json.dumps writes
        assert raw == json.dumps({"log": rec["log"], "stream": rec["stream"], "time": rec["time"]}).encode()
    logs = [r["log"] for r in recs]
    assert logs[0] == "before-q\\\"b\\t\tc\x01 é € 😀 bad\ufffdx\n"  # busybox printf keeps \\"
    # A partial line is written out once it reaches 16 KiB, as docker splits it; a line that came
    # whole in one read stays whole (where depends on the pipe's chunks, as with the Python writer).
    a_recs = logs[1:-1]
    assert "".join(a_recs) == "a" * 20000 + "\n"
    assert all(len(x) >= 16384 for x in a_recs if not x.endswith("\n"))
    assert recs[-1] == {**recs[-1], "log": "to-stderr\n", "stream": "stderr"}


def test_exit_while_idle_is_recorded_and_rm_removes():
    cid = run_d("busybox", "sh", "-c", TRIGGER + "exit 7")
    wait_monitor(cid)
    go(cid)
    wait_for(lambda: inspect(cid)["State"]["Status"] == "exited", what="the exit")
    assert inspect(cid)["State"]["ExitCode"] == 7
    out = run_d("--rm", "busybox", "sh", "-c", TRIGGER + "exit 0")
    wait_monitor(out)
    go(out)
    wait_for(lambda: labtui("inspect", out, check=False).returncode != 0, what="the --rm container removed")
    assert not (lib() / "containers" / out).exists()


def test_a_restart_policy_works_across_idle_phases():
    cid = run_d("--restart", "on-failure:2", "busybox", "sh", "-c", TRIGGER + "rm /tmp/go; exit 3")
    for n in range(1, 3):
        wait_monitor(cid)
        go(cid)
        wait_for(lambda n=n: inspect(cid)["RestartCount"] == n, timeout=20, what=f"restart {n}")
    wait_monitor(cid)
    go(cid)
    wait_for(lambda: inspect(cid)["State"]["Status"] == "exited", timeout=20, what="the last exit")
    st = inspect(cid)
    assert st["State"]["ExitCode"] == 3 and st["RestartCount"] == 2, st["State"]


def test_a_client_wakes_the_supervisor_and_is_served():
    cid = run_d("-i", "busybox", "cat")
    sup = wait_monitor(cid)
    from engine import paths

    s = socket.socket(socket.AF_UNIX)
    s.connect(str(paths.attach_socket(cid)))
    s.settimeout(10)
    attach.send(s, attach.STDIN, b"hello idle\n")
    reader, got = attach.FrameReader(), b""
    while b"hello idle" not in got:
        for kind, payload in reader.feed(s.recv(4096)):
            if kind == attach.STDOUT:
                got += payload
    assert "labtui-monitor" not in exe(sup), "a client is served by the Python supervisor"
    s.close()
    wait_monitor(cid)  # and once it has gone, the supervisor idles again
    assert b"hello idle" in b"".join(log_lines(cid))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_published_port_answers_while_idle():
    port = free_port()
    cid = run_d("--network", "bridge", "-p", f"127.0.0.1:{port}:80", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc")
    wait_monitor(cid)
    for _ in range(2):  # the first connection wakes Python; the second finds it idle again
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=10).read()
        assert body.strip() == inspect(cid)["Config"]["Hostname"].encode()
        wait_monitor(cid)


def test_an_oom_kill_while_idle_is_an_alert():
    cid = run_d("-m", "32m", "--memory-swap", "32m", "busybox", "sh", "-c",
                TRIGGER + "head -c 100m /dev/zero | tail; sleep 300")
    wait_monitor(cid)
    go(cid)
    from tests.integration.test_security_root import events

    wait_for(lambda: [e for e in events(cid, "alert") if e.get("alert") == "oom"], timeout=20, what="an oom alert")


def test_a_seccomp_denial_while_idle_is_an_event():
    cid = run_d("busybox", "sh", "-c", TRIGGER + "unshare -U true; sleep 300")
    wait_monitor(cid)
    go(cid)
    from tests.integration.test_security_root import events

    ev = wait_for(lambda: events(cid, "seccomp_denied"), timeout=10, what="a seccomp_denied event")[0]
    assert ev["syscall"] == "unshare"


def test_labtui_monitor_0_keeps_the_python_supervisor():
    env = {**os.environ, "LABTUI_MONITOR": "0"}
    cid = labtui("run", "-d", "busybox", "sleep", "300", env=env).stdout.strip()
    time.sleep(2.5)  # well past IDLE_AFTER: it would have handed off by now
    assert "python" in exe(pids(cid)[0])


def test_system_check_sees_nothing_wrong_with_idle_containers():
    cid = run_d("busybox", "sleep", "300")
    wait_monitor(cid)
    p = labtui("system", "check", "--format", "json", check=False)
    assert p.returncode == 0, p.stdout + p.stderr
