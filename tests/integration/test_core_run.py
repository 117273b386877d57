"""Engine core on the real kernel: run, namespaces, root filesystem, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import host_mounts, inspect, labtui, lib, run_d, wait_for

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("clean_containers")]


def test_run_prints_output_and_returns_the_containers_code():
    p = labtui("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 7", check=False)
    assert p.returncode == 7
    assert p.stdout == "out\n"
    assert p.stderr == "err\n"


def test_exit_codes_follow_docker():
    assert labtui("run", "--rm", "busybox", "nosuchcmd", check=False).returncode == 127
    p = labtui("run", "--rm", "busybox", "/etc/passwd", check=False)
    assert p.returncode == 126, p.stderr
    assert "permission denied" in p.stderr.lower()
    p = labtui("run", "--rm", "nosuchimage", "true", check=False)
    assert p.returncode == 125
    assert "image 'nosuchimage' not found" in p.stderr
    p = labtui("run", "busybox", "nosuchcmd", check=False)
    assert 'exec: "nosuchcmd": executable file not found in $PATH' in p.stderr


def test_each_namespace_differs_from_the_hosts():
    cid = run_d("busybox", "sleep", "30")
    pid = inspect(cid)["State"]["Pid"]
    assert pid > 0
    for ns in ("pid", "mnt", "uts", "ipc", "net", "cgroup"):
        inside = os.stat(f"/proc/{pid}/ns/{ns}").st_ino
        host = os.stat(f"/proc/self/ns/{ns}").st_ino
        assert inside != host, f"{ns} namespace is shared with the host"
    # The inspect output reports the same inodes the kernel shows.
    assert inspect(cid)["Namespaces"]["net"] == os.stat(f"/proc/{pid}/ns/net").st_ino


def test_pid1_is_the_init_and_the_command_is_pid2():
    p = labtui("run", "--rm", "busybox", "sh", "-c", "echo $$; cat /proc/1/comm; ls /proc | grep -c '^[0-9]'")
    pid, comm, count = p.stdout.split()
    assert pid == "2"
    assert comm == "labtui-init"
    assert int(count) <= 4  # init, sh, and the pipeline: no host process is visible


HOST_PATHS = [os.path.realpath(sys.executable), sys.executable, sys.prefix, "/opt/labtui-venv",
              str(Path(__file__).resolve().parents[2]), os.environ["LABTUI_ROOT"], "PYTHONPATH", "LABTUI_"]


@pytest.mark.parametrize("opts", [[], ["--userns", "private"], ["--nice", "5"]],
                         ids=["default", "userns", "forked-command"])
def test_pid1_shows_a_short_name_and_no_host_path(opts: list[str]):
    """PID 1 is a fork of the supervisor (a Python on the host): its /proc/1/cmdline and environ
    read labtui-init and the container's own variables, as docker-init's (engine/proctitle.py).
    CAP_SYS_PTRACE lets the container read environ of its non-dumpable init at all."""
    script = ("cat /proc/1/cmdline; echo '|ENV|'; cat /proc/1/environ; echo '|ALL|';"
              " for p in /proc/[0-9]*; do cat $p/cmdline; echo; done")
    p = labtui("run", "--rm", "--cap-add", "SYS_PTRACE", "-e", "LAB=1", *opts, "busybox", "sh", "-c", script)
    cmdline, rest = p.stdout.split("|ENV|\n")
    environ, every = rest.split("|ALL|\n")
    assert cmdline == "labtui-init\0"
    env = environ.rstrip("\n").rstrip("\0").split("\0")
    if "private" in opts:  # CAP_SYS_PTRACE of the container's user namespace: not over the init's memory
        assert env == [""] and "Permission denied" in p.stderr
    else:
        assert "LAB=1" in env and any(v.startswith("PATH=") for v in env), env
    for text in (cmdline, environ, every):
        leaked = [h for h in HOST_PATHS if h in text]
        assert not leaked, (leaked, text)
    # the other processes the container sees are its own: sh, cat, and nothing of labtui but PID 1
    assert "labtui-init" in every and "python" not in every


def test_an_exec_process_shows_no_host_path_before_its_execve():
    """`labtui exec`'s process is a fork of the CLI inside the container until its execve: it
    hides the CLI's argv and environment first (a step of the exec), as PID 1 does."""
    cid = run_d("busybox", "sleep", "30")
    out = labtui("exec", cid, "sh", "-c", "for p in /proc/[0-9]*; do cat $p/cmdline; echo; done").stdout
    assert not [h for h in HOST_PATHS if h in out], out
    steps = [json.loads(x) for x in labtui("steps", cid, "--format", "json").stdout.splitlines() if x.strip()]
    hide = [s for s in steps if s["op"] == "prctl PR_SET_MM_MAP"]
    assert [(s["target"], s["result"]) for s in hide] == [("init", "ok"), ("exec", "ok")], hide


def test_hostname_and_etc_files():
    p = labtui("run", "--rm", "--hostname", "box1", "busybox", "sh", "-c",
               "hostname; cat /etc/hostname; grep box1 /etc/hosts; test -f /etc/resolv.conf && echo ok")
    assert p.stdout.split() == ["box1", "box1", "127.0.1.1", "box1", "ok"]


