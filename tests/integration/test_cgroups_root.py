"""cgroup drivers against the real kernel: limits read back, OOM, throttling, pids, freezer, shares.

v1 tests run on the host's v1 hierarchies (legacy or hybrid layouts). The v2 tests use the host's
cgroup2 mount: on a hybrid host that is /sys/fs/cgroup/unified, which holds no controllers here,
but cgroup.procs, cgroup.freeze, cgroup.events and cgroup.kill work without any.
Every test destroys what it made; the last one checks no directory of our parent is left.
"""

from __future__ import annotations

import glob
import os
import secrets
import select
import signal
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest

from engine.cgroups import (
    AlertWatcher,
    Limits,
    V1Driver,
    V2Driver,
    detect,
    get_driver,
    is_frozen_for,
    read_stats,
)
from engine.cgroups.base import PARENT_ENV
from engine.steps import Recorder

pytestmark = pytest.mark.root

PARENT = f"labtui-test-{secrets.token_hex(4)}"
MiB = 1 << 20
LAYOUT = detect()
HAS_V1 = LAYOUT.kind in ("legacy", "hybrid")
needs_v1 = pytest.mark.skipif(not HAS_V1, reason="needs cgroup v1 hierarchies (legacy or hybrid host)")
needs_v2 = pytest.mark.skipif(LAYOUT.v2_mount is None, reason="needs a cgroup2 mount")


@pytest.fixture(scope="module", autouse=True)
def our_parent() -> Iterator[str]:
    old = os.environ.get(PARENT_ENV)
    os.environ[PARENT_ENV] = PARENT
    yield PARENT
    if old is None:
        os.environ.pop(PARENT_ENV, None)
    else:
        os.environ[PARENT_ENV] = old
    _force_remove_leftovers()


def _force_remove_leftovers() -> None:
    """Last resort if a test failed half-way: empty and remove our parent everywhere."""
    for top in glob.glob(f"/sys/fs/cgroup/*/{PARENT}"):
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda x: -x[0].count("/")):
            try:
                with open(os.path.join(dirpath, "cgroup.procs")) as f:
                    for pid in f.read().split():
                        os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
            for _ in range(100):
                try:
                    os.rmdir(dirpath)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


