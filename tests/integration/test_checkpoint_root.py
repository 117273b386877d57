"""Checkpoint/restore with CRIU through the CLI, against the real kernel.

A counter loop is checkpointed (it stops), restored (it goes on from where it was, with the same
PIDs inside its PID namespace and its files intact), checkpointed with --leave-running, and the
refusals and CRIU's own failure reasons are checked. The tests that need a working CRIU skip when
`criu check` fails here (scripts/install-criu installs one), except in CI, where they fail.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from tests.helpers import inspect, labtui, lib, proc_status, run_d, wait_for

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("clean_containers")]

COUNTER = "echo hello > /tmp/marker; i=0; while true; do i=$((i+1)); echo $i > /tmp/count; echo $i; sleep 0.1; done"


def _criu_problem() -> str | None:
    from engine import checkpoint
    from engine.errors import EngineError

    try:
        checkpoint.require_criu()
    except EngineError as e:
        return str(e)
    return None


@pytest.fixture(scope="module")
def criu() -> None:
    problem = _criu_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CRIU must work in CI (scripts/install-criu): {problem}")
        pytest.skip(f"no working CRIU here: {problem}")


def _cdir(cid: str) -> Path:
    return lib() / "containers" / cid


def _pid(ref: str) -> int:
    return inspect(ref)["State"]["Pid"]


def _main_pid(init_pid: int) -> int:
    def kid() -> int | None:
        try:
            with open(f"/proc/{init_pid}/task/{init_pid}/children") as f:
                kids = f.read().split()
        except OSError:
            return None
        return int(kids[0]) if kids else None

    return wait_for(kid, what="the container's command")


def _nspid(pid: int) -> list[int]:
    return [int(x) for x in proc_status(pid)["NSpid"].split()]


def _read_count(path: str) -> int:
    """`echo $i > f` truncates before it writes: an empty read is retried, not taken for 0."""
    return int(wait_for(lambda: Path(path).read_text().strip(), what=f"a number in {path}", interval=0.01))


def _count_in(pid: int) -> int:
    """The counter as the container sees it, read through its root from the host."""
    return _read_count(f"/proc/{pid}/root/tmp/count")


def _last_count(cid: str) -> int:
    """Where a stopped counter got to: the file is empty if it died mid-write, so the log too."""
    text = (_cdir(cid) / "upper/tmp/count").read_text().strip()
    return max(_log_numbers(cid) + ([int(text)] if text else []), default=0)


def _log_numbers(ref: str) -> list[int]:
    return [int(x) for x in labtui("logs", ref).stdout.split() if x.isdigit()]


def _events(cid: str) -> list[dict]:
    out = labtui("events", "--format", "json").stdout
    return [e for e in (json.loads(line) for line in out.splitlines() if line.strip()) if e.get("container") == cid]


def _steps(ref: str) -> list[dict]:
    return [json.loads(line) for line in labtui("steps", ref, "--format", "json").stdout.splitlines() if line.strip()]


def _counter(name: str) -> tuple[str, int, int]:
    cid = run_d("--name", name, "busybox", "sh", "-c", COUNTER)
    init_pid = _pid(cid)
    wait_for(lambda: _count_in(init_pid) >= 5 if os.path.exists(f"/proc/{init_pid}/root/tmp/count") else False,
             what="the counter to reach 5")
    return cid, init_pid, _main_pid(init_pid)


def test_checkpoint_stops_and_restore_continues(criu):
    cid, init_pid, main_pid = _counter("ckpt-counter")
    main_inside = _nspid(main_pid)[-1]
    assert _nspid(init_pid)[-1] == 1

    p = labtui("checkpoint", "ckpt-counter", "c1")
    assert p.stdout.strip() == "c1"
    c = inspect(cid)
    assert c["State"]["Status"] == "exited"
    assert not os.path.exists(f"/proc/{init_pid}/status") or "Z" in proc_status(init_pid).get("State", "")
    frozen = _last_count(cid)
    time.sleep(0.5)
    assert _last_count(cid) == frozen, "the counter went on after the checkpoint"

    d = _cdir(cid) / "checkpoints" / "c1"
    manifest = json.loads((d / "labtui.json").read_text())
    assert (d / "inventory.img").exists() and any(d.glob("pages-*.img"))
    assert manifest["name"] == "c1" and manifest["pids_inside"][:2] == [1, main_inside]
    assert set(manifest["stdio"]) >= {"stdout", "stderr"}
    dump = [s for s in _steps(cid) if s["mechanism"] == "checkpoint" and s["op"] == "criu dump"]
    assert dump and dump[-1]["result"] == "ok" and " dump --tree " in dump[-1]["shell"]
    assert any(e["type"] == "checkpointed" and e.get("checkpoint") == "c1" for e in _events(cid))

    p = labtui("restore", "ckpt-counter", "c1")
    assert p.stdout.strip() == "ckpt-counter"
    c = inspect(cid)
    assert c["State"]["Status"] == "running"
    new_init = c["State"]["Pid"]
    assert _nspid(new_init)[-1] == 1
    new_main = _main_pid(new_init)
    assert _nspid(new_main)[-1] == main_inside, "the command's PID inside the container changed"
    assert proc_status(new_init)["PPid"] == str(c["State"]["SupervisorPid"])

    # It goes on from where it was: never back to 1, soon past the checkpointed value.
    first = _count_in(new_init)
    assert first >= frozen
    wait_for(lambda: _count_in(new_init) >= frozen + 3, what="the counter to go on")
    assert _count_in(new_init) < frozen + 100
    assert Path(f"/proc/{new_init}/root/tmp/marker").read_text() == "hello\n"
    wait_for(lambda: max(_log_numbers(cid)) > frozen + 2, what="output after restore in the log")
    nums = _log_numbers(cid)
    assert all(b > a for a, b in zip(nums, nums[1:], strict=False)), f"the log went back: {nums}"

    restore = [s for s in _steps(cid) if s["mechanism"] == "checkpoint" and s["op"] == "criu restore"]
    assert restore and restore[-1]["result"] == "ok" and "--inherit-fd" in restore[-1]["shell"]
    assert any(e["type"] == "restored" and e.get("checkpoint") == "c1" for e in _events(cid))
    # The restored tree lives in the container's cgroup and its own cgroup namespace.
    cg = inspect(cid).get("Cgroup", {})
    assert cg.get("exists", True)
    assert os.stat(f"/proc/{new_main}/ns/cgroup").st_ino != os.stat("/proc/self/ns/cgroup").st_ino

    labtui("stop", "-t", "2", "ckpt-counter")
    c = inspect(cid)
    assert c["State"]["Status"] == "exited" and c["State"]["ExitCode"] == 143


def test_leave_running_keeps_it_running(criu):
    cid, init_pid, _ = _counter("ckpt-live")
    labtui("checkpoint", "--leave-running", "ckpt-live", "live")
    c = inspect(cid)
    assert c["State"]["Status"] == "running" and c["State"]["Pid"] == init_pid
    at_dump = json.loads((_cdir(cid) / "checkpoints/live/labtui.json").read_text())
    assert at_dump["leave_running"] is True
    before = _count_in(init_pid)
    wait_for(lambda: _count_in(init_pid) >= before + 5, what="the counter to keep counting")
    ev = [e for e in _events(cid) if e["type"] == "checkpointed"]
    assert ev and ev[-1]["leave_running"] is True
    again = labtui("checkpoint", "--leave-running", "ckpt-live", "live", check=False)
    assert again.returncode == 125 and "already has a checkpoint named 'live'" in again.stderr
    listed = [json.loads(line) for line in labtui("checkpoint", "--list", "ckpt-live").stdout.splitlines()]
    assert [m["name"] for m in listed] == ["live"]

    # Restoring brings back the memory of the checkpoint: the counter goes back, then on.
    labtui("stop", "-t", "1", "ckpt-live")
    stopped_at = _last_count(cid)
    labtui("restore", "ckpt-live", "live")
    new_init = _pid(cid)
    wait_for(lambda: _count_in(new_init) != stopped_at, what="the restored counter to write")
    assert _count_in(new_init) < stopped_at


TCP_ECHO = ("nc -ll -p 5000 -e cat & sleep 0.3; "
            "(i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done) | nc 127.0.0.1 5000 > /tmp/echo")


def _echoed(path: str) -> int:
    """The last number that came back through the container's TCP echo server."""
    try:
        nums = [int(x) for x in Path(path).read_text().split("\n")[:-1] if x.isdigit()]
    except FileNotFoundError:
        return 0
    return nums[-1] if nums else 0


