"""The instructor's walkthrough (`labtui walkthrough ID`, or w in the lesson list): a lesson's tasks
solved live, one kernel step per key press, in a presenter layout that is readable on a projector
and fits 80x24.

For each task: its set-up runs, then its solve script with the step gate on (the adapter's
`labtui` wrapper adds --gate to `run` and `create`), so each kernel step of the containers it starts
waits. Before a step runs the box on top says what is about to happen (api.gate_waiting: mechanism, op,
target, the shell equivalent) and why (widgets/explanations.py); space lets exactly that step go
(engine.api.gate_release(container, 1)). e runs the task to its end, → goes to the next task, ←
to the previous one (rebuilt: the lesson's containers removed, earlier tasks' set-up and solve run
without the gate), q quits and removes the lesson's containers.

Threads: a watcher (Textual thread worker) reads the held step every WATCH seconds and, in "run to
the end" mode, releases what is held; a runner (daemon thread: a gated solve may wait for minutes,
and quitting must not wait on it) resets, sets up, solves and evaluates one task.
"""

from __future__ import annotations

import threading
import time
import weakref

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Markdown, Static
from textual.worker import get_current_worker

from labtui.tui.adapter import lessons as course
from labtui.tui.widgets.lesson_checklist import LessonChecklist, checklist_text
from labtui.tui.widgets.lesson_gate import HeldStepView, held_text, idle_text

WATCH = 0.03  # the held step is read ~30 times a second: a released step's successor shows at once
ALL = 100000  # "run to the end": bytes for the gate FIFO, far more than a start has steps (~60)
STOP_WAIT = 20.0  # seconds a superseded solve gets to finish (every step released) before it is killed
SETTLE = 5.0  # seconds the checks are retried after a solve (a container just started)

_OPEN: weakref.WeakSet[WalkthroughScreen] = weakref.WeakSet()


class HeldChanged(Message):
    def __init__(self, held: course.Held | None, performed: int) -> None:
        super().__init__()
        self.held = held
        self.performed = performed


class RunnerReport(Message):
    """The runner's news for generation `gen`: kind is "phase", "solved", "failed" or "quit"."""

    def __init__(self, gen: int, kind: str, text: str = "", rows: list[course.CheckRow] | None = None,
                 ok: bool = True) -> None:
        super().__init__()
        self.gen = gen
        self.kind = kind
        self.text = text
        self.rows = rows or []
        self.ok = ok