class Child:
    """A forked child that waits on a pipe until released, then runs ``work`` and exits."""

    def __init__(self, work: Callable[[], int] | None = None) -> None:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            code = 99
            try:
                os.close(w)
                os.read(r, 1)
                code = work() if work else 0
            finally:
                os._exit(code)
        os.close(r)
        self.pid, self._w, self.status = pid, w, None

    def release(self) -> None:
        os.write(self._w, b"go")
        os.close(self._w)
        self._w = -1

    def wait(self, timeout: float = 10.0) -> int | None:
        deadline = time.monotonic() + timeout
        while self.status is None and time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
            else:
                time.sleep(0.01)
        return self.status

    def reap(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait(5)
        if self._w >= 0:
            os.close(self._w)
            self._w = -1


class Lab:
    def __init__(self) -> None:
        self.steps: list[dict] = []
        self.drivers: list = []
        self.children: list[Child] = []

    def driver(self, cid: str | None = None, force: str | None = None):
        cid = cid or "c" + secrets.token_hex(4)
        cg = get_driver(cid, Recorder(cid, self.steps.append), force=force)
        self.drivers.append(cg)
        return cg

    def child(self, work: Callable[[], int] | None = None) -> Child:
        c = Child(work)
        self.children.append(c)
        return c


@pytest.fixture
def lab() -> Iterator[Lab]:
    lab = Lab()
    yield lab
    errors = []
    for cg in lab.drivers:
        try:
            cg.destroy()
        except Exception as e:  # keep cleaning the others
            errors.append(e)
    for c in lab.children:
        c.reap()
    assert not errors, errors


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def busy_loop(seconds: float = 30.0) -> Callable[[], int]:
    def work() -> int:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
        return 0
    return work


def wait_alert(watcher: AlertWatcher, alert: str, timeout: float = 5.0) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in watcher.check():
            if e["alert"] == alert:
                return e
        time.sleep(0.1)
    return None


# -- v1 ---------------------------------------------------------------------------------------

@needs_v1
def test_v1_limits_read_back_from_the_kernel(lab):
    cg = lab.driver()
    assert isinstance(cg, V1Driver)
    cg.create()
    child = lab.child()
    cg.add_pid(child.pid)
    warnings = cg.apply(Limits(memory=64 * MiB, memory_swap=96 * MiB, cpus=0.5, cpu_shares=512,
                               cpuset_cpus="0", pids_limit=20, blkio_weight=300))
    p = cg.paths()
    assert read(p["memory"] + "/memory.limit_in_bytes") == str(64 * MiB)
    assert read(p["cpu"] + "/cpu.cfs_quota_us") == "50000"
    assert read(p["cpu"] + "/cpu.cfs_period_us") == "100000"
    assert read(p["cpu"] + "/cpu.shares") == "512"
    assert read(p["cpuset"] + "/cpuset.cpus") == "0"
    assert read(p["pids"] + "/pids.max") == "20"
    if os.path.exists(p["memory"] + "/memory.memsw.limit_in_bytes"):
        assert read(p["memory"] + "/memory.memsw.limit_in_bytes") == str(96 * MiB)
    weight = [f for f in ("blkio.weight", "blkio.bfq.weight") if os.path.exists(f"{p['blkio']}/{f}")]
    if weight:
        assert read(f"{p['blkio']}/{weight[0]}").split()[-1] == "300"
    else:
        assert any("not supported by this kernel" in w for w in warnings)
    # The kernel sees the child in every hierarchy, at the path we chose.
    with open(f"/proc/{child.pid}/cgroup") as f:
        lines = f.read().splitlines()
    for c in ("memory", "cpu", "cpuset", "pids", "freezer"):
        assert any(line.split(":")[1].split(",").count(c) and line.endswith(cg.namespace_path())
                   for line in lines), (c, lines)
    assert read(f"/proc/{child.pid}/status").split("Cpus_allowed_list:")[1].split()[0] == "0"
    assert cg.pids() == [child.pid]
    # docker update: growing memory and memsw together needs memsw written first.
    cg.update(Limits(memory=128 * MiB, memory_swap=256 * MiB))
    assert read(p["memory"] + "/memory.limit_in_bytes") == str(128 * MiB)
    assert all(s["result"] == "ok" for s in lab.steps), [s for s in lab.steps if s["result"] != "ok"]


@needs_v1
def test_v1_oom_kill_raises_an_alert(lab):
    cg = lab.driver()
    cg.create()
    events: list[dict] = []

    def hog() -> int:
        chunks = []
        for _ in range(512):
            chunks.append(b"x" * MiB)  # touched pages: each one is charged to the cgroup
        return 0

    child = lab.child(hog)
    cg.add_pid(child.pid)
    cg.apply(Limits(memory=32 * MiB))
    watcher = AlertWatcher(cg, cg.container_id, events.append, use_eventfd=True)
    try:
        child.release()
        status = child.wait(15)
        assert status is not None and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        if watcher.fileno() is not None:  # the kernel signalled the OOM eventfd
            assert select.select([watcher.fileno()], [], [], 2)[0]
        alert = wait_alert(watcher, "oom", 2)
    finally:
        watcher.close()
    assert alert is not None, events
    assert alert["counter"] == "oom_kill" and alert["value"] >= 1
    assert alert["file"] == cg.paths()["memory"] + "/memory.oom_control"
    assert alert["container"] == cg.container_id and "OOM" in alert["message"]
    stats = read_stats(cg)
    assert stats["oom_kill"] >= 1 and stats["memory_failcnt"] > 0


@needs_v1
def test_v1_cpu_quota_throttles_and_alerts(lab):
    cg = lab.driver()
    cg.create()
    child = lab.child(busy_loop())
    cg.add_pid(child.pid)
    cg.apply(Limits(cpus=0.2))
    events: list[dict] = []
    watcher = AlertWatcher(cg, cg.container_id, events.append)
    child.release()
    alert = wait_alert(watcher, "throttled", 5)
    assert alert is not None, events
    assert alert["counter"] == "nr_throttled" and alert["value"] > 0
    assert alert["file"] == cg.paths()["cpu"] + "/cpu.stat"
    stats = read_stats(cg)
    assert stats["nr_throttled"] > 0 and stats["throttled_time_ns"] > 0


@needs_v1
def test_v1_pids_limit_makes_fork_fail_and_alerts(lab):
    cg = lab.driver()
    cg.create()

    def fork_loop() -> int:
        for _ in range(100):
            try:
                pid = os.fork()
            except BlockingIOError:  # EAGAIN from the pids controller
                return 42
            if pid == 0:
                time.sleep(60)
                os._exit(0)
        return 1

    child = lab.child(fork_loop)
    cg.add_pid(child.pid)
    cg.apply(Limits(pids_limit=20))
    events: list[dict] = []
    watcher = AlertWatcher(cg, cg.container_id, events.append)
    child.release()
    status = child.wait(15)
    assert status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 42
    alert = wait_alert(watcher, "pids_limit", 2)
    assert alert is not None, events
    assert alert["value"] >= 1 and alert["counter"] in ("max", "pids.current")
    assert int(read(cg.paths()["pids"] + "/pids.current")) <= 20
    # The grandchildren still sleep in the cgroup; destroy (in the fixture) must kill them all.
    assert len(cg.pids()) == 19


@needs_v1
def test_v1_freeze_and_thaw(lab):
    cg = lab.driver()
    cg.create()
    child = lab.child(busy_loop())
    cg.add_pid(child.pid)
    child.release()
    state = cg.paths()["freezer"] + "/freezer.state"
    usage = cg.paths()["cpuacct"] + "/cpuacct.usage"
    time.sleep(0.1)
    cg.freeze()
    assert read(state) == "FROZEN" and cg.is_frozen()
    assert is_frozen_for(SimpleNamespace(id=cg.container_id, state={}))
    before = int(read(usage))
    time.sleep(0.3)
    assert int(read(usage)) == before  # a frozen task gets no CPU
    cg.thaw()
    assert read(state) == "THAWED" and not cg.is_frozen()
    time.sleep(0.2)
    assert int(read(usage)) > before


@needs_v1
def test_v1_destroy_kills_a_lingering_frozen_process(lab):
    cg = lab.driver()
    cg.create()
    child = lab.child()  # never released: it lingers
    cg.add_pid(child.pid)
    cg.freeze()
    dirs = list(cg.paths().values())
    lab.steps.clear()
    cg.destroy()
    assert not any(os.path.exists(d) for d in dirs)
    status = child.wait(5)
    assert status is not None and os.WTERMSIG(status) == signal.SIGKILL
    ops = [(s["mechanism"], s["op"]) for s in lab.steps]
    assert ops.index(("cgroup", "write")) < ops.index(("signal", "kill")) < ops.index(("cgroup", "rmdir"))


@needs_v1
def test_v1_cpu_shares_split_one_cpu(lab):
    children = {}
    for shares in (1024, 256):
        cg = lab.driver()
        cg.create()
        c = lab.child(busy_loop(20))
        cg.add_pid(c.pid)
        cg.apply(Limits(cpu_shares=shares, cpuset_cpus="0"))
        children[shares] = (cg, c)
    for _, c in children.values():
        c.release()
    time.sleep(0.5)
    start = {s: int(read(cg.paths()["cpuacct"] + "/cpuacct.usage")) for s, (cg, _) in children.items()}
    time.sleep(2.5)
    used = {s: int(read(cg.paths()["cpuacct"] + "/cpuacct.usage")) - start[s] for s, (cg, _) in children.items()}
    share = used[1024] / (used[1024] + used[256]) * 100
    print(f"shares 1024/256 -> {share:.1f}% / {100 - share:.1f}% of CPU 0")
    assert 70 <= share <= 90, f"1024 vs 256 shares got {share:.1f}% / {100 - share:.1f}%"


@needs_v1
def test_v1_stats_for_fifty_containers_in_one_tick(lab):
    drivers = [lab.driver(f"s{i}-{secrets.token_hex(2)}") for i in range(50)]
    for cg in drivers:
        cg.create()
    best = 1.0
    for _ in range(3):
        t = time.perf_counter()
        for cg in drivers:
            read_stats(cg)
        best = min(best, time.perf_counter() - t)
    assert best < 0.020, f"one stats tick for 50 containers took {best * 1000:.1f} ms"


# -- v2 on the real cgroup2 mount -------------------------------------------------------------

@needs_v2
def test_v2_freeze_events_and_kill(lab):
    cg = lab.driver(force="v2")
    assert isinstance(cg, V2Driver)
    cg.create()
    assert os.path.isdir(cg.dir()) and cg.dir().startswith(LAYOUT.v2_mount + f"/{PARENT}/")
    child = lab.child(busy_loop())
    cg.add_pid(child.pid)
    child.release()
    assert cg.pids() == [child.pid]
    assert cg.events()["populated"] == 1
    cg.freeze()
    assert "frozen 1" in read(cg.dir() + "/cgroup.events") and cg.is_frozen()
    usage = read_stats(cg)["cpu_usage_ns"]
    time.sleep(0.2)
    assert read_stats(cg)["cpu_usage_ns"] == usage
    cg.thaw()
    assert "frozen 0" in read(cg.dir() + "/cgroup.events")
    with open(f"/proc/{child.pid}/cgroup") as f:
        assert f"0::{cg.namespace_path()}\n" in f.read()
    cg.freeze()  # destroy must thaw first, then kill the lingering process
    has_kill = os.path.exists(cg.dir() + "/cgroup.kill")  # Linux 5.14+
    lab.steps.clear()
    cg.destroy()
    assert not os.path.exists(cg.dir())
    status = child.wait(5)
    assert status is not None and os.WTERMSIG(status) == signal.SIGKILL
    written = [os.path.basename(s["target"]) for s in lab.steps if s["op"] == "write"]
    assert written[0] == "cgroup.freeze"
    assert ("cgroup.kill" in written) == has_kill


@needs_v2
def test_v2_apply_on_this_mount_writes_or_warns(lab):
    cg = lab.driver(force="v2")
    cg.create()
    warnings = cg.apply(Limits(memory=64 * MiB, pids_limit=20))
    for name, value in (("memory.max", str(64 * MiB)), ("pids.max", "20")):
        path = cg.dir() + "/" + name
        if os.path.exists(path):
            assert read(path) == value
        else:
            assert any(name in w for w in warnings)


def test_zz_no_parent_left_behind():
    """Every test removed its cgroups; the parent they leave for the next container goes with
    `system prune` (cgroups.remove_empty_parents), once empty."""
    from engine import cgroups
    from engine.steps import null_recorder

    tops = glob.glob(f"/sys/fs/cgroup/*/{PARENT}") + glob.glob(f"/sys/fs/cgroup/{PARENT}")
    assert [d for t in tops for d in os.listdir(t) if os.path.isdir(os.path.join(t, d))] == []
    cgroups.remove_empty_parents(null_recorder())
    assert glob.glob(f"/sys/fs/cgroup/*/{PARENT}") == []
    assert glob.glob(f"/sys/fs/cgroup/*/{PARENT}*") == []