def test_tcp_connection_survives(criu):
    """A TCP connection over the container's loopback, in repair mode (--tcp-established)."""
    cid = run_d("--name", "ckpt-tcp", "busybox", "sh", "-c", TCP_ECHO)
    init_pid = _pid(cid)
    wait_for(lambda: _echoed(f"/proc/{init_pid}/root/tmp/echo") >= 3, what="the echo to flow")
    p = labtui("checkpoint", "ckpt-tcp", check=False)
    if p.returncode and "Can't get 1:16 opt" in p.stderr:
        pytest.skip("this CRIU predates Linux 6.16's socket option change (scripts/install-criu patches it)")
    assert p.returncode == 0, p.stderr
    at = _echoed(str(_cdir(cid) / "upper/tmp/echo"))
    labtui("restore", "ckpt-tcp")
    new_init = _pid(cid)
    wait_for(lambda: _echoed(f"/proc/{new_init}/root/tmp/echo") >= at + 3, what="the echo to go on after restore")


def test_restore_missing_checkpoint_is_an_error(criu):
    cid = run_d("--name", "ckpt-none", "busybox", "sleep", "60")
    labtui("stop", "-t", "1", cid)
    p = labtui("restore", "ckpt-none", "nope", check=False)
    assert p.returncode == 125
    assert "no checkpoint named 'nope'" in p.stderr and "Traceback" not in p.stderr
    p = labtui("restore", "ckpt-none", "../x", check=False)
    assert p.returncode == 125 and "invalid checkpoint name" in p.stderr