def test_dev_proc_sys():
    script = ("ls /dev | tr '\\n' ' '; echo; cat /proc/mounts; "
              "echo x > /sys/kernel/x 2>/dev/null || echo sys-ro; ls -l /dev/null")
    out = labtui("run", "--rm", "busybox", "sh", "-c", script).stdout
    first = out.splitlines()[0].split()
    for dev in ("null", "zero", "full", "random", "urandom", "tty", "console", "pts", "ptmx", "shm"):
        assert dev in first, dev
    assert "sysfs /sys sysfs ro," in out
    assert "proc /proc proc rw,nosuid,nodev,noexec" in out
    assert "devpts /dev/pts devpts" in out and "ptmxmode=666" in out
    assert "sys-ro" in out
    assert "crw-rw-rw-" in out and "1,   3" in out
    # the container's mounts never reached the host's mount table
    assert "overlay" not in [line.split()[8] for line in host_mounts().splitlines() if "labtui" in line]


def test_overlay_copy_on_write_keeps_the_image_unchanged():
    cid = labtui("create", "busybox", "sh", "-c", "echo hi > /etc/newfile; echo changed >> /etc/passwd").stdout.strip()
    info = inspect(cid)
    lower = info["GraphDriver"]["Data"]["LowerDir"].split(":")[0]
    upper = info["GraphDriver"]["Data"]["UpperDir"]
    before = open(os.path.join(lower, "etc/passwd")).read()
    labtui("start", cid)
    assert labtui("wait", cid).stdout.strip() == "0"
    assert open(os.path.join(upper, "etc/newfile")).read() == "hi\n"
    assert open(os.path.join(upper, "etc/passwd")).read().endswith("changed\n")
    assert open(os.path.join(lower, "etc/passwd")).read() == before
    assert not os.path.exists(os.path.join(lower, "etc/newfile"))
    # another container from the same image does not see the first one's writes
    p = labtui("run", "--rm", "busybox", "sh", "-c", "test -e /etc/newfile && echo seen || echo clean")
    assert p.stdout.strip() == "clean"
    labtui("rm", cid)
    assert not os.path.exists(upper)


def test_read_only_root_with_tmp_and_volumes(tmp_path):
    rw = tmp_path / "rw"
    ro = tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "f").write_text("from host")
    script = ("touch /x 2>&1 || true; touch /tmp/ok && echo tmp-ok; touch /run/ok && echo run-ok; "
              "echo data > /rw/out && echo rw-ok; cat /ro/f; echo; touch /ro/g 2>&1 || true")
    p = labtui("run", "--rm", "--read-only", "-v", f"{rw}:/rw", "-v", f"{ro}:/ro:ro", "busybox", "sh", "-c", script)
    out = p.stdout
    assert "touch: /x: Read-only file system" in out
    assert "tmp-ok" in out and "run-ok" in out and "rw-ok" in out
    assert "from host" in out
    assert "touch: /ro/g: Read-only file system" in out
    assert (rw / "out").read_text() == "data\n"
    assert not (ro / "g").exists()


def test_tmpfs_option_and_workdir():
    p = labtui("run", "--rm", "--tmpfs", "/scratch", "-w", "/work/dir", "busybox", "sh", "-c",
               "pwd; grep ' /scratch ' /proc/mounts | cut -d' ' -f3")
    assert p.stdout.split() == ["/work/dir", "tmpfs"]


def test_env_and_workdir_in_config():
    p = labtui("run", "--rm", "-e", "FOO=bar", "-e", "EMPTY=", "busybox", "sh", "-c", 'echo "$FOO|$EMPTY|$PATH"')
    assert p.stdout.strip() == "bar||/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_failing_step_is_recorded_and_named():
    # Binding a file onto a directory fails in the kernel with ENOTDIR: the step carries the errno.
    p = labtui("run", "--name", "badmount", "-v", "/etc/hostname:/bin", "busybox", "true", check=False)
    assert p.returncode == 125
    assert "bind volume" in p.stderr and "/bin" in p.stderr and "ENOTDIR" in p.stderr
    steps = labtui("steps", "badmount", "--format", "json").stdout
    assert '"result":"ENOTDIR"' in steps.replace(" ", "")


def test_stdin_with_interactive():
    p = subprocess.run([sys.executable, "-m", "labtui.cli", "run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z"],
                       input="hello\n", capture_output=True, text=True, timeout=30)
    assert p.stdout == "HELLO\n"


def test_rm_removes_upper_work_and_mounts():
    cid = run_d("busybox", "sleep", "30")
    d = lib() / "containers" / cid
    assert (d / "upper").is_dir()
    labtui("rm", "-f", cid)
    assert not d.exists()
    assert cid not in host_mounts()
    wait_for(lambda: not any(cid in open(f"/proc/{p}/cmdline").read() for p in os.listdir("/proc")
                             if p.isdigit() and os.path.exists(f"/proc/{p}/cmdline")), what="no process")
