"""The lesson picker, the lesson screen and the instructor's walkthrough, against real containers.

The lessons are the app's own fixtures (tests/fixtures/lessons-app, through LABTUI_LESSONS_DIR):
app-live has two tasks (run ltapp-web, then ltapp-two) and a hint shown after one failed
evaluation; app-needs-v2 needs cgroup v2 with its controllers. Each test has its own LABTUI_ROOT
(tui_root), so the lesson session, its progress and transcript are private and go with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from labtui.tui.adapter import lessons as course
from labtui.tui.app import LabApp, run_app
from labtui.tui.screens import walkthrough
from labtui.tui.screens.dashboard import DashboardScreen
from labtui.tui.screens.lesson import LessonScreen, task_markdown
from labtui.tui.screens.lessons import LessonPickerScreen
from labtui.tui.screens.walkthrough import WalkthroughScreen
from labtui.tui.widgets.lesson_checklist import LessonChecklist, checklist_text
from labtui.tui.widgets.lesson_gate import HeldStepView
from labtui.tui.widgets.lesson_panel import LessonPanel
from tests.tui.conftest import CLI, cli, in_thread, until

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lessons-app"


@pytest.fixture
def lessons_dir(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABTUI_LESSONS_DIR", str(FIXTURES))
    return FIXTURES


def names() -> set[str]:
    """The names of every container of this test's state (`labtui ps -a`)."""
    out = cli("ps", "-a", "--format", "json").stdout
    return {json.loads(line)["Names"] for line in out.splitlines() if line.strip()}


# ---- without containers ------------------------------------------------------------------------

def test_checklist_says_pass_fail_and_not_run_in_words(lessons_dir):
    lesson = course.load("app-live")
    rows = [course.CheckRow("web", "web-running", "a container named ltapp-web is running", False, 0, 1,
                            cause="No running container named ltapp-web.")]
    text = checklist_text(lesson, rows, "web", set()).plain
    assert "▶ 1 Run ltapp-web" in text and "FAIL" in text and "No running container" in text
    assert "· 2 Run ltapp-two  (later)" in text
    rows = [course.CheckRow("web", "web-running", "running", True, 1, 1),
            course.CheckRow("two", "two-running", "two", None, 0, 1, cause="not run: task 'web' is not done yet")]
    text = checklist_text(lesson, rows, "two", {"web"}).plain
    assert "✔ 1 Run ltapp-web  (done)" in text and "pass" in text and "not run" in text
    assert "APP-LIVE-FINISHED" in task_markdown(lesson, None, False)
    assert "Task 2/2: Run ltapp-two" in task_markdown(lesson, "two", False)


def test_walkthrough_of_an_unknown_lesson_is_a_usage_error(lessons_dir, capsys):
    assert run_app(("walkthrough", "no-such-lesson")) == 125
    assert "no lesson with id 'no-such-lesson'" in capsys.readouterr().err


# ---- the picker and the lesson screen ------------------------------------------------------------

async def open_picker(app: LabApp, pilot) -> LessonPickerScreen:
    await until(pilot, lambda: isinstance(app.screen, DashboardScreen), what="the dashboard")
    await pilot.press("l")
    await until(pilot, lambda: isinstance(app.screen, LessonPickerScreen) and app.screen.loaded,
                timeout=20, what="the lesson list")
    assert isinstance(app.screen, LessonPickerScreen)
    return app.screen


async def open_lesson(app: LabApp, pilot, lesson_id: str) -> LessonScreen:
    picker = await open_picker(app, pilot)
    table = picker.query_one("#lessons-table", DataTable)
    table.move_cursor(row=[r.id for r in picker.rows].index(lesson_id))
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, LessonScreen), timeout=30, what="the lesson screen")
    screen = app.screen
    assert isinstance(screen, LessonScreen)
    await until(pilot, lambda: screen.status is not None, timeout=20, what="the first evaluation")
    return screen


def checklist(screen) -> str:
    return screen.query_one(LessonChecklist).plain


