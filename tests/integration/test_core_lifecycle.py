"""Lifecycle on the real kernel: init semantics, stop/kill, supervision, state truth, concurrency."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import LABTUI, inspect, labtui, lib, proc_status, ps_json, run_d, run_dir, wait_for

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("clean_containers")]


def container_procs(cid: str) -> list[dict]:
    out = labtui("top", cid).stdout.splitlines()[1:]
    return [dict(zip(["uid", "pid", "ppid", "inside", "stat", "cmd"], line.split(None, 5), strict=True))
            for line in out]


def test_thousand_orphans_leave_no_zombie():
    script = ("i=0; while [ $i -lt 1000 ]; do (sleep 0 &); i=$((i+1)); done; "
              "echo spawned; sleep 30")
    cid = run_d("busybox", "sh", "-c", script)
    wait_for(lambda: "spawned" in labtui("logs", cid).stdout, timeout=60, what="1000 orphans")
    time.sleep(0.3)
    procs = container_procs(cid)
    zombies = [p for p in procs if p["stat"] == "Z"]
    assert zombies == [], zombies
    # and the orphans really were reparented to our init and reaped: only init, sh, sleep are left
    assert len(procs) <= 3, procs


def test_sigterm_is_forwarded_and_the_code_comes_back():
    cid = run_d("busybox", "sh", "-c", 'trap "echo got-term; exit 42" TERM; while true; do sleep 0.1; done')
    wait_for(lambda: len(container_procs(cid)) >= 2, what="command running")
    t0 = time.monotonic()
    labtui("stop", cid)
    assert time.monotonic() - t0 < 5
    assert inspect(cid)["State"]["ExitCode"] == 42
    assert "got-term" in labtui("logs", cid).stdout


@pytest.mark.parametrize("sig", ["USR1", "USR2", "HUP", "INT", "QUIT"])
def test_other_signals_are_forwarded(sig):
    cid = run_d("busybox", "sh", "-c", f'trap "echo got-{sig}; exit 3" {sig}; while true; do sleep 0.1; done')
    wait_for(lambda: len(container_procs(cid)) >= 2, what="command running")
    time.sleep(0.2)
    labtui("kill", "-s", sig, cid)
    assert labtui("wait", cid).stdout.strip() == "3"
    assert f"got-{sig}" in labtui("logs", cid).stdout


def test_exit_by_signal_is_128_plus_signal():
    cid = run_d("busybox", "sleep", "60")
    labtui("stop", "-t", "5", cid)  # sleep dies of SIGTERM: 128 + 15
    assert inspect(cid)["State"]["ExitCode"] == 143
    cid2 = run_d("busybox", "sleep", "60")
    labtui("kill", cid2)  # SIGKILL
    assert inspect(cid2)["State"]["ExitCode"] == 137


def test_stop_waits_then_kills():
    cid = run_d("busybox", "sh", "-c", 'trap "" TERM; while true; do sleep 0.1; done')
    wait_for(lambda: len(container_procs(cid)) >= 2, what="command running")
    t0 = time.monotonic()
    labtui("stop", "-t", "1", cid)
    took = time.monotonic() - t0
    assert 0.9 <= took < 5, took
    assert inspect(cid)["State"]["ExitCode"] == 137


def test_supervisor_is_detached_and_outlives_the_cli():
    cid = run_d("busybox", "sleep", "60")
    st = inspect(cid)["State"]
    sup = st["SupervisorPid"]
    assert sup > 0
    assert os.getsid(sup) == sup and os.getpgid(sup) == sup  # own session and process group
    assert int(proc_status(sup)["PPid"]) != os.getpid()
    assert int(proc_status(st["Pid"])["PPid"]) == sup  # the supervisor is the container's parent
    assert ps_json(False)[0]["State"] == "running"


def test_killed_supervisor_then_ps_and_rm_still_work():
    cid = run_d("busybox", "sleep", "60")
    st = inspect(cid)["State"]
    os.kill(st["SupervisorPid"], signal.SIGKILL)
    wait_for(lambda: inspect(cid)["State"]["SupervisorPid"] == 0, what="supervisor gone")
    assert [c["State"] for c in ps_json() if c["Id"] == cid] == ["running"]
    labtui("rm", "-f", cid)
    assert not (lib() / "containers" / cid).exists()
    assert not os.path.exists(f"/proc/{st['Pid']}") or proc_status(st["Pid"])["State"].startswith("Z")


def test_wiped_run_dir_as_after_reboot():
    cid = run_d("busybox", "sleep", "60")
    pid = inspect(cid)["State"]["Pid"]
    shutil.rmtree(run_dir())
    assert [c["State"] for c in ps_json() if c["Id"] == cid] == ["running"]
    labtui("rm", "-f", cid)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), what="container init gone")
    assert not (lib() / "containers" / cid).exists()


def test_pid_reuse_guard():
    cid = run_d("busybox", "sleep", "60")
    pid = inspect(cid)["State"]["Pid"]
    labtui("kill", cid)
    # Pretend the PID was recycled by another process: our own PID, with its own start time.
    state_file = lib() / "containers" / cid / "state.json"
    st = json.loads(state_file.read_text())
    st["pid"] = os.getpid()
    state_file.write_text(json.dumps(st))
    assert [c["State"] for c in ps_json() if c["Id"] == cid] == ["exited"]
    assert pid != os.getpid()


def test_twenty_parallel_runs():
    procs = [subprocess.Popen(LABTUI + ["run", "-d", "busybox", "sleep", "30"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(20)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 20, [o[1] for o in outs]
    ids = {o[0].strip() for o in outs}
    assert len(ids) == 20
    rows = [c for c in ps_json() if c["Id"] in ids]
    assert len({r["Names"] for r in rows}) == 20
    assert all(r["State"] == "running" for r in rows)


def test_names_and_prefixes():
    cid = run_d("--name", "web", "busybox", "sleep", "30")
    p = labtui("run", "-d", "--name", "web", "busybox", "true", check=False)
    assert p.returncode == 125
    assert f"name 'web' is already in use by container {cid[:12]}" in p.stderr
    assert inspect("web")["Id"] == cid
    assert inspect(cid[:6])["Id"] == cid
    assert labtui("inspect", "nosuch", check=False).returncode == 1


def test_ps_inspect_top_wait_restart_logs():
    cid = run_d("--name", "life", "busybox", "sh", "-c", "echo line1; echo line2; sleep 30")
    rows = ps_json(False)
    assert any(r["Names"] == "life" and r["Status"].startswith("Up") for r in rows)
    info = inspect("life")
    assert info["State"]["Running"] and info["Config"]["Cmd"][0] == "sh"
    procs = container_procs("life")
    assert [p["inside"] for p in procs][:2] == ["1", "2"]
    wait_for(lambda: "line2" in labtui("logs", "life").stdout, what="logs")
    assert labtui("logs", "--tail", "1", "life").stdout == "line2\n"
    stamped = labtui("logs", "-t", "life").stdout.splitlines()[0]
    assert stamped.endswith(" line1") and stamped[4] == "-" and "T" in stamped
    raw = (lib() / "containers" / cid / "container.log").read_text().splitlines()
    rec = json.loads(raw[0])
    assert set(rec) == {"log", "stream", "time"} and rec["log"] == "line1\n" and rec["stream"] == "stdout"
    old_pid = info["State"]["Pid"]
    labtui("restart", "-t", "1", "life")
    assert inspect("life")["State"]["Pid"] != old_pid and inspect("life")["State"]["Running"]
    labtui("kill", "life")
    assert labtui("wait", "life").stdout.strip() == "137"
    assert not any(r["Names"] == "life" for r in ps_json(False))
    assert any(r["Names"] == "life" and r["Status"].startswith("Exited (137)") for r in ps_json(True))


def test_logs_follow_ends_with_the_container():
    cid = run_d("busybox", "sh", "-c", "for i in 1 2 3; do echo n$i; sleep 0.2; done")
    p = labtui("logs", "-f", cid, timeout=20)
    assert p.stdout.split() == ["n1", "n2", "n3"]


def test_rm_after_exit_with_autoremove_even_without_cli():
    cid = run_d("--rm", "busybox", "sleep", "0.5")
    wait_for(lambda: not (lib() / "containers" / cid).exists(), timeout=10, what="autoremove")
    assert '"removed"' in (lib() / "events.jsonl").read_text()


def test_events_stream_has_the_lifecycle():
    cid = run_d("--name", "evt", "busybox", "true")
    labtui("wait", cid)
    labtui("rm", cid)
    evs = [json.loads(line) for line in labtui("events", "--format", "json").stdout.splitlines()]
    mine = [e["type"] for e in evs if e.get("container") == cid]
    assert mine == ["created", "started", "died", "removed"]
    died = [e for e in evs if e.get("container") == cid and e["type"] == "died"][0]
    assert died["exit_code"] == 0


def test_tty_gets_a_pty_with_the_terminal_size_and_resizes():
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))

    def ctty() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    script = "tty; echo TERM=$TERM; stty size; sleep 1.5; stty size"
    p = subprocess.Popen(LABTUI + ["run", "--rm", "-it", "busybox", "sh", "-c", script],
                         stdin=slave, stdout=slave, stderr=slave, preexec_fn=ctty)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 30
    resized = False
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if b"33 111" in out and not resized:
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
            resized = True
        if b"40 120" in out:
            break
    p.wait(timeout=30)
    os.close(master)
    text = out.decode(errors="replace")
    assert "/dev/pts/0" in text  # allocated in the container's own devpts instance
    assert "TERM=xterm" in text  # docker's default for -t
    assert "33 111" in text and "40 120" in text, text
    assert p.returncode == 0


def test_bad_input_is_refused_with_a_message_and_nothing_left():
    before = set(os.listdir(lib() / "containers")) if (lib() / "containers").exists() else set()
    cases = [
        (["run", "-v", "relative:/x", "busybox", "true"], "host path must be absolute"),
        (["run", "-v", "/tmp", "busybox", "true"], "expected HOST:CONTAINER"),
        (["run", "-v", "/tmp:/x:rx", "busybox", "true"], "mode must be ro or rw"),
        (["run", "--name", "bad name!", "busybox", "true"], "invalid container name"),
        (["run", "nosuchimage"], "image 'nosuchimage' not found"),
        (["kill", "-s", "NOPE", "x"], "invalid signal"),
    ]
    for args, msg in cases:
        p = labtui(*args, check=False)
        assert p.returncode == 125, (args, p.stderr)
        assert "Traceback" not in p.stderr
        if msg:
            assert msg in p.stderr, (args, p.stderr)
    after = set(os.listdir(lib() / "containers")) if (lib() / "containers").exists() else set()
    assert after == before


def test_not_root_and_help_without_root():
    env = dict(os.environ)
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]
    p = subprocess.run(drop + LABTUI + ["ps"], capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode == 125
    assert "labtui must run as root: try sudo labtui" in p.stderr
    p = subprocess.run(drop + LABTUI + ["--help"], capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode == 0 and "usage: labtui" in p.stdout
    p = subprocess.run(drop + LABTUI + ["run", "--help"], capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode == 0 and "--volume" in p.stdout
    assert sys.executable
