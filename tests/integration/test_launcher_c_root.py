"""The installed `labtui` command in C (labtui/launcher/launcher.c, built by scripts/build-launcher).

It must be indistinguishable from labtui/launcher/launch.py: the helper gets the caller's stdio,
environment and directory, the exit code or the death by signal comes back, signals (^Z too)
reach the command, and with no helper (or a stale one, or not root) the ordinary Python way runs.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.helpers import (
    HELPER_START,
    fresh_helper,
    helper_log,
    helper_pid,
    labtui,
    our_processes,
    own_state_dir,
    proc_status,
    process_state,
    proxying_worker,
    wait_for,
)

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def launcher() -> str:
    out = Path(tempfile.mkdtemp(prefix="labtui-launcher-", dir="/var/tmp")) / "labtui"
    out.parent.chmod(0o755)  # the not-root test runs it as nobody
    p = subprocess.run([str(REPO / "scripts" / "build-launcher"), str(out)], capture_output=True, text=True)
    if p.returncode != 0 and "no C compiler" in p.stderr:
        pytest.skip("no C compiler: scripts/install writes the Python launcher")
    assert p.returncode == 0, p.stderr
    yield str(out)
    out.unlink()
    out.parent.rmdir()


@pytest.fixture(scope="module")
def helper(launcher):
    """A helper started for this module from this process (whatever an earlier test left is
    stopped first: tests/helpers.py fresh_helper), stopped at the end."""
    from labtui.launcher import helper as helper_mod

    yield fresh_helper()
    helper_mod.stop()


def execs(launcher: str, tmp_path: Path, *args: str, **kw) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run the launcher under strace -f and return the execve(2) calls it and its children made."""
    trace = tmp_path / "execve"
    p = subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-e", "signal=none", "-o", str(trace),
                        launcher, *args], capture_output=True, text=True, timeout=60, **kw)
    calls = [ln for ln in trace.read_text().splitlines() if "execve(" in ln and "= 0" in ln]
    return p, calls


