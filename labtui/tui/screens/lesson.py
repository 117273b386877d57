"""The lesson screen: the lesson's text beside the live panel of its containers, the task checklist,
hints, and the finish text once every task passes.

The student works elsewhere (a second terminal, a tmux pane this screen opens with x inside tmux,
or the shell x suspends the app to) and this screen follows without a key press. Two thread
workers, neither touching a widget:

    feed       every TICK: the lesson containers' step and event streams (by name: a container
               removed and run again is a new ID), the panel's streams and, once a second, its
               snapshot; anything that happened wakes the evaluator
    evaluate   lessons.session.status() when woken (a step or an event arrived, a container came
               or went) and at least every EVAL_EVERY seconds: the session records it, advances
               past a passed task (running the next one's set-up) and brings up hints
"""

from __future__ import annotations

import subprocess
import threading
import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult, SuspendNotSupported
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Markdown, Static
from textual.worker import get_current_worker

from labtui.tui import adapter
from labtui.tui.adapter import lessons as course
from labtui.tui.messages import ActionDone
from labtui.tui.widgets.background import run_in_background
from labtui.tui.widgets.lesson_checklist import LessonChecklist, checklist_text
from labtui.tui.widgets.lesson_panel import FETCHERS, LessonPanel, tab_of

TICK = 0.1  # the streams are read 10 times a second
EVAL_EVERY = 0.8  # a check is re-evaluated at least this often, activity or not
SETTLE = 0.15  # after a step or an event, wait this long for the rest of the burst (a start is ~60 steps)
SNAPSHOT_EVERY = 1.0


class Evaluated(Message):
    def __init__(self, status: course.Status) -> None:
        super().__init__()
        self.status = status


class EvaluationFailed(Message):
    def __init__(self, text: str, closed: bool) -> None:
        super().__init__()
        self.text = text
        self.closed = closed  # the session is gone (closed or reset from another terminal)


class PanelTarget(Message):
    def __init__(self, tab: str, name: str, cid: str | None) -> None:
        super().__init__()
        self.tab = tab
        self.name = name
        self.cid = cid


class PanelFeed(Message):
    """A batch for the panel: kind is "steps", "logs", "events" or "snapshot"."""

    def __init__(self, kind: str, cid: str, tab: str, data: object) -> None:
        super().__init__()
        self.kind = kind
        self.cid = cid
        self.tab = tab
        self.data = data


def task_markdown(lesson: course.Lesson, task_id: str | None, intro: bool) -> str:
    """The Markdown shown: the finish text once every task passed; else the intro (on the first
    visit, or i) above the current task's text."""
    if task_id is None:
        return f"## Finished: {lesson.title}\n\n{lesson.finish.strip()}"
    parts = []
    if intro:
        head = f"## {lesson.title}\n\n{lesson.intro.strip()}"
        if lesson.objectives:
            head += "\n\n**Objectives**\n\n" + "\n".join(f"- {o}" for o in lesson.objectives)
        parts.append(head)
    n, task = next((i, t) for i, t in enumerate(lesson.tasks, 1) if t.id == task_id)
    parts.append(f"## Task {n}/{len(lesson.tasks)}: {task.title}\n\n{task.text.strip()}")
    return "\n\n---\n\n".join(parts)