def test_checkpoint_of_stopped_container_refused():
    cid = run_d("--name", "ckpt-done", "busybox", "true")
    wait_for(lambda: inspect(cid)["State"]["Status"] == "exited", what="the container to exit")
    p = labtui("checkpoint", "ckpt-done", check=False)
    assert p.returncode == 125
    assert "not running" in p.stderr and "Traceback" not in p.stderr
    assert not (_cdir(cid) / "checkpoints" / "checkpoint").exists()


def _fake_criu(tmp_path: Path, check_output: str, code: int = 1) -> str:
    path = tmp_path / "criu"
    path.write_text("#!/bin/sh\n"
                    'if [ "$1" = --version ]; then echo "Version: 3.17.1"; exit 0; fi\n'
                    f'if [ "$1" = check ]; then cat <<\'EOF\'\n{check_output}\nEOF\nexit {code}; fi\n'
                    "echo unexpected >&2; exit 2\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_failing_criu_check_reports_criu_reason(tmp_path):
    cid = run_d("--name", "ckpt-nocriu", "busybox", "sleep", "60")
    fake = _fake_criu(tmp_path, "Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds\n"
                                "Error (criu/vdso.c:613): vdso: Failed to fill self vdso symtable")
    env = dict(os.environ, LABTUI_CRIU=fake)
    p = labtui("checkpoint", "ckpt-nocriu", env=env, check=False)
    assert p.returncode == 125
    assert "vdso: Failed to fill self vdso symtable" in p.stderr
    assert "criu check" in p.stderr and "Traceback" not in p.stderr
    assert inspect(cid)["State"]["Status"] == "running", "a refused checkpoint must leave it running"
    check = [s for s in _steps(cid) if s["op"] == "criu check"]
    assert check and check[-1]["result"] != "ok"

    env = dict(os.environ, LABTUI_CRIU=str(tmp_path / "missing"))
    p = labtui("checkpoint", "ckpt-nocriu", env=env, check=False)
    assert p.returncode == 125 and "needs CRIU" in p.stderr and "Traceback" not in p.stderr


def test_real_old_criu_reason_if_present():
    """bookworm's own CRIU 3.17, where installed, fails `criu check` on kernels past 6.1: the
    reason shown is CRIU's (nothing to check where it passes or is absent)."""
    import subprocess

    old = "/usr/sbin/criu"
    if not os.access(old, os.X_OK):
        pytest.skip("no /usr/sbin/criu")
    p = subprocess.run([old, "check"], capture_output=True, text=True, timeout=60)
    if p.returncode == 0:
        pytest.skip("/usr/sbin/criu passes `criu check` on this kernel")
    cid = run_d("--name", "ckpt-oldcriu", "busybox", "sleep", "60")
    r = labtui("checkpoint", "ckpt-oldcriu", env=dict(os.environ, LABTUI_CRIU=old), check=False)
    assert r.returncode == 125 and "criu check" in r.stderr and "Traceback" not in r.stderr
    from engine.checkpoint import criu_reason

    assert criu_reason(p.stdout + p.stderr).split(";")[0] in r.stderr
    assert inspect(cid)["State"]["Status"] == "running"