def test_through_the_helper_no_python_starts_and_stdio_and_code_come_back(launcher, helper, tmp_path):
    p, calls = execs(launcher, tmp_path, "run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert len(calls) == 1 and launcher in calls[0], calls  # only the launcher itself: no python3
    assert (p.returncode, p.stdout, p.stderr) == (3, "out\n", "err\n")


def test_stdin_environment_and_working_directory_reach_the_command(launcher, helper, tmp_path):
    env = dict(os.environ, LABTUI_C_TEST="from-the-caller")
    p = subprocess.run([launcher, "run", "--rm", "-i", "-e", "LABTUI_C_TEST", "busybox", "sh", "-c",
                        'cat; echo "$LABTUI_C_TEST"'], input="hello\n", env=env, capture_output=True,
                       text=True, timeout=60)
    assert (p.returncode, p.stdout) == (0, "hello\nfrom-the-caller\n"), p.stderr
    (tmp_path / "bad.tar").write_text("not a tarball\n")
    p = subprocess.run([launcher, "image", "import", "bad.tar"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 125 and "not a tar archive" in p.stderr, p.stderr
    p = subprocess.run([launcher, "inspect"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "usage" in p.stderr


def test_closed_stdin_is_not_mistaken_for_the_socket(launcher, helper):
    """With fd 0 closed, the command's stdin is /dev/null (not the launcher's own socket)."""
    p = subprocess.run(["sh", "-c", f'exec 0<&-; exec {launcher} run --rm -i busybox sh -c "cat; echo done"'],
                       capture_output=True, text=True, timeout=20)
    assert (p.returncode, p.stdout) == (0, "done\n"), p.stderr


def _start(launcher: str, name: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([launcher, "run", "--rm", "--name", name, "busybox", "sleep", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _handled(pid: int, sig: int) -> bool:
    """sig was delivered to pid and its handler has returned: neither pending (sent signals are
    pending at once, kill(2)) nor blocked (a handler runs with its signal blocked, and the
    launcher's ^Z handler holds SIGCONT too)."""
    st = proc_status(pid)
    bits = int(st["SigPnd"], 16) | int(st["ShdPnd"], 16) | int(st["SigBlk"], 16)
    return not bits & ((1 << (sig - 1)) | (1 << (signal.SIGCONT - 1)))


def test_signals_reach_the_container_and_ctrl_z_stops_and_resumes_the_worker(launcher, helper):
    """The launcher runs as a job of its own (process_group=0), as a shell with job control
    starts it: pytest's own group may be orphaned (a CI runner, setsid, nohup), and there the
    kernel discards ^Z (next test)."""
    name = f"launcher-c-sig-{os.getpid()}"
    p = _start(launcher, name, process_group=0)
    try:
        worker = proxying_worker(p, name)
        p.send_signal(signal.SIGTSTP)
        wait_for(lambda: process_state(p.pid) == "T" and process_state(worker) == "T", what="both stopped")
        p.send_signal(signal.SIGCONT)
        wait_for(lambda: process_state(p.pid) != "T" and process_state(worker) != "T", what="both running again")
        p.send_signal(signal.SIGTERM)  # docker's --sig-proxy: to the container's main process
        assert p.wait(timeout=20) == 128 + signal.SIGTERM
    finally:
        p.kill()
        p.wait()
        labtui("rm", "-f", name, check=False)


def test_ctrl_z_in_an_orphaned_process_group_leaves_both_running(launcher, helper):
    """A launcher whose process group has no job-control shell above it (a session of its own
    here): the kernel discards its SIGTSTP, as it would the ordinary command's (signal(7)), and
    the worker it stopped first must go on with it rather than stay stopped for good. Were it
    left stopped, the SIGTERM after would wait in it for ever and the launcher with it."""
    name = f"launcher-c-orphan-{os.getpid()}"
    p = _start(launcher, name, start_new_session=True)
    try:
        worker = proxying_worker(p, name)
        p.send_signal(signal.SIGTSTP)
        wait_for(lambda: _handled(p.pid, signal.SIGTSTP), what="the launcher to handle ^Z")
        wait_for(lambda: process_state(p.pid) != "T" and process_state(worker) != "T", what="both running")
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 128 + signal.SIGTERM
    finally:
        p.kill()
        p.wait()
        labtui("rm", "-f", name, check=False)


def test_a_worker_left_stopped_dies_with_its_launcher(launcher, helper):
    """^Z, then the launcher is killed: the worker stays stopped (SIGIO cannot run its handler),
    so the helper, seeing the caller's end close, resumes it, and it dies as its caller did."""
    name = f"launcher-c-stopped-{os.getpid()}"
    p = _start(launcher, name, process_group=0)
    try:
        worker = proxying_worker(p, name)
        gone = os.pidfd_open(worker)
        p.send_signal(signal.SIGTSTP)
        wait_for(lambda: process_state(p.pid) == "T" and process_state(worker) == "T", what="both stopped")
        p.kill()
        p.wait()
        # A pidfd turns readable when its process ends (pidfd_open(2)): no PID reuse to mistake.
        assert select.select([gone], [], [], 20)[0], "the stopped worker outlived its launcher"
        os.close(gone)
    finally:
        p.kill()
        p.wait()
        labtui("rm", "-f", name, check=False)


def test_a_worker_killed_by_a_signal_kills_the_launcher_with_it(launcher, helper):
    name = f"launcher-c-kill-{os.getpid()}"
    p = _start(launcher, name)
    try:
        os.kill(proxying_worker(p, name), signal.SIGKILL)
        assert p.wait(timeout=20) == -signal.SIGKILL
    finally:
        p.kill()
        p.wait()
        labtui("rm", "-f", name, check=False)


def test_without_a_helper_python_runs_it_and_starts_one(launcher, tmp_path):
    with own_state_dir("labtui-launcher-") as root:
        env = dict(os.environ, LABTUI_ROOT=root)
        assert helper_pid(root) is None
        p = subprocess.run([launcher, "run", "--rm", "busybox", "sh", "-c", "exit 5"], env=env,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 5, p.stderr
        # Only launch.py's ordinary way starts a helper: it ran, and made one for what comes next.
        pid = wait_for(lambda: helper_pid(root), timeout=HELPER_START, what="a helper for the next command")
        p, calls = execs(launcher, tmp_path, "ps", env=env)
        assert p.returncode == 0 and len(calls) == 1, calls
        assert helper_pid(root) == pid


def test_stale_helper_or_not_root_fall_back_to_the_ordinary_way(launcher, helper, tmp_path):
    old = helper_pid()
    assert old, "no helper serves"
    target = REPO / "labtui" / "cli" / "attach_client.py"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    try:
        p = subprocess.run([launcher, "ps"], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and "CONTAINER ID" in p.stdout, p.stderr
        assert f"{target} changed" in helper_log()  # the helper says why it turned the command away
        wait_for(lambda: not Path(f"/proc/{old}").exists(), what="the stale helper to leave")
        # The stale helper let its lock go as it turned the command away: the helper that
        # command started takes over at once.
        wait_for(lambda: helper_pid(), timeout=HELPER_START, what="the new helper the ordinary way started")
    finally:
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        fresh_helper()  # the new one may have stamped the changed time: stale from now on
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", launcher, "ps"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 125 and "must run as root" in p.stderr
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", launcher, "--help"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "usage" in p.stdout.lower()
    # No worker is left behind (one that served an earlier command may still be freeing its memory).
    wait_for(lambda: not [c for _, c in our_processes() if c == "labtui-worker"], what="no worker left")
