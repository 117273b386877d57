"""Restart policies, crash detection, the timeline and the boot sweep on the real kernel."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.helpers import inspect, labtui, run_d, run_dir, wait_for

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("clean_containers")]


def events_of(cid: str, *extra: str) -> list[dict]:
    out = labtui("events", "--format", "json", "--filter", f"container={cid}", *extra).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_on_failure_restarts_n_times_with_backoff():
    cid = run_d("--restart", "on-failure:3", "busybox", "sh", "-c", "exit 3")
    wait_for(lambda: inspect(cid)["State"]["Status"] == "exited" and inspect(cid)["RestartCount"] == 3,
             timeout=15, what="three restarts")
    evs = events_of(cid)
    restarts = [e for e in evs if e["type"] == "restarted"]
    assert [e["restart_count"] for e in restarts] == [1, 2, 3]
    assert [e["delay_ms"] for e in restarts] == [100, 200, 400]  # doubling from 100 ms
    gaps = [b["ts"] - a["ts"] for a, b in zip([e for e in evs if e["type"] == "died"], restarts, strict=False)]
    assert all(g >= d / 1000 * 0.9 for g, d in zip(gaps, [100, 200, 400], strict=False)), gaps
    assert "Exited (3)" in [r for r in labtui("ps", "-a").stdout.splitlines() if cid[:12] in r][0]


def test_on_failure_does_not_restart_after_success_and_no_never_restarts():
    ok = run_d("--restart", "on-failure", "busybox", "true")
    never = run_d("busybox", "sh", "-c", "exit 1")
    time.sleep(1)
    assert inspect(ok)["RestartCount"] == 0 and inspect(ok)["State"]["Status"] == "exited"
    assert inspect(never)["RestartCount"] == 0


def test_always_restarts_and_a_manual_stop_never_does():
    cid = run_d("--restart", "always", "busybox", "sh", "-c", "sleep 0.2; exit 0")
    wait_for(lambda: inspect(cid)["RestartCount"] >= 2, timeout=15, what="always restarts")
    wait_for(lambda: inspect(cid)["State"]["Running"], timeout=10, what="running again")
    t_stop = time.time()
    labtui("stop", "-t", "1", cid)
    n = inspect(cid)["RestartCount"]
    time.sleep(1.5)
    assert inspect(cid)["State"]["Status"] == "exited"
    assert inspect(cid)["RestartCount"] == n
    assert not [e for e in events_of(cid) if e["type"] == "started" and e["ts"] > t_stop + 0.05]


def test_crash_by_signal_is_named_and_manual_kill_or_rm_is_not_a_crash():
    cid = run_d("busybox", "sh", "-c", "kill -SEGV $$")
    labtui("wait", cid)
    died = [e for e in events_of(cid) if e["type"] == "died"][-1]
    assert died["exit_code"] == 139 and died["signal"] == "SIGSEGV" and died["crash"] is True
    assert died.get("fault") is True
    assert any(e["type"] == "crash" for e in events_of(cid))
    cid2 = run_d("busybox", "sleep", "30")
    labtui("kill", cid2)
    died2 = [e for e in events_of(cid2) if e["type"] == "died"][-1]
    assert died2["signal"] == "SIGKILL" and died2["crash"] is False and died2["reason"].startswith("killed")
    assert not any(e["type"] == "crash" for e in events_of(cid2))
    cid3 = run_d("busybox", "sleep", "30")
    labtui("rm", "-f", cid3)  # rm -f kills it too: asked for, no crash (the app would alert on one)
    died3 = wait_for(lambda: [e for e in events_of(cid3) if e["type"] == "died"], what="the rm -f'd death")[-1]
    assert died3["signal"] == "SIGKILL" and died3["crash"] is False and died3["reason"].startswith("killed")
    assert not any(e["type"] == "crash" for e in events_of(cid3))


def test_oom_kill_is_told_apart_from_a_manual_kill():
    cid = run_d("-m", "16m", "--memory-swap", "16m", "busybox", "sh", "-c",
                "x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while true; do x=$x$x; done")
    assert labtui("wait", cid, timeout=60).stdout.strip() == "137"
    info = inspect(cid)
    assert info["State"]["OOMKilled"] is True
    died = [e for e in events_of(cid) if e["type"] == "died"][-1]
    assert died["reason"] == "oom-killed" and died["signal"] == "SIGKILL"
    assert any(e["type"] == "oom" for e in events_of(cid))


def test_timeline_in_events_and_inspect_with_filters():
    cid = run_d("--name", "tl", "busybox", "sleep", "30")
    labtui("pause", "tl")
    labtui("unpause", "tl")
    labtui("kill", "tl")
    types = [e["type"] for e in inspect("tl")["Timeline"]]
    for t in ("created", "started", "paused", "unpaused", "died"):
        assert t in types
    assert types.index("created") < types.index("started") < types.index("paused") < types.index("unpaused")
    only = events_of(cid, "--filter", "type=paused")
    assert [e["type"] for e in only] == ["paused"]
    assert events_of(cid, "--since", "1h") and not events_of(cid, "--until", "1h")
    assert events_of(cid, "--since", str(time.time() + 60)) == []
    p = labtui("events", "--since", "5x", check=False)
    assert p.returncode == 125 and "invalid time" in p.stderr


def test_always_and_unless_stopped_come_back_after_a_reboot():
    a = run_d("--restart", "always", "busybox", "sleep", "60")
    u = run_d("--restart", "unless-stopped", "busybox", "sleep", "60")
    s = run_d("--restart", "unless-stopped", "busybox", "sleep", "60")
    n = run_d("busybox", "sleep", "60")
    labtui("stop", "-t", "0", s)
    # "Reboot": every process of the containers dies and the boot id changes.
    for cid in (a, u, n):
        st = inspect(cid)["State"]
        os.kill(st["SupervisorPid"], signal.SIGKILL)
        os.kill(st["Pid"], signal.SIGKILL)
    time.sleep(0.3)
    # Another boot's stamp in the runtime directory (engine/boot.py); tests/integration/
    # test_reboot_root.py wipes the directory instead, as a reboot does.
    (run_dir() / "boot_id").write_text("00000000-0000-0000-0000-000000000000\n")
    labtui("ps")  # the first labtui command of the "boot"
    assert inspect(a)["State"]["Running"] and inspect(u)["State"]["Running"]
    assert not inspect(s)["State"]["Running"] and not inspect(n)["State"]["Running"]


def test_bad_restart_and_health_input():
    cases = [
        (["run", "--restart", "sometimes", "busybox", "true"], "invalid --restart"),
        (["run", "--restart", "on-failure:-1", "busybox", "true"], "cannot be negative"),
        (["run", "--restart", "always", "--rm", "busybox", "true"], "cannot be used together"),
        (["run", "--health-cmd", "true", "--health-interval", "5x", "busybox", "true"], "invalid --health-interval"),
        (["run", "--health-cmd", "true", "--health-retries", "-2", "busybox", "true"], "cannot be negative"),
    ]
    for args, msg in cases:
        p = labtui(*args, check=False)
        assert p.returncode == 125 and msg in p.stderr and "Traceback" not in p.stderr, (args, p.stderr)
