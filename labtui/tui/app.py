"""The labtui terminal app: `sudo labtui` with no arguments (also served to browsers by labtui.tui.serve).

Thin on purpose: the screens hold the handlers, labtui.tui.adapter holds every engine call. The app
itself only follows the host-wide event stream (a thread worker) to raise alerts, and offers
the global keys and command-palette entries.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import get_current_worker

from labtui.tui import adapter
from labtui.tui.adapter import lessons as course
from labtui.tui.messages import AlertsChanged, EventsArrived
from labtui.tui.screens import alerts, walkthrough
from labtui.tui.screens.alerts import AlertsScreen
from labtui.tui.screens.attacks import AttackLabScreen
from labtui.tui.screens.container import ContainerScreen
from labtui.tui.screens.dashboard import DashboardScreen
from labtui.tui.screens.help import HelpScreen
from labtui.tui.screens.lessons import LessonPickerScreen
from labtui.tui.screens.walkthrough import WalkthroughScreen

EVENTS_TICK = 0.25
MAX_ALERTS = 500
REPEAT_AFTER = 30.0


class LabApp(App):
    """Dashboard first; container, alerts, attack lab and help screens on top."""

    CSS_PATH = "app.tcss"
    TITLE = "labtui"
    BINDINGS = [
        Binding("question_mark", "help", "Help"),
        Binding("a", "alerts", "Alerts"),
        Binding("t", "attacks", "Attacks", show=False),
        Binding("l", "lessons", "Lessons", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, start: Screen | None = None) -> None:
        """start: a screen to open over the dashboard (`labtui walkthrough ID` passes its walkthrough)."""
        super().__init__()
        self.alerts: list[dict] = []
        self._notified: dict[tuple[str, str], float] = {}
        self.start_screen = start

    def on_mount(self) -> None:
        self.push_screen(DashboardScreen())
        if self.start_screen is not None:
            self.push_screen(self.start_screen)
        self.follow_events()

    @work(thread=True, exclusive=True, group="events")
    def follow_events(self) -> None:
        worker = get_current_worker()
        tail = adapter.events_tail()
        self.post_message(EventsArrived(tail.read(), historic=True))
        while not worker.is_cancelled:
            worker.cancelled_event.wait(EVENTS_TICK)
            events = tail.read()  # [] while the stream cannot be read: tried again next tick
            if events:
                self.post_message(EventsArrived(events))

    def on_events_arrived(self, message: EventsArrived) -> None:
        fresh = [ev for ev in message.events if alerts.is_alert(ev)]
        if not fresh:
            return
        self.alerts = (self.alerts + fresh)[-MAX_ALERTS:]
        if not message.historic:  # old alerts go to the list, not in the student's face
            for ev in fresh:
                self.pop_up(ev)
        if isinstance(self.screen, AlertsScreen):
            self.screen.post_message(AlertsChanged())

    def pop_up(self, ev: dict) -> None:
        """A notification, at most one per container and kind of alert every REPEAT_AFTER seconds (a
        throttled busy loop raises one alert per episode; the list keeps them all)."""
        key = (str(ev.get("container")), alerts.title(ev))
        now = time.monotonic()
        if now - self._notified.get(key, -REPEAT_AFTER) < REPEAT_AFTER:
            return
        self._notified[key] = now
        self.notify(alerts.describe(ev), title=alerts.title(ev), severity=alerts.severity(ev), timeout=8)

    # -- global actions and the command palette ----------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_alerts(self) -> None:
        if not isinstance(self.screen, AlertsScreen):
            self.push_screen(AlertsScreen())

    def action_attacks(self) -> None:
        if not isinstance(self.screen, AttackLabScreen):
            self.push_screen(AttackLabScreen())

    def action_lessons(self) -> None:
        if not isinstance(self.screen, LessonPickerScreen):
            self.push_screen(LessonPickerScreen())

    def open_container(self, cid: str) -> None:
        while isinstance(self.screen, ContainerScreen | AlertsScreen | AttackLabScreen | HelpScreen):
            self.pop_screen()
        self.push_screen(ContainerScreen(cid))

    def dashboard(self) -> DashboardScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, DashboardScreen):
                return screen
        return None

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help", "Keys and what each panel reads", self.action_help)
        yield SystemCommand("Alerts", "OOM kills, crashes, restarts, health, limit alerts", self.action_alerts)
        yield SystemCommand("Attack lab", "Attacks and the mechanisms that stop them", self.action_attacks)
        yield SystemCommand("Lessons", "Guided lessons with live checks, and the instructor's walkthrough (l)",
                            self.action_lessons)
        dash = self.dashboard()
        if dash is None:
            return
        yield SystemCommand("Run a container", "Open the run form", dash.action_run)
        for row in dash.rows:
            yield SystemCommand(f"Open {row.name}", f"{row.status_text} · {row.image} · {row.id[:12]}",
                                lambda cid=row.id: self.open_container(cid))


def run_app(start: tuple[str, str] | None = None) -> int:
    """Run the app in this terminal; returns the exit code for `labtui`.

    start=("walkthrough", LESSON_ID) opens the lesson's walkthrough at once (`labtui walkthrough
    ID`; quitting it quits the app). An unknown lesson, or one this host cannot run, is one line on
    stderr and exit 125 (77 for unsupported, as `labtui lesson replay`), before the screen changes."""
    first = None
    if start is not None:
        first = _start_screen(*start)
        if isinstance(first, int):
            return first
    try:
        LabApp(first).run()
    finally:
        walkthrough.cleanup_all()  # a walkthrough's containers never outlive the app
        adapter.stop_traces()  # a trace the app started ends with it; containers go on
    return 0


def _start_screen(kind: str, arg: str) -> Screen | int:
    if kind != "walkthrough":
        print(f"labtui: unknown start screen {kind!r}", file=sys.stderr)
        return 125
    try:
        lesson = course.load(arg)
    except course.LessonError as e:
        print(f"labtui: {e}", file=sys.stderr)
        return 125
    reason = course.unsupported(lesson)
    if reason:
        print(f"labtui: lesson {lesson.id} is unsupported on this host: {reason}", file=sys.stderr)
        return course.UNSUPPORTED_EXIT
    return WalkthroughScreen(lesson, exit_app=True)


if __name__ == "__main__":
    sys.exit(run_app())
