"""Snapshot tests of the app's layout at 80x24 (pytest-textual-snapshot's snap_compare fixture): the
dashboard with no containers, the help and run-form modals over it, and the attack lab's list.

The accepted screenshots are the SVGs in __snapshots__/test_tui_snapshots/. When one differs, the
run writes snapshot_report.html (set the path with --snapshot-report) showing the accepted and the
new screen side by side; after a deliberate change of layout, accept the new ones with
`pytest tests/tui/test_tui_snapshots.py --snapshot-update` and commit the SVGs.

Whatever would differ between machines or runs is fixed first: LABTUI_ROOT is a fixed, empty
directory (the dashboard prints its paths), adapter.host_facts returns fixed facts (no kernel
release or cgroup layout of this host), the startup sweep is off, NO_COLOR and the theme are set,
each screenshot waits for the dashboard's first poll to be shown (later polls of an empty root
change nothing), and the run form's cursor does not blink. No container is started.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Markdown

from labtui.tui import adapter
from labtui.tui.app import LabApp
from labtui.tui.screens.attacks import AttackLabScreen
from labtui.tui.screens.dashboard import DashboardScreen
from labtui.tui.screens.help import HelpScreen
from labtui.tui.screens.run_form import RunFormScreen
from tests.tui.conftest import until

SIZE = (80, 24)
ROOT = "/var/tmp/labtui-snapshot-root"
FACTS = {
    "kernel": "Linux 6.1.0-snapshot-amd64 (x86_64)",
    "cgroups": "unified v2 at /sys/fs/cgroup (cpuset cpu io memory pids)",
    "state": f"{ROOT}/lib",
    "runtime": f"{ROOT}/run",
}


@pytest.fixture
def fixed_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    shutil.rmtree(ROOT, ignore_errors=True)
    os.makedirs(ROOT)
    monkeypatch.setenv("LABTUI_ROOT", ROOT)
    monkeypatch.delenv("NO_COLOR", raising=False)  # read when the app is created
    monkeypatch.setattr(adapter, "host_facts", lambda: dict(FACTS))
    monkeypatch.setattr(adapter, "on_startup", lambda: None)
    try:
        yield
    finally:
        shutil.rmtree(ROOT, ignore_errors=True)


def new_app() -> LabApp:
    app = LabApp()
    app.theme = "textual-dark"  # not TEXTUAL_THEME's
    return app


async def dashboard_shown(pilot: Pilot) -> DashboardScreen:
    """The dashboard once its host facts and first poll (no containers) are on screen."""
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.polls > 0
                and bool(app.screen.facts), what="the dashboard's first poll")
    await pilot.pause()
    return app.screen


@pytest.mark.usefixtures("fixed_host")
def test_snapshot_dashboard_without_containers(snap_compare):
    async def run_before(pilot: Pilot) -> None:
        screen = await dashboard_shown(pilot)
        assert screen.query_one("#empty-hint").display

    assert snap_compare(new_app(), terminal_size=SIZE, run_before=run_before)


@pytest.mark.usefixtures("fixed_host")
def test_snapshot_help(snap_compare):
    async def run_before(pilot: Pilot) -> None:
        app = pilot.app
        await dashboard_shown(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen)
                    and len(app.screen.query_one(Markdown).query("MarkdownTable")) == 4, what="the help text")
        await pilot.pause()

    assert snap_compare(new_app(), terminal_size=SIZE, run_before=run_before)


@pytest.mark.usefixtures("fixed_host")
def test_snapshot_run_form(snap_compare):
    async def run_before(pilot: Pilot) -> None:
        app = pilot.app
        await dashboard_shown(pilot)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, RunFormScreen) and app.screen.query_one("#f-image").has_focus,
                    what="the run form")
        for field in app.screen.query(Input):
            field.cursor_blink = False  # the cursor stays shown
        await pilot.pause()

    assert snap_compare(new_app(), terminal_size=SIZE, run_before=run_before)


@pytest.mark.usefixtures("fixed_host")
def test_snapshot_attack_lab(snap_compare):
    async def run_before(pilot: Pilot) -> None:
        app = pilot.app
        await dashboard_shown(pilot)
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, AttackLabScreen)
                    and app.screen.query_one("#attacks", DataTable).row_count > 0
                    and bool(str(app.screen.query_one("#attack-detail").render())), what="the attack list")
        await pilot.pause()

    assert snap_compare(new_app(), terminal_size=SIZE, run_before=run_before)
