"""Resource control through the CLI on the real kernel: limits, update, pause, stats, alerts,
scheduling, validation and teardown of real containers.

Every value is read back from the kernel's own files (paths from `labtui inspect` → Cgroup.paths)
or from /proc. The alert tests make the kernel really enforce a limit (an OOM kill, CFS throttling,
a refused fork, memory near its limit) and check that the supervisor's watcher reports it on the
host-wide events stream, that a neighbour container started alongside is untouched, and that the
host (this test process) is fine. Runs on the host's driver (v1 on this hybrid machine); the same
checks against the v2 driver run in a VM (tests/vm, scripts/vm-test).
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import signal
import subprocess
import time

import pytest

from tests.helpers import inspect, labtui, lib, ps_json, run_d, wait_for

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("clean_containers")]

MiB = 1 << 20
PARENT = os.environ.get("LABTUI_CGROUP_PARENT", "labtui-test")
BUSY = "while :; do :; done"
NCPU = os.cpu_count() or 1


# ---- helpers --------------------------------------------------------------------------------------

def cg_paths(cid: str) -> dict[str, str]:
    cg = inspect(cid)["Cgroup"]
    assert cg["driver"] in ("v1", "v2"), cg
    return cg["paths"]


def cg_file(paths: dict[str, str], controller: str, name: str) -> str:
    return os.path.join(paths.get(controller) or paths["unified"], name)


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def read_keyed(path: str) -> dict[str, int]:
    out = {}
    for line in read(path).splitlines():
        k, _, v = line.partition(" ")
        if v.strip().lstrip("-").isdigit():
            out[k] = int(v)
    return out


def init_pid(cid: str) -> int:
    pid = inspect(cid)["State"]["Pid"]
    assert pid, f"container {cid} has no pid"
    return pid


def main_pid(cid: str, timeout: float = 5) -> int:
    """The command's host pid: the child of the container's init."""
    pid = init_pid(cid)

    def child():
        try:
            kids = read(f"/proc/{pid}/task/{pid}/children").split()
        except OSError:
            return None
        return int(kids[0]) if kids else None

    return wait_for(child, timeout, what="the container's command")


def proc_stat(pid: int) -> list[str]:
    """/proc/PID/stat as fields numbered like proc(5): stat[1] is the pid, stat[19] the nice value."""
    text = read(f"/proc/{pid}/stat")
    head, _, rest = text.rpartition(")")
    pid_s, _, comm = head.partition(" (")
    return ["", pid_s, comm, *rest.split()]


def alerts(cid: str, kind: str | None = None) -> list[dict]:
    path = lib() / "events.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("type") == "alert" and ev.get("container") == cid and kind in (None, ev.get("alert")):
            out.append(ev)
    return out


def wait_alert(cid: str, kind: str, timeout: float = 15) -> dict:
    return wait_for(lambda: (alerts(cid, kind) or [None])[0], timeout, interval=0.1, what=f"alert={kind} for {cid}")


def check_alert(ev: dict, cid: str, paths: dict[str, str], file_name: str, counter: str) -> None:
    assert ev["container"] == cid
    assert ev["name"]
    assert os.path.basename(ev["file"]) == file_name, ev
    assert os.path.dirname(ev["file"]) in paths.values(), ev  # one of this container's cgroup dirs
    assert cid in ev["file"]
    assert ev["counter"] == counter, ev
    assert isinstance(ev["value"], int) and ev["value"] >= 1, ev
    assert cid in ev["message"], ev


class Neighbour:
    """A container started next to a misbehaving one: it must go on running, untouched."""

    def __init__(self) -> None:
        self.id = run_d("busybox", "sleep", "600")
        self.pid = init_pid(self.id)
        self.paths = cg_paths(self.id)

    def check_unaffected(self) -> None:
        st = inspect(self.id)["State"]
        assert st["Status"] == "running" and st["Pid"] == self.pid, st
        os.kill(self.pid, 0)
        assert read_keyed(cg_file(self.paths, "memory", "memory.oom_control")).get("oom_kill", 0) == 0
        assert read_keyed(cg_file(self.paths, "cpu", "cpu.stat")).get("nr_throttled", 0) == 0
        assert read_keyed(cg_file(self.paths, "pids", "pids.events")).get("max", 0) == 0
        assert alerts(self.id) == []


def check_host_fine() -> None:
    """The host (this process) can still fork, exec and allocate memory."""
    assert subprocess.run(["true"], timeout=10).returncode == 0
    buf = bytearray(64 * MiB)
    buf[::4096] = b"x" * len(buf[::4096])
    del buf


# ---- limits on run ----------------------------------------------------------------------------------

def test_limits_on_run_are_in_the_kernel_and_the_cgroup_namespace_hides_the_path():
    cid = run_d("-m", "32m", "--cpus", "0.5", "--cpu-shares", "512", "--cpuset-cpus", "0",
                "--pids-limit", "20", "busybox", "sh", "-c", "cat /proc/self/cgroup; exec sleep 600")
    paths = cg_paths(cid)
    assert set(paths) >= {"memory", "cpu", "cpuacct", "cpuset", "pids", "freezer"}, paths
    for d in paths.values():
        assert d.endswith(f"/{PARENT}/{cid}"), d
    assert read(cg_file(paths, "memory", "memory.limit_in_bytes")) == str(32 * MiB)
    memsw = cg_file(paths, "memory", "memory.memsw.limit_in_bytes")
    if os.path.exists(memsw):
        assert read(memsw) == str(64 * MiB)  # docker's default: memory+swap = 2 x memory
    assert read(cg_file(paths, "cpu", "cpu.cfs_period_us")) == "100000"
    assert read(cg_file(paths, "cpu", "cpu.cfs_quota_us")) == "50000"
    assert read(cg_file(paths, "cpu", "cpu.shares")) == "512"
    assert read(cg_file(paths, "cpuset", "cpuset.cpus")) == "0"
    assert read(cg_file(paths, "pids", "pids.max")) == "20"
    assert inspect(cid)["HostConfig"]["Resources"]["memory"] == 32 * MiB

    # The host sees the container's processes in /<parent>/<id> of every controller ...
    pid = init_pid(cid)
    host_view = read(f"/proc/{pid}/cgroup").splitlines()
    for controller, d in paths.items():
        assert str(pid) in read(os.path.join(d, "cgroup.procs")).split(), controller
        line = next(x for x in host_view if controller in x.split(":")[1].split(","))
        assert line.split(":", 2)[2] == f"/{PARENT}/{cid}", line
    # ... while inside, its own cgroup namespace shows "/" everywhere.
    inside = wait_for(lambda: labtui("logs", cid).stdout.strip(), what="the container's /proc/self/cgroup")
    lines = inside.splitlines()
    assert lines and all(line.split(":", 2)[2] == "/" for line in lines), inside
    assert os.readlink(f"/proc/{pid}/ns/cgroup") != os.readlink("/proc/self/ns/cgroup")


def test_update_changes_limits_live_and_they_survive_a_restart():
    cid = run_d("-m", "32m", "--cpus", "0.5", "--cpu-shares", "512", "--cpuset-cpus", "0",
                "--pids-limit", "20", "busybox", "sleep", "600")
    pid = init_pid(cid)
    labtui("update", "-m", "48m", "--memory-swap", "96m", "--cpus", "1.5", "--cpu-shares", "300",
           "--cpuset-cpus", "0-1" if NCPU > 1 else "0", "--pids-limit", "30", cid)

    def check(paths: dict[str, str]) -> None:
        assert read(cg_file(paths, "memory", "memory.limit_in_bytes")) == str(48 * MiB)
        memsw = cg_file(paths, "memory", "memory.memsw.limit_in_bytes")
        if os.path.exists(memsw):
            assert read(memsw) == str(96 * MiB)
        assert read(cg_file(paths, "cpu", "cpu.cfs_quota_us")) == "150000"
        assert read(cg_file(paths, "cpu", "cpu.cfs_period_us")) == "100000"
        assert read(cg_file(paths, "cpu", "cpu.shares")) == "300"
        assert read(cg_file(paths, "cpuset", "cpuset.cpus")) == ("0-1" if NCPU > 1 else "0")
        assert read(cg_file(paths, "pids", "pids.max")) == "30"

    paths = cg_paths(cid)
    check(paths)
    assert init_pid(cid) == pid  # live: the same process, not a restart
    res = inspect(cid)["HostConfig"]["Resources"]
    assert res["memory"] == 48 * MiB and res["cpus"] == 1.5 and res["pids_limit"] == 30, res

    # Shrinking both works too (v1 must write memory before memsw then).
    labtui("update", "-m", "16m", "--memory-swap", "24m", cid)
    assert read(cg_file(paths, "memory", "memory.limit_in_bytes")) == str(16 * MiB)
    labtui("update", "-m", "48m", "--memory-swap", "96m", cid)

    labtui("restart", "-t", "1", cid)
    assert init_pid(cid) != pid
    check(cg_paths(cid))


def test_update_refuses_invalid_values_and_keeps_the_old_ones():
    cid = run_d("--pids-limit", "20", "busybox", "sleep", "600")
    paths = cg_paths(cid)
    p = labtui("update", "--pids-limit", "0", cid, check=False)
    assert p.returncode != 0 and "--pids-limit" in p.stderr, p
    p = labtui("update", "--cpus", "99", cid, check=False)
    assert p.returncode != 0 and "--cpus" in p.stderr, p
    assert read(cg_file(paths, "pids", "pids.max")) == "20"
    assert read(cg_file(paths, "cpu", "cpu.cfs_quota_us")) == "-1"
    assert inspect(cid)["HostConfig"]["Resources"]["pids_limit"] == 20


# ---- pause ------------------------------------------------------------------------------------------

def test_pause_freezes_and_refuses_stop_then_unpause_resumes():
    cid = run_d("busybox", "sh", "-c", "i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done")
    wait_for(lambda: labtui("logs", cid).stdout.count("\n") > 2, what="output")
    paths = cg_paths(cid)
    pid = init_pid(cid)
    labtui("pause", cid)
    assert read(cg_file(paths, "freezer", "freezer.state")) == "FROZEN"
    row = next(r for r in ps_json(False) if r["Id"] == cid)
    assert row["State"] == "paused" and "(Paused)" in row["Status"], row
    st = inspect(cid)["State"]
    assert st["Paused"] is True and st["Status"] == "paused" and st["Running"] is True, st
    # Frozen: the counter does not move.
    before = labtui("logs", cid).stdout
    time.sleep(0.4)
    assert labtui("logs", cid).stdout == before
    # Refused with a clear message, and the container stays paused.
    p = labtui("stop", "-t", "1", cid, check=False)
    assert p.returncode != 0 and "paused" in p.stderr and "unpause" in p.stderr, p
    p = labtui("pause", cid, check=False)
    assert p.returncode != 0 and "already paused" in p.stderr, p
    assert inspect(cid)["State"]["Paused"] is True

    labtui("unpause", cid)
    assert read(cg_file(paths, "freezer", "freezer.state")) == "THAWED"
    st = inspect(cid)["State"]
    assert st["Status"] == "running" and st["Paused"] is False and st["Pid"] == pid, st
    wait_for(lambda: labtui("logs", cid).stdout != before, what="output after unpause")
    p = labtui("unpause", cid, check=False)
    assert p.returncode != 0 and "not paused" in p.stderr, p
    labtui("stop", "-t", "1", cid)
    assert inspect(cid)["State"]["Status"] == "exited"


def test_exec_into_a_paused_container_is_refused():
    if "invalid choice" in labtui("exec", "--help", check=False).stderr:
        pytest.skip("this CLI has no exec command yet")
    cid = run_d("busybox", "sleep", "600")
    labtui("pause", cid)
    p = labtui("exec", cid, "true", check=False, timeout=15)
    assert p.returncode != 0 and "paused" in p.stderr, p


# ---- stats ------------------------------------------------------------------------------------------

def test_stats_no_stream_json_has_cpu_memory_pids_and_throttling():
    cid = run_d("-m", "64m", "--cpus", "0.5", "--pids-limit", "50", "busybox", "sh", "-c", BUSY)
    idle = run_d("busybox", "sleep", "600")
    time.sleep(0.5)
    out = labtui("stats", "--no-stream", "--format", "json", cid, idle).stdout
    rows = {r["id"]: r for r in map(json.loads, out.splitlines())}
    r = rows[cid]
    assert 10 <= r["cpu_percent"] <= 65, r  # --cpus 0.5 caps it at 50 % of one CPU (less on a busy host)
    assert r["memory_limit"] == 64 * MiB
    assert 0 < r["memory_usage"] < 64 * MiB
    assert r["memory_percent"] == pytest.approx(r["memory_usage"] * 100 / (64 * MiB), abs=0.01)
    assert r["pids"] >= 2 and r["pids_limit"] == 50, r
    assert r["nr_periods"] > 0 and r["nr_throttled"] > 0 and r["throttled_time_ns"] > 0, r
    assert r["oom_kill"] == 0
    i = rows[idle]
    assert i["cpu_percent"] < 5 and i["memory_limit"] is None and i["memory_percent"] is None, i
    assert i["nr_throttled"] == 0
    table = labtui("stats", "--no-stream", cid).stdout
    assert cid[:12] in table and "64MiB" in table, table


# ---- alerts -----------------------------------------------------------------------------------------

def test_memory_hog_is_oom_killed_and_alerted():
    nb = Neighbour()
    cid = run_d("-m", "32m", "busybox", "sh", "-c", "x=a; while :; do x=$x$x; done")
    ev = wait_alert(cid, "oom")
    assert labtui("wait", cid).stdout.strip() == "137"
    # The cgroup is gone once the container exited; the path named it.
    check_alert(ev, cid, {"memory": os.path.dirname(ev["file"])}, "memory.oom_control", "oom_kill")
    assert f"/{PARENT}/{cid}/" in ev["file"]
    assert "33554432" in ev["message"]
    nb.check_unaffected()
    check_host_fine()


def test_busy_loop_under_cpus_is_throttled_and_alerted():
    nb = Neighbour()
    cid = run_d("--cpus", "0.2", "busybox", "sh", "-c", BUSY)
    paths = cg_paths(cid)
    ev = wait_alert(cid, "throttled")
    check_alert(ev, cid, paths, "cpu.stat", "nr_throttled")
    assert "0.2" in ev["message"]
    assert read_keyed(cg_file(paths, "cpu", "cpu.stat"))["nr_throttled"] >= ev["value"]
    assert inspect(cid)["State"]["Status"] == "running"
    nb.check_unaffected()
    check_host_fine()


def test_fork_loop_under_pids_limit_is_alerted():
    nb = Neighbour()
    # Started under 100, lowered to 20 live, then told to fork (SIGUSR1): the subshell forks until
    # EAGAIN kills it, and the container goes on with `exec` (no fork needed).
    cid = run_d("--pids-limit", "100", "busybox", "sh", "-c",
                'trap "go=1" USR1; while [ -z "$go" ]; do sleep 0.1; done; '
                "(while :; do sleep 600 & done) 2>/dev/null; exec sleep 600")
    paths = cg_paths(cid)
    labtui("update", "--pids-limit", "20", cid)
    labtui("kill", "-s", "USR1", cid)
    ev = wait_alert(cid, "pids_limit")
    check_alert(ev, cid, paths, "pids.events", "max")
    assert "pids limit 20 reached" in ev["message"], ev  # the limit in force, not the one at start
    # The limit was reached; the dead subshell gave one back.
    assert 18 <= int(read(cg_file(paths, "pids", "pids.current"))) <= 20
    assert inspect(cid)["State"]["Status"] == "running"
    nb.check_unaffected()
    check_host_fine()


def test_memory_above_ninety_percent_is_alerted_without_a_kill():
    nb = Neighbour()
    # dd holds a 58 MiB buffer (filled from /dev/zero) while blocked writing to a pipe nobody
    # reads: ~60.5 MiB with the shell, about 94 % of 64 MiB, under the limit.
    cid = run_d("-m", "64m", "busybox", "sh", "-c", "dd if=/dev/zero bs=58M count=1 | sleep 600")
    paths = cg_paths(cid)
    ev = wait_alert(cid, "memory_high")
    check_alert(ev, cid, paths, "memory.usage_in_bytes", "working_set")
    assert ev["limit"] == 64 * MiB and 0.9 <= ev["value"] / ev["limit"] < 1.0, ev
    assert read_keyed(cg_file(paths, "memory", "memory.oom_control")).get("oom_kill", 0) == 0
    assert inspect(cid)["State"]["Status"] == "running"
    nb.check_unaffected()
    check_host_fine()


# ---- scheduling -------------------------------------------------------------------------------------

def test_cpu_shares_split_one_cpu_80_20():
    hi = run_d("--cpuset-cpus", "0", "--cpu-shares", "1024", "busybox", "sh", "-c", BUSY)
    lo = run_d("--cpuset-cpus", "0", "--cpu-shares", "256", "busybox", "sh", "-c", BUSY)
    files = [cg_file(cg_paths(c), "cpuacct", "cpuacct.usage") for c in (hi, lo)]
    time.sleep(0.5)  # both running and competing
    a0, b0 = (int(read(f)) for f in files)
    time.sleep(3)
    a1, b1 = (int(read(f)) for f in files)
    da, db = a1 - a0, b1 - b0
    share = da / (da + db) * 100
    assert 70 <= share <= 90, f"1024 vs 256 shares on one CPU: {share:.1f}% / {100 - share:.1f}%"
    # Together they had (at most) one CPU: cpuset kept them on CPU 0.
    assert (da + db) / 3e9 < 1.15


def test_nice_and_batch_policy_reach_the_process():
    cid = run_d("--nice", "10", "--sched-policy", "batch", "busybox", "sleep", "600")
    pid = main_pid(cid)
    stat = proc_stat(pid)
    assert stat[2] == "sleep"
    assert stat[19] == "10"  # nice
    assert stat[41] == "3"  # policy: SCHED_BATCH
    sched = read(f"/proc/{pid}/sched")
    policy = next(line for line in sched.splitlines() if line.startswith("policy"))
    assert policy.split(":")[1].strip() == "3", policy


def test_fifo_policy_with_priority_works_on_this_kernel():
    # This kernel has RT group scheduling: the v1 cpu cgroup is granted real-time runtime
    # (cpu.rt_runtime_us) before the command calls sched_setscheduler(SCHED_FIFO, 10).
    cid = run_d("--sched-policy", "fifo", "--sched-priority", "10", "busybox", "sleep", "600")
    pid = main_pid(cid)
    stat = proc_stat(pid)
    assert stat[41] == "1" and stat[40] == "10", stat  # SCHED_FIFO, rt_priority 10
    assert stat[18] == "-11"  # priority: -1 - rt_priority
    rt = cg_file(cg_paths(cid), "cpu", "cpu.rt_runtime_us")
    if os.path.exists(rt):
        assert int(read(rt)) > 0


# ---- validation -------------------------------------------------------------------------------------

INVALID = [
    (["-m", "12XB"], "--memory"),
    (["-m", "1m"], "--memory"),
    (["--memory-swap", "10m", "-m", "20m"], "--memory-swap"),
    (["--memory-swap", "64m"], "--memory-swap"),
    (["--cpus", "-1"], "--cpus"),
    (["--cpus", "0"], "--cpus"),
    (["--cpus", "99"], "--cpus"),
    (["--cpus", "abc"], "--cpus"),
    (["--cpuset-cpus", "7"], "--cpuset-cpus"),
    (["--cpuset-cpus", "1-0"], "--cpuset-cpus"),
    (["--cpuset-cpus", "a"], "--cpuset-cpus"),
    (["--pids-limit", "0"], "--pids-limit"),
    (["--pids-limit", "x"], "--pids-limit"),
    (["--cpu-shares", "1"], "--cpu-shares"),
    (["--blkio-weight", "5"], "--blkio-weight"),
    (["--nice", "30"], "--nice"),
    (["--sched-priority", "10"], "--sched-priority"),
    (["--sched-policy", "fifo", "--sched-priority", "0"], "--sched-priority"),
]


def test_invalid_values_are_refused_before_anything_is_created():
    # A parent of our own: whatever other test sessions do meanwhile, nothing may appear in it.
    parent = f"labtui-inval-{secrets.token_hex(4)}"
    env = dict(os.environ, LABTUI_CGROUP_PARENT=parent)
    containers = lib() / "containers"
    before = set(os.listdir(containers)) if containers.exists() else set()
    for args, option in INVALID:
        name = f"inval-{secrets.token_hex(3)}"
        p = labtui("run", "-d", "--name", name, *args, "busybox", "true", check=False, env=env)
        assert p.returncode == 125, (args, p.returncode, p.stderr)
        assert option in p.stderr and "Traceback" not in p.stderr, (args, p.stderr)
        assert p.stdout == "", (args, p.stdout)
        after = set(os.listdir(containers)) if containers.exists() else set()
        assert after == before, (args, after - before)
        assert glob.glob(f"/sys/fs/cgroup/*/{parent}") + glob.glob(f"/sys/fs/cgroup/{parent}") == [], args
    assert not [r for r in ps_json(True) if r["Names"].startswith("inval-")]
    # The message says why, as docker does.
    p = labtui("run", "--cpuset-cpus", "7", "busybox", "true", check=False, env=env)
    assert "CPUs 7 are not online (available: " in p.stderr, p.stderr
    p = labtui("run", "--cpus", "99", "busybox", "true", check=False, env=env)
    assert f"there are only {NCPU} CPUs available" in p.stderr, p.stderr


# ---- teardown ---------------------------------------------------------------------------------------

def test_rm_f_leaves_no_cgroup_even_with_a_lingering_process():
    cid = run_d("-m", "32m", "--pids-limit", "50", "busybox", "sh", "-c", "sleep 600 & sleep 600 & wait")
    paths = cg_paths(cid)
    # A process outside the container's pid namespace in its cgroups (what `exec` would leave,
    # or a student's `echo $$ > cgroup.procs`): killing the init does not reach it.
    host = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        for d in dict.fromkeys(paths.values()):
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(host.pid))
        labtui("pause", cid)  # and frozen: frozen tasks cannot even die until thawed
        labtui("rm", "-f", cid)
        assert host.wait(timeout=10) == -signal.SIGKILL
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
    left = [d for d in paths.values() if os.path.exists(d)]
    left += glob.glob(f"/sys/fs/cgroup/*/{PARENT}/{cid}") + glob.glob(f"/sys/fs/cgroup/{PARENT}/{cid}")
    assert left == [], left
    assert not (lib() / "containers" / cid).exists()
    assert all(r["Id"] != cid for r in ps_json(True))


def test_parent_cgroup_stays_for_the_next_container_until_system_prune():
    """As docker's /sys/fs/cgroup/*/docker: the parent is made once, not around every container
    (16 mkdir/rmdir per `run --rm` on this hybrid host), and `system prune` removes it unused."""
    parent = f"labtui-keep-{secrets.token_hex(4)}"
    env = dict(os.environ, LABTUI_CGROUP_PARENT=parent)

    def tops() -> list[str]:
        return glob.glob(f"/sys/fs/cgroup/*/{parent}") + glob.glob(f"/sys/fs/cgroup/{parent}")

    try:
        labtui("run", "--rm", "busybox", "true", env=env)
        assert tops(), "the parent went with the container"
        # The container's own cgroup goes after `run --rm` returned (the supervisor removes it
        # once its caller is released: engine/hooks.after_exit), so it is waited for.
        wait_for(lambda: not [d for t in tops() for d in os.listdir(t) if os.path.isdir(os.path.join(t, d))],
                 what="the container's cgroup to go")
        name = f"keep-{secrets.token_hex(3)}"
        cid = labtui("run", "--name", name, "busybox", "true", env=env) and inspect(name)["Id"]
        steps = [json.loads(line) for line in labtui("steps", name, "--format", "json").stdout.splitlines()]
        mkdirs = [s["target"] for s in steps if s["mechanism"] == "cgroup" and s["op"] == "mkdir"]
        assert mkdirs and all(t.endswith(f"/{parent}/{cid}") for t in mkdirs), mkdirs
        labtui("rm", name, env=env)
        assert tops()
        labtui("system", "prune", env=env)
        assert tops() == []
    finally:
        for t in tops():
            for d in sorted((os.path.join(t, n) for n in os.listdir(t)), reverse=True):
                if os.path.isdir(d):
                    os.rmdir(d)
            os.rmdir(t)
