"""The Steps tab: the container's live kernel-step stream, filterable, with explanations."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Select, Static

from labtui.tui import adapter
from labtui.tui.widgets.background import run_in_background
from labtui.tui.widgets.explanations import explain
from labtui.tui.widgets.panel import Panel

ALL = "all"
COLUMNS = (("seq", "SEQ"), ("mech", "MECHANISM"), ("op", "OPERATION"), ("target", "TARGET"), ("value", "VALUE"),
           ("result", "RESULT"), ("ms", "MS"), ("shell", "SHELL"))


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def result_text(step: dict) -> Text:
    res = str(step.get("result", "?"))
    return Text(res, style="green" if res == "ok" else "bold red")


def duration_text(step: dict) -> str:
    d = step.get("duration_ms")
    return f"{d:.2f}" if isinstance(d, int | float) else ""


class StepsPanel(Panel):
    TAB_ID = "steps"
    TITLE = "Steps"
    MAX_ROWS = 5000
    KEYS = [
        Binding("m", "next_mechanism", "Filter"),
        Binding("n", "gate_next", "Next step"),
        Binding("N", "gate_many", "Release 10", show=False),
    ]

    def __init__(self, cid: str, **kwargs) -> None:
        super().__init__(cid, **kwargs)
        self.steps: list[dict] = []
        self.filter = ALL

    def compose(self) -> ComposeResult:
        options = [("all mechanisms", ALL)] + [(m, m) for m in adapter.mechanisms()]
        with Horizontal(id="steps-bar"):
            yield Select(options, value=ALL, allow_blank=False, compact=True, id="mech-filter")
            yield Static("", id="gate-status")
        yield DataTable(id="steps-table", cursor_type="row", zebra_stripes=True)
        yield Static("Move through the steps to see what the kernel does at each.", id="step-detail")

    def on_mount(self) -> None:
        table = self.query_one("#steps-table", DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)

    @classmethod
    def fetch(cls, cid: str) -> object:
        return adapter.gate_pending(cid)

    def show(self, data: object) -> None:
        gate = self.query_one("#gate-status", Static)
        if isinstance(data, dict):
            gate.update(Text(f" gate holds: {data.get('mechanism', '')} {data.get('op', '')}  (n: let it go)",
                             style="bold yellow"))
        else:
            gate.update("")

    # -- the stream ---------------------------------------------------------------------------

    def add_steps(self, steps: list[dict]) -> None:
        table = self.query_one("#steps-table", DataTable)
        # Follow new steps only when the reader sits on the last one; the history loads at the top.
        follow = table.row_count > 0 and table.cursor_row >= table.row_count - 1
        start = len(self.steps)
        self.steps.extend(steps)
        for i, step in enumerate(steps, start):
            if self._matches(step):
                self._add_row(table, i, step)
        self._trim(table)
        if follow and table.row_count:
            table.move_cursor(row=table.row_count - 1)

    def _matches(self, step: dict) -> bool:
        return self.filter == ALL or step.get("mechanism") == self.filter

    def _add_row(self, table: DataTable, index: int, step: dict) -> None:
        cid = self.cid
        table.add_row(
            str(step.get("seq", "")), str(step.get("mechanism", "")), str(step.get("op", "")),
            clip(adapter.shorten(str(step.get("target", "")), cid), 36),
            clip(adapter.shorten(str(step.get("value", "")), cid), 30),
            result_text(step), duration_text(step), clip(adapter.shorten(str(step.get("shell", "")), cid), 48),
            key=str(index),
        )

    def _trim(self, table: DataTable) -> None:
        while table.row_count > self.MAX_ROWS:
            first = next(iter(table.rows))
            table.remove_row(first)

    def rebuild(self) -> None:
        table = self.query_one("#steps-table", DataTable)
        table.clear()
        for i, step in enumerate(self.steps):
            if self._matches(step):
                self._add_row(table, i, step)
        self._trim(table)
        self._describe(None)

    # -- filtering and details ----------------------------------------------------------------

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        value = str(event.value) if event.value is not Select.BLANK else ALL
        if value != self.filter:
            self.filter = value
            self.rebuild()

    def action_next_mechanism(self) -> None:
        present = sorted({str(s.get("mechanism")) for s in self.steps})
        order = [ALL] + present
        nxt = order[(order.index(self.filter) + 1) % len(order)] if self.filter in order else ALL
        self.query_one("#mech-filter", Select).value = nxt

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        key = event.row_key.value if event.row_key else None
        self._describe(self.steps[int(key)] if key is not None and int(key) < len(self.steps) else None)

    def _describe(self, step: dict | None) -> None:
        detail = self.query_one("#step-detail", Static)
        if step is None:
            detail.update("Move through the steps to see what the kernel does at each.")
            return
        detail.update(step_detail(step, self.cid))

    # -- the step gate ------------------------------------------------------------------------

    def action_gate_next(self) -> None:
        self._release(1)

    def action_gate_many(self) -> None:
        self._release(10)

    def _release(self, n: int) -> None:
        run_in_background(self, "gate", self.cid, lambda: adapter.gate_release(self.cid, n))


def step_detail(step: dict, cid: str) -> Text:
    t = Text()
    t.append(f"#{step.get('seq', '?')} {step.get('mechanism', '')} / {step.get('op', '')}", style="bold")
    res = str(step.get("result", "?"))
    t.append(f"  → {res}", style="green" if res == "ok" else "bold red")
    if step.get("strerror"):
        t.append(f" ({step.get('strerror')}, errno {step.get('errno')})", style="red")
    if step.get("duration_ms") is not None:
        t.append(f"  {duration_text(step)} ms  pid {step.get('pid', '?')}")
    for label, key in (("target", "target"), ("value", "value")):
        if step.get(key):
            t.append(f"\n{label}: {adapter.shorten(str(step[key]), cid)}")
    if step.get("shell"):
        t.append(f"\n$ {adapter.shorten(str(step['shell']), cid)}", style="italic")
    t.append("\n" + explain(step))
    if "<ctr>" in adapter.shorten(str(step.get("target", "")) + str(step.get("value", "")), cid):
        t.append(f"\n<ctr> = {adapter.container_dir(cid)}", style="dim")
    return t
