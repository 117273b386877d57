"""V1 and V2 drivers against a fake cgroupfs in tmp_path, asserting the exact steps written.

FakeCgroupFS plays the kernel's part: mkdir makes a cgroup's files appear, cgroup.procs refuses
tasks while a v1 cpuset is empty, memory.limit_in_bytes must stay <= memsw, cgroup.subtree_control
only accepts controllers in cgroup.controllers, rmdir of a populated cgroup is EBUSY, and
freezing can take a few reads.
"""

from __future__ import annotations

import errno
import os

import pytest

import engine.cgroups.v1 as v1mod
import engine.cgroups.v2 as v2mod
from engine.cgroups import NullDriver, V1Driver, V2Driver, get_driver
from engine.cgroups.base import CgroupFS, cgroup_parent
from engine.cgroups.detect import Layout, detect
from engine.cgroups.limits import Limits
from engine.errors import EngineError, InvalidArgument
from engine.steps import Recorder

MiB = 1 << 20
HYBRID = "".join(
    f"{32 + i} 31 0:{29 + i} / /sys/fs/cgroup/{c} rw,relatime - cgroup cgroup rw,{c}\n"
    for i, c in enumerate(["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"])
) + "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
UNIFIED = "27 22 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V1_UNLIMITED = "9223372036854771712"
PID = 4242  # a fake pid: the fake's kill() never signals a real process

