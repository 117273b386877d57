"""The Processes tab: the container's process tree (engine.api.top), zombies marked."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from labtui.tui import adapter
from labtui.tui.widgets.panel import Panel, not_running_text
from labtui.tui.widgets.tables import sync_table

STATE_NAMES = {"R": "running", "S": "sleeping", "D": "disk wait", "Z": "ZOMBIE", "T": "stopped", "t": "traced",
               "I": "idle", "X": "dead"}


class ProcessesPanel(Panel):
    TAB_ID = "procs"
    TITLE = "Processes"

    def compose(self) -> ComposeResult:
        yield Static("", id="procs-note")
        yield DataTable(id="procs-table", cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one("#procs-table", DataTable)
        for key, label in (("tree", "PID INSIDE / COMMAND"), ("state", "STATE"), ("host", "HOST PID"),
                           ("ppid", "PPID"), ("uid", "UID")):
            table.add_column(label, key=key)

    @classmethod
    def fetch(cls, cid: str) -> object:
        return adapter.processes(cid)

    def show(self, data: object) -> None:
        procs = data if isinstance(data, list) else []
        note = self.query_one("#procs-note", Static)
        table = self.query_one("#procs-table", DataTable)
        if not procs:
            table.clear()
            note.update(not_running_text("processes"))
            return
        zombies = sum(p.zombie for p in procs)
        note.update(Text(f"{len(procs)} processes in the container's PID namespace"
                         + (f", {zombies} zombie(s): exited, not yet reaped by their parent" if zombies else ""),
                         style="bold red" if zombies else "dim"))
        sync_table(table, [(str(p.pid), self._cells(p)) for p in procs])

    @staticmethod
    def _cells(p: adapter.Proc) -> tuple:
        inside = p.nspid[-1] if p.nspid else "?"
        label = Text("  " * p.depth + ("└ " if p.depth else "") + f"{inside} {p.cmd[:40]}")
        state = Text(f"{p.state} {STATE_NAMES.get(p.state, '')}")
        if p.zombie:
            label.append(" <defunct>")
            label.stylize("bold red")
            state.stylize("bold red")
        return label, state, str(p.pid), str(p.ppid), str(p.uid)
