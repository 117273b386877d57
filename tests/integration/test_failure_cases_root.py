"""Failure cases of docs/FAILURE_CASES.md that no other test reproduced, on the real kernel.

Each test breaks one thing the way it breaks on a lab VM and checks what the kernel did, what
labtui did, and what the user sees, as the document says. (The other cases there name the tests
that already reproduce them: tests/unit/test_reports.py checks that each named test exists.)
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.helpers import inspect, labtui, lib, proc_status, ps_json, run_d, wait_for

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("clean_containers")]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cgroup_dirs(cid: str) -> list[str]:
    parent = os.environ["LABTUI_CGROUP_PARENT"]
    out = []
    for base in ("/sys/fs/cgroup", *(f"/sys/fs/cgroup/{d}" for d in os.listdir("/sys/fs/cgroup"))):
        if os.path.isdir(f"{base}/{parent}/{cid}"):
            out.append(f"{base}/{parent}/{cid}")
    return out


# ---- the supervisor SIGKILLed: the container's stdout has no reader any more ---------------------

def test_a_container_that_writes_after_its_supervisor_was_killed_dies_of_sigpipe():
    """The supervisor holds the read ends of the container's stdout and stderr pipes. Killed, it
    takes them with it: the next write(2) of the container gets EPIPE with SIGPIPE, whose default
    action ends the command (PID 2), and with it PID 1 and the whole PID namespace. Nobody is left
    to record the exit: `ps` says `Exited (unknown)`, `system check` names the stale record and the
    cgroups left behind, and `rm -f` cleans up. A command that ignores SIGPIPE sees EPIPE and lives
    on; a quiet one (tests/integration/test_core_lifecycle.py) is not touched at all."""
    writer = run_d("--name", "fc-writer", "busybox", "sh", "-c", "sleep 1; echo one; echo two; exec sleep 600")
    trapper = run_d("--name", "fc-trapper", "busybox", "sh", "-c",
                    "trap 'echo got SIGPIPE > /tmp/sigpipe' PIPE; sleep 1; echo one; echo two; exec sleep 600")
    states = {cid: inspect(cid)["State"] for cid in (writer, trapper)}
    for st in states.values():
        os.kill(st["SupervisorPid"], signal.SIGKILL)
    wait_for(lambda: not _alive(states[writer]["Pid"]), timeout=15, what="the writer's init to die")
    # The one that traps SIGPIPE got it too, and goes on.
    marker = lib() / "containers" / trapper / "upper" / "tmp" / "sigpipe"
    wait_for(marker.exists, timeout=15, what="the trap's marker file")
    assert marker.read_text() == "got SIGPIPE\n"
    assert _alive(states[trapper]["Pid"])
    rows = {r["Id"]: r for r in ps_json()}
    assert rows[writer]["State"] == "exited" and rows[writer]["Status"] == "Exited (unknown)", rows[writer]
    assert rows[trapper]["State"] == "running"
    # Nobody recorded the exit or removed the cgroups: `system check` says so.
    assert _cgroup_dirs(writer), "the killed supervisor could not remove the cgroups: expected them left"
    p = labtui("system", "check", check=False)
    assert p.returncode == 1, p.stdout
    lines = [ln for ln in p.stdout.splitlines() if "fc-writer" in ln]
    assert any(ln.startswith("state ") and "is gone" in ln for ln in lines), p.stdout
    assert any(ln.startswith("cgroup ") for ln in lines), p.stdout
    for cid in (writer, trapper):
        labtui("rm", "-f", cid)
        assert not _cgroup_dirs(cid)
        assert not (lib() / "containers" / cid).exists()
    wait_for(lambda: not _alive(states[trapper]["Pid"]), timeout=10, what="the trapper's init to be killed by rm")


# ---- CRIU refusing a container ---------------------------------------------------------------------

def _criu_problem() -> str | None:
    from engine import checkpoint
    from engine.errors import EngineError

    try:
        checkpoint.require_criu()
    except EngineError as e:
        return str(e)
    return None


def test_criu_refuses_a_container_that_strace_already_traces():
    """A process has at most one tracer (ptrace(2)). With `run --strace`, strace on the host traces
    every process of the container, so CRIU's PTRACE_SEIZE of the tree fails with EPERM and the
    dump is abandoned. labtui reports CRIU's own error lines (exit 125, with the log's path), the
    container keeps running, untouched, and no checkpoint is recorded."""
    problem = _criu_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CRIU must work in CI (scripts/install-criu): {problem}")
        pytest.skip(f"no working CRIU here: {problem}")
    cid = run_d("--strace", "--name", "fc-traced", "busybox", "sleep", "600")
    pid = inspect(cid)["State"]["Pid"]
    wait_for(lambda: proc_status(pid)["TracerPid"] != "0", what="strace to trace the init")
    t0 = time.monotonic()
    p = labtui("checkpoint", "fc-traced", "c1", check=False)
    assert p.returncode == 125, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    assert p.stderr.startswith("labtui: checkpoint fc-traced: criu dump failed: "), p.stderr
    assert "Dumping FAILED" in p.stderr and "dump.log" in p.stderr, p.stderr
    assert time.monotonic() - t0 < 30
    d = lib() / "containers" / cid / "checkpoints" / "c1"
    log = (d / "dump.log").read_text()
    assert "Unable to interrupt task" in log and "Operation not permitted" in log, log[-2000:]
    assert not (d / "labtui.json").exists(), "a failed dump must not leave a checkpoint"
    assert labtui("checkpoint", "--list", "fc-traced").stdout.strip() == ""
    st = inspect(cid)["State"]
    assert st["Status"] == "running" and st["Pid"] == pid
    steps = [json.loads(line) for line in labtui("steps", cid, "--format", "json").stdout.splitlines() if line]
    dump = [s for s in steps if s.get("op") == "criu dump"]
    assert dump and dump[-1]["result"] == "failed", dump