class LessonScreen(Screen):
    """One open lesson, followed live."""

    DEFAULT_CSS = """
    LessonScreen #lesson-head { height: 1; padding: 0 1; background: $boost; }
    LessonScreen #lesson-body { height: 1fr; }
    LessonScreen #lesson-left { width: 1fr; }
    LessonScreen #lesson-text-box { height: 1fr; }
    LessonScreen #lesson-text { margin: 0; }
    LessonScreen #lesson-hints-box { height: auto; max-height: 5; padding: 0 1; border-top: solid $warning; }
    LessonScreen #lesson-hints { height: auto; }
    LessonScreen #lesson-right { width: 1fr; border-left: solid $primary; }
    LessonScreen LessonPanel { height: 1fr; }
    LessonScreen.no-panel LessonPanel { display: none; }
    """

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("h", "hint", "Hint"),
        Binding("x", "shell", "Shell"),
        Binding("c", "check", "Check"),
        Binding("i", "intro", "Intro", show=False),
        Binding("p", "toggle_panel", "Panel", show=False),
    ]

    def __init__(self, opened: course.Opened) -> None:
        super().__init__()
        self.lesson = opened.lesson
        self.since = opened.since
        self.current: str | None = opened.current
        self.done: set[str] = set(opened.done)
        self.status: course.Status | None = None
        self.hints: list[str] = []
        self.intro = not opened.done  # the intro leads on the first visit; i shows it again
        self.panel_tab = self._task_panel()
        self.finished_shown = opened.current is None  # finished earlier: the text says so, no pop-up
        self.closed = False
        self.evaluations = 0
        self._wake = threading.Event()
        self._explicit = False
        self.sub_title = f"lesson {self.lesson.id}"
        if opened.setup_output.strip():
            self.notify(opened.setup_output.strip()[-400:], title="set-up", timeout=4)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(self._head(), id="lesson-head")
        with Horizontal(id="lesson-body"):
            with Vertical(id="lesson-left"):
                with VerticalScroll(id="lesson-text-box"):
                    yield Markdown(task_markdown(self.lesson, self.current, self.intro), id="lesson-text")
                with VerticalScroll(id="lesson-hints-box"):
                    yield Static("", id="lesson-hints")
            with Vertical(id="lesson-right"):
                yield LessonPanel(id="lesson-panel")
                yield LessonChecklist(id="lesson-checks")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#lesson-hints-box").display = False
        self.query_one(LessonChecklist).show(checklist_text(self.lesson, [], self.current, self.done))
        self.load_hints()
        self.feed()
        self.evaluate()
        if course.in_tmux():
            self.notify("x opens a shell in a tmux pane beside this one.", timeout=5)

    def on_unmount(self) -> None:
        self._wake.set()  # the evaluator ends at once, not at its next tick

    def _task_panel(self) -> str:
        if self.current is None:
            return tab_of("")
        return tab_of(self.lesson.task(self.current).panel)

    def _head(self) -> Text:
        t = Text()
        t.append(self.lesson.title, style="bold")
        n = len(self.lesson.tasks)
        if self.current is None:
            t.append("  finished", style="bold green")
        else:
            idx = next(i for i, task in enumerate(self.lesson.tasks, 1) if task.id == self.current)
            t.append(f"  task {idx}/{n}")
        st = self.status
        if st is not None:
            t.append(f"  {st.score}/{st.max_score} points")
            if st.failures and self.current is not None:
                t.append(f"  {st.failures} failed", style="dim")
        if self.closed:
            t.append("  (session closed)", style="yellow")
        return t

    # -- workers --------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="lesson-hints")
    def load_hints(self) -> None:
        if self.current is not None:
            shown = course.hints_shown(self.lesson, self.current)
            if shown:
                self.post_message(ActionDone("hints", "", True, result=course.HintShown(None, shown, -1)))

    @work(thread=True, exclusive=True, group="lesson-feed")
    def feed(self) -> None:
        worker = get_current_worker()
        watch = course.LessonWatch(self.lesson.containers, self.since)
        target: tuple[str, str | None] = ("", None)
        tails: list[tuple[str, adapter.Tail]] = []
        next_snapshot = 0.0
        while not worker.is_cancelled:
            try:
                seen = watch.read()
            except adapter.ERRORS:
                seen = None  # a container half-made or half-removed: the next tick
            if seen is not None:
                if seen.changed or seen.steps or seen.events:
                    self._wake.set()
                chosen = course.panel_container(self.lesson, seen.containers)
                name, cid = chosen if chosen else ("", None)
                tab = self.panel_tab
                if (tab, cid) != target:
                    target = (tab, cid)
                    self.post_message(PanelTarget(tab, name, cid))
                    tails = _panel_tails(tab, cid) if cid else []
                    next_snapshot = 0.0
            tab, cid = target
            for kind, tail in tails:
                records = tail.read()
                if records and cid:
                    self.post_message(PanelFeed(kind, cid, tab, records))
            now = time.monotonic()
            if cid and tab in FETCHERS and now >= next_snapshot:
                next_snapshot = now + SNAPSHOT_EVERY
                try:
                    self.post_message(PanelFeed("snapshot", cid, tab, FETCHERS[tab](cid)))
                except adapter.ERRORS:
                    pass  # the container going away: the panel keeps its last reading
            worker.cancelled_event.wait(TICK)

    @work(thread=True, exclusive=True, group="lesson-eval")
    def evaluate(self) -> None:
        worker = get_current_worker()
        due = 0.0  # the next evaluation starts at most EVAL_EVERY after the previous one started
        while not worker.is_cancelled:
            if self._wake.wait(max(0.0, due - time.monotonic())):
                worker.cancelled_event.wait(SETTLE)
            if worker.is_cancelled:
                return
            self._wake.clear()
            due = time.monotonic() + EVAL_EVERY
            explicit, self._explicit = self._explicit, False
            try:
                self.post_message(Evaluated(course.status(explicit=explicit)))
            except course.SessionError as e:
                self.post_message(EvaluationFailed(str(e), closed=True))
                return
            except course.ERRORS as e:
                self.post_message(EvaluationFailed(f"{type(e).__name__}: {e}", closed=False))
                worker.cancelled_event.wait(EVAL_EVERY)

    # -- what the workers report ------------------------------------------------------------------

    def on_evaluated(self, message: Evaluated) -> None:
        st = message.status
        if st.lesson_id != self.lesson.id:  # another lesson was started from a terminal
            self._closed(f"lesson {st.lesson_id} is open now; this screen no longer follows {self.lesson.id}")
            return
        self.status = st
        self.evaluations += 1
        before = self.current
        self.current, self.done = st.current, set(st.done)
        for task_id in st.passed_now:
            self.notify(f"{self.lesson.task(task_id).title}", title="task passed", timeout=5)
        if st.setup_output.strip():
            self.notify(st.setup_output.strip()[-400:], title="set-up of the next task", timeout=5)
        if self.current != before:
            self.intro = False
            self.hints = []
            self._show_hints()
            self.panel_tab = self._task_panel()
            self._show_text()
        for text in st.new_hints:
            self._add_hint(text, notify=True)
        self.query_one(LessonChecklist).show(checklist_text(self.lesson, st.rows, self.current, self.done))
        if st.finished and not self.finished_shown:
            self.finished_shown = True
            self._show_text()
            self.notify(f"{st.score}/{st.max_score} points", title=f"{self.lesson.title}: finished", timeout=10)
        self.query_one("#lesson-head", Static).update(self._head())

    def on_evaluation_failed(self, message: EvaluationFailed) -> None:
        if message.closed:
            self._closed(message.text)
        else:
            self.notify(message.text, title="evaluation failed", severity="warning", timeout=5)

    def _closed(self, why: str) -> None:
        self.closed = True
        self.workers.cancel_group(self, "lesson-eval")
        self.notify(why, title="the lesson is not open", severity="warning", timeout=10)
        self.query_one("#lesson-head", Static).update(self._head())

    async def on_panel_target(self, message: PanelTarget) -> None:
        # Awaited: the history of the new panel's streams, posted next, must find it mounted.
        await self.query_one(LessonPanel).follow(message.tab, message.name, message.cid)

    def on_panel_feed(self, message: PanelFeed) -> None:
        panel = self.query_one(LessonPanel)
        if message.kind == "steps":
            panel.add_steps(message.cid, message.data)  # type: ignore[arg-type]
        elif message.kind == "logs":
            panel.add_logs(message.cid, message.data)  # type: ignore[arg-type]
        elif message.kind == "events":
            panel.add_events(message.cid, message.data)  # type: ignore[arg-type]
        else:
            panel.show(message.cid, message.tab, message.data)

    def on_action_done(self, message: ActionDone) -> None:
        if not message.ok:
            self.notify(message.message, title=f"{message.action} failed", severity="error")
            return
        if message.action == "hints" and isinstance(message.result, course.HintShown):
            for text in message.result.shown:
                self._add_hint(text, notify=False)
        elif message.action == "hint" and isinstance(message.result, course.HintShown):
            h = message.result
            if h.text is None:
                self.notify("Every hint of this task is shown (below the checklist).", timeout=4)
            else:
                self._add_hint(h.text, notify=True, left=h.left)
        elif message.action == "tmux pane":
            self.notify("A shell opened in the pane beside; this screen follows what you do there.", timeout=4)

    # -- text and hints --------------------------------------------------------------------------

    def _show_text(self) -> None:
        self.query_one("#lesson-text", Markdown).update(task_markdown(self.lesson, self.current, self.intro))
        self.query_one("#lesson-text-box", VerticalScroll).scroll_home(animate=False)

    def _add_hint(self, text: str, notify: bool, left: int | None = None) -> None:
        if text not in self.hints:
            self.hints.append(text)
            self._show_hints()
        if notify:
            more = f" ({left} more on h)" if left else ""
            self.notify(text, title=f"hint{more}", timeout=12)

    def _show_hints(self) -> None:
        box = self.query_one("#lesson-hints-box", VerticalScroll)
        box.display = bool(self.hints)
        t = Text()
        for i, h in enumerate(self.hints, 1):
            t.append(f"hint {i}: ", style="bold yellow")
            t.append(h + ("\n" if i < len(self.hints) else ""))
        self.query_one("#lesson-hints", Static).update(t)
        box.scroll_end(animate=False)

    # -- keys -----------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_hint(self) -> None:
        if self.closed:
            self.notify("The lesson is not open: start it again from the lesson list (l).", severity="warning")
            return
        run_in_background(self, "hint", "", course.next_hint)

    def action_check(self) -> None:
        self._explicit = True  # counts as a failed attempt when the task does not pass, as `lesson status`
        self._wake.set()

    def action_intro(self) -> None:
        self.intro = not self.intro
        self._show_text()

    def action_toggle_panel(self) -> None:
        self.toggle_class("no-panel")

    def action_shell(self) -> None:
        if course.in_tmux():
            run_in_background(self, "tmux pane", "", lambda: course.tmux_pane(self.lesson.id))
            return
        try:
            with self.app.suspend():
                print(f"lesson {self.lesson.id}: `labtui` is on PATH; exit returns to the app.", flush=True)
                subprocess.run(course.shell_argv(), env=course.shell_env(), check=False)
        except SuspendNotSupported:
            self.notify("This terminal cannot be suspended (browser mode): work in another terminal.",
                        severity="warning")
        self._wake.set()


def _panel_tails(tab: str, cid: str) -> list[tuple[str, adapter.Tail]]:
    """The streams a stream panel shows, read from their start (the panel's history)."""
    if tab == "steps":
        return [("steps", adapter.steps_tail(cid))]
    if tab == "logs":
        return [("logs", adapter.logs_tail(cid))]
    if tab == "timeline":
        return [("events", adapter.container_events_tail(cid))]
    return []
