"""Tabs fed by streams rather than snapshots: Logs (a Log widget, following), Timeline (this
container's lifecycle events), and strace (a placeholder until the engine records it)."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import DataTable, Log, Static

from labtui.tui import adapter
from labtui.tui.widgets.panel import Panel
from labtui.tui.widgets.tables import sync_table

EVENT_KEYS_SHOWN = ("ts", "type", "container", "name")


class LogsPanel(Panel):
    TAB_ID = "logs"
    TITLE = "Logs"
    POLLED = False

    def compose(self) -> ComposeResult:
        yield Log(id="log-view", max_lines=5000, auto_scroll=True)

    def add_records(self, records: list[dict]) -> None:
        lines: list[str] = []
        for rec in records:
            prefix = "[stderr] " if rec.get("stream") == "stderr" else ""
            text = str(rec.get("log", ""))
            lines += [prefix + ln for ln in text.rstrip("\n").split("\n")] if text else []
        if lines:
            self.query_one("#log-view", Log).write_lines(lines)


def event_details(ev: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in ev.items() if k not in EVENT_KEYS_SHOWN)


class TimelinePanel(Panel):
    TAB_ID = "timeline"
    TITLE = "Timeline"
    POLLED = False

    def compose(self) -> ComposeResult:
        yield DataTable(id="timeline-table", cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one("#timeline-table", DataTable)
        for key, label in (("time", "TIME"), ("type", "EVENT"), ("details", "DETAILS")):
            table.add_column(label, key=key)

    def add_events(self, events: list[dict]) -> None:
        table = self.query_one("#timeline-table", DataTable)
        for ev in events:
            ts = time.strftime("%H:%M:%S", time.localtime(float(ev.get("ts", 0))))
            kind = str(ev.get("type", "?"))
            style = "bold red" if kind in ("died", "oom", "alert") else ""
            table.add_row(ts, Text(kind, style=style), event_details(ev))


STRACE_COLUMNS = (("name", "SYSCALL"), ("calls", "CALLS"), ("errors", "ERRORS"), ("percent", "% TIME"),
                  ("usecs_per_call", "USECS/CALL"))


class StracePanel(Panel):
    TAB_ID = "strace"
    TITLE = "strace"

    def compose(self) -> ComposeResult:
        yield Static("", id="strace-note")
        yield DataTable(id="strace-table", cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one("#strace-table", DataTable)
        for key, label in STRACE_COLUMNS:
            table.add_column(label, key=key)

    @classmethod
    def fetch(cls, cid: str) -> object:
        return adapter.strace_summary(cid)

    def show(self, data: object) -> None:
        if not isinstance(data, adapter.StraceView):
            return
        note = self.query_one("#strace-note", Static)
        if data.message:
            note.update(Text(f"strace summary: {data.message}", style="yellow"))
        else:
            note.update(Text("system calls of the container's processes, traced from the host by strace -f "
                             "(labtui run --strace, or labtui trace NAME)", style="dim"))
        rows = [(str(r.get("name")), tuple(fmt(r.get(k)) for k, _ in STRACE_COLUMNS)) for r in data.rows]
        sync_table(self.query_one("#strace-table", DataTable), rows)


def fmt(value: object) -> str:
    if value is None:
        return ""
    return f"{value:.2f}" if isinstance(value, float) else str(value)
