"""The v2 driver with real containers, through the CLI, on a unified cgroup2 kernel (the VM lane).

What tests/integration/test_resources_root.py checks on the hybrid host through v1, checked here
through v2's files: memory.max, memory.swap.max, cpu.max, cpu.weight (runc's conversion),
cpuset.cpus, pids.max; update live and across a restart; cgroup.freeze / cgroup.events; stats;
the oom (memory.events), pids_limit (pids.events) and throttled (cpu.stat) alerts; the cgroup
namespace; rm -f with cgroup.kill. Every CLI call costs seconds under the emulated CPU, so each
test does several checks on few containers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.helpers import inspect, labtui, lib, run_d, wait_for

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("clean_containers")]

MiB = 1 << 20
PARENT = os.environ.get("LABTUI_CGROUP_PARENT", "labtui-test")
ROOT = "/sys/fs/cgroup"
BUSY = "while :; do :; done"
SLOW = 60  # seconds: the emulated CPU is 10-50x slower than the host


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def keyed(path: str) -> dict[str, int]:
    out = {}
    for line in read(path).splitlines():
        k, _, v = line.partition(" ")
        if v.lstrip("-").isdigit():
            out[k] = int(v)
    return out


def cgroup_dir(cid: str) -> tuple[str, int]:
    """The container's v2 directory as inspect reports it (checked against the expected path),
    and its init's pid."""
    info = inspect(cid)
    cg = info["Cgroup"]
    assert cg["driver"] == "v2" and cg["layout"] == "unified", cg
    d = cg["paths"]["unified"]
    assert d == f"{ROOT}/{PARENT}/{cid}", cg
    assert {cg["paths"][c] for c in ("memory", "cpu", "pids", "cpuset")} == {d}, cg
    return d, info["State"]["Pid"]


def remove(*cids: str) -> None:
    """One `rm -f` for a test's containers (clean_containers is the safety net if a test fails)."""
    labtui("rm", "-f", *cids, timeout=SLOW * 2)


def alerts(cid: str, kind: str) -> list[dict]:
    path = lib() / "events.jsonl"
    if not path.exists():
        return []
    evs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in evs if e.get("type") == "alert" and e.get("container") == cid and e.get("alert") == kind]


def wait_alert(cid: str, kind: str) -> dict:
    return wait_for(lambda: (alerts(cid, kind) or [None])[0], SLOW, interval=0.2, what=f"alert={kind} for {cid}")


def test_labtui_root_is_on_a_tmpfs_of_the_vm():
    root = os.path.realpath(os.environ["LABTUI_ROOT"])
    best = ("", "")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mnt, fstype = fields[4], fields[fields.index("-") + 1]
            if (root == mnt or root.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[0]):
                best = (mnt, fstype)
    assert best[1] == "tmpfs", f"LABTUI_ROOT {root} is on {best}"


def test_limits_in_v2_files_update_restart_and_cgroup_namespace():
    cid = run_d("-m", "32m", "--memory-swap", "48m", "--cpus", "0.5", "--cpu-shares", "512",
                "--cpuset-cpus", "1", "--pids-limit", "20", "--blkio-weight", "300",
                "busybox", "sh", "-c", "cat /proc/self/cgroup; exec sleep 600")
    d, pid = cgroup_dir(cid)
    parent = os.path.dirname(d)
    for level in (ROOT, parent):  # controllers enabled top-down for the children
        assert set(read(f"{level}/cgroup.subtree_control").split()) >= {"cpu", "memory", "pids", "cpuset"}
    assert read(f"{d}/memory.max") == str(32 * MiB)
    assert read(f"{d}/memory.swap.max") == str(16 * MiB)  # docker's memory+swap minus memory
    assert read(f"{d}/cpu.max") == "50000 100000"
    assert read(f"{d}/cpu.weight") == "20"  # 1 + ((512 - 2) * 9999) / 262142
    assert read(f"{d}/cpuset.cpus") == "1"
    assert read(f"{d}/pids.max") == "20"
    if os.path.exists(f"{d}/io.bfq.weight"):  # BFQ: blkio's own 10..1000 scale
        assert read(f"{d}/io.bfq.weight").split()[:2] == ["default", "300"]
    elif os.path.exists(f"{d}/io.weight"):  # 1 + (300 - 10) * 9999 / 990
        assert read(f"{d}/io.weight").split()[:2] == ["default", "2930"]
    # cgroup namespace: the host sees /<parent>/<id>, the container "/".
    assert read(f"/proc/{pid}/cgroup") == f"0::/{PARENT}/{cid}"
    assert str(pid) in read(f"{d}/cgroup.procs").split()
    assert wait_for(lambda: labtui("logs", cid).stdout.strip(), SLOW, what="logs") == "0::/"

    labtui("update", "-m", "64m", "--memory-swap", "128m", "--cpus", "1", "--cpu-shares", "1024",
           "--cpuset-cpus", "0-1", "--pids-limit", "30", cid)
    assert read(f"{d}/memory.max") == str(64 * MiB)
    assert read(f"{d}/memory.swap.max") == str(64 * MiB)
    assert read(f"{d}/cpu.max") == "100000 100000"
    assert read(f"{d}/cpu.weight") == "39"  # the default 1024 shares: 39, not v2's 100
    assert read(f"{d}/cpuset.cpus") == "0-1"
    assert read(f"{d}/pids.max") == "30"
    # --memory-swap alone: swap = memory+swap minus the memory limit in force (read from the kernel).
    labtui("update", "--memory-swap", "96m", cid)
    assert read(f"{d}/memory.swap.max") == str(32 * MiB)

    labtui("restart", "-t", "1", cid)
    new_pid = inspect(cid)["State"]["Pid"]
    assert new_pid != pid and str(new_pid) in read(f"{d}/cgroup.procs").split()
    assert (read(f"{d}/memory.max"), read(f"{d}/memory.swap.max")) == (str(64 * MiB), str(32 * MiB))
    assert (read(f"{d}/cpu.max"), read(f"{d}/cpu.weight")) == ("100000 100000", "39")
    assert (read(f"{d}/cpuset.cpus"), read(f"{d}/pids.max")) == ("0-1", "30")
    remove(cid)
    assert not os.path.exists(d)


