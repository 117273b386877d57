"""The installed `labtui` command (labtui/launcher/launch.py) and its warm helper (labtui/launcher/helper.py).

The command must behave exactly as when it runs in its own process: output on the caller's own
stdout and stderr, stdin, environment, exit codes, signals passed on, a killed caller taking its
command down with it, and stale code never used.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers import (
    HELPER_START,
    fresh_helper,
    helper_log,
    helper_pid,
    inspect,
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
LAUNCH = [sys.executable, "-SI", str(REPO / "labtui" / "launcher" / "launch.py")]
COLD = [sys.executable, "-m", "labtui.cli"]


def launch(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    return subprocess.run(LAUNCH + list(args), text=True, timeout=60, env=env, **kw)


def sock(root: str | None = None) -> Path:
    return Path(root or os.environ["LABTUI_ROOT"]) / "run" / "helper.sock"


@pytest.fixture(scope="module")
def helper():
    """A helper for this test run's state directory, started from this process (whatever an
    earlier test left is stopped first: tests/helpers.py fresh_helper), stopped at the end."""
    from labtui.launcher import helper as helper_mod

    yield fresh_helper()
    helper_mod.stop()
    assert wait_for(lambda: not sock().exists(), what="the helper's socket to go")


def served_by_helper(*args: str, **kw) -> subprocess.CompletedProcess:
    """Run through the launcher and prove the helper did it: the launcher itself never imported
    the CLI (python -X importtime lists every import on stderr)."""
    p = subprocess.run(LAUNCH[:1] + ["-X", "importtime"] + LAUNCH[1:] + list(args), text=True,
                       capture_output=True, timeout=60, **kw)
    imports = [ln for ln in p.stderr.splitlines() if ln.startswith("import time:")]
    assert imports and not any("labtui.cli" in ln for ln in imports), p.stderr
    p.stderr = "\n".join(ln for ln in p.stderr.splitlines() if not ln.startswith("import time:"))
    return p


def test_run_through_the_helper_keeps_stdio_and_exit_code(helper):
    p = served_by_helper("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert p.returncode == 3
    assert p.stdout == "out\n"
    assert p.stderr.strip() == "err"


def test_stdin_environment_and_working_directory_reach_the_command(helper, tmp_path):
    env = dict(os.environ, LABTUI_HELPER_TEST="from-the-caller")
    p = served_by_helper("run", "--rm", "-i", "-e", "LABTUI_HELPER_TEST", "busybox", "sh", "-c",
                         'cat; echo "$LABTUI_HELPER_TEST"', input="hello\n", env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "hello\nfrom-the-caller\n"
    # A relative path is the caller's: found in the caller's directory, not the helper's.
    (tmp_path / "bad.tar").write_text("not a tarball\n")
    p = served_by_helper("image", "import", "bad.tar", cwd=tmp_path)
    assert p.returncode == 125 and "not a tar archive" in p.stderr, p.stderr


def test_closed_stdin_is_not_mistaken_for_the_socket(helper):
    """With fd 0 closed, the command's stdin is /dev/null (not the launcher's own socket)."""
    cmd = " ".join(LAUNCH) + ' run --rm -i busybox sh -c "cat; echo done"'
    p = subprocess.run(["sh", "-c", f"exec 0<&-; exec {cmd}"], capture_output=True, text=True, timeout=20)
    assert (p.returncode, p.stdout) == (0, "done\n"), p.stderr


def test_errors_and_usage_come_back_as_from_the_ordinary_command(helper):
    p = served_by_helper("run", "--rm", "no-such-image")
    assert p.returncode == 125 and "no-such-image" in p.stderr
    p = served_by_helper("run", "--rm", "busybox", "no-such-command")
    assert p.returncode == 127
    p = served_by_helper("inspect")
    assert p.returncode == 2 and "usage" in p.stderr


def test_signals_to_the_caller_reach_the_container(helper):
    name = f"helper-sig-{os.getpid()}"
    p = subprocess.Popen(LAUNCH + ["run", "--rm", "--name", name, "busybox", "sleep", "30"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proxying_worker(p, name)
        p.send_signal(signal.SIGTERM)  # docker's --sig-proxy: to the container's main process
        assert p.wait(timeout=20) == 128 + signal.SIGTERM, p.stderr.read().decode(errors="replace")[-2000:]
    finally:
        p.kill()
        p.wait()
        labtui("rm", "-f", name, check=False)
    assert labtui("inspect", name, check=False).returncode != 0  # --rm removed it


def _handled(pid: int, sig: int) -> bool:
    """sig was delivered to pid and its handler has returned: neither pending (sent signals are
    pending at once, kill(2)) nor blocked (the launcher's ^Z handler holds SIGCONT), and, in the
    Python launcher, no Python-level handler still to run (its C handler only flags the signal,
    so the launcher's one thread wakes from recv(2): state R until it waits again)."""
    st = proc_status(pid)
    bits = int(st["SigPnd"], 16) | int(st["ShdPnd"], 16) | int(st["SigBlk"], 16)
    return not bits & ((1 << (sig - 1)) | (1 << (signal.SIGCONT - 1))) and process_state(pid) == "S"


@pytest.mark.parametrize("orphaned", [False, True], ids=["job", "orphaned-group"])
def test_ctrl_z_stops_the_worker_with_its_caller_unless_the_kernel_discards_it(helper, orphaned):
    """As a job of its own (a shell's), ^Z stops the launcher and its worker, SIGCONT resumes
    both. In an orphaned process group (a session of its own) the kernel discards the
    launcher's SIGTSTP (signal(7)): the worker it stopped first goes on with it. Were it left
    stopped, the SIGTERM after would wait in it for ever, and the launcher with it."""
    name = f"helper-tstp-{os.getpid()}-{int(orphaned)}"
    p = subprocess.Popen(LAUNCH + ["run", "--rm", "--name", name, "busybox", "sleep", "30"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         **({"start_new_session": True} if orphaned else {"process_group": 0}))
    try:
        worker = proxying_worker(p, name)
        p.send_signal(signal.SIGTSTP)
        if orphaned:
            wait_for(lambda: _handled(p.pid, signal.SIGTSTP), what="the launcher to handle ^Z")
            wait_for(lambda: process_state(p.pid) != "T" and process_state(worker) != "T", what="both running")
        else:
            wait_for(lambda: process_state(p.pid) == "T" and process_state(worker) == "T", what="both stopped")
            p.send_signal(signal.SIGCONT)
            wait_for(lambda: process_state(p.pid) != "T" and process_state(worker) != "T", what="both running again")
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 128 + signal.SIGTERM
    finally:
        p.kill()
        p.wait()
        labtui("rm", "-f", name, check=False)


def _status(name: str) -> str | None:
    """Through the ordinary CLI: no worker of the helper's own (LABTUI_TEST_VIA=launcher)."""
    p = subprocess.run(COLD + ["inspect", name], capture_output=True, text=True, timeout=30)
    return json.loads(p.stdout)[0]["State"]["Status"] if p.returncode == 0 else None


def test_killed_caller_kills_its_command_but_not_the_container(helper):
    name = f"helper-kill-{os.getpid()}"
    p = subprocess.Popen(LAUNCH + ["run", "--name", name, "busybox", "sleep", "30"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        worker = proxying_worker(p, name)  # the container runs, and its command is attached to it
        gone = os.pidfd_open(worker)
        p.kill()
        p.wait()
        # A pidfd turns readable when its process ends (pidfd_open(2)): no PID reuse to mistake.
        assert select.select([gone], [], [], 20)[0], "the worker outlived its caller"
        os.close(gone)
        assert _status(name) == "running"  # the supervisor is detached
    finally:
        p.kill()
        p.wait()
        labtui("rm", "-f", name, check=False)


# A helper whose worker ended and whose caller went, both in one wake-up of its loop: the
# worker's end is taken first (epoll reports in the order they became ready).
ENDED_TOGETHER = """
import os, select, selectors, socket
from labtui.launcher.helper import Helper
h = Helper(900)
conn, caller = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
child = os.fork()
if child == 0:
    os._exit(3)
pidfd = os.pidfd_open(child)
select.select([pidfd], [], [])  # the worker is done,
caller.close()                  # then its caller goes
h.workers[pidfd] = (child, conn)
h.sel.register(pidfd, selectors.EVENT_READ, "worker")
h.sel.register(conn, selectors.EVENT_READ, ("client", pidfd))
h.stopping = True  # serve() returns once no worker is left
h.serve()
print("served on")
"""


def test_a_worker_and_its_caller_ending_together_do_not_crash_the_helper():
    """Reaping the worker closes its caller's connection; the caller's own event, from the same
    select(), must then be dropped. (It was handled, on the closed socket: the helper died, the
    next command ran cold and started another, and tests looking for the first one's workers
    found none.)"""
    p = subprocess.run([sys.executable, "-c", ENDED_TOGETHER], capture_output=True, text=True, timeout=60,
                       cwd=REPO)
    assert (p.returncode, p.stdout) == (0, "served on\n"), p.stderr


def test_stale_helper_is_not_used_and_is_replaced(helper):
    old = helper_pid()
    assert old, "no helper serves"
    target = REPO / "labtui" / "cli" / "attach_client.py"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    try:
        p = launch("ps")
        assert p.returncode == 0
        assert f"{target} changed" in helper_log()  # the helper says why it turned the command away
        wait_for(lambda: not Path(f"/proc/{old}").exists(), what="the stale helper to leave")
        # It let its lock go as it turned the command away: the helper that command started
        # takes over at once, and the next command works.
        wait_for(lambda: helper_pid(), timeout=HELPER_START, what="a new helper")
        assert launch("ps").returncode == 0
    finally:
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        fresh_helper()  # the new one stamped the changed time: stale from now on, for the tests below


def test_idle_helper_leaves_and_non_root_never_uses_one():
    root = tempfile.mkdtemp(prefix="labtui-helper-", dir="/var/tmp")
    env = dict(os.environ, LABTUI_ROOT=root, LABTUI_HELPER_IDLE="1")
    try:
        assert launch("ps", env=env).returncode == 0
        # Its lock names it from its start (a second idle, it may be gone before one looks for its socket).
        lock = Path(root) / "run" / "helper.lock"
        pid = wait_for(lambda: lock.exists() and int(lock.read_text().strip() or 0), timeout=HELPER_START,
                       what="the helper to start")
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=HELPER_START, what="the idle helper to leave")
        assert not sock(root).exists()
        p = launch("ps", env=dict(env, LABTUI_HELPER="0"))
        assert p.returncode == 0
        time.sleep(0.3)
        assert helper_pid(root) is None  # LABTUI_HELPER=0: ordinary way only, no helper started
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + LAUNCH + ["ps"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 125 and "must run as root" in p.stderr


# ---- callers confined otherwise than the helper: the cold path, in their own world (trust.py) ---

# Run as `python -c CONFINE STEP ARGS...`: confine this process one way, then exec the launcher
# with ARGS. ctypes and libc, not unshare(1) or capsh(8): nothing to install.
CONFINE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def ok(rc):
    if rc != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
step = sys.argv[1]
if step == "drop-net-raw":
    ok(libc.prctl(24, 13, 0, 0, 0))  # PR_CAPBSET_DROP CAP_NET_RAW: exec then leaves it out of every set
elif step == "netns":
    ok(libc.unshare(0x40000000))  # CLONE_NEWNET: a network namespace with only lo
elif step.startswith("mntns:"):
    ok(libc.unshare(0x00020000))  # CLONE_NEWNS
    ok(libc.mount(None, b"/", None, 0x4000 | 0x40000, None))  # MS_REC|MS_PRIVATE: nothing leaks out
    d = step.split(":", 1)[1].encode()
    ok(libc.mount(b"tmpfs", d, b"tmpfs", 0, b"size=1m"))  # seen in this namespace only
    with open(os.path.join(d, b"only-here"), "w") as f:
        f.write("the caller's tmpfs\\n")
os.execv(sys.argv[2], sys.argv[2:])
"""


def confined(step: str, *args: str) -> tuple[int, int, str, str]:
    """Confined by `step`, the launcher runs ARGS: (its PID, exit code, stdout, stderr)."""
    p = subprocess.Popen([sys.executable, "-c", CONFINE, step, *LAUNCH, *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=60)
    return p.pid, p.returncode, out, err


def refused(pid: int) -> str:
    """The helper's log line about PID, if it refused it."""
    log = (Path(os.environ["LABTUI_ROOT"]) / "run" / "helper.log").read_text()
    return next((ln for ln in log.splitlines() if f"refused PID {pid}:" in ln), "")


def test_a_caller_without_a_capability_runs_cold_and_its_container_lacks_it_too(helper):
    """CAP_NET_RAW (docker's default set has it) dropped from the caller's bounding set: the
    helper, which has it, refuses; the command runs in the caller, and so does its container,
    which gets what the caller has and no more."""
    pid, rc, out, err = confined("drop-net-raw", "run", "--rm", "busybox", "grep", "CapBnd", "/proc/self/status")
    assert rc == 0, err
    assert not int(out.split()[1], 16) & (1 << 13)  # no CAP_NET_RAW in the container
    assert "capability bounding set" in refused(pid)
    served = served_by_helper("run", "--rm", "busybox", "grep", "CapBnd", "/proc/self/status")
    assert int(served.stdout.split()[1], 16) & (1 << 13)  # a trusted caller's container has it


def test_a_caller_in_another_network_namespace_runs_cold_in_it(helper):
    """`--network host` is the caller's network: here a namespace with only lo, not the helper's."""
    pid, rc, out, err = confined("netns", "run", "--rm", "--network", "host", "busybox", "cat", "/proc/net/dev")
    assert rc == 0, err
    assert [ln.split(":")[0].strip() for ln in out.splitlines()[2:]] == ["lo"]
    assert "net namespace" in refused(pid)


def test_a_caller_in_another_mount_namespace_runs_cold_and_sees_its_own_mounts(helper, tmp_path):
    """A tmpfs mounted only in the caller's mount namespace reaches its container through a bind
    volume: the container was made in the caller's world. (Served by the helper, the same
    directory would be empty.)"""
    d = tmp_path / "caller-only"
    d.mkdir()
    pid, rc, out, err = confined(f"mntns:{d}", "run", "--rm", "-v", f"{d}:/m", "busybox", "cat", "/m/only-here")
    assert (rc, out) == (0, "the caller's tmpfs\n"), err
    assert "mnt namespace" in refused(pid)
    assert not (d / "only-here").exists()  # and the host never saw it


def test_no_worker_or_helper_left_behind(helper):
    # A worker reports its command's end before it frees its memory (at nice 19): it may take a moment.
    wait_for(lambda: not [c for _, c in our_processes() if c == "labtui-worker"], what="no worker left")


def test_helper_whose_run_directory_is_wiped_leaves():
    """/run/labtui emptied (as by a reboot or by hand): the helper can no longer be reached and
    must not linger, and the next command starts a new one."""
    import shutil

    with own_state_dir() as root:
        env = dict(os.environ, LABTUI_ROOT=root)
        assert launch("ps", env=env).returncode == 0
        wait_for(lambda: helper_pid(root), timeout=HELPER_START, what="the helper to start")
        pid = helper_pid(root)
        shutil.rmtree(Path(root) / "run")
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=15, what="the unreachable helper to leave")
        assert launch("ps", env=env).returncode == 0
        wait_for(lambda: helper_pid(root), timeout=HELPER_START, what="a new helper")


def test_the_helpers_directory_and_files_are_private_under_any_umask():
    """Started by, and serving, commands run under umask 000: the run directory is 0700 and
    everything the helper writes there is 0600 (modes given, not umask-made)."""
    with own_state_dir() as root:
        env = dict(os.environ, LABTUI_ROOT=root)
        assert launch("ps", env=env, umask=0).returncode == 0
        wait_for(lambda: helper_pid(root), timeout=HELPER_START, what="the helper to start")
        assert launch("ps", env=env, umask=0).returncode == 0  # served
        run = Path(root) / "run"
        assert oct(run.stat().st_mode & 0o777) == oct(0o700)
        files = ["helper.lock", "helper.log", "helper.sock"]
        assert sorted(f.name for f in run.glob("helper*")) == files
        assert {f: oct((run / f).stat().st_mode & 0o777) for f in files} == {f: oct(0o600) for f in files}


# ---- without a helper: the supervisor-to-be forked first (labtui/launcher/spare.py prefork) -------------

NO_HELPER = dict(os.environ, LABTUI_HELPER="0")


def cold_spares() -> list[int]:
    """labtui-spare processes of ours that no helper made (the helper keeps its own)."""
    def parent_comm(pid: int) -> str:
        try:
            ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
            return Path(f"/proc/{ppid}/comm").read_text().strip()
        except (OSError, IndexError):
            return ""
    return [pid for pid, c in our_processes() if c == "labtui-spare" and parent_comm(pid) != "labtui-helper"]


def test_cold_run_hands_the_container_to_the_supervisor_forked_at_start(tmp_path):
    """The command's first fork is its container's supervisor, made before the container's
    directory existed (strace on the command alone, not -f: the supervisor runs untraced)."""
    trace = tmp_path / "trace"
    name = f"cold{os.getpid()}"
    p = subprocess.run(["strace", "-qq", "-o", str(trace), "-e", "trace=clone,clone3,fork,vfork,mkdir",
                        "-e", "signal=none", *LAUNCH, "run", "-d", "--name", name, "busybox", "sleep", "30"],
                       capture_output=True, text=True, timeout=60, env=NO_HELPER)
    try:
        assert p.returncode == 0, p.stderr
        cid = p.stdout.strip()
        lines = trace.read_text().splitlines()
        forks = [i for i, line in enumerate(lines) if line.startswith(("clone", "fork", "vfork"))]
        made = next(i for i, line in enumerate(lines) if line.startswith("mkdir(") and f"/{cid}\"" in line
                    and line.endswith("= 0"))
        assert forks and forks[0] < made, lines
        first_child = int(lines[forks[0]].rsplit("=", 1)[1])
        assert inspect(name)["State"]["SupervisorPid"] == first_child
        # It imported on another CPU than the command's, and then got every CPU back: the
        # supervisor (and what it clones) may run anywhere.
        assert os.sched_getaffinity(first_child) == os.sched_getaffinity(0)
        assert labtui("exec", name, "true").returncode == 0
    finally:
        labtui("rm", "-f", name, check=False)


def test_cold_command_that_starts_no_container_leaves_no_spare():
    """A `run` that fails before its container exists, or `start` of a running one: the forked
    process is told nothing, sees its socket close, and leaves with the command."""
    name = f"coldst{os.getpid()}"
    try:
        p = launch("run", "--rm", "no-such-image", env=NO_HELPER)
        assert p.returncode == 125 and "image 'no-such-image' not found" in p.stderr
        labtui("run", "-d", "--name", name, "busybox", "sleep", "30")
        p = launch("start", name, env=NO_HELPER)
        assert p.returncode == 0, p.stderr
        assert wait_for(lambda: not cold_spares(), what="the unused spare to leave")
        assert len([c for _, c in our_processes() if c == "labtui-sup"]) == 1
    finally:
        labtui("rm", "-f", name, check=False)


def test_cold_detached_run_does_not_hold_the_callers_output():
    """`$(labtui run -d ...)` reads to EOF: neither the spare nor the supervisor keeps the pipe."""
    t0 = time.monotonic()
    p = launch("run", "-d", "--rm", "busybox", "sleep", "30", env=NO_HELPER)
    try:
        assert p.returncode == 0, p.stderr
        assert time.monotonic() - t0 < 10
    finally:
        labtui("rm", "-f", p.stdout.strip(), check=False)