V1_FILES = {
    "cpu": {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1", "cpu.shares": "1024",
            "cpu.stat": "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n"},
    "cpuacct": {"cpuacct.usage": "0"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "memory": {"memory.limit_in_bytes": V1_UNLIMITED, "memory.memsw.limit_in_bytes": V1_UNLIMITED,
               "memory.usage_in_bytes": "0", "memory.use_hierarchy": "1", "memory.failcnt": "0",
               "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
               "memory.stat": "total_inactive_file 0\n"},
    "devices": {},
    "freezer": {"freezer.state": "THAWED"},
    "blkio": {"blkio.bfq.weight": "100"},
    "pids": {"pids.max": "max", "pids.current": "0", "pids.events": "max 0\n"},
}
V2_CONTROLLER_FILES = {
    "cpu": {"cpu.max": "max 100000", "cpu.weight": "100"},
    "memory": {"memory.max": "max", "memory.swap.max": "max", "memory.current": "0",
               "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"},
    "pids": {"pids.max": "max", "pids.current": "0", "pids.events": "max 0\n"},
    "cpuset": {"cpuset.cpus": ""},
    "io": {"io.weight": "default 100"},
}
ALL_V2 = "cpuset cpu io memory hugetlb pids rdma misc"


class FakeCgroupFS(CgroupFS):
    def __init__(self, root: str, *, v2_base: str | None = None, omit: tuple[str, ...] = (),
                 freezing_reads: int = 0, busy_rmdirs: int = 0) -> None:
        self.root = root
        self.v2_base = v2_base
        self.omit = set(omit)
        self.freezing_reads = freezing_reads  # reads that still report FREEZING / frozen 0
        self.busy_rmdirs = busy_rmdirs
        self.killed: list[int] = []
        self.before_mkdir: dict[str, Exception | str] = {}  # path -> error to raise / "race"

    # -- helpers ----------------------------------------------------------------------------
    def _put(self, path: str, text: str) -> None:
        with open(path, "w") as f:
            f.write(text)

    def _get(self, path: str) -> str:
        with open(path) as f:
            return f.read()

    def _is_v2(self, path: str) -> bool:
        return self.v2_base is not None and (path == self.v2_base or path.startswith(self.v2_base + "/"))

    def _populate(self, d: str) -> None:
        files = {"cgroup.procs": ""}
        if self._is_v2(d):
            parent_enabled = self._get(os.path.join(os.path.dirname(d), "cgroup.subtree_control")).split()
            files |= {"cgroup.controllers": " ".join(parent_enabled), "cgroup.subtree_control": "",
                      "cgroup.events": "populated 0\nfrozen 0\n", "cgroup.freeze": "0", "cgroup.kill": "",
                      "cpu.stat": "usage_usec 0\n", "memory.stat": "inactive_file 0\n"}
            for c in parent_enabled:
                files |= V2_CONTROLLER_FILES.get(c, {})
        else:
            controller = os.path.relpath(d, self.root).split("/")[0]
            files |= V1_FILES[controller]
        for name, text in files.items():
            if name not in self.omit:
                self._put(os.path.join(d, name), text)

    # -- the kernel's side effects ----------------------------------------------------------
    def mkdir(self, path: str) -> None:
        action = self.before_mkdir.pop(path, None)
        if action == "race":  # another supervisor creates it first
            os.mkdir(path)
            self._populate(path)
        elif isinstance(action, Exception):
            raise action
        os.mkdir(path)
        self._populate(path)

    def rmdir(self, path: str) -> None:
        if self.subdirs(path) or self._get(os.path.join(path, "cgroup.procs")).split():
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        if self.busy_rmdirs:
            self.busy_rmdirs -= 1
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        for name in os.listdir(path):
            os.unlink(os.path.join(path, name))
        os.rmdir(path)

    def read(self, path: str) -> str:
        text = self._get(path)
        name = os.path.basename(path)
        if self.freezing_reads and name == "freezer.state" and text.strip() == "FROZEN":
            self.freezing_reads -= 1
            return "FREEZING\n"
        if self.freezing_reads and name == "cgroup.events" and "frozen 1" in text:
            self.freezing_reads -= 1
            return text.replace("frozen 1", "frozen 0")
        return text

    def write(self, path: str, data: str) -> None:
        if not os.path.isfile(path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        d, name = os.path.split(path)
        handler = getattr(self, "_w_" + name.replace(".", "_"), None)
        if handler is not None:
            handler(d, path, data)
        else:
            self._put(path, data)

    def _w_cgroup_procs(self, d: str, path: str, data: str) -> None:
        cpus = os.path.join(d, "cpuset.cpus")
        if not self._is_v2(d) and os.path.exists(cpus) and not self._get(cpus).strip():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)  # empty v1 cpuset
        self._put(path, self._get(path) + data + "\n")
        if self._is_v2(d):
            self._put(os.path.join(d, "cgroup.events"), "populated 1\nfrozen 0\n")

    def _w_memory_limit_in_bytes(self, d: str, path: str, data: str) -> None:
        memsw = os.path.join(d, "memory.memsw.limit_in_bytes")
        if os.path.exists(memsw) and int(data) > int(self._get(memsw)):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), path)  # memory.rst 2.5
        self._put(path, data)

    def _w_memory_memsw_limit_in_bytes(self, d: str, path: str, data: str) -> None:
        value = V1_UNLIMITED if data == "-1" else data
        if int(value) < int(self._get(os.path.join(d, "memory.limit_in_bytes"))):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), path)
        self._put(path, value)

    def _w_cgroup_subtree_control(self, d: str, path: str, data: str) -> None:
        available = self._get(os.path.join(d, "cgroup.controllers")).split()
        enabled = self._get(path).split()
        for token in data.split():
            if token[1:] not in available:
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
            if token[0] == "+" and token[1:] not in enabled:
                enabled.append(token[1:])
        self._put(path, " ".join(enabled))

    def _w_cgroup_freeze(self, d: str, path: str, data: str) -> None:
        self._put(path, data)
        populated = "populated 1" in self._get(os.path.join(d, "cgroup.events"))
        self._put(os.path.join(d, "cgroup.events"), f"populated {int(populated)}\nfrozen {data}\n")

    def _w_cgroup_kill(self, d: str, path: str, data: str) -> None:
        procs = os.path.join(d, "cgroup.procs")
        self.killed += [int(p) for p in self._get(procs).split()]
        self._put(procs, "")

    def kill(self, pid: int, sig: int) -> None:
        self.killed.append(pid)
        for dirpath, _dirs, files in os.walk(self.root):
            if "cgroup.procs" in files:
                p = os.path.join(dirpath, "cgroup.procs")
                self._put(p, "".join(f"{x}\n" for x in self._get(p).split() if int(x) != pid))

    def sleep(self, seconds: float) -> None:
        return None


# -- fixtures ---------------------------------------------------------------------------------

def make_v1_tree(root) -> Layout:
    for c in V1_FILES:
        d = root / c
        d.mkdir()
        (d / "cgroup.procs").write_text("1\n")
    (root / "cpuset" / "cpuset.cpus").write_text("0-1\n")
    (root / "cpuset" / "cpuset.mems").write_text("0\n")
    (root / "unified").mkdir()
    (root / "unified" / "cgroup.controllers").write_text("hugetlb\n")
    (root / "unified" / "cgroup.subtree_control").write_text("")
    return detect(text=HYBRID)  # mountpoints under /sys/fs/cgroup; the driver rebases them


