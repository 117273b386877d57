"""read_stats, cpu_percent and AlertWatcher against hand-written cgroup files in tmp_path."""

from __future__ import annotations

import os
import time

import pytest

from engine.cgroups import AlertWatcher, Limits, V1Driver, V2Driver, cpu_percent, memory_percent, read_stats
from engine.cgroups.detect import Layout
from engine.steps import Recorder

MiB = 1 << 20
CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids")


def put(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def v1_driver(root, cid: str = "c1") -> V1Driver:
    layout = Layout(kind="legacy", v1={c: f"/sys/fs/cgroup/{c}" for c in CONTROLLERS})
    cg = V1Driver(cid, Recorder(cid, lambda r: None), layout, str(root), parent="labtui")
    p = cg.paths()
    put(p["cpuacct"] + "/cpuacct.usage", "1500000000\n")
    put(p["cpu"] + "/cpu.stat", "nr_periods 10\nnr_throttled 3\nthrottled_time 40000000\nnr_bursts 0\n")
    put(p["memory"] + "/memory.usage_in_bytes", f"{40 * MiB}\n")
    put(p["memory"] + "/memory.limit_in_bytes", f"{64 * MiB}\n")
    put(p["memory"] + "/memory.max_usage_in_bytes", f"{50 * MiB}\n")
    put(p["memory"] + "/memory.failcnt", "7\n")
    put(p["memory"] + "/memory.stat", f"cache 0\ntotal_inactive_file {4 * MiB}\n")
    put(p["memory"] + "/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    put(p["pids"] + "/pids.current", "3\n")
    put(p["pids"] + "/pids.max", "20\n")
    put(p["pids"] + "/pids.events", "max 0\n")
    put(p["blkio"] + "/blkio.throttle.io_service_bytes_recursive",
        "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Total 12288\n8:16 Read 1\n8:16 Write 2\nTotal 12291\n")
    put(p["freezer"] + "/freezer.state", "THAWED\n")
    return cg


def v2_driver(root, cid: str = "c1") -> V2Driver:
    layout = Layout(kind="unified", v2_mount="/sys/fs/cgroup", v2_controllers=["cpu", "memory", "pids", "io"])
    cg = V2Driver(cid, Recorder(cid, lambda r: None), layout, str(root), parent="labtui")
    d = cg.dir()
    put(d + "/cpu.stat", "usage_usec 2000\nuser_usec 1000\nsystem_usec 1000\nnr_periods 5\n"
        "nr_throttled 2\nthrottled_usec 300\n")
    put(d + "/memory.current", f"{10 * MiB}\n")
    put(d + "/memory.max", "max\n")
    put(d + "/memory.peak", f"{12 * MiB}\n")
    put(d + "/memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n")
    put(d + "/memory.stat", f"anon 0\ninactive_file {MiB}\n")
    put(d + "/pids.current", "2\n")
    put(d + "/pids.max", "max\n")
    put(d + "/pids.events", "max 0\n")
    put(d + "/io.stat", "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n253:0 rbytes=1 wbytes=2\n")
    put(d + "/cgroup.events", "populated 1\nfrozen 0\n")
    return cg


def test_v1_stats(tmp_path):
    s = read_stats(v1_driver(tmp_path))
    assert s["version"] == "v1"
    assert s["cpu_usage_ns"] == 1_500_000_000
    assert (s["nr_periods"], s["nr_throttled"], s["throttled_time_ns"]) == (10, 3, 40_000_000)
    assert s["memory_usage"] == 40 * MiB and s["memory_limit"] == 64 * MiB
    assert s["memory_working_set"] == 36 * MiB and s["memory_max_usage"] == 50 * MiB
    assert s["memory_failcnt"] == 7 and s["oom_kill"] == 0
    assert s["memory_events"] == {"failcnt": 7, "oom_kill": 0, "under_oom": 0}
    assert (s["pids_current"], s["pids_limit"], s["pids_max_events"]) == (3, 20, 0)
    assert (s["blkio_read_bytes"], s["blkio_write_bytes"]) == (4097, 8194)
    assert s["frozen"] is False


def test_v1_unlimited_memory_reads_as_none(tmp_path):
    cg = v1_driver(tmp_path)
    put(cg.paths()["memory"] + "/memory.limit_in_bytes", "9223372036854771712\n")
    put(cg.paths()["pids"] + "/pids.max", "max\n")
    s = read_stats(cg)
    assert s["memory_limit"] is None and s["pids_limit"] is None
    assert memory_percent(s) is None


def test_v2_stats(tmp_path):
    s = v2_driver(tmp_path).stats()
    assert s["version"] == "v2"
    assert s["cpu_usage_ns"] == 2_000_000 and s["throttled_time_ns"] == 300_000
    assert (s["nr_periods"], s["nr_throttled"]) == (5, 2)
    assert s["memory_usage"] == 10 * MiB and s["memory_limit"] is None and s["memory_max_usage"] == 12 * MiB
    assert s["memory_working_set"] == 9 * MiB
    assert s["memory_events"]["oom"] == 1 and s["oom_kill"] == 1 and s["memory_failcnt"] == 4
    assert (s["pids_current"], s["pids_limit"]) == (2, None)
    assert (s["blkio_read_bytes"], s["blkio_write_bytes"]) == (101, 202)
    assert s["frozen"] is False


def test_missing_files_give_none(tmp_path):
    layout = Layout(kind="unified", v2_mount="/sys/fs/cgroup")
    cg = V2Driver("gone", Recorder(None, lambda r: None), layout, str(tmp_path), parent="labtui")
    s = read_stats(cg)
    assert s["cpu_usage_ns"] is None and s["memory_usage"] is None and s["frozen"] is None


def test_cpu_and_memory_percent():
    prev = {"cpu_usage_ns": 1_000_000_000, "t": 10.0}
    cur = {"cpu_usage_ns": 1_500_000_000, "t": 11.0}
    assert cpu_percent(prev, cur) == pytest.approx(50.0)
    assert cpu_percent(prev, cur, interval=0.5) == pytest.approx(100.0)
    assert cpu_percent(prev, {"cpu_usage_ns": None, "t": 11}) == 0.0
    assert cpu_percent(prev, {"cpu_usage_ns": 2, "t": 10.0}) == 0.0
    assert memory_percent({"memory_working_set": 32 * MiB, "memory_limit": 64 * MiB}) == 50.0


def test_fifty_containers_in_one_tick_is_cheap(tmp_path):
    drivers = [v1_driver(tmp_path, f"c{i}") for i in range(50)]
    best = min(_tick(drivers) for _ in range(3))
    assert best < 0.020, f"one tick took {best * 1000:.1f} ms"


def _tick(drivers) -> float:
    t = time.perf_counter()
    for d in drivers:
        read_stats(d)
    return time.perf_counter() - t


# -- alerts -----------------------------------------------------------------------------------

def watcher(cg):
    events: list[dict] = []
    return AlertWatcher(cg, cg.container_id, events.append), events


def test_oom_alert_v1_each_rise(tmp_path):
    cg = v1_driver(tmp_path)
    cg.limits = Limits(memory=64 * MiB)
    w, events = watcher(cg)
    assert w.check() == []
    f = cg.paths()["memory"] + "/memory.oom_control"
    put(f, "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    (e,) = w.check()
    assert e["type"] == "alert" and e["alert"] == "oom" and e["container"] == "c1"
    assert e["file"] == f and e["counter"] == "oom_kill" and e["value"] == 1 and e["delta"] == 1
    assert "OOM killer killed 1 process(es)" in e["message"] and str(64 * MiB) in e["message"]
    assert w.check() == []
    put(f, "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    assert [x["value"] for x in w.check()] == [3]
    assert len(events) == 2


def test_oom_alert_v2(tmp_path):
    cg = v2_driver(tmp_path)
    w, events = watcher(cg)  # baseline oom_kill 1 is not an alert
    assert w.check() == []
    put(cg.dir() + "/memory.events", "low 0\nhigh 0\nmax 9\noom 2\noom_kill 2\n")
    (e,) = w.check()
    assert e["alert"] == "oom" and e["file"].endswith("/memory.events") and e["value"] == 2


def test_throttled_alert_once_per_episode(tmp_path):
    cg = v1_driver(tmp_path)
    cg.limits = Limits(cpus=0.2)
    w, events = watcher(cg)
    f = cg.paths()["cpu"] + "/cpu.stat"
    for n in (4, 5, 6):
        put(f, f"nr_periods 10\nnr_throttled {n}\nthrottled_time 1\n")
        w.check()
    assert [e["alert"] for e in events] == ["throttled"]
    assert events[0]["value"] == 4 and events[0]["counter"] == "nr_throttled"
    assert "--cpus 0.2" in events[0]["message"]
    for _ in range(4):  # quiet checks end the episode
        w.check()
    put(f, "nr_periods 10\nnr_throttled 7\nthrottled_time 1\n")
    w.check()
    assert [e["value"] for e in events] == [4, 7]


def test_pids_alert_from_events_and_fallback(tmp_path):
    cg = v1_driver(tmp_path)
    w, events = watcher(cg)
    put(cg.paths()["pids"] + "/pids.events", "max 5\n")
    (e,) = w.check()
    assert e["alert"] == "pids_limit" and e["counter"] == "max" and e["value"] == 5
    assert "EAGAIN" in e["message"]

    os.unlink(cg.paths()["pids"] + "/pids.events")  # old kernels: no pids.events
    w2, events2 = watcher(cg)
    put(cg.paths()["pids"] + "/pids.current", "20\n")
    (e2,) = w2.check()
    assert e2["alert"] == "pids_limit" and e2["counter"] == "pids.current" and e2["value"] == 20
    assert w2.check() == []  # once per crossing
    put(cg.paths()["pids"] + "/pids.current", "3\n")
    w2.check()
    put(cg.paths()["pids"] + "/pids.current", "20\n")
    assert len(w2.check()) == 1


def test_memory_high_once_per_crossing(tmp_path):
    cg = v1_driver(tmp_path)
    w, events = watcher(cg)
    usage = cg.paths()["memory"] + "/memory.usage_in_bytes"
    assert w.check() == []  # 36 MiB of 64 MiB working set
    put(usage, f"{63 * MiB}\n")  # 59 MiB working set: 92%
    (e,) = w.check()
    assert e["alert"] == "memory_high" and e["counter"] == "working_set" and e["value"] == 59 * MiB
    assert e["limit"] == 64 * MiB and "92%" in e["message"]
    assert w.check() == []
    put(usage, f"{10 * MiB}\n")
    assert w.check() == []
    put(usage, f"{64 * MiB}\n")
    assert [x["alert"] for x in w.check()] == ["memory_high"]


def test_memory_high_v2_needs_a_limit(tmp_path):
    cg = v2_driver(tmp_path)
    w, _ = watcher(cg)
    assert w.check() == []  # memory.max is "max"
    put(cg.dir() + "/memory.max", f"{10 * MiB}\n")
    assert [e["alert"] for e in w.check()] == ["memory_high"]


def test_watcher_before_create_counts_from_zero(tmp_path):
    layout = Layout(kind="unified", v2_mount="/sys/fs/cgroup")
    cg = V2Driver("late", Recorder(None, lambda r: None), layout, str(tmp_path), parent="labtui")
    w, _ = watcher(cg)
    put(cg.dir() + "/memory.events", "oom_kill 1\n")
    assert [e["alert"] for e in w.check()] == ["oom"]
