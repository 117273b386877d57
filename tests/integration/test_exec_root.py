"""`labtui exec` on the real kernel: namespaces, cgroup, environment, user, exit codes, pty, -d."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import termios
import time

import pytest

from engine.exec import ExecError, resolve_user
from tests.helpers import LABTUI, inspect, labtui, lib, proc_status, run_d, wait_for

root = pytest.mark.root
KINDS = ("cgroup", "ipc", "mnt", "net", "pid", "uts", "user")


def ns(pid: int | str) -> dict[str, int]:
    return {k: os.stat(f"/proc/{pid}/ns/{k}").st_ino for k in KINDS}


def steps_of(cid: str) -> list[dict]:
    with open(lib() / "containers" / cid / "steps.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def exec_events(cid: str) -> list[dict]:
    with open(lib() / "events.jsonl") as f:
        evs = [json.loads(line) for line in f if line.strip()]
    return [e for e in evs if e.get("container") == cid and e.get("type") == "exec"]


def controller_lines(pid: int, cid: str) -> set[str]:
    with open(f"/proc/{pid}/cgroup") as f:
        return {line.strip() for line in f if cid in line}


@root
@pytest.mark.usefixtures("clean_containers")
def test_exec_joins_every_namespace_its_cgroup_and_is_reaped_by_the_init():
    cid = run_d("busybox", "sleep", "60")
    init_pid = inspect(cid)["State"]["Pid"]
    labtui("exec", "-d", "-u", "nobody", cid, "sleep", "30")
    ev = exec_events(cid)[-1]
    pid = ev["pid"]
    assert ev["argv"] == ["sleep", "30"] and ev["pid_inside"] > 1
    # every namespace is the init's; all but the user namespace differ from the host's
    mine, theirs, host = ns(pid), ns(init_pid), ns("self")
    assert mine == theirs
    assert all(mine[k] != host[k] for k in KINDS if k != "user")
    # its cgroup: the container's directory in every controller the init is in
    init_cg = controller_lines(init_pid, cid)
    assert init_cg and controller_lines(pid, cid) == init_cg
    # -d: adopted by the container's PID 1 (the middle fork exited), not by the host's init
    assert int(proc_status(pid)["PPid"]) == init_pid
    # execve made it dumpable again: /proc/PID belongs to its (non-root) owner once more
    assert os.stat(f"/proc/{pid}").st_uid == 65534
    # the steps: non-dumpable first, then the cgroup join, then exactly one setns per namespace
    steps = sorted(steps_of(cid), key=lambda s: s["seq"])
    first = next(i for i, s in enumerate(steps) if s["op"] == "prctl" and s["target"] == "exec")
    run = steps[first:]
    run = run[: next(i for i, s in enumerate(run) if s["mechanism"] == "exec") + 1]
    setns = [s for s in run if s["op"] == "setns"]
    joins = [s for s in run if s["op"] == "write" and s["target"].endswith("cgroup.procs")]
    assert sorted(s["target"].rsplit("/", 1)[1] for s in setns) == sorted(k for k in KINDS if k != "user")
    assert all(s["result"] == "ok" and s["shell"].startswith(f"nsenter --target {init_pid} --") for s in setns)
    assert joins and all(s["value"] == str(s["pid"]) for s in joins)
    assert run[0]["value"] == "PR_SET_DUMPABLE 0"
    assert max(s["seq"] for s in joins) < min(s["seq"] for s in setns)
    order = [s["target"].rsplit("/", 1)[1] for s in setns]
    assert order.index("pid") < order.index("mnt") and order[0] == "cgroup"


@root
@pytest.mark.usefixtures("clean_containers")
def test_detached_exec_is_reaped_by_the_container_init():
    cid = run_d("busybox", "sleep", "60")
    labtui("exec", "-d", cid, "sleep", "0.3")
    pid = exec_events(cid)[-1]["pid"]
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=5, what="the -d process reaped")
    procs = labtui("top", cid).stdout.splitlines()[1:]
    assert not any(line.split()[4] == "Z" for line in procs), procs
    assert len(procs) == 2  # init and its sleep


@root
@pytest.mark.usefixtures("clean_containers")
def test_environment_workdir_user_stdin_and_exit_codes():
    cid = run_d("-e", "FROM_RUN=1", "-w", "/tmp", "busybox", "sleep", "60")
    out = labtui("exec", cid, "sh", "-c", 'echo "$FROM_RUN $HOME"; pwd; id -u; id -g').stdout.split()
    assert out == ["1", "/root", "/tmp", "0", "0"]
    out = labtui("exec", "-e", "FOO=bar", "-e", "FROM_RUN=2", "-w", "/etc", cid, "sh", "-c",
                 'echo "$FOO $FROM_RUN"; pwd').stdout.split()
    assert out == ["bar", "2", "/etc"]
    out = labtui("exec", "-u", "nobody", cid, "sh", "-c", "id -u; id -g; echo $HOME").stdout.split()
    assert out == ["65534", "65534", "/nonexistent"]
    assert labtui("exec", "-u", "1234:5", cid, "id", "-u").stdout.strip() == "1234"
    assert labtui("exec", "-i", cid, "cat", input="through stdin\n").stdout == "through stdin\n"
    assert labtui("exec", cid, "cat", input="not passed\n").stdout == ""  # without -i: /dev/null
    assert labtui("exec", cid, "sh", "-c", "echo out; echo err >&2; exit 7", check=False).returncode == 7
    p = labtui("exec", cid, "sh", "-c", "kill -TERM $$", check=False)
    assert p.returncode == 128 + 15
    p = labtui("exec", cid, "nosuchcmd", check=False)
    assert p.returncode == 127
    assert 'exec: "nosuchcmd": executable file not found in $PATH' in p.stderr
    p = labtui("exec", cid, "/etc/passwd", check=False)
    assert p.returncode == 126 and 'exec: "/etc/passwd": permission denied' in p.stderr
    p = labtui("exec", "-u", "nosuchuser", cid, "true", check=False)
    assert p.returncode == 126 and "unable to find user nosuchuser" in p.stderr
    p = labtui("exec", "-w", "/nonexistent", cid, "true", check=False)
    assert p.returncode == 126 and "/nonexistent" in p.stderr
    assert "Traceback" not in p.stderr
    evs = exec_events(cid)
    assert any(e.get("exit_code") == 127 and e["argv"] == ["nosuchcmd"] for e in evs)


@root
@pytest.mark.usefixtures("clean_containers")
def test_the_engines_exec_program_answers_as_labtui_exec_does():
    """`python -m engine.exec_main` (what a supervisor's health check runs): same options, output,
    messages and exit codes as `labtui exec`, without starting the CLI."""
    from engine import exec_main

    cid = run_d("busybox", "sleep", "60")

    def run(*argv: str, **kw: object) -> subprocess.CompletedProcess:
        cmd = exec_main.command_line(cid, list(argv), **kw)  # type: ignore[arg-type]
        assert cmd[1:3] == ["-m", "engine.exec_main"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)

    p = run("sh", "-c", 'echo "$FOO $(id -u) $(pwd)"; exit 3', env=["FOO=bar"], user="nobody", workdir="/etc")
    assert (p.returncode, p.stdout) == (3, "bar 65534 /etc\n")
    p = run("nosuchcmd")
    assert p.returncode == 127 and p.stderr == 'labtui: exec: "nosuchcmd": executable file not found in $PATH\n'
    assert run("true", detach=True).returncode == 0


@root
@pytest.mark.usefixtures("clean_containers")
def test_exec_is_refused_for_paused_and_stopped_containers():
    cid = run_d("--name", "exec-refused", "busybox", "sleep", "60")
    labtui("pause", cid)
    try:
        p = labtui("exec", cid, "true", check=False)
        assert p.returncode == 125
        assert "container exec-refused is paused, unpause the container before exec" in p.stderr
    finally:
        labtui("unpause", cid)
    assert labtui("exec", cid, "true").returncode == 0
    labtui("stop", "-t", "1", cid)
    p = labtui("exec", cid, "true", check=False)
    assert p.returncode == 125 and "container exec-refused is not running" in p.stderr


@root
@pytest.mark.usefixtures("clean_containers")
def test_exec_it_gets_a_pty_of_the_container_its_size_resizes_and_ctrl_c():
    cid = run_d("busybox", "sleep", "60")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))

    def ctty() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    script = "tty; stty size; sleep 1; stty size; sleep 30"
    p = subprocess.Popen(LABTUI + ["exec", "-it", cid, "sh", "-c", script],
                         stdin=slave, stdout=slave, stderr=slave, preexec_fn=ctty)
    os.close(slave)
    out = b""
    resized = False
    t_int = None
    deadline = time.monotonic() + 20
    try:
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
            if b"40 120" in out and t_int is None:
                time.sleep(0.2)  # let `sleep 30` start
                os.write(master, b"\x03")  # raw mode on our side: ^C is a byte for the container's pty
                t_int = time.monotonic()
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    text = out.decode(errors="replace")
    assert re.search(r"/dev/pts/\d+", text), text  # a pty of the container's own devpts
    assert "33 111" in text and "40 120" in text, text
    assert t_int is not None and time.monotonic() - t_int < 5
    assert p.returncode == 130, text  # SIGINT from the container's line discipline
    steps = steps_of(cid)
    assert any(s["op"] == "open ptmx" and s["target"] == "/dev/pts/ptmx" for s in steps)


@root
@pytest.mark.usefixtures("clean_containers")
def test_bad_input_is_refused_with_a_message():
    p = labtui("exec", "nosuchcontainer", "true", check=False)
    assert p.returncode == 125 and "no such container: nosuchcontainer" in p.stderr
    cid = run_d("busybox", "sleep", "60")
    cases = [
        ([cid], "exec needs a command"),
        (["-w", "relative", cid, "true"], "must be an absolute path"),
        (["-u", "a:b:c", cid, "true"], "invalid user 'a:b:c'"),
        (["-u", "", cid, "true"], "invalid user"),
        (["-e", "=x", cid, "true"], "invalid environment variable"),
    ]
    for args, msg in cases:
        p = labtui("exec", *args, check=False)
        assert p.returncode == 125, (args, p.stderr)
        assert msg in p.stderr and "Traceback" not in p.stderr, (args, p.stderr)
    p = labtui("exec", check=False)  # argparse: the container is required
    assert p.returncode == 2 and "Traceback" not in p.stderr


# ---- user resolution (pure) ------------------------------------------------------------------------

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n" \
         "alice:x:1000:1000::/home/alice:/bin/sh\n# comment\nbroken line\n"
GROUP = "root:x:0:\nnogroup:x:65534:\nalice:x:1000:\nwheel:x:10:alice,bob\naudio:x:29:alice\n"


def test_resolve_user_follows_runc_rules():
    u = resolve_user(None, PASSWD, GROUP)
    assert (u.uid, u.gid, u.groups, u.home) == (0, 0, [], "/root")
    u = resolve_user("alice", PASSWD, GROUP)
    assert (u.uid, u.gid, u.groups, u.home) == (1000, 1000, [10, 29], "/home/alice")
    u = resolve_user("alice:wheel", PASSWD, GROUP)
    assert (u.uid, u.gid, u.groups) == (1000, 10, [])
    u = resolve_user("1000", PASSWD, GROUP)
    assert (u.uid, u.gid, u.name) == (1000, 1000, "alice")
    u = resolve_user("4242:7", PASSWD, GROUP)
    assert (u.uid, u.gid, u.groups, u.home) == (4242, 7, [], "/")
    u = resolve_user("4242", "", "")
    assert (u.uid, u.gid) == (4242, 0)
    with pytest.raises(ExecError, match="unable to find user bob"):
        resolve_user("bob", PASSWD, GROUP)
    with pytest.raises(ExecError, match="unable to find group nope"):
        resolve_user("alice:nope", PASSWD, GROUP)


@root
@pytest.mark.usefixtures("clean_containers")
def test_exec_joins_a_user_namespace_first():
    p = labtui("run", "-d", "--userns", "private", "busybox", "sleep", "60", check=False)
    if p.returncode != 0:
        pytest.skip(f"--userns private is not available here: {p.stderr.strip()}")
    cid = p.stdout.strip()
    init_pid = inspect(cid)["State"]["Pid"]
    assert labtui("exec", cid, "id", "-u").stdout.strip() == "0"  # the namespace's root...
    labtui("exec", "-d", cid, "sleep", "30")
    pid = exec_events(cid)[-1]["pid"]
    assert ns(pid) == ns(init_pid) and ns(pid)["user"] != ns("self")["user"]
    assert int(proc_status(pid)["Uid"].split()[0]) != 0  # ...is an unprivileged uid on the host
    assert proc_status(pid)["Groups"] == ""  # no host group followed it in
    setns = [s for s in steps_of(cid) if s["op"] == "setns"]
    assert setns[-7]["target"].endswith("/user") and setns[-7]["shell"] == f"nsenter --target {init_pid} --user"
