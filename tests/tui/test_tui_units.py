"""Pure parts of the app: decoders, parsers, the stream tail, alerts, explanations (no root)."""

from __future__ import annotations

import json

from labtui.tui import adapter
from labtui.tui.screens import alerts
from labtui.tui.widgets.explanations import EXPLAIN, FALLBACK, explain

FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 172.18.0.0/16 2 0 2
        |-- 172.18.0.0
           /16 link UNICAST
Local:
  +-- 0.0.0.0/0 3 0 5
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.0
           /8 host LOCAL
        |-- 127.0.0.1
           /32 host LOCAL
     |-- 172.18.0.5
        /32 host LOCAL
     |-- 172.18.255.255
        /32 link BROADCAST
"""

NET_DEV = """Inter-|   Receive |  Transmit
 face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed
    lo: 140 2 0 0 0 0 0 0 140 2 0 0 0 0 0 0
  eth0: 1076 12 0 0 0 0 0 0 626 7 0 0 0 0 0 0
"""

ROUTE = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010012AC\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
"""

SHM = """ key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime rss swap
 0 3 1600 4096 100 100 1 0 0 0 0 0 0 1700000000 0 0
"""


def test_decode_caps_names_bits_as_capabilities_7():
    assert adapter.decode_caps("0000000000000000") == []
    assert adapter.decode_caps("00000000a80425fb")[:3] == ["cap_chown", "cap_dac_override", "cap_fowner"]
    assert "cap_net_bind_service" in adapter.decode_caps(1 << 10)
    assert adapter.decode_caps(1 << 21) == ["cap_sys_admin"]
    assert adapter.decode_caps(1 << 40) == ["cap_checkpoint_restore"]
    assert adapter.decode_caps(1 << 63) == ["cap_63"]
    assert len(adapter.decode_caps("000001ffffffffff")) == 41


def test_network_parsers():
    assert adapter.parse_fib_local(FIB_TRIE) == ["127.0.0.1", "172.18.0.5"]
    ifaces = adapter.parse_net_dev(NET_DEV)
    assert [(i.name, i.rx_bytes, i.tx_packets) for i in ifaces] == [("lo", 140, 2), ("eth0", 1076, 7)]
    routes = adapter.parse_routes(ROUTE)
    assert routes[0] == ("eth0", "0.0.0.0", "172.18.0.1", "0.0.0.0")
    assert routes[1] == ("eth0", "172.18.0.0", "0.0.0.0", "255.255.0.0")
    assert adapter._iface_for("172.18.0.5", routes) == "eth0"
    assert adapter._iface_for("127.0.0.1", routes) == "lo"


def test_sysvipc_parser():
    objs = adapter.parse_sysvipc("shm", SHM)
    assert len(objs) == 1
    assert (objs[0].kind, objs[0].id, objs[0].perms, objs[0].size, objs[0].key) == ("shm", "3", "1600", "4096",
                                                                                      "0x00000000")
    assert adapter.parse_sysvipc("msg", "") == []


def test_tail_batches_appended_records_and_keeps_partial_lines(tmp_path):
    path = tmp_path / "s.jsonl"
    tail = adapter.Tail(path)
    assert tail.read() == []  # no file yet
    path.write_text(json.dumps({"seq": 1}) + "\n" + json.dumps({"seq": 2}) + "\n" + '{"seq": ')
    assert [r["seq"] for r in tail.read()] == [1, 2]
    with open(path, "a") as f:
        f.write("3}\n")
    assert [r["seq"] for r in tail.read()] == [3]
    assert tail.read() == []
    path.unlink()
    path.write_text(json.dumps({"seq": 9}) + "\n")  # replaced: read from the start again
    assert [r["seq"] for r in tail.read()] == [9]


def test_tail_filters(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text("".join(json.dumps({"container": c}) + "\n" for c in "abab"))
    assert len(adapter.Tail(path, lambda ev: ev["container"] == "a").read()) == 2


def test_run_form_becomes_run_options_through_the_cli_parser():
    form = adapter.RunForm(image="busybox", command="sh -c 'echo hi'", name="web", env=["A=1"],
                           volumes=["/tmp:/data:ro"], read_only=True, gate=True)
    opts = adapter.run_options(form)
    assert opts.image == "busybox" and opts.command == ["sh", "-c", "echo hi"] and opts.name == "web"
    assert opts.env == ["A=1"] and opts.volumes == ["/tmp:/data:ro"] and opts.read_only and opts.gate


def test_run_form_reports_a_bad_flag():
    try:
        adapter.run_options(adapter.RunForm(flags="--no-such-flag"))
    except adapter.ERRORS as e:
        assert "no-such-flag" in str(e)
    else:
        raise AssertionError("a bad flag must be refused")


def test_alerts_classify_and_describe():
    oom = {"type": "oom", "name": "hog", "exit_code": 137}
    assert alerts.is_alert(oom) and alerts.severity(oom) == "error" and "OOM" in alerts.describe(oom)
    limit = {"type": "alert", "alert": "throttled", "name": "busy", "message": "CPU quota used up"}
    assert alerts.is_alert(limit) and alerts.describe(limit) == "busy: CPU quota used up"
    assert alerts.title(limit) == "throttled"
    stopped = {"type": "died", "signal": "SIGTERM", "reason": "stopped", "crash": False}
    assert not alerts.is_alert(stopped)
    crash_old_engine = {"type": "died", "signal": "SIGSEGV", "reason": "signal SIGSEGV", "exit_code": 139}
    assert alerts.is_alert(crash_old_engine) and "SIGSEGV" in alerts.describe(crash_old_engine)
    assert alerts.is_alert({"type": "restarted", "restart_count": 2})
    assert alerts.severity({"type": "health_status", "status": "healthy"}) == "information"
    assert alerts.severity({"type": "health_status", "status": "unhealthy"}) == "warning"
    assert not alerts.is_alert({"type": "started"})


def test_every_core_step_has_its_own_explanation():
    for key in [("namespace", "clone"), ("rootfs", "pivot_root"), ("device", "mknod"), ("rootfs", "mount overlay"),
                ("uts", "sethostname"), ("mount", "make-rprivate"), ("rootfs", "umount old root"),
                ("exec", "execve"), ("cgroup", "write"), ("network", "link_add")]:
        assert key in EXPLAIN
    assert "procfs" in explain({"mechanism": "mount", "op": "mount", "value": "proc nosuid"})
    assert explain({"mechanism": "cgroup", "op": "write memory.max"}) == EXPLAIN[("cgroup", "write")]
    assert explain({"mechanism": "seccomp", "op": "something new"}) == FALLBACK["seccomp"]
    assert explain({}) != ""


def test_short_duration_and_bytes():
    assert adapter.short_duration(5) == "5s"
    assert adapter.short_duration(65) == "1m05s"
    assert adapter.short_duration(3700) == "1h01m"
    assert adapter.short_duration(90000) == "1d01h"
    assert adapter.human_bytes(512) == "512B"
    assert adapter.human_bytes(3 << 20) == "3.0MiB"
