"""Layout detection from fake /proc/self/mountinfo text."""

from __future__ import annotations

import json

from engine.cgroups.detect import Layout, detect, parse_mountinfo

HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

UNIFIED = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
27 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
"""

# Debian 9 style: cpu and cpuacct co-mounted, net_cls,net_prio co-mounted, no cgroup2.
LEGACY = """\
25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:6 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid shared:7 - cgroup cgroup rw,xattr,name=systemd
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:10 - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid shared:11 - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid shared:12 - cgroup cgroup rw,net_cls,net_prio
32 25 0:29 / /sys/fs/cgroup/pids rw,nosuid shared:13 - cgroup cgroup rw,pids
"""


def test_hybrid(tmp_path):
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("hugetlb\n")
    layout = detect(text=HYBRID, root=str(tmp_path), kernel="6.18.0")
    assert layout.kind == "hybrid"
    assert layout.v1["memory"] == str(tmp_path / "memory")
    assert layout.v1["name=systemd"] == str(tmp_path / "systemd")
    assert set(layout.v1) == {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio",
                              "pids", "name=systemd"}
    assert layout.v2_mount == str(tmp_path / "unified")
    assert layout.v2_controllers == ["hugetlb"]
    assert layout.kernel == "6.18.0"


def test_unified(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    layout = detect(text=UNIFIED, root=str(tmp_path))
    assert layout.kind == "unified"
    assert layout.v1 == {}
    assert layout.v2_mount == str(tmp_path)
    assert layout.v2_controllers == ["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"]


def test_legacy_comounted():
    layout = detect(text=LEGACY)
    assert layout.kind == "legacy"
    assert layout.v1["cpu"] == layout.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert layout.v1["net_prio"] == "/sys/fs/cgroup/net_cls,net_prio"
    assert "xattr" not in layout.v1 and "rw" not in layout.v1
    assert layout.v2_mount is None and layout.v2_controllers == []


def test_none_and_only_named_hierarchy():
    assert detect(text="22 1 8:1 / / rw - ext4 /dev/sda1 rw\n").kind == "none"
    named = "26 25 0:23 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
    assert detect(text=named).kind == "none"


def test_mountinfo_escapes_and_optional_fields():
    text = r"40 31 0:37 / /mnt/my\040cgroups rw,relatime shared:5 master:1 - cgroup2 cgroup2 rw" + "\n"
    (m,) = parse_mountinfo(text)
    assert m.mountpoint == "/mnt/my cgroups" and m.fstype == "cgroup2"


def test_mountinfo_from_a_file(tmp_path):
    p = tmp_path / "mountinfo"
    p.write_text(LEGACY)
    assert detect(str(p)).kind == "legacy"


def test_to_json_and_rebase():
    layout = detect(text=LEGACY, kernel="5.10")
    d = json.loads(layout.to_json())
    assert d["kind"] == "legacy" and d["kernel"] == "5.10" and d["v1"]["memory"] == "/sys/fs/cgroup/memory"
    moved = layout.rebased("/tmp/x")
    assert moved.v1["memory"] == "/tmp/x/memory"
    assert moved.rebased("/tmp/x") == moved  # paths outside /sys/fs/cgroup are left alone
    assert Layout(kind="unified", v2_mount="/sys/fs/cgroup").rebased("/t").v2_mount == "/t"


def test_real_host_parses():
    layout = detect()
    assert layout.kind in ("unified", "legacy", "hybrid", "none")
    assert layout.kernel
