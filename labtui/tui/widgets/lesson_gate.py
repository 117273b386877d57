"""The walkthrough's "about to happen" box: the kernel step the step gate holds, before it runs:
its mechanism and operation, what it acts on, the shell command that does the same, and why the
runtime does it (widgets/explanations.py)."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from labtui.tui.adapter import lessons as course
from labtui.tui.widgets.explanations import explain


def held_text(held: course.Held, performed: int) -> Text:
    step = held.step
    t = Text()
    t.append(" NEXT STEP ", style="bold reverse")
    t.append(f"  {held.container}", style="bold")
    t.append(f"  ({performed} gated steps done)\n", style="dim")
    t.append(f"{step.get('mechanism', '?')} / {step.get('op', '?')}\n", style="bold yellow")
    for label, key in (("target", "target"), ("value", "value")):
        if step.get(key):
            t.append(f"{label}: ", style="bold")
            t.append(course.shorten(str(step[key]), held.cid) + "\n")
    if step.get("shell"):
        t.append("$ ", style="bold")
        t.append(course.shorten(str(step["shell"]), held.cid) + "\n", style="italic")
    t.append("why: ", style="bold")
    t.append(explain(step))
    return t


def idle_text(what: str) -> Text:
    t = Text()
    t.append(" NEXT STEP ", style="bold reverse dim")
    t.append(f"  {what}", style="dim")
    return t


class HeldStepView(VerticalScroll):
    DEFAULT_CSS = """
    HeldStepView { height: auto; max-height: 11; border: round $warning; padding: 0 1; }
    HeldStepView > Static { height: auto; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.text = idle_text("preparing…")

    def compose(self):
        yield Static(self.text, id="held-text")

    def show(self, text: Text) -> None:
        self.text = text
        self.query_one("#held-text", Static).update(text)

    @property
    def plain(self) -> str:
        return self.text.plain
