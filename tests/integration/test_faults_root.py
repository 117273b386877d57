"""Faults (issue 15): each is reported clearly, and the rest of labtui keeps working.

Every test has its own state directory (LABTUI_ROOT), cgroup parent and default bridge, so what
it breaks by hand is nobody else's: after each fault, the command that met it says why (one line,
no traceback, a non-zero exit where it failed) and an ordinary `labtui run --rm busybox true`
works in the same state (or, where the fault is the image itself, after the documented repair).
docs/reliability-faults.md describes each fault and labtui's answer.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers import labtui, wait_for

pytestmark = [pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]


class Lab:
    """A private labtui: its own LABTUI_ROOT, cgroup parent and default bridge."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="zz-flt-", dir="/var/tmp"))
        tag = os.urandom(3).hex()
        self.parent = f"zz-flt-{tag}"
        self.bridge = f"zzflt{tag}"
        self.env = dict(os.environ, LABTUI_ROOT=str(self.root), LABTUI_CGROUP_PARENT=self.parent,
                        LABTUI_DEFAULT_BRIDGE=self.bridge, LABTUI_HELPER="0", PYTHONPATH=str(REPO))
        self.mounted: Path | None = None

    @property
    def lib(self) -> Path:
        return self.root / "lib"

    def __call__(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        p = labtui(*args, check=check, timeout=timeout, env=self.env)
        assert "Traceback" not in p.stderr, p.stderr  # whatever the fault: a message, never a traceback
        return p

    def fails(self, *args: str, rc: int | None = None) -> str:
        """A command that must fail cleanly: non-zero, one message, no traceback. Its stderr."""
        p = self(*args, check=False)
        assert p.returncode != 0, f"labtui {' '.join(args)} succeeded: {p.stdout}"
        if rc is not None:
            assert p.returncode == rc, p.stderr
        assert "Traceback" not in p.stderr and p.stderr.startswith("labtui: "), p.stderr
        return p.stderr

    def ps(self) -> list[dict]:
        p = self("ps", "-a", "--format", "json")
        assert "Traceback" not in p.stderr
        return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]

    def inspect(self, ref: str) -> dict:
        return json.loads(self("inspect", ref).stdout)[0]

    def still_works(self) -> None:
        p = self("run", "--rm", "busybox", "sh", "-c", "echo fine", check=False)
        assert (p.returncode, p.stdout, p.stderr) == (0, "fine\n", ""), p

    def py(self, code: str) -> str:
        """Engine code in a process of its own, under this lab's environment."""
        return subprocess.run([sys.executable, "-c", code], env=self.env, cwd=REPO, check=True,
                              capture_output=True, text=True, timeout=60).stdout

    def supervisors(self) -> list[int]:
        mark = f"LABTUI_ROOT={self.root}".encode()
        out = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "labtui-sup" and \
                        mark in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    out.append(int(pid))
        return out

    def close(self) -> list[str]:
        """Remove what the test left (its containers through labtui, then whatever is still
        there); returns the cgroups that `rm` had left behind, for the fixture to fail on."""
        try:
            for c in self.ps():
                self("rm", "-f", c["Id"], check=False)
            # A --rm container's supervisor removes its cgroups after its caller returned.
            wait_for(lambda: not self.supervisors(), timeout=20, what="this lab's supervisors to end")
        finally:
            left = [str(d) for p in parent_dirs(self.parent) for d in p.iterdir() if d.is_dir()]
            self.py("from tests import helpers\nhelpers.force_cleanup()\nhelpers.remove_networks()\n"
                    "from engine import cgroups\nfrom engine.steps import null_recorder\n"
                    "cgroups.remove_empty_parents(null_recorder())\n")
            for d in sorted(left, reverse=True):  # a failed test's: the machine stays clean anyway
                with contextlib.suppress(OSError):
                    os.rmdir(d)
            for p in parent_dirs(self.parent):
                with contextlib.suppress(OSError):
                    p.rmdir()
            if self.mounted is not None:
                subprocess.run(["umount", str(self.mounted)], check=True)
            shutil.rmtree(self.root, ignore_errors=True)
        return left


@pytest.fixture
def lab():
    lb = Lab()
    try:
        yield lb
    finally:
        left = lb.close()
    assert left == [], f"rm left cgroups behind: {left}"


def events_of(lab: Lab, type_: str) -> list[dict]:
    out = lab("events", "--format", "json", "--filter", f"type={type_}").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# ---- the state directory's disk fills up while logs are written ----------------------------------

