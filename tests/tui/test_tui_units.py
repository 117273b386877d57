"""Pure parts of the app: decoders, the stream tail, the run form, alerts, explanations (no root).
The kernel file parsers the app reads through are tested with the engine (tests/unit/test_network_procnet.py,
tests/unit/test_ipc.py)."""

from __future__ import annotations

import json

from labtui.tui import adapter
from labtui.tui.screens import alerts
from labtui.tui.widgets.explanations import EXPLAIN, FALLBACK, explain


def test_decode_caps_names_bits_as_capabilities_7():
    assert adapter.decode_caps("0000000000000000") == []
    assert adapter.decode_caps("00000000a80425fb")[:3] == ["cap_chown", "cap_dac_override", "cap_fowner"]
    assert "cap_net_bind_service" in adapter.decode_caps(1 << 10)
    assert adapter.decode_caps(1 << 21) == ["cap_sys_admin"]
    assert adapter.decode_caps(1 << 40) == ["cap_checkpoint_restore"]
    assert adapter.decode_caps(1 << 63) == ["cap_63"]
    assert len(adapter.decode_caps("000001ffffffffff")) == 41


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
