"""Snapshot-like layout checks at 80x24: the key widgets exist, are displayed and fit on screen.
Also the help and run-form modals, NO_COLOR, the command palette and the alert pipeline."""

from __future__ import annotations

import asyncio

import pytest
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Header, TabbedContent

from labtui.tui.app import LabApp
from labtui.tui.screens.alerts import AlertsScreen
from labtui.tui.screens.container import PANELS, ContainerScreen
from labtui.tui.screens.dashboard import DashboardScreen
from labtui.tui.screens.help import HelpScreen
from labtui.tui.screens.run_form import RunFormScreen
from tests.tui.conftest import run_d, until

SIZE = (80, 24)


def assert_on_screen(widget: Widget, min_height: int = 1) -> None:
    """Displayed, at least min_height rows tall, and inside the 80x24 screen."""
    region = widget.region
    assert widget.display and widget.visible, f"{widget!r} is hidden"
    assert region.height >= min_height and region.width > 0, f"{widget!r} has region {region}"
    assert region.right <= SIZE[0] and region.bottom <= SIZE[1], f"{widget!r} overflows: {region}"


@pytest.mark.usefixtures("tui_root")
def test_dashboard_layout_at_80x24():
    async def scenario() -> None:
        app = LabApp()
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.polls > 0)
            screen = app.screen
            await until(pilot, lambda: "kernel" in str(screen.query_one("#host-facts").render()))
            await pilot.pause(0.1)
            assert_on_screen(screen.query_one(Header))
            assert_on_screen(screen.query_one("#host-facts"), 2)
            assert_on_screen(screen.query_one("#containers"), 3)
            assert_on_screen(screen.query_one("#empty-hint"))
            assert_on_screen(screen.query_one(Footer))
            keys = {b.key for _, b, enabled, _ in screen.active_bindings.values() if enabled}
            assert {"n", "s", "k", "p", "d", "x", "question_mark", "q"} <= keys
            await pilot.press("question_mark")
            await until(pilot, lambda: isinstance(app.screen, HelpScreen))
            assert_on_screen(app.screen.query_one("#help"), 10)
            await pilot.press("escape")
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, RunFormScreen))
            form = app.screen
            for wid in ("#f-image", "#f-command", "#f-flags", "#f-gate", "#run-ok", "#run-cancel"):
                assert_on_screen(form.query_one(wid))
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen))

    asyncio.run(scenario())


@pytest.mark.root
@pytest.mark.usefixtures("tui_root")
def test_container_screen_layout_at_80x24_every_tab():
    run_d("--name", "tiny", "busybox", "sleep", "60")

    async def scenario() -> None:
        app = LabApp()
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.screen.query_one("#containers").row_count == 1)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ContainerScreen))
            screen = app.screen
            tabs = screen.query_one("#tabs", TabbedContent)
            assert [p.id for p in tabs.query("TabPane")] == [p.TAB_ID for p in PANELS]
            assert_on_screen(screen.query_one("#ctr-title"))
            await until(pilot, lambda: screen.query_one("#steps-table", DataTable).row_count > 5)
            assert_on_screen(screen.query_one("#steps-table"), 4)
            assert_on_screen(screen.query_one("#step-detail"), 2)
            assert_on_screen(screen.query_one("#mech-filter"))
            for key, panel in zip("1234567890", PANELS, strict=True):
                await pilot.press(key)
                await until(pilot, lambda p=panel: tabs.active == p.TAB_ID)
                await pilot.pause(0.1)
                assert_on_screen(screen.query_one(f"#panel-{panel.TAB_ID}"), 5)
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen))

    asyncio.run(scenario())


@pytest.mark.usefixtures("tui_root")
def test_no_color_is_honoured(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")

    async def scenario() -> None:
        app = LabApp()
        assert app.no_color
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.polls > 0)
            assert_on_screen(app.screen.query_one("#containers"), 3)

    asyncio.run(scenario())


@pytest.mark.usefixtures("tui_root")
def test_alert_events_become_notifications_and_fill_the_alert_list():
    from engine import events, paths

    paths.ensure_dirs()

    async def scenario() -> None:
        events.emit("alert", "c" * 64, "hog", alert="oom", message="OOM killer killed 1 process(es) in hog")
        app = LabApp()
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: len(app.alerts) == 1, what="the past alert in the list")
            assert not app._notifications, "a past alert goes to the list, not a notification"
            events.emit("started", "d" * 64, "calm")  # not an alert
            events.emit("restarted", "d" * 64, "calm", restart_count=1)
            await until(pilot, lambda: len(app.alerts) == 2, what="the new alert")
            await until(pilot, lambda: any("restarted" in str(n.message) for n in app._notifications),
                        what="a notification")
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, AlertsScreen))
            table = app.screen.query_one("#alerts", DataTable)
            await until(pilot, lambda: table.row_count == 2)
            events.emit("oom", "d" * 64, "calm", exit_code=137)
            await until(pilot, lambda: table.row_count == 3, what="the alert list follows live")

    asyncio.run(scenario())


@pytest.mark.root
@pytest.mark.usefixtures("tui_root")
def test_command_palette_offers_the_containers():
    cid = run_d("--name", "paletted", "busybox", "sleep", "60")

    async def scenario() -> None:
        app = LabApp()
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.screen.query_one("#containers").row_count == 1)
            titles = [c.title for c in app.get_system_commands(app.screen)]
            assert "Open paletted" in titles and "Run a container" in titles and "Alerts" in titles
            cmd = next(c for c in app.get_system_commands(app.screen) if c.title == "Open paletted")
            cmd.callback()
            await until(pilot, lambda: isinstance(app.screen, ContainerScreen) and app.screen.cid == cid)
            await until(pilot, lambda: "paletted" in str(app.screen.query_one("#ctr-title").render()))

    asyncio.run(scenario())