def make_v2_tree(root, controllers: str = ALL_V2, enabled: str = "") -> Layout:
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text(enabled)
    (root / "cgroup.procs").write_text("1\n")
    return Layout(kind="unified", v2_mount="/sys/fs/cgroup", v2_controllers=controllers.split())


class Env:
    def __init__(self, root, fs: FakeCgroupFS, layout: Layout, version: str) -> None:
        self.root = str(root)
        self.fs = fs
        self.layout = layout
        self.steps: list[dict] = []
        self.rec = Recorder("c1", self.steps.append)
        self.version = version

    def driver(self, cid: str = "c1", parent: str | None = "labtui"):
        cls = V1Driver if self.version == "v1" else V2Driver
        return cls(cid, self.rec, self.layout, self.root, fs=self.fs, parent=parent)

    def rel(self, path: str) -> str:
        return os.path.relpath(path, self.root)

    def writes(self) -> list[tuple[str, str, str]]:
        return [(s["op"], self.rel(s["target"]) if s["target"].startswith("/") else s["target"],
                 s.get("written", s["value"]))
                for s in self.steps if s["mechanism"] == "cgroup"]

    def clear(self) -> None:
        self.steps.clear()

    def file(self, rel: str) -> str:
        with open(os.path.join(self.root, rel)) as f:
            return f.read().strip()


@pytest.fixture
def v1(tmp_path):
    layout = make_v1_tree(tmp_path)
    return Env(tmp_path, FakeCgroupFS(str(tmp_path)), layout, "v1")


@pytest.fixture
def v2(tmp_path):
    layout = make_v2_tree(tmp_path)
    return Env(tmp_path, FakeCgroupFS(str(tmp_path), v2_base=str(tmp_path)), layout, "v2")


# -- v1 ---------------------------------------------------------------------------------------

def test_v1_create_exact_steps(v1):
    cg = v1.driver()
    cg.create()
    expected = []
    for c in ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"):
        expected += [("mkdir", f"{c}/labtui", "")]
        if c == "cpuset":
            expected += [("write", "cpuset/labtui/cpuset.cpus", "0-1"), ("write", "cpuset/labtui/cpuset.mems", "0")]
        expected += [("mkdir", f"{c}/labtui/c1", "")]
        if c == "cpuset":
            expected += [("write", "cpuset/labtui/c1/cpuset.cpus", "0-1"),
                         ("write", "cpuset/labtui/c1/cpuset.mems", "0")]
    assert v1.writes() == expected
    assert all(s["mechanism"] == "cgroup" and s["result"] == "ok" for s in v1.steps)
    mk = v1.steps[0]
    assert mk["shell"] == f"mkdir {v1.root}/cpu/labtui"
    assert cg.paths()["memory"] == f"{v1.root}/memory/labtui/c1"
    assert cg.namespace_path() == "/labtui/c1"


