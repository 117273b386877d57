"""`labtui system check / prune / df` on the real kernel: each kind of leak is made for real, check
lists it (text and JSON, exit 1), prune removes it (saying what it removed), check is clean again.

Networks here are named zz<tag>... with subnets labtui picks, so concurrent runs do not collide.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from engine.doctor.base import GRACE
from tests.helpers import inspect, labtui, lib, run_d, run_dir, wait_for

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("clean_state")]

TAG = f"{os.getpid() % 10000:04d}"
OLD = time.time() - 3600


def check(fmt: str = "table"):
    return labtui("system", "check", "--format", fmt, check=False)


def findings() -> list[dict]:
    p = check("json")
    out = json.loads(p.stdout)
    assert p.returncode == (1 if out else 0), p.stdout + p.stderr
    return out


def prune() -> str:
    return labtui("system", "prune").stdout


def assert_clean() -> None:
    p = check()
    assert p.returncode == 0 and "no problems found" in p.stdout, p.stdout + p.stderr


@pytest.fixture
def clean_state():
    """Start from a clean state (earlier tests of the session may have left stopped containers
    or networks), and leave one: prune, then check must be clean."""
    prune()
    assert_clean()
    yield
    from tests.helpers import remove_all

    remove_all()
    prune()
    assert_clean()


def links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def test_a_clean_state_is_exit_0_and_bad_format_is_125():
    assert_clean()
    assert findings() == []
    p = check("yaml")
    assert p.returncode == 125 and "unknown --format 'yaml'" in p.stderr and "Traceback" not in p.stderr


def test_killed_supervisor_and_init_leave_record_cgroup_veth_and_mount_that_prune_removes():
    from pyroute2 import IPRoute

    from engine.network import host_veth_name

    net = f"zz{TAG}k"
    labtui("network", "create", net)
    cid = run_d("--name", f"zz{TAG}victim", "--network", net, "busybox", "sleep", "300")
    st = inspect(cid)["State"]
    os.kill(st["SupervisorPid"], signal.SIGKILL)
    os.kill(st["Pid"], signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{st['Pid']}"), what="the init to die")
    # The kernel destroys the veth with the namespace and the overlay with the mount namespace;
    # what a crash can leave of them (a namespace held open, a mount made on the host) is made here.
    veth = host_veth_name(cid)
    with IPRoute() as ipr:
        ipr.link("add", ifname=veth, kind="veth", peer=f"zz{TAG}peer")
    merged = lib() / "containers" / cid / "merged"
    os.system(f"mount -t tmpfs zz-leak {merged}")  # the test's own mount: the engine never shells out
    try:
        got = findings()
        kinds = {(f["kind"], f["object"]) for f in got}
        assert ("veth", veth) in kinds, got
        assert ("mount", str(merged)) in kinds, got
        assert any(f["kind"] == "state" and cid[:12] in f["object"] and "recorded as running" in f["why"]
                   for f in got), got
        assert any(f["kind"] == "cgroup" and cid in f["object"] for f in got), got
        assert any(f["kind"] == "lease" and "marked attached" in f["why"] for f in got), got
        assert all(f["fixable"] for f in got)
        text = check()
        assert text.returncode == 1 and veth in text.stdout and "system prune" in text.stdout
        out = prune()
        assert f"Removed leaked veth {veth}" in out and f"Unmounted {merged}" in out, out
        assert f"Recorded the exit of container {cid[:12]}" in out and "Removed cgroup " in out, out
        assert f"Deleted container: {cid}" in out and f"Deleted network: {net}" in out, out
        assert veth not in links()
        assert_clean()
    finally:
        os.system(f"umount -l {merged} 2>/dev/null; ip link del {veth} 2>/dev/null")


def test_a_bridge_and_rules_of_a_removed_network_are_pruned():
    from engine.network import ipam

    a, b = f"zz{TAG}a", f"zz{TAG}b"
    labtui("network", "create", a)
    labtui("network", "create", b)
    bridge, a_subnet = ipam.load_network(a)["bridge"], ipam.load_network(a)["subnet"]
    b_subnet = ipam.load_network(b)["subnet"]
    ipam.delete_network_file(a)  # the record gone, the bridge and its isolation rules left
    got = findings()
    assert ("bridge", bridge) in {(f["kind"], f["object"]) for f in got}, got
    rules = [f["object"] for f in got if f["kind"] == "rule"]
    assert f"iif {bridge} to {b_subnet} prohibit pref 30900" in rules, got
    assert any(r.endswith(f"to {a_subnet} prohibit pref 30900") for r in rules), got  # b's rule toward a
    assert all(f"iif {bridge} " in r or f"to {a_subnet} " in r for r in rules), got  # only a's are stale
    out = prune()
    assert f"Removed leaked bridge {bridge}" in out and f"Deleted network: {b}" in out, out
    assert bridge not in links()
    assert_clean()


def test_a_stray_cgroup_a_lease_and_entries_without_a_container_are_pruned():
    from engine import cgroups
    from engine.network import ipam

    parent = cgroups.cgroup_parent()
    layout = cgroups.host_layout()
    bases = list(dict.fromkeys(layout.v1.values())) + ([layout.v2_mount] if layout.v2_mount else [])
    made = []
    for base in bases:
        d = os.path.join(base, parent, f"zz{TAG}stray")
        os.makedirs(d, exist_ok=True)
        made.append(d)
    net = f"zz{TAG}l"
    labtui("network", "create", net)
    ghost = "f" * 64
    ip = ipam.allocate(net, ghost, name="ghost")
    names = lib() / "names"
    names.mkdir(exist_ok=True)
    os.symlink("e" * 64, names / f"zz{TAG}ghost")
    os.utime(names / f"zz{TAG}ghost", (OLD, OLD), follow_symlinks=False)
    rund = run_dir() / "containers" / ("e" * 64)
    rund.mkdir(parents=True)
    os.utime(rund, (OLD, OLD))
    try:
        got = findings()
        kinds = {(f["kind"], f["object"]) for f in got}
        assert ("cgroup", f"{parent}/zz{TAG}stray") in kinds, got
        assert ("lease", f"{ip} on network {net}") in kinds, got
        assert ("name", f"zz{TAG}ghost") in kinds, got
        assert ("entry", f"run/containers/{'e' * 12}") in kinds, got
        out = prune()
        assert f"Removed cgroup {parent}/zz{TAG}stray" in out and f"Released address {ip} on network {net}" in out
        assert f"Removed name zz{TAG}ghost (no container)" in out and f"Deleted network: {net}" in out, out
        assert not any(os.path.exists(d) for d in made)
        assert_clean()
    finally:
        for d in made:
            for level in (d, os.path.dirname(d)):  # the parent too, once empty (as prune does)
                try:
                    os.rmdir(level)
                except OSError:
                    pass


def test_processes_whose_container_record_is_gone_are_killed():
    import shutil

    cid = run_d("--name", f"zz{TAG}orphan", "busybox", "sleep", "300")
    st = inspect(cid)["State"]
    shutil.rmtree(lib() / "containers" / cid)  # the record gone under a running container
    time.sleep(GRACE + 0.2)
    got = findings()
    procs = {f["object"] for f in got if f["kind"] == "process"}
    assert procs == {f"labtui-sup {st['SupervisorPid']}", f"labtui-init {st['Pid']}"}, got
    assert any(f["kind"] == "cgroup" and cid in f["object"] for f in got), got
    assert ("name", f"zz{TAG}orphan") in {(f["kind"], f["object"]) for f in got}, got
    out = prune()
    assert f"Killed labtui-init {st['Pid']}" in out and f"Killed labtui-sup {st['SupervisorPid']}" in out, out
    wait_for(lambda: not os.path.exists(f"/proc/{st['Pid']}"), what="the orphan init to die")
    assert_clean()


def test_df_shows_images_containers_logs_and_lesson_data():
    cid = run_d("--name", f"zz{TAG}df", "busybox", "sh", "-c", "head -c 2000000 /dev/zero > /big; sleep 300")
    wait_for(lambda: (lib() / "containers" / cid / "upper" / "big").exists()
             and (lib() / "containers" / cid / "upper" / "big").stat().st_size == 2000000, what="the write")
    out = labtui("system", "df").stdout.splitlines()
    assert out[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    rows = {line.split("   ")[0].strip(): line.split() for line in out[1:]}
    assert set(rows) == {"Images", "Containers", "Logs", "Lesson data"}
    assert rows["Containers"][1:3] == ["1", "1"] and rows["Containers"][3] == "2MB", out
    verbose = labtui("system", "df", "-v").stdout
    assert f"zz{TAG}df" in verbose and "busybox" in verbose
    labtui("rm", "-f", cid)


def test_running_and_stopped_containers_are_not_findings():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    net = f"zz{TAG}r"
    labtui("network", "create", net)
    run_d("--name", f"zz{TAG}up", "--network", net, "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "300")
    stopped = run_d("--name", f"zz{TAG}down", "--network", net, "busybox", "true")
    wait_for(lambda: inspect(stopped)["State"]["Status"] == "exited", what="the short container to exit")
    assert_clean()
    assert findings() == []


def test_processes_left_in_a_stopped_containers_cgroup_are_killed():
    import subprocess

    from engine import cgroups

    cid = run_d("--name", f"zz{TAG}cg", "busybox", "sleep", "300")
    st = inspect(cid)["State"]
    os.kill(st["SupervisorPid"], signal.SIGKILL)
    os.kill(st["Pid"], signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{st['Pid']}"), what="the init to die")
    pids_cg = os.path.join(cgroups.host_layout().v1["pids"], cgroups.cgroup_parent(), cid)
    stray = subprocess.Popen(["sleep", "300"])
    try:
        with open(os.path.join(pids_cg, "cgroup.procs"), "w") as f:
            f.write(str(stray.pid))  # a process left in the container's cgroup, outside its namespaces
        got = findings()
        assert any(f["kind"] == "state" and "still run in its cgroup" in f["why"] and str(stray.pid) in f["why"]
                   for f in got), got
        out = prune()
        assert "Removed cgroup " in out and f"Deleted container: {cid}" in out, out
        assert stray.wait(10) == -signal.SIGKILL
        assert_clean()
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()


def test_a_running_container_without_its_supervisor_is_reported_not_stopped_by_prune():
    cid = run_d("--name", f"zz{TAG}nosup", "busybox", "sleep", "300")
    st = inspect(cid)["State"]
    os.kill(st["SupervisorPid"], signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{st['SupervisorPid']}"), what="the supervisor to die")
    got = findings()
    assert [(f["kind"], f["fixable"]) for f in got if "supervisor" in f["why"]] == [("state", False)], got
    prune()  # prune stops no running container
    assert os.path.exists(f"/proc/{st['Pid']}")
    assert check().returncode == 1
    labtui("stop", "-t", "1", cid)
    out = prune()  # the stop could not be recorded by the supervisor: prune records it, then removes it
    assert f"Deleted container: {cid}" in out, out
    assert_clean()