def test_full_disk_stops_the_log_not_the_container(lab: Lab) -> None:
    """A tmpfs of 8 MiB as the state directory (its runtime half stays on the host's disk, as
    /run/labtui does): a container writes ~8 MB of output. Its log stops growing with 1 MiB (the
    log's reserve) still free, the container keeps running, the drop is on the timeline and in
    `labtui logs`, and every other command still works, `run` included."""
    lab.lib.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0711", "zz-flt-full", str(lab.lib)], check=True)
    lab.mounted = lab.lib
    line = "x" * 1000
    cid = lab("run", "-d", "--name", "chatty", "busybox", "sh", "-c",
              f"yes {line} | head -c 8000000; echo written; exec sleep 1000").stdout.strip()
    full = wait_for(lambda: events_of(lab, "log_full"), timeout=30, what="the log_full event")
    assert full[0]["container"] == cid and full[0]["reserve"] == 1 << 20
    vfs = os.statvfs(lab.lib)
    assert vfs.f_bavail * vfs.f_frsize >= (1 << 20) - (256 << 10), "the log ate into its reserve"
    log = lab.lib / "containers" / cid / "container.log"
    assert log.stat().st_size > 2 << 20
    # Not killed by its log: still running, seen by ps and inspect.
    assert lab.inspect("chatty")["State"]["Status"] == "running"
    assert [c["State"] for c in lab.ps() if c["Id"] == cid] == ["running"]
    logs = lab("logs", "--tail", "1", "chatty")
    assert "this log is incomplete" in logs.stderr and str(lab.lib) in logs.stderr, logs.stderr
    # The last record that fitted: a line of x's, or (a short write fits above the reserve) the
    # end of head's cut line and the echo.
    assert logs.stdout.lstrip("x") in ("\n", "written\n"), logs.stdout[-80:]
    lab.still_works()
    lab("rm", "-f", "chatty")
    assert lab.ps() == []


def test_disk_filled_by_a_container_is_one_line_and_rm_frees_it(lab: Lab) -> None:
    """The same disk filled to the last byte by a container's own files (its upper directory),
    which then exits: its supervisor still cleans up after it (its exit code is lost: there is
    no room to record it), commands that must write say so in one line with 125, and `rm` of
    the culprit works and gives the space back."""
    lab.lib.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0711", "zz-flt-fill", str(lab.lib)], check=True)
    lab.mounted = lab.lib
    lab("run", "-d", "--name", "filler", "busybox", "sh", "-c", "dd if=/dev/zero of=/fill bs=64k; exit 3")
    wait_for(lambda: (st := lab.inspect("filler")["State"])["Status"] == "exited" and not st["SupervisorPid"],
             timeout=30, what="filler and its supervisor to end")
    assert os.statvfs(lab.lib).f_bavail == 0
    assert [str(d) for p in parent_dirs(lab.parent) for d in p.iterdir() if d.is_dir()] == []
    err = lab.fails("run", "--rm", "busybox", "true", rc=125)
    assert "No space left on device" in err and str(lab.lib) in err, err
    assert [c["Names"] for c in lab.ps()] == ["filler"]  # nothing half-created
    lab("rm", "filler")
    assert lab.ps() == []
    lab.still_works()


# ---- an image layer removed underneath ----------------------------------------------------------

def test_missing_layer_is_named_and_repaired_by_rm_and_rebuild(lab: Lab) -> None:
    lab.still_works()  # builds busybox:latest
    rec = json.loads((lab.lib / "images" / "busybox" / "latest.json").read_text())
    layer = rec["layers"][0]
    shutil.rmtree(lab.lib / "layers" / layer)
    err = lab.fails("run", "--rm", "busybox", "true", rc=125)
    assert f"layer {layer[:12]} is missing" in err and "labtui image rm busybox:latest" in err, err
    assert lab.ps() == []  # nothing half-created
    assert "busybox" in lab("image", "ls").stdout
    # The repair the message names: forget the image; busybox is rebuilt on its next use.
    lab("image", "rm", "busybox")
    lab.still_works()


# ---- a corrupted state file ---------------------------------------------------------------------