def test_v1_add_pid_writes_every_hierarchy(v1):
    cg = v1.driver()
    cg.create()
    v1.clear()
    cg.add_pid(PID)
    assert v1.writes() == [("write", f"{c}/labtui/c1/cgroup.procs", str(PID))
                           for c in ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids")]
    assert v1.steps[0]["shell"] == f"echo {PID} > {v1.root}/cpu/labtui/c1/cgroup.procs"
    assert cg.pids() == [PID]
    assert cg.procs_path() == f"{v1.root}/cpu/labtui/c1/cgroup.procs"
    assert len(cg.procs_paths()) == 8


def test_v1_cpuset_must_be_copied_or_join_fails(v1):
    # Without the copy the fake kernel refuses the task, as the real one does (ENOSPC).
    v1.fs.omit = set()
    cg = v1.driver()
    cg.create()
    open(f"{v1.root}/cpuset/labtui/c1/cpuset.cpus", "w").close()
    with pytest.raises(EngineError, match="ENOSPC"):
        cg.add_pid(PID)


def test_v1_cpuset_parent_made_but_not_yet_filled_by_another_supervisor(v1):
    # The last container's removal took the parent and another supervisor just made it again:
    # it is there, still empty. Copying its emptiness would leave ours empty (join: ENOSPC), and
    # a child's set must lie within its parent's: fill the parent first, from the root.
    v1.fs.mkdir(f"{v1.root}/cpuset/labtui")
    cg = v1.driver()
    cg.create()
    cpuset = [w for w in v1.writes() if w[1].startswith("cpuset/")]
    assert cpuset == [("mkdir", "cpuset/labtui/c1", ""),
                      ("write", "cpuset/labtui/cpuset.cpus", "0-1"), ("write", "cpuset/labtui/cpuset.mems", "0"),
                      ("write", "cpuset/labtui/c1/cpuset.cpus", "0-1"), ("write", "cpuset/labtui/c1/cpuset.mems", "0")]
    cg.add_pid(PID)
    assert cg.pids() == [PID]


def test_v1_apply_exact_writes(v1):
    cg = v1.driver()
    cg.create()
    v1.clear()
    warnings = cg.apply(Limits(memory=64 * MiB, cpus=0.5, cpu_shares=512, cpuset_cpus="0",
                               pids_limit=20, blkio_weight=300))
    assert warnings == []
    assert v1.writes() == [
        ("write", "memory/labtui/c1/memory.limit_in_bytes", "67108864"),
        ("write", "memory/labtui/c1/memory.memsw.limit_in_bytes", "134217728"),  # docker: 2x memory
        ("write", "cpu/labtui/c1/cpu.cfs_period_us", "100000"),
        ("write", "cpu/labtui/c1/cpu.cfs_quota_us", "50000"),
        ("write", "cpu/labtui/c1/cpu.shares", "512"),
        ("write", "cpuset/labtui/c1/cpuset.cpus", "0"),
        ("write", "pids/labtui/c1/pids.max", "20"),
        ("write", "blkio/labtui/c1/blkio.bfq.weight", "300"),
    ]
    assert v1.steps[0]["shell"] == f"echo 67108864 > {v1.root}/memory/labtui/c1/memory.limit_in_bytes"
    assert v1.file("memory/labtui/c1/memory.limit_in_bytes") == "67108864"
    assert v1.file("cpu/labtui/c1/cpu.cfs_quota_us") == "50000"
    assert cg.limits.memory == 64 * MiB


def test_v1_swap_order_and_unlimited(v1):
    cg = v1.driver()
    cg.create()
    cg.apply(Limits(memory=64 * MiB, memory_swap=96 * MiB))
    v1.clear()
    # growing: memsw first (the fake kernel would refuse limit > memsw otherwise)
    cg.update(Limits(memory=256 * MiB, memory_swap=512 * MiB))
    assert [w[1].rsplit("/", 1)[1] for w in v1.writes()] == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
    v1.clear()
    cg.update(Limits(memory=32 * MiB, memory_swap=48 * MiB))  # shrinking: memory first
    assert [w[1].rsplit("/", 1)[1] for w in v1.writes()] == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
    v1.clear()
    cg.update(Limits(memory=64 * MiB, memory_swap=-1))
    assert v1.writes()[0] == ("write", "memory/labtui/c1/memory.memsw.limit_in_bytes", "-1")


def test_v1_update_memory_above_memsw_is_refused(v1):
    cg = v1.driver()
    cg.create()
    cg.apply(Limits(memory=64 * MiB, memory_swap=64 * MiB))
    with pytest.raises(InvalidArgument, match="--memory-swap"):
        cg.update(Limits(memory=128 * MiB))
    v1.clear()
    cg.update(Limits(memory=32 * MiB))  # below memsw: memory alone
    assert v1.writes() == [("write", "memory/labtui/c1/memory.limit_in_bytes", str(32 * MiB))]


def test_v1_missing_memsw_and_blkio_weight(tmp_path):
    layout = make_v1_tree(tmp_path)
    env = Env(tmp_path, FakeCgroupFS(str(tmp_path), omit=("memory.memsw.limit_in_bytes", "blkio.bfq.weight")),
              layout, "v1")
    cg = env.driver()
    cg.create()
    env.clear()
    assert cg.apply(Limits(memory=64 * MiB)) == []  # docker's default swap is silently skipped
    warnings = cg.apply(Limits(memory=64 * MiB, memory_swap=128 * MiB, blkio_weight=500))
    assert any("swap accounting" in w for w in warnings)
    assert any("not supported by this kernel" in w and "--blkio-weight" in w for w in warnings)
    skips = [s for s in env.steps if s["op"] == "skip"]
    assert len(skips) == 2 and all(s["result"] == "ok" and s["note"] for s in skips)


def test_v1_blkio_weight_preferred(tmp_path):
    layout = make_v1_tree(tmp_path)
    env = Env(tmp_path, FakeCgroupFS(str(tmp_path)), layout, "v1")
    V1_FILES["blkio"]["blkio.weight"] = "500"
    try:
        cg = env.driver()
        cg.create()
        env.clear()
        cg.apply(Limits(blkio_weight=200))
    finally:
        del V1_FILES["blkio"]["blkio.weight"]
    assert env.writes() == [("write", "blkio/labtui/c1/blkio.weight", "200")]


def test_v1_pids_unlimited(v1):
    cg = v1.driver()
    cg.create()
    v1.clear()
    cg.apply(Limits(pids_limit=-1))
    assert v1.writes() == [("write", "pids/labtui/c1/pids.max", "max")]


def test_v1_use_hierarchy_is_checked(v1):
    V1_FILES["memory"]["memory.use_hierarchy"] = "0"
    try:
        cg = v1.driver()
        cg.create()
    finally:
        V1_FILES["memory"]["memory.use_hierarchy"] = "1"
    mem = [w for w in v1.writes() if w[1].startswith("memory/")]
    assert mem == [("mkdir", "memory/labtui", ""), ("write", "memory/labtui/memory.use_hierarchy", "1"),
                   ("mkdir", "memory/labtui/c1", "")]


def test_v1_freeze_thaw_polls_until_frozen(v1):
    v1.fs.freezing_reads = 3
    cg = v1.driver()
    cg.create()
    cg.add_pid(PID)
    v1.clear()
    cg.freeze()
    assert cg.is_frozen() and cg.freezer_state() == "FROZEN"
    (step,) = v1.steps
    assert step["target"].endswith("freezer/labtui/c1/freezer.state") and step["value"] == "FROZEN"
    assert step["polls"] == 3 and step["state"] == "FROZEN"
    assert step["shell"] == f"echo FROZEN > {v1.root}/freezer/labtui/c1/freezer.state"
    cg.thaw()
    assert not cg.is_frozen() and v1.file("freezer/labtui/c1/freezer.state") == "THAWED"


def test_v1_freeze_timeout_thaws_and_raises(v1, monkeypatch):
    monkeypatch.setattr(v1mod, "FREEZE_TIMEOUT", 0.05)
    v1.fs.freezing_reads = 10**9
    cg = v1.driver()
    cg.create()
    with pytest.raises(EngineError, match="FREEZING"):
        cg.freeze()
    assert v1.file("freezer/labtui/c1/freezer.state") == "THAWED"
    assert v1.steps[-1]["result"] == "error"


def test_v1_destroy_kills_thaws_and_removes(v1):
    cg = v1.driver()
    cg.create()
    cg.add_pid(PID)
    cg.freeze()
    v1.clear()
    cg.destroy()
    ops = v1.writes()
    assert ops[0] == ("write", "freezer/labtui/c1/freezer.state", "THAWED")  # thaw before kill
    kill = [s for s in v1.steps if s["mechanism"] == "signal"]
    assert [(s["op"], s["target"], s["value"]) for s in kill] == [("kill", f"pid {PID}", "SIGKILL")]
    assert v1.fs.killed == [PID]
    rmdirs = [t for op, t, _ in ops if op == "rmdir"]
    assert rmdirs == [f"{c}/labtui/c1" for c in V1_FILES]  # the parent stays for the next one
    assert all(os.path.isdir(f"{v1.root}/{c}/labtui") for c in V1_FILES)
    assert not cg.exists()
    v1.clear()
    cg.destroy()  # idempotent
    assert v1.steps == []
    cg.remove_empty_parents()  # labtui system prune
    assert [t for op, t, _ in v1.writes() if op == "rmdir"] == [f"{c}/labtui" for c in V1_FILES]
    assert not any(os.path.exists(f"{v1.root}/{c}/labtui") for c in V1_FILES)


def test_v1_destroy_retries_ebusy_and_keeps_shared_parent(v1):
    a, b = v1.driver("a"), v1.driver("b")
    a.create()
    b.create()
    v1.fs.busy_rmdirs = 2
    v1.clear()
    a.destroy()
    rm = [s for s in v1.steps if s["op"] == "rmdir"]
    assert [v1.rel(s["target"]) for s in rm] == [f"{c}/labtui/a" for c in V1_FILES]
    assert rm[0]["attempts"] == 3
    assert os.path.isdir(f"{v1.root}/memory/labtui/b")
    a.remove_empty_parents()  # b's cgroup is in it: kept
    assert os.path.isdir(f"{v1.root}/memory/labtui/b")
    b.destroy()
    b.remove_empty_parents()
    assert not os.path.exists(f"{v1.root}/memory/labtui")


def test_v1_mkdir_enoent_race_is_retried(v1):
    cg = v1.driver()
    leaf = f"{v1.root}/cpu/labtui/c1"
    v1.fs.before_mkdir[leaf] = FileNotFoundError(errno.ENOENT, "No such file or directory", leaf)
    cg.create()
    failed = [s for s in v1.steps if s["result"] != "ok"]
    assert [(s["op"], v1.rel(s["target"]), s["result"]) for s in failed] == [("mkdir", "cpu/labtui/c1", "ENOENT")]
    assert os.path.isdir(leaf)


def test_v1_parent_created_concurrently_is_accepted(v1):
    cg = v1.driver()
    v1.fs.before_mkdir[f"{v1.root}/memory/labtui"] = "race"
    cg.create()
    assert os.path.isdir(f"{v1.root}/memory/labtui/c1")
    assert [s["result"] for s in v1.steps if s["result"] != "ok"] == ["EEXIST"]


def test_parent_from_env(v1, monkeypatch):
    monkeypatch.setenv("LABTUI_CGROUP_PARENT", "labtui-test-x")
    assert cgroup_parent() == "labtui-test-x"
    cg = V1Driver("c9", v1.rec, v1.layout, v1.root, fs=v1.fs)
    assert cg.paths()["pids"] == f"{v1.root}/pids/labtui-test-x/c9"
    monkeypatch.setenv("LABTUI_CGROUP_PARENT", "../etc")
    with pytest.raises(InvalidArgument):
        cgroup_parent()
    with pytest.raises(InvalidArgument):
        V1Driver("a/b", v1.rec, v1.layout, v1.root, fs=v1.fs, parent="labtui")


def test_nested_parent(v1):
    cg = v1.driver(parent="labtui/group")
    cg.create()
    assert os.path.isdir(f"{v1.root}/pids/labtui/group/c1")
    assert v1.file("cpuset/labtui/group/c1/cpuset.mems") == "0"
    cg.destroy()
    assert os.path.isdir(f"{v1.root}/pids/labtui/group")
    cg.remove_empty_parents()
    assert not os.path.exists(f"{v1.root}/pids/labtui")


# -- v2 ---------------------------------------------------------------------------------------

def test_v2_create_enables_controllers_top_down(v2):
    cg = v2.driver()
    cg.create()
    assert v2.writes() == [
        ("write", "cgroup.subtree_control", "+cpu +memory +pids +cpuset +io"),
        ("mkdir", "labtui", ""),
        ("write", "labtui/cgroup.subtree_control", "+cpu +memory +pids +cpuset +io"),
        ("mkdir", "labtui/c1", ""),
    ]
    assert v2.steps[0]["shell"] == f"echo '+cpu +memory +pids +cpuset +io' > {v2.root}/cgroup.subtree_control"
    assert v2.file("labtui/c1/cgroup.controllers") == "cpu memory pids cpuset io"
    assert cg.paths()["unified"] == cg.paths()["memory"] == f"{v2.root}/labtui/c1"
    assert cg.procs_paths() == [f"{v2.root}/labtui/c1/cgroup.procs"]


def test_v2_only_available_controllers_and_not_twice(tmp_path):
    layout = make_v2_tree(tmp_path, controllers="memory pids hugetlb", enabled="memory")
    env = Env(tmp_path, FakeCgroupFS(str(tmp_path), v2_base=str(tmp_path)), layout, "v2")
    env.driver().create()
    assert env.writes()[0] == ("write", "cgroup.subtree_control", "+pids")
    assert env.writes()[2] == ("write", "labtui/cgroup.subtree_control", "+memory +pids")
    env.clear()
    env.driver("c2").create()  # parent exists and is enabled already
    assert env.writes() == [("mkdir", "labtui/c2", "")]


def test_v2_hybrid_side_with_only_hugetlb(tmp_path, monkeypatch):
    monkeypatch.setenv("LABTUI_CGROUP_PARENT", "labtui")  # get_driver takes the parent from the env
    layout = make_v1_tree(tmp_path)
    env = Env(tmp_path, FakeCgroupFS(str(tmp_path), v2_base=str(tmp_path / "unified")), layout, "v2")
    cg = get_driver("c1", env.rec, force="v2", layout=layout, root=env.root, fs=env.fs)
    assert isinstance(cg, V2Driver)
    cg.create()
    assert env.writes() == [("mkdir", "unified/labtui", ""), ("mkdir", "unified/labtui/c1", "")]
    env.clear()
    warnings = cg.apply(Limits(memory=64 * MiB))
    assert warnings and "memory controller is not enabled" in warnings[0]
    cg.add_pid(PID)
    cg.freeze()
    assert cg.is_frozen()
    cg.thaw()
    cg.destroy()
    cg.remove_empty_parents()
    assert not os.path.exists(f"{env.root}/unified/labtui")


def test_v2_apply_exact_writes(v2):
    cg = v2.driver()
    cg.create()
    v2.clear()
    warnings = cg.apply(Limits(memory=64 * MiB, cpus=0.5, cpu_shares=512, cpuset_cpus="0-1",
                               pids_limit=20, blkio_weight=500))
    assert warnings == []
    assert [(op, t, v2.file(t)) for op, t, _ in v2.writes()] == [
        ("write", "labtui/c1/memory.max", "67108864"),
        ("write", "labtui/c1/memory.swap.max", "67108864"),  # 2x memory total = memory of swap
        ("write", "labtui/c1/cpu.max", "50000 100000"),
        ("write", "labtui/c1/cpu.weight", "20"),
        ("write", "labtui/c1/cpuset.cpus", "0-1"),
        ("write", "labtui/c1/pids.max", "20"),
        ("write", "labtui/c1/io.weight", f"default {1 + (490 * 9999) // 990}"),
    ]
    by_file = {os.path.basename(s["target"]): s for s in v2.steps}
    assert by_file["cpu.max"]["value"] == "50000 100000"
    assert by_file["cpu.max"]["shell"] == f"echo '50000 100000' > {v2.root}/labtui/c1/cpu.max"
    weight = by_file["cpu.weight"]
    assert weight["value"].startswith("20 ") and "1 + ((512 - 2) * 9999) / 262142 = 20" in weight["value"]
    assert weight["shell"] == f"echo 20 > {v2.root}/labtui/c1/cpu.weight"
    assert weight["conversion"] == "1 + ((512 - 2) * 9999) / 262142 = 20"
    assert "--memory-swap 134217728 - --memory 67108864" in by_file["memory.swap.max"]["value"]
    assert "9999 / 990" in by_file["io.weight"]["value"]


def test_v2_swap_variants(v2):
    cg = v2.driver()
    cg.create()
    v2.clear()
    cg.apply(Limits(memory=64 * MiB, memory_swap=100 * MiB))
    assert v2.file("labtui/c1/memory.swap.max") == str(36 * MiB)
    cg.apply(Limits(memory=64 * MiB, memory_swap=64 * MiB))
    assert v2.file("labtui/c1/memory.swap.max") == "0"
    cg.update(Limits(memory_swap=-1))
    assert v2.file("labtui/c1/memory.swap.max") == "max"
    v2.clear()
    cg.update(Limits(memory=128 * MiB))  # update: swap untouched
    assert v2.writes() == [("write", "labtui/c1/memory.max", str(128 * MiB))]
    cg.update(Limits(memory_swap=256 * MiB))  # uses the memory in force
    assert v2.file("labtui/c1/memory.swap.max") == str(128 * MiB)
    cg.apply(Limits(pids_limit=-1))
    assert v2.file("labtui/c1/pids.max") == "max"


def test_v2_io_bfq_weight_preferred(v2):
    V2_CONTROLLER_FILES["io"]["io.bfq.weight"] = "default 100"
    try:
        cg = v2.driver()
        cg.create()
        v2.clear()
        cg.apply(Limits(blkio_weight=300))
    finally:
        del V2_CONTROLLER_FILES["io"]["io.bfq.weight"]
    assert v2.writes() == [("write", "labtui/c1/io.bfq.weight", "300")]


def test_v2_missing_swap_file(tmp_path):
    layout = make_v2_tree(tmp_path)
    env = Env(tmp_path, FakeCgroupFS(str(tmp_path), v2_base=str(tmp_path), omit=("memory.swap.max",)),
              layout, "v2")
    cg = env.driver()
    cg.create()
    assert cg.apply(Limits(memory=64 * MiB)) == []
    assert "no swap accounting" in cg.apply(Limits(memory=64 * MiB, memory_swap=128 * MiB))[0]


def test_v2_freeze_waits_for_cgroup_events(v2):
    v2.fs.freezing_reads = 4
    cg = v2.driver()
    cg.create()
    cg.add_pid(PID)
    v2.clear()
    cg.freeze()
    (step,) = v2.steps
    assert v2.rel(step["target"]) == "labtui/c1/cgroup.freeze" and step["value"] == "1"
    assert step["polls"] == 4 and step["events"] == {"populated": 1, "frozen": 1}
    assert cg.is_frozen()
    cg.thaw()
    assert not cg.is_frozen() and v2.file("labtui/c1/cgroup.freeze") == "0"


def test_v2_freeze_timeout(v2, monkeypatch):
    monkeypatch.setattr(v2mod, "FREEZE_TIMEOUT", 0.05)
    v2.fs.freezing_reads = 10**9
    cg = v2.driver()
    cg.create()
    with pytest.raises(EngineError, match="frozen 1"):
        cg.freeze()
    assert v2.file("labtui/c1/cgroup.freeze") == "0"


def test_v2_destroy_uses_cgroup_kill(v2):
    cg = v2.driver()
    cg.create()
    cg.add_pid(PID)
    cg.freeze()
    v2.clear()
    cg.destroy()
    assert v2.writes() == [
        ("write", "labtui/c1/cgroup.freeze", "0"),
        ("write", "labtui/c1/cgroup.kill", "1"),
        ("rmdir", "labtui/c1", ""),
    ]
    assert v2.fs.killed == [PID]
    assert os.path.exists(f"{v2.root}/cgroup.procs")  # the root is left alone


def test_v2_destroy_without_cgroup_kill_signals_each(tmp_path):
    layout = make_v2_tree(tmp_path)
    env = Env(tmp_path, FakeCgroupFS(str(tmp_path), v2_base=str(tmp_path), omit=("cgroup.kill",)), layout, "v2")
    cg = env.driver()
    cg.create()
    cg.add_pid(PID)
    cg.add_pid(PID + 1)
    cg.destroy()
    assert sorted(env.fs.killed) == [PID, PID + 1]
    assert not os.path.exists(f"{env.root}/labtui/c1")


# -- driver choice ----------------------------------------------------------------------------

def test_get_driver_by_layout(tmp_path):
    rec = Recorder(None, lambda r: None)
    hybrid = detect(text=HYBRID)
    assert isinstance(get_driver("a", rec, layout=hybrid, root=str(tmp_path)), V1Driver)
    assert isinstance(get_driver("a", rec, layout=detect(text=UNIFIED), root=str(tmp_path)), V2Driver)
    legacy = Layout(kind="legacy", v1={"memory": "/sys/fs/cgroup/memory"})
    assert isinstance(get_driver("a", rec, layout=legacy), V1Driver)
    assert isinstance(get_driver("a", rec, force="v2", layout=hybrid), V2Driver)
    with pytest.raises(EngineError, match="no cgroup2"):
        get_driver("a", rec, force="v2", layout=legacy)
    with pytest.raises(EngineError, match="unknown cgroup driver"):
        get_driver("a", rec, force="v3", layout=legacy)
    null = get_driver("a", rec, layout=Layout(kind="none"))
    assert isinstance(null, NullDriver)


def test_get_driver_without_permission_is_null(tmp_path, monkeypatch):
    (tmp_path / "memory").mkdir()
    layout = Layout(kind="legacy", v1={"memory": str(tmp_path / "memory")})
    monkeypatch.setattr("engine.cgroups.os.access", lambda path, mode: False)
    cg = get_driver("a", Recorder(None, lambda r: None), layout=layout)
    assert isinstance(cg, NullDriver) and "permission" in cg.reason


def test_is_frozen_for_a_container_record(v1):
    from types import SimpleNamespace

    from engine.cgroups import is_frozen_for

    cg = v1.driver("c7", parent="labtui-p")
    cg.create()
    c = SimpleNamespace(id="c7", state={"cgroup_parent": "labtui-p"})
    assert is_frozen_for(c, layout=v1.layout, root=v1.root) is False
    cg.freeze()
    assert is_frozen_for(c, layout=v1.layout, root=v1.root) is True
    with pytest.raises(EngineError):
        is_frozen_for(c, layout=Layout(kind="none"))


def test_null_driver():
    steps: list[dict] = []
    cg = NullDriver("a", Recorder("a", steps.append))
    cg.create()
    cg.add_pid(1)
    assert cg.apply(Limits()) == []
    assert "not applied" in cg.apply(Limits(memory=64 * MiB))[0]
    assert steps[-1]["op"] == "skip"
    assert cg.pids() == [] and cg.paths() == {} and not cg.is_frozen() and cg.stats() == {"version": "none"}
    with pytest.raises(EngineError, match="freezer"):
        cg.freeze()
    cg.destroy()