class WalkthroughScreen(Screen):
    DEFAULT_CSS = """
    WalkthroughScreen #wt-head { height: 1; padding: 0 1; background: $boost; }
    WalkthroughScreen #wt-body { height: 1fr; }
    WalkthroughScreen #wt-text-box { width: 1fr; }
    WalkthroughScreen #wt-side { width: 1fr; border-left: solid $primary; }
    WalkthroughScreen #wt-side LessonChecklist { max-height: 100%; background: $surface; }
    """

    BINDINGS = [
        Binding("space", "step", "Step"),
        Binding("n", "step", "Step", show=False),
        Binding("e", "end_task", "End task"),
        Binding("right,right_square_bracket", "next_task", "Next task", key_display="→"),
        Binding("left,left_square_bracket", "previous_task", "Previous", key_display="←"),
        Binding("r", "restart_task", "Restart", show=False),
        Binding("q,escape", "quit_walkthrough", "Quit"),
    ]

    def __init__(self, lesson: course.Lesson | str, exit_app: bool = False) -> None:
        super().__init__()
        self.lesson = course.load(lesson) if isinstance(lesson, str) else lesson
        self.exit_app = exit_app  # `labtui walkthrough ID`: quitting the walkthrough quits the app
        self.idx = 0
        self.phase = "preparing"
        self.generation = 0
        self.runner: threading.Thread | None = None
        self.script: course.Script | None = None
        self.auto = False  # run to the end of the task: the watcher lets every held step go
        self.after: str | None = None  # "next": go on once the current solve is over
        self.held: course.Held | None = None
        self.released: tuple[str, float] | None = None  # the held step a key already let go
        self.performed = 0
        self.presses = 0
        self.rows: list[course.CheckRow] = []
        self.since = time.time()
        self.cleaned = False
        self.sub_title = f"walkthrough {self.lesson.id}"
        _OPEN.add(self)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="wt-head")
        yield HeldStepView(id="wt-held")
        with Horizontal(id="wt-body"):
            with VerticalScroll(id="wt-text-box"):
                yield Markdown("", id="wt-text")
            with VerticalScroll(id="wt-side"):
                yield LessonChecklist(id="wt-checks")
        yield Footer()

    def on_mount(self) -> None:
        self.watch_gate()
        self._go(0, rebuild=True)  # whatever an earlier run left of the lesson goes first

    @property
    def task(self) -> course.Task:
        return self.lesson.tasks[self.idx]

    # -- what is shown ----------------------------------------------------------------------------

    def _head(self) -> Text:
        t = Text()
        t.append(self.lesson.title, style="bold")
        t.append(f"  task {self.idx + 1}/{len(self.lesson.tasks)}: {self.task.title}")
        t.append(f"  [{self.phase}]", style="yellow" if self.phase in ("solving", "preparing") else
                 "green" if self.phase in ("solved", "finished") else "red" if self.phase == "failed" else "dim")
        return t

    def _show(self, idle: str | None = None) -> None:
        self.query_one("#wt-head", Static).update(self._head())
        if idle is not None:
            self.query_one(HeldStepView).show(idle_text(idle))
        done = [t.id for t in self.lesson.tasks[:self.idx + (self.phase in ("solved", "finished"))]]
        self.query_one(LessonChecklist).show(checklist_text(self.lesson, self.rows, self.task.id, done,
                                                            only=self.task.id))

    def _show_text(self) -> None:
        task = self.task
        md = f"## Task {self.idx + 1}/{len(self.lesson.tasks)}: {task.title}\n\n{task.text.strip()}"
        if task.solve.strip():
            lines = "\n".join(f"- `{ln.strip()}`" for ln in task.solve.strip().splitlines() if ln.strip())
            md += f"\n\n**Solved live with**\n\n{lines}"
        self.query_one("#wt-text", Markdown).update(md)

    # -- the watcher --------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="walk-gate")
    def watch_gate(self) -> None:
        worker = get_current_worker()
        last: tuple[str, float] | None = None
        auto_released: tuple[str, float] | None = None
        while not worker.is_cancelled:
            try:
                held = course.held_steps(self.lesson)
            except course.ERRORS:
                held = []
            first = held[0] if held else None
            if self.auto:
                for h in held:
                    if h.key != auto_released:
                        auto_released = h.key
                        try:
                            course.release(h, ALL)
                        except course.ERRORS:
                            pass
            key = first.key if first else None
            if key != last:
                last = key
                performed = course.gated_steps(first.container) if first else -1
                self.post_message(HeldChanged(first, performed))
            worker.cancelled_event.wait(WATCH)

    def on_held_changed(self, message: HeldChanged) -> None:
        self.held = message.held
        if message.performed >= 0:
            self.performed = message.performed
        if message.held is not None and self.phase == "solving":
            self.query_one(HeldStepView).show(held_text(message.held, self.performed))
        elif self.phase == "solving":
            # Between two steps, for a few ms: keep the last one unless nothing is held for a while.
            self.set_timer(0.4, self._maybe_idle)

    def _maybe_idle(self) -> None:
        if self.held is None and self.phase == "solving":
            what = "running to the end of the task…" if self.auto else "the solve script runs (no step is held now)"
            self.query_one(HeldStepView).show(idle_text(what))

    # -- the runner ---------------------------------------------------------------------------------

    def _go(self, idx: int, rebuild: bool) -> None:
        """Move to task idx: what runs is let go and waited for, then (rebuild) the lesson's containers
        are removed and the tasks before idx redone without the gate, then idx is set up and its
        solve started with the gate on."""
        self.generation += 1
        prev = self.runner
        self.idx, self.phase, self.rows, self.after = idx, "preparing", [], None
        self.released = None
        self._show_text()
        self._show(idle="preparing…")
        self.runner = threading.Thread(target=self._run, args=(self.generation, idx, rebuild, prev),
                                       name="labtui-walkthrough", daemon=True)
        self.runner.start()

    def _report(self, gen: int, kind: str, text: str = "", **kw) -> None:
        try:
            self.post_message(RunnerReport(gen, kind, text, **kw))
        except RuntimeError:
            pass  # the app closed meanwhile

    def _stop_previous(self, prev: threading.Thread | None) -> None:
        """Let every held step go (a supervisor left waiting at its gate would outlive rm), wait for
        the solve to end, kill it if it does not. Released here, not only by the watcher: when the app
        closes the watcher is gone."""
        if prev is None or not prev.is_alive():
            return
        self.auto = True
        released: set[tuple[str, float]] = set()
        deadline = time.monotonic() + STOP_WAIT
        while prev.is_alive() and time.monotonic() < deadline:
            for held in course.held_steps(self.lesson):
                if held.key not in released:
                    released.add(held.key)
                    try:
                        course.release(held, ALL)
                    except course.ERRORS:
                        pass
            prev.join(0.05)
        if prev.is_alive() and self.script is not None:
            self.script.stop()
            prev.join(10)

    def _run(self, gen: int, idx: int, rebuild: bool, prev: threading.Thread | None) -> None:
        lesson = self.lesson
        try:
            self._stop_previous(prev)
            if gen != self.generation:
                return
            self.auto = False
            if rebuild:
                self._report(gen, "phase", "removing the lesson's containers…")
                problems = course.reset(lesson)
                if problems:
                    self._report(gen, "failed", "could not remove: " + "; ".join(problems), ok=False)
                    return
                self.since = time.time()
                for k, earlier in enumerate(lesson.tasks[:idx], 1):
                    for what, text in (("set-up", earlier.setup), ("solve", earlier.solve)):
                        if gen != self.generation:
                            return
                        self._report(gen, "phase", f"rebuilding: task {k} {what} (no gate)…")
                        res = course.run_script(lesson, text)
                        if not res.ok:
                            self._report(gen, "failed", f"task {k} {what} exited {res.code}:\n{res.output[-600:]}",
                                         ok=False)
                            return
            task = lesson.tasks[idx]
            if task.setup.strip():
                self._report(gen, "phase", f"setting up task {idx + 1}…")
                res = course.run_script(lesson, task.setup)
                if not res.ok:
                    self._report(gen, "failed", f"set-up exited {res.code}:\n{res.output[-600:]}", ok=False)
                    return
            if gen != self.generation:
                return
            self._report(gen, "solving")
            self.script = course.Script(task.solve or "true", lesson.path, gate=True)
            res = self.script.wait()
            if gen != self.generation:
                return
            done = {t.id for t in lesson.tasks[:idx]}
            rows = course.evaluate_task(lesson, task, done, self.since, settle=SETTLE if res.ok else 0.0)
            text = "" if res.ok else f"the solve script exited {res.code}:\n{res.output[-600:]}"
            self._report(gen, "solved", text, rows=rows, ok=res.ok)
        except course.ERRORS as e:
            self._report(gen, "failed", f"{type(e).__name__}: {e}", ok=False)

    def on_runner_report(self, message: RunnerReport) -> None:
        if message.kind == "quit":
            self._quit_done(message.text)
            return
        if message.gen != self.generation or self.phase == "quitting":
            return  # a task the presenter moved away from
        if message.kind == "phase":
            self._show(idle=message.text)
        elif message.kind == "solving":
            self.phase = "solving"
            self._show(idle="starting the solve script…")
        elif message.kind == "failed":
            self.phase = "failed"
            self._show(idle=message.text)
            self.notify(message.text[:300], title="the walkthrough stopped", severity="error", timeout=10)
        elif message.kind == "solved":
            self._solved(message)

    def _solved(self, message: RunnerReport) -> None:
        self.rows = message.rows
        self.auto = False
        passed = bool(message.rows) and all(r.passed for r in message.rows)
        last = self.idx == len(self.lesson.tasks) - 1
        self.phase = ("finished" if last else "solved") if passed and message.ok else "failed"
        if self.phase == "finished":
            idle = "every task is done. q quits and removes the lesson's containers."
        elif self.phase == "solved":
            idle = "task done: → goes to the next task."
        else:
            idle = message.text or "a check did not pass (see the checklist)."
        self._show(idle=idle)
        if self.after == "next" and self.phase == "solved":
            self._go(self.idx + 1, rebuild=False)

    # -- keys -------------------------------------------------------------------------------------------

    def action_step(self) -> None:
        """Exactly one step: the one on screen, and only once (a second press before the next step is
        held does nothing, or it would let that one go unseen)."""
        held = self.held
        if self.phase != "solving" or held is None or held.key == self.released:
            self.notify("No step is held right now." if self.phase == "solving" else f"The task is {self.phase}.",
                        timeout=2)
            return
        self.released = held.key
        try:
            course.release(held, 1)  # one byte into a FIFO, O_NONBLOCK: never waits
        except course.ERRORS as e:
            self.notify(str(e), title="step failed", severity="error")
            return
        self.presses += 1

    def action_end_task(self) -> None:
        if self.phase != "solving":
            self.notify(f"The task is {self.phase}.", timeout=2)
            return
        self.auto = True
        self._maybe_idle()

    def action_next_task(self) -> None:
        if self.idx + 1 >= len(self.lesson.tasks):
            self.notify("This is the last task: q quits.", timeout=3)
        elif self.phase == "solving":
            self.auto, self.after = True, "next"  # the task runs to its end, then the next one starts
            self._maybe_idle()
        elif self.phase == "solved":
            self._go(self.idx + 1, rebuild=False)
        elif self.phase in ("failed", "finished"):
            self._go(self.idx + 1, rebuild=True)
        else:
            self.notify("Preparing the task: a moment.", timeout=2)

    def action_previous_task(self) -> None:
        self._go(max(0, self.idx - 1), rebuild=True)

    def action_restart_task(self) -> None:
        self._go(self.idx, rebuild=True)

    def action_quit_walkthrough(self) -> None:
        if self.phase == "quitting":
            return
        self.phase = "quitting"
        self.generation += 1
        self._show(idle="removing the lesson's containers…")
        prev = self.runner

        def leave() -> None:
            self._stop_previous(prev)
            problems = []
            try:
                problems = course.reset(self.lesson)
            except course.ERRORS as e:
                problems = [str(e)]
            self.cleaned = True
            self._report(self.generation, "quit", "; ".join(problems))

        threading.Thread(target=leave, name="labtui-walkthrough-quit", daemon=True).start()

    def _quit_done(self, problems: str) -> None:
        if problems:
            self.notify(problems, title="left behind", severity="error", timeout=10)
        self.workers.cancel_group(self, "walk-gate")
        if self.exit_app:
            self.app.exit()
        else:
            self.app.pop_screen()

    def on_unmount(self) -> None:
        self.cleanup_now()  # no-op after q; the app closing another way (ctrl+q) waits for it here

    def cleanup_now(self) -> None:
        """Blocking: what quitting does, for an app that ends another way (ctrl+q, a signal)."""
        if self.cleaned:
            return
        self.generation += 1
        self._stop_previous(self.runner)
        try:
            course.reset(self.lesson)
        except course.ERRORS:
            pass
        self.cleaned = True


def cleanup_all() -> None:
    """Called when the app ends: no walkthrough leaves a container behind."""
    for screen in list(_OPEN):
        screen.cleanup_now()