def test_freeze_stop_refused_thaw_and_rm_f_kills_a_lingering_process():
    cid = run_d("busybox", "sh", "-c", "while :; do sleep 1; done")
    d, _ = cgroup_dir(cid)
    labtui("pause", cid)
    assert read(f"{d}/cgroup.freeze") == "1"
    assert keyed(f"{d}/cgroup.events")["frozen"] == 1
    st = inspect(cid)["State"]
    assert st["Status"] == "paused" and st["Paused"] is True, st
    p = labtui("stop", "-t", "1", cid, check=False)
    assert p.returncode != 0 and "paused" in p.stderr and "unpause" in p.stderr, p
    labtui("unpause", cid)
    assert read(f"{d}/cgroup.freeze") == "0"
    assert keyed(f"{d}/cgroup.events") == {"populated": 1, "frozen": 0}

    # A process of the host's in the container's cgroup, outside its pid namespace, and frozen:
    # rm -f must still leave nothing (cgroup.kill reaches it, thawed or not).
    host = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        with open(f"{d}/cgroup.procs", "w") as f:
            f.write(str(host.pid))
        labtui("pause", cid)
        labtui("rm", "-f", cid)
        assert host.wait(timeout=SLOW) == -signal.SIGKILL
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
    assert not os.path.exists(d)


def test_stats_and_throttled_alert():
    cid = run_d("-m", "64m", "--cpus", "0.5", "--pids-limit", "40", "busybox", "sh", "-c", BUSY)
    d, _ = cgroup_dir(cid)
    ev = wait_alert(cid, "throttled")
    assert ev["file"] == f"{d}/cpu.stat" and ev["counter"] == "nr_throttled" and ev["value"] >= 1, ev
    assert cid in ev["message"]
    row = json.loads(labtui("stats", "--no-stream", "--format", "json", cid).stdout)
    assert row["id"] == cid
    assert 15 <= row["cpu_percent"] <= 80, row  # capped at 50 % of one CPU
    assert row["memory_limit"] == 64 * MiB and 0 < row["memory_usage"] < 64 * MiB, row
    assert row["memory_percent"] is not None and row["memory_percent"] < 100, row
    assert row["pids"] >= 2 and row["pids_limit"] == 40, row
    assert row["nr_throttled"] >= ev["value"] and row["throttled_time_ns"] > 0, row
    assert row["oom_kill"] == 0
    remove(cid)


def test_oom_and_pids_alerts_leave_the_neighbour_alone():
    neighbour = run_d("busybox", "sleep", "600")
    nd, npid = cgroup_dir(neighbour)
    hog = run_d("-m", "32m", "busybox", "sh", "-c", "x=a; while :; do x=$x$x; done")
    forker = run_d("--pids-limit", "20", "busybox", "sh", "-c",
                   "(while :; do sleep 600 & done) 2>/dev/null; exec sleep 600")

    ev = wait_alert(hog, "oom")
    assert ev["file"] == f"{ROOT}/{PARENT}/{hog}/memory.events", ev
    assert ev["counter"] == "oom_kill" and ev["value"] >= 1 and hog in ev["message"], ev
    assert str(32 * MiB) in ev["message"]
    assert labtui("wait", hog, timeout=SLOW * 2).stdout.strip() == "137"

    ev = wait_alert(forker, "pids_limit")
    fd = f"{ROOT}/{PARENT}/{forker}"
    assert ev["file"] == f"{fd}/pids.events" and ev["counter"] == "max" and ev["value"] >= 1, ev
    assert keyed(f"{fd}/pids.events")["max"] >= 1
    assert 18 <= int(read(f"{fd}/pids.current")) <= 20

    # The neighbour: same process, still running, its counters untouched, no alert of its own.
    st = inspect(neighbour)["State"]
    assert st["Status"] == "running" and st["Pid"] == npid, st
    assert keyed(f"{nd}/memory.events").get("oom_kill", 0) == 0
    assert keyed(f"{nd}/pids.events").get("max", 0) == 0
    assert not any(alerts(neighbour, k) for k in ("oom", "pids_limit", "throttled", "memory_high"))
    # The host (this process) can fork and allocate.
    assert subprocess.run(["true"], timeout=SLOW).returncode == 0
    buf = bytearray(64 * MiB)
    del buf
    remove(neighbour, hog, forker)


def test_cpu_weight_from_shares_splits_one_cpu_80_20():
    hi = run_d("--cpuset-cpus", "0", "--cpu-shares", "1024", "busybox", "sh", "-c", BUSY)
    lo = run_d("--cpuset-cpus", "0", "--cpu-shares", "256", "busybox", "sh", "-c", BUSY)
    dirs = [f"{ROOT}/{PARENT}/{c}" for c in (hi, lo)]
    assert [read(f"{d}/cpu.weight") for d in dirs] == ["39", "10"]

    def usage() -> list[int]:
        return [keyed(f"{d}/cpu.stat")["usage_usec"] for d in dirs]

    time.sleep(1)
    a0, b0 = usage()
    time.sleep(4)
    a1, b1 = usage()
    share = (a1 - a0) / ((a1 - a0) + (b1 - b0)) * 100
    remove(hi, lo)
    assert 70 <= share <= 90, f"weights 39 vs 10 on one CPU: {share:.1f}% / {100 - share:.1f}%"
