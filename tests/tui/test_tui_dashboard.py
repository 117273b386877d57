"""The dashboard against real containers started by the CLI."""

from __future__ import annotations

import asyncio
import json

import pytest
from textual.widgets import Input

from labtui.tui.app import LabApp
from labtui.tui.screens.dashboard import DashboardScreen
from labtui.tui.screens.run_form import RunFormScreen
from labtui.tui.widgets.containers_table import ContainersTable
from tests.tui.conftest import cli, column, in_thread, run_d, until

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("tui_root")]


def test_dashboard_lists_a_cli_container_within_a_second_and_drops_it_when_removed():
    async def scenario() -> None:
        app = LabApp()
        async with app.run_test(size=(120, 30)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.polls > 0,
                        what="the first poll")
            table = app.screen.query_one(ContainersTable)
            assert table.row_count == 0
            cid = await in_thread(run_d, "--name", "dash1", "busybox", "sleep", "60")
            took = await until(pilot, lambda: str(table.get_cell(cid, "status")) == "running", timeout=3,
                               what="dash1 listed as running")
            assert took < 1.0, f"the dashboard took {took:.2f}s to show a container the CLI started"
            assert str(table.get_cell(cid, "name")) == "dash1"
            pid = json.loads(cli("inspect", cid).stdout)[0]["State"]["Pid"]
            assert str(table.get_cell(cid, "pid")) == str(pid)
            assert str(table.get_cell(cid, "image")).startswith("busybox")
            await in_thread(cli, "rm", "-f", cid)
            took = await until(pilot, lambda: "dash1" not in column(table, "name"), timeout=3, what="dash1 gone")
            assert took < 1.0

    asyncio.run(scenario())


def test_stop_from_the_dashboard_shows_exited_and_keeps_the_container():
    async def scenario() -> None:
        cid = run_d("--name", "stopme", "busybox", "sleep", "60")
        app = LabApp()
        async with app.run_test(size=(120, 30)) as pilot:
            table = app.screen.query_one(ContainersTable)
            await until(pilot, lambda: table.row_count == 1, what="the container listed")
            await pilot.press("s")
            await until(pilot, lambda: str(table.get_cell(cid, "status")) == "exited", timeout=15,
                        what="status exited")
            assert str(table.get_cell(cid, "pid")) == "-"
        assert "stopme" in cli("ps", "-a").stdout

    asyncio.run(scenario())


def test_the_run_form_starts_a_container_and_p_pauses_and_resumes_it():
    async def scenario() -> None:
        app = LabApp()
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.polls > 0)
            table = app.screen.query_one(ContainersTable)
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, RunFormScreen))
            app.screen.query_one("#f-command", Input).value = "sleep 60"
            app.screen.query_one("#f-name", Input).value = "formed"
            app.screen.query_one("#f-env", Input).value = "GREETING=hi"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: "formed" in column(table, "name"), timeout=10, what="the new container")
            cid = next(iter(table.rows_by_id))
            await until(pilot, lambda: str(table.get_cell(cid, "status")) == "running", timeout=10,
                        what=f"running; notes: {[str(n.message) for n in app._notifications]}")
            assert "GREETING=hi" in json.loads(cli("inspect", cid).stdout)[0]["Config"]["Env"]
            table.focus()
            await pilot.press("p")
            await until(pilot, lambda: str(table.get_cell(cid, "status")) == "paused", timeout=10, what="paused")
            await pilot.press("p")
            await until(pilot, lambda: str(table.get_cell(cid, "status")) == "running", timeout=10, what="resumed")

    asyncio.run(scenario())


def tracer_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    return 0


def test_T_toggles_strace_on_the_selected_container():
    async def scenario() -> None:
        cid = run_d("--name", "traceme", "busybox", "sh", "-c", "while true; do sleep 0.2; done")
        pid = json.loads(cli("inspect", cid).stdout)[0]["State"]["Pid"]
        app = LabApp()
        async with app.run_test(size=(120, 30)) as pilot:
            table = app.screen.query_one(ContainersTable)
            await until(pilot, lambda: table.row_count == 1, what="the container listed")
            assert tracer_of(pid) == 0
            await pilot.press("T")
            await until(pilot, lambda: tracer_of(pid) != 0, timeout=10, what="strace attached to PID 1")
            await pilot.press("T")
            await until(pilot, lambda: tracer_of(pid) == 0, timeout=10, what="strace detached")
        log = json.loads(cli("inspect", cid).stdout)[0]["LogPath"].replace("container.log", "strace.log")
        assert "nanosleep" in open(log).read() or "wait4" in open(log).read()

    asyncio.run(scenario())
