"""The lesson picker (l): every lesson with its topic, tasks and the student's progress; a lesson
this host cannot run is greyed with the reason ("unsupported: cgroup-v2: ..."), a lesson file that
does not load shows the schema's message. Enter starts or resumes one, w opens its walkthrough."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from labtui.tui.adapter import lessons as course
from labtui.tui.messages import ActionDone
from labtui.tui.screens.confirm import ConfirmScreen
from labtui.tui.screens.lesson import LessonScreen
from labtui.tui.screens.walkthrough import WalkthroughScreen
from labtui.tui.widgets.background import run_in_background

COLUMNS = (("title", "LESSON"), ("topic", "TOPIC"), ("tasks", "TASKS"), ("progress", "PROGRESS"))


class RowsLoaded(Message):
    def __init__(self, rows: list[course.LessonRow], root: str) -> None:
        super().__init__()
        self.rows = rows
        self.root = root


def row_cells(row: course.LessonRow) -> tuple[Text, ...]:
    """A greyed row for a lesson this host cannot run (or cannot load): it is listed, not offered."""
    style = "dim" if row.unsupported or row.error else ""
    title = ("* " if row.is_open else "") + (row.title or row.id)
    progress = "done" if row.progress == "done" else row.progress
    pstyle = style or ("green" if progress == "done" else "")
    return (Text(title, style=style), Text(row.topic, style=style), Text(str(row.tasks or ""), style=style),
            Text(progress, style=pstyle))


def detail_text(row: course.LessonRow) -> Text:
    t = Text()
    t.append(row.id, style="bold")
    if row.is_open:
        t.append("  (open: its session is running)", style="green")
    if row.error:
        t.append(f"\n{row.error}", style="red")
        return t
    for o in row.objectives:
        t.append(f"\n• {o}")
    if row.requires:
        t.append(f"\nneeds: {', '.join(row.requires)}", style="dim")
    if row.unsupported:
        t.append(f"\nunsupported: {row.unsupported}", style="yellow")
    return t


class LessonPickerScreen(Screen):
    SUB_TITLE = "lessons"
    DEFAULT_CSS = """
    LessonPickerScreen #lessons-note { height: auto; padding: 0 1; }
    LessonPickerScreen #lessons-table { height: 1fr; }
    LessonPickerScreen #lesson-detail-box { height: auto; max-height: 8; padding: 0 1; background: $boost; }
    """
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("enter", "open", "Start", show=False),
        Binding("w", "walkthrough", "Walkthrough"),
        Binding("g", "reload", "Reload", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[course.LessonRow] = []
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Reading the lessons…", id="lessons-note")
        yield DataTable(id="lessons-table", cursor_type="row")
        with VerticalScroll(id="lesson-detail-box"):
            yield Static("", id="lesson-detail")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#lessons-table", DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        table.focus()
        self.load_rows()

    @work(thread=True, exclusive=True, group="lesson-rows")
    def load_rows(self) -> None:
        # Off the UI thread: every lesson file is parsed and the host's features checked (criu check).
        self.post_message(RowsLoaded(course.lesson_rows(), course.lessons_root()))

    def on_rows_loaded(self, message: RowsLoaded) -> None:
        self.rows = message.rows
        table = self.query_one("#lessons-table", DataTable)
        keep = table.cursor_row
        table.clear()
        for row in self.rows:
            table.add_row(*row_cells(row), key=row.id)
        if table.row_count:
            table.move_cursor(row=min(keep, table.row_count - 1))
        runnable = sum(1 for r in self.rows if not r.unsupported and not r.error)
        note = (f"{len(self.rows)} lessons in {message.root}, {runnable} runnable on this host. "
                "enter starts or resumes one (the student's shell works beside the app); "
                "w runs the instructor's walkthrough.")
        self.query_one("#lessons-note", Static).update(note if self.rows else f"No lessons in {message.root}.")
        self.loaded = True
        self._describe()

    def selected(self) -> course.LessonRow | None:
        table = self.query_one("#lessons-table", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((r for r in self.rows if r.id == key), None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._describe()

    def _describe(self) -> None:
        row = self.selected()
        self.query_one("#lesson-detail", Static).update(detail_text(row) if row else "")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def _runnable(self, row: course.LessonRow | None) -> bool:
        if row is None:
            return False
        if row.error:
            self.notify(row.error, title="this lesson does not load", severity="error")
            return False
        if row.unsupported:
            self.notify(row.unsupported, title=f"{row.id} is unsupported on this host", severity="warning")
            return False
        return True

    # -- keys -----------------------------------------------------------------------------------

    def action_open(self) -> None:
        row = self.selected()
        if not self._runnable(row):
            return
        assert row is not None
        other = next((r.id for r in self.rows if r.is_open and r.id != row.id), None)
        if other is None:
            self._start(row.id, close_other=False)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._start(row.id, close_other=True)

        self.app.push_screen(ConfirmScreen(f"Lesson {other} is open. Close it (its progress is kept) and "
                                           f"start {row.id}?"), answered)

    def _start(self, lesson_id: str, close_other: bool) -> None:
        self.notify(f"starting {lesson_id}…", timeout=3)
        run_in_background(self, "start lesson", lesson_id, lambda: course.start(lesson_id, close_other))

    def on_action_done(self, message: ActionDone) -> None:
        if not message.ok:
            self.notify(message.message, title=f"{message.action} failed", severity="error", timeout=10)
            return
        if isinstance(message.result, course.Opened):
            self.app.push_screen(LessonScreen(message.result))
            self.load_rows()  # progress and the open mark, for when the student comes back

    def action_walkthrough(self) -> None:
        row = self.selected()
        if not self._runnable(row):
            return
        assert row is not None

        def answered(yes: bool | None) -> None:
            if yes:
                self.app.push_screen(WalkthroughScreen(row.id))

        self.app.push_screen(ConfirmScreen(f"The walkthrough of {row.id} removes the lesson's containers, starts "
                                           "them again step by step, and removes them when it ends. Go on?"),
                             answered)

    def action_reload(self) -> None:
        self.load_rows()

    def action_back(self) -> None:
        self.app.pop_screen()

    def on_screen_resume(self) -> None:
        if self.loaded:
            self.load_rows()