def test_damaged_records_make_one_container_dead_not_every_command_fail(lab: Lab) -> None:
    ok = lab("create", "--name", "ok", "busybox", "true").stdout.strip()
    bad_state = lab("create", "--name", "badstate", "busybox", "true").stdout.strip()
    bad_config = lab("create", "--name", "badconfig", "--network", "bridge", "busybox", "true").stdout.strip()
    (lab.lib / "containers" / bad_state / "state.json").write_text('{"pid": 12')  # cut short
    (lab.lib / "containers" / bad_config / "config.json").write_bytes(b"\x00\xff garbage")
    rows = {c["Id"]: c for c in lab.ps()}
    assert set(rows) == {ok, bad_state, bad_config}
    assert rows[ok]["State"] == "created"
    for cid, name, file in ((bad_state, "badstate", "state.json"), (bad_config, "badconfig", "config.json")):
        assert rows[cid]["State"] == "dead" and rows[cid]["Names"] == name
        assert f"{file} is damaged" in rows[cid]["Status"], rows[cid]
        err = lab.fails("inspect", name)
        assert f"container {name} is damaged: {file}" in err and f"labtui rm -f {name}" in err, err
    assert "badconfig" in lab("ps", "-a").stdout  # the table too
    assert lab.inspect("ok")["Id"] == ok
    lab("rm", "-f", "badstate", "badconfig")
    assert [c["Id"] for c in lab.ps()] == [ok]
    assert bad_config not in lab("network", "inspect", "bridge").stdout  # its address lease went too
    lab("create", "--name", "badconfig", "busybox", "true")  # its name was released
    lab.still_works()


# ---- a stale lock left by a killed process ------------------------------------------------------

def test_locks_of_a_killed_process_do_not_block_later_commands(lab: Lab) -> None:
    """labtui's locks are flock(2)s on lock files (the image store's, the address store's, each
    container's): the kernel releases them when their holder dies, however it dies. A process
    that holds all three is SIGKILLed; the commands that take them proceed."""
    cid = lab("create", "--name", "held", "busybox", "true").stdout.strip()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom engine import state\nfrom engine.images import store\n"
         "from engine.network import ipam\n"
         f"with store._store_lock(), ipam.store_lock(), state.locked({cid!r}):\n"
         "    print('held', flush=True)\n    time.sleep(600)\n"],
        env=lab.env, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        holder.kill()  # SIGKILL: no finally, no atexit
        holder.wait(10)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    lab("image", "rm", "busybox", check=False)  # in use by "held": Conflict, but past the lock
    lab("start", "held")
    assert wait_for(lambda: lab.inspect("held")["State"]["Status"] == "exited", what="held to exit")
    lab("rm", "held")
    p = lab("run", "--rm", "--network", "bridge", "busybox", "true", timeout=60)
    assert p.returncode == 0
    lab.still_works()


# ---- the cgroup parent removed by hand ----------------------------------------------------------

def parent_dirs(parent: str) -> list[Path]:
    return [p for p in Path("/sys/fs/cgroup").glob(f"*/{parent}") if p.is_dir()] + \
        [p for p in [Path("/sys/fs/cgroup") / parent] if p.is_dir()]


def test_cgroup_parent_removed_by_hand_is_made_again(lab: Lab) -> None:
    lab.still_works()
    made = parent_dirs(lab.parent)
    assert made, "labtui made no cgroup parent"
    # A --rm container's cgroups go after its caller was released (engine/supervisor.py, deferred).
    wait_for(lambda: not any(c.is_dir() for d in made for c in d.iterdir()), what="the parents to be empty")
    for d in made:
        d.rmdir()  # empty: no container runs
    assert parent_dirs(lab.parent) == []
    lab.still_works()
    assert sorted(parent_dirs(lab.parent)) == sorted(made)
    # With a container running its parent cannot go: rmdir(2) says EBUSY, and nothing breaks.
    lab("run", "-d", "--name", "busy", "busybox", "sleep", "1000")
    for d in made:
        with pytest.raises(OSError) as e:
            d.rmdir()
        assert e.value.errno == errno.EBUSY
    lab.still_works()
    lab("rm", "-f", "busy")


# ---- a veth deleted by hand under a running container -------------------------------------------

def test_veth_deleted_by_hand_under_a_running_container(lab: Lab) -> None:
    from pyroute2 import IPRoute

    cid = lab("run", "-d", "--network", "bridge", "--name", "wired", "busybox", "sleep", "1000").stdout.strip()
    host_veth = "lt" + cid[:10]
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=host_veth)
        assert idx, f"no host veth {host_veth}"
        ipr.link("del", index=idx[0])  # the peer in the container goes with it (veth(4))
    info = lab.inspect("wired")
    assert info["State"]["Status"] == "running"
    lab("stop", "-t", "1", "wired")
    lab("rm", "wired")
    leases = json.loads(lab("network", "inspect", "bridge").stdout)[0]
    assert cid not in json.dumps(leases), leases  # its address went back to the pool
    with IPRoute() as ipr:
        assert not ipr.link_lookup(ifname=host_veth)
    assert os.listdir(f"/sys/class/net/{lab.bridge}/brif") == []  # no port left on the bridge
    p = lab("run", "--rm", "--network", "bridge", "busybox", "ip", "-4", "-o", "addr", "show", "eth0")
    assert " inet " in p.stdout, p.stdout
    lab.still_works()
