"""The kernel-step stream and the step gate, on the real kernel."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from engine import jsonl
from tests.helpers import LABTUI, labtui, lib, wait_for

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("clean_containers")]


def steps_of(cid: str) -> list[dict]:
    return jsonl.read_all(lib() / "containers" / cid / "steps.jsonl")


def test_a_start_yields_namespace_mount_pivot_exec_in_order():
    cid = labtui("run", "-d", "busybox", "true").stdout.strip()
    labtui("wait", cid)
    steps = steps_of(cid)
    ops = [(s["mechanism"], s["op"]) for s in steps]
    want = [("namespace", "clone"), ("mount", "make-rprivate"), ("rootfs", "mount overlay"), ("mount", "mount"),
            ("rootfs", "pivot_root"), ("rootfs", "umount old root"), ("uts", "sethostname"),
            ("namespace", "unshare"), ("exec", "execve")]
    # The order in which they happened: the child builds its root while the supervisor sets up
    # the cgroup, so seq (the order the supervisor wrote them) interleaves differently from ts.
    by_time = sorted(steps, key=lambda s: s["ts"])
    ops_t = [(s["mechanism"], s["op"]) for s in by_time]
    idx = [ops_t.index(w) for w in want]
    assert idx == sorted(idx), ops_t
    cg = [s for s in steps if s["mechanism"] == "cgroup" and s["target"].endswith("cgroup.procs")]
    unshare = steps[ops.index(("namespace", "unshare"))]
    assert "CLONE_NEWCGROUP" in unshare["value"] and all(c["ts"] < unshare["ts"] for c in cg)
    assert all(s["result"] == "ok" and s["errno"] == 0 for s in steps), [s for s in steps if s["result"] != "ok"]
    seqs = [s["seq"] for s in steps]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    clone = steps[ops.index(("namespace", "clone"))]
    assert "CLONE_NEWPID" in clone["value"] and "CLONE_NEWNS" in clone["value"]
    assert clone["shell"].startswith("unshare ") and "--pid" in clone["shell"]
    overlay = steps[ops.index(("rootfs", "mount overlay"))]
    assert "lowerdir=" in overlay["value"] and overlay["shell"].startswith("mount -t overlay overlay -o lowerdir=")
    for s in steps:
        assert {"seq", "ts", "container", "mechanism", "op", "target", "value", "result", "errno",
                "duration_ms", "shell"} <= set(s), s
        assert s["container"] == cid
    # the same steps are on the host-wide stream
    host = [s for s in jsonl.read_all(lib() / "steps.jsonl") if s.get("container") == cid]
    assert [s["seq"] for s in host] == seqs


def test_steps_can_be_followed_live_while_a_container_starts():
    follower = subprocess.Popen(LABTUI + ["steps", "-f", "--format", "json"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        cid = labtui("run", "-d", "busybox", "true").stdout.strip()
        got = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = follower.stdout.readline()
            rec = json.loads(line)
            if rec.get("container") == cid:
                got.append(rec["op"])
                if rec["op"] == "execve":
                    break
        assert "clone" in got and got[-1] == "execve" and got.index("clone") < got.index("execve")
    finally:
        follower.kill()
        follower.wait()


def test_gate_holds_each_step_until_released():
    starter = subprocess.Popen(LABTUI + ["run", "-d", "--name", "gated", "--gate", "busybox", "true"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (lib() / "names" / "gated").is_symlink(), what="container created")
        cid = (lib() / "names" / "gated").readlink().name
        pending = wait_for(lambda: json.loads(labtui("gate", "show", "gated").stdout or "null")
                           if labtui("gate", "show", "gated").stdout.startswith("{") else None, what="gate")
        assert pending["op"] in ("clone", "build filter")  # the seccomp filter is built before clone
        time.sleep(0.3)
        assert steps_of(cid) == []  # nothing happened while held
        released = 0
        while starter.poll() is None and released < 200:
            before = len(steps_of(cid))
            p = labtui("gate", "next", "gated", check=False)
            if p.returncode != 0:  # the last step went through and the supervisor closed the gate
                assert "no step gate waiting" in p.stderr
                break
            released += 1
            try:
                wait_for(lambda b=before: len(steps_of(cid)) > b or starter.poll() is not None, what="one step")
            except AssertionError:
                raise AssertionError(f"no step after release {released}: last {steps_of(cid)[-1:]}, "
                                     f"pending {labtui('gate', 'show', 'gated').stdout}") from None
            time.sleep(0.05)
            # exactly one gated step per release; ungated records may ride along (the exec
            # confirmation, PID 1 dropping its own capabilities while the command's process waits)
            gated = [s for s in steps_of(cid)[before:] if s.get("gated")]
            assert len(gated) <= 1, gated
        log = lib() / "containers" / cid / "supervisor.log"
        assert starter.wait(timeout=10) == 0, (starter.stderr.read(), log.exists() and log.read_text())
        assert released >= 15
        assert released >= len([s for s in steps_of(cid) if s.get("gated")])
    finally:
        if starter.poll() is None:
            starter.kill()