@pytest.mark.root
@pytest.mark.usefixtures("tui_root", "lessons_dir")
def test_picker_lists_lessons_and_greys_one_this_host_cannot_run():
    reason = course.unsupported(course.load("app-needs-v2"))

    async def scenario() -> None:
        app = LabApp()
        async with app.run_test(size=(80, 24)) as pilot:
            picker = await open_picker(app, pilot)
            rows = {r.id: r for r in picker.rows}
            assert set(rows) == {"app-live", "app-needs-v2"}
            assert rows["app-live"].progress == "0/2" and rows["app-live"].tasks == 2
            table = picker.query_one("#lessons-table", DataTable)
            assert str(table.get_cell("app-live", "title")) == "App fixture: containers, live"
            if not reason:
                pytest.skip("this host has cgroup v2 with its controllers: nothing to grey")
            assert rows["app-needs-v2"].progress == "unsupported"
            assert table.get_cell("app-needs-v2", "title").style == "dim"
            table.move_cursor(row=list(rows).index("app-needs-v2"))
            await until(pilot, lambda: "unsupported: cgroup-v2" in str(picker.query_one("#lesson-detail",
                                                                                         Static).render()),
                        what="the reason under the list")
            await pilot.press("enter")  # not started: a notification says why
            await pilot.pause(0.3)
            assert isinstance(app.screen, LessonPickerScreen)
            assert course.open_lesson() is None

    asyncio.run(scenario())


@pytest.mark.root
@pytest.mark.usefixtures("tui_root", "lessons_dir")
def test_a_check_turns_green_live_while_another_process_runs_the_container():
    async def scenario() -> None:
        app = LabApp()
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_lesson(app, pilot, "app-live")
            assert course.open_lesson() == "app-live", "the app opened the lesson's session"
            await until(pilot, lambda: "FAIL" in checklist(screen), what="the check red first")
            assert screen.current == "web"
            n = screen.evaluations
            await pilot.pause(3.5)
            assert screen.evaluations - n >= 3, "the checks are evaluated at least once a second, keys or not"
            proc = await asyncio.create_subprocess_exec(*CLI, "run", "-d", "--name", "ltapp-web", "busybox",
                                                        "sleep", "600", stdout=subprocess.DEVNULL)
            t0 = time.monotonic()
            # No key is pressed: the screen follows the other process by itself.
            await until(pilot, lambda: "web" in screen.done, timeout=20, what="the task passed")
            took = time.monotonic() - t0
            assert await proc.wait() == 0
            assert "✔ 1 Run ltapp-web  (done)" in checklist(screen)
            assert screen.status is not None and any(r.check == "web-running" and r.passed for r in screen.status.rows)
            assert screen.current == "two", "the next task is current"
            # The panel follows the lesson's running container: the next task's (procs) panel of ltapp-web.
            panel = screen.query_one(LessonPanel)
            await until(pilot, lambda: panel.name_shown == "ltapp-web" and panel.tab == "procs",
                        what="the panel of ltapp-web")
            assert took < 20

    asyncio.run(scenario())


@pytest.mark.root
@pytest.mark.usefixtures("tui_root", "lessons_dir")
def test_a_hint_appears_after_a_failure_and_h_shows_the_ladder():
    async def scenario() -> None:
        app = LabApp()
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await open_lesson(app, pilot, "app-live")
            failures = screen.status.failures if screen.status else 0
            # A wrong attempt, from another process: the container exits at once, so the check fails
            # after something happened, which counts as a failed evaluation.
            await in_thread(cli, "run", "-d", "--name", "ltapp-web", "busybox", "true")
            await until(pilot, lambda: screen.status is not None and screen.status.failures > failures,
                        timeout=20, what="a failed evaluation counted")
            await until(pilot, lambda: any("APP-HINT-AFTER-FAILURE" in h for h in screen.hints), timeout=10,
                        what="the hint after a failure")
            shown = str(screen.query_one("#lesson-hints", Static).render())
            assert "APP-HINT-AFTER-FAILURE" in shown and screen.query_one("#lesson-hints-box").display
            assert any("APP-HINT-AFTER-FAILURE" in str(n.message) for n in app._notifications), "a notification"
            assert "FAIL" in checklist(screen) and "web" not in screen.done
            await pilot.press("h")
            await until(pilot, lambda: any("APP-HINT-LADDER" in h for h in screen.hints), what="the ladder's hint")

    asyncio.run(scenario())


# ---- the walkthrough -------------------------------------------------------------------------

