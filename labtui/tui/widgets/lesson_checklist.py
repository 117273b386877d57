"""A lesson's task checklist: each task, and each check of the tasks reached, passed (green),
failed (red, with its cause) or not run (grey, with why), as check50 reports them.

The words carry the meaning as well as the colours (NO_COLOR): `pass`, `FAIL`, `not run`.
"""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from labtui.tui.adapter import lessons as course

MARK = {True: ("✔ pass   ", "green"), False: ("✘ FAIL   ", "bold red"), None: ("○ not run", "dim")}


def check_line(t: Text, row: course.CheckRow, with_cause: bool = True) -> None:
    mark, style = MARK[row.passed]
    t.append(f"  {mark} ", style=style)
    t.append(row.description or row.check, style="" if row.passed is not None else "dim")
    if row.max_points > 1:
        t.append(f"  {row.points}/{row.max_points}", style="dim")
    if with_cause and row.passed is not True and row.cause:
        t.append(f"\n      {row.cause}", style="red" if row.passed is False else "dim")
    if row.passed is False and row.observed:
        t.append(f"\n      saw: {row.observed}", style="dim")
    t.append("\n")


def checklist_text(lesson: course.Lesson, rows: list[course.CheckRow], current: str | None,
                   done: set[str] | list[str], only: str | None = None) -> Text:
    """The checklist as text: tasks in order, the checks of those done and of the current one
    (later tasks show their checks as not reached). only: one task (the walkthrough's)."""
    done = set(done)
    by_task: dict[str, list[course.CheckRow]] = {}
    for r in rows:
        by_task.setdefault(r.task, []).append(r)
    t = Text()
    for n, task in enumerate(lesson.tasks, 1):
        if only is not None and task.id != only:
            continue
        if task.id in done:
            head, style, state = "✔", "green", "done"
        elif task.id == current:
            head, style, state = "▶", "bold", "now"
        else:
            head, style, state = "·", "dim", "later"
        t.append(f"{head} {n} {task.title}", style=style)
        t.append(f"  ({state})\n", style="dim")
        if state == "later":
            continue
        results = by_task.get(task.id)
        if not results:  # not evaluated yet: the checks, without a verdict
            for c in task.checks:
                t.append(f"  … {c.description or c.id}\n", style="dim")
            continue
        for r in results:
            check_line(t, r, with_cause=task.id == current or only is not None)
    return t


class LessonChecklist(VerticalScroll):
    """The checklist, scrollable (a long cause wraps); updated after every evaluation."""

    DEFAULT_CSS = """
    LessonChecklist { height: auto; max-height: 10; background: $boost; padding: 0 1; }
    LessonChecklist > Static { height: auto; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.text = Text("checking…", style="dim")

    def compose(self):
        yield Static(self.text, id="checklist-text")

    def show(self, text: Text) -> None:
        self.text = text
        self.query_one("#checklist-text", Static).update(text)

    @property
    def plain(self) -> str:
        return self.text.plain
