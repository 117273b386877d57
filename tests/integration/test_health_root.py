"""Health checks with docker's semantics, on real containers."""

from __future__ import annotations

import json

import pytest

from engine.errors import InvalidArgument
from engine.health import parse_duration
from tests.helpers import inspect, labtui, run_d, wait_for

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("clean_containers")]


def health(cid: str) -> dict:
    return inspect(cid)["State"]["Health"]


def statuses(cid: str) -> list[str]:
    out = labtui("events", "--format", "json", "--filter", f"container={cid}", "--filter", "type=health_status").stdout
    return [json.loads(line)["status"] for line in out.splitlines()]


def test_unhealthy_after_retries_then_healthy_with_events_and_log():
    cid = run_d("--health-cmd", "cat /tmp/ok", "--health-interval", "300ms", "--health-retries", "2",
                "busybox", "sleep", "60")
    assert health(cid)["Status"] == "starting"
    wait_for(lambda: health(cid)["Status"] == "unhealthy", timeout=15, what="unhealthy")
    h = health(cid)
    assert h["FailingStreak"] >= 2
    assert "(unhealthy)" in [r for r in labtui("ps").stdout.splitlines() if cid[:12] in r][0]
    assert "No such file" in h["Log"][-1]["Output"] and h["Log"][-1]["ExitCode"] == 1
    labtui("exec", cid, "sh", "-c", "echo fine > /tmp/ok")
    wait_for(lambda: health(cid)["Status"] == "healthy", timeout=15, what="healthy")
    h = health(cid)
    assert h["FailingStreak"] == 0 and h["Log"][-1]["Output"] == "fine\n"
    assert len(h["Log"]) <= 5
    assert statuses(cid)[:2] == ["unhealthy", "healthy"]


def test_timeout_counts_as_failure_and_output_is_capped():
    cid = run_d("--health-cmd", "head -c 10000 /dev/zero | tr '\\0' x; sleep 5", "--health-interval", "200ms",
                "--health-timeout", "300ms", "--health-retries", "1", "busybox", "sleep", "60")
    wait_for(lambda: health(cid)["Status"] == "unhealthy", timeout=20, what="unhealthy by timeout")
    last = health(cid)["Log"][-1]
    assert last["ExitCode"] == -1 and "exceeded timeout" in last["Output"]
    cid2 = run_d("--health-cmd", "head -c 10000 /dev/zero | tr '\\0' x; exit 1", "--health-interval", "200ms",
                 "--health-retries", "1", "busybox", "sleep", "60")
    wait_for(lambda: health(cid2)["Log"], timeout=20, what="a result")
    assert len(health(cid2)["Log"][-1]["Output"]) == 4096


def test_failures_inside_the_start_period_do_not_count():
    cid = run_d("--health-cmd", "false", "--health-interval", "200ms", "--health-retries", "1",
                "--health-start-period", "3s", "busybox", "sleep", "60")
    wait_for(lambda: len(health(cid)["Log"]) >= 3, timeout=15, what="three checks")
    assert health(cid)["Status"] == "starting"
    wait_for(lambda: health(cid)["Status"] == "unhealthy", timeout=15, what="unhealthy after the period")


def test_on_failure_restart_restarts_an_unhealthy_container():
    cid = run_d("--health-cmd", "false", "--health-interval", "200ms", "--health-retries", "1",
                "--health-on-failure", "restart", "busybox", "sleep", "60")
    wait_for(lambda: inspect(cid)["RestartCount"] >= 1, timeout=20, what="a restart")
    wait_for(lambda: inspect(cid)["State"]["Running"], timeout=10, what="running again")


def test_durations():
    assert parse_duration("1m30s", "x") == 90 and parse_duration("500ms", "x") == 0.5
    for bad in ("5x", "", "s", "1.2.3s", "-1s"):
        with pytest.raises(InvalidArgument):
            parse_duration(bad, "x")