@pytest.mark.root
@pytest.mark.usefixtures("tui_root", "lessons_dir")
def test_walkthrough_each_key_press_performs_exactly_one_held_step_and_quitting_leaves_nothing():
    lesson = course.load("app-live")
    cli("run", "-d", "--name", "ltapp-two", "busybox", "sleep", "600")  # left by "an earlier run"

    async def scenario() -> None:
        app = LabApp(WalkthroughScreen(lesson, exit_app=True))
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, WalkthroughScreen), what="the walkthrough")
            screen = app.screen
            assert isinstance(screen, WalkthroughScreen)
            await until(pilot, lambda: screen.held is not None, timeout=30, what="the first held step")
            assert "ltapp-two" not in names(), "the walkthrough starts from nothing of the lesson's"
            box = screen.query_one(HeldStepView)
            assert "NEXT STEP" in box.plain and "why:" in box.plain and "$ " in box.plain
            # Presenter layout at 80x24: the step box, the task text and the footer all on screen.
            await until(pilot, lambda: box.region.height >= 5, what="the step box laid out")
            assert box.region.bottom <= 23
            assert screen.query_one("#wt-text-box").region.height >= 4
            for _ in range(6):
                held = screen.held
                assert held is not None
                before = course.gated_steps("ltapp-web")
                await pilot.press("space")
                await until(pilot, lambda h=held: screen.held is not None and screen.held.key != h.key,
                            timeout=10, what="the next held step")
                assert course.gated_steps("ltapp-web") == before + 1, "one key press, one kernel step"
            await pilot.press("e")  # the rest of the task without stopping
            await until(pilot, lambda: screen.phase == "solved", timeout=30, what="task 1 solved")
            assert screen.rows and all(r.passed for r in screen.rows)
            assert "ltapp-web" in names()
            await pilot.press("right")
            await until(pilot, lambda: screen.idx == 1 and screen.held is not None
                        and screen.held.container == "ltapp-two", timeout=30, what="task 2 held")
            await pilot.press("left")  # back: rebuilt (ltapp-two removed, ltapp-web started gated again)
            await until(pilot, lambda: screen.idx == 0 and screen.held is not None
                        and screen.held.container == "ltapp-web", timeout=40, what="task 1 again, held")
            assert "ltapp-two" not in names()
            await pilot.press("q")
            await until(pilot, lambda: screen.cleaned, timeout=40, what="the clean-up")
            await pilot.pause(0.5)
        assert names() == set(), "quitting the walkthrough removes the lesson's containers"

    try:
        asyncio.run(scenario())
    finally:
        walkthrough.cleanup_all()  # after a failure too: no solve script left waiting at a gate


@pytest.mark.root
@pytest.mark.usefixtures("tui_root", "lessons_dir")
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_inside_tmux_x_opens_the_students_shell_beside_and_the_screen_follows_it(monkeypatch):
    server = f"labtui-test-{os.getpid()}-lesson"

    def tmux(*args: str) -> str:
        return subprocess.run(["tmux", "-L", server, "-f", "/dev/null", *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout

    try:
        tmux("new-session", "-d", "-s", "s", "-x", "160", "-y", "40", "sleep 120")
        monkeypatch.setenv("TMUX", tmux("display", "-p", "#{socket_path},#{pid},#{session_id}").strip())
        monkeypatch.setenv("TMUX_PANE", tmux("display", "-p", "#{pane_id}").strip())

        async def scenario() -> None:
            app = LabApp()
            async with app.run_test(size=(80, 24)) as pilot:
                screen = await open_lesson(app, pilot, "app-live")
                await pilot.press("x")
                await until(pilot, lambda: len(tmux("list-panes", "-t", "s").splitlines()) == 2, timeout=10,
                            what="a pane beside the app")
                pane = tmux("display", "-p", "-t", "s", "#{pane_id}").strip()  # the new pane is the active one
                # The student types in the pane; `labtui` there is this labtui, in the app's state.
                tmux("send-keys", "-t", pane, "labtui run -d --name ltapp-web busybox sleep 600", "Enter")
                await until(pilot, lambda: "web" in screen.done, timeout=30, what="the task passed")

        asyncio.run(scenario())
    finally:
        subprocess.run(["tmux", "-L", server, "kill-server"], capture_output=True, timeout=10)
