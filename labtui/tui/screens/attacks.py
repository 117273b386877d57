"""The attack lab: the escapes engine.attacks knows, each runnable under a weakened profile
(it should escape) and the default one (it should be stopped)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from labtui.tui import adapter
from labtui.tui.messages import ActionDone
from labtui.tui.widgets.background import run_in_background


def attack_text(a: adapter.AttackInfo) -> Text:
    t = Text()
    t.append(a.title or a.name, style="bold")
    if a.cve:
        t.append(f"  {a.cve}", style="dim")
    for label, value in (("what it does", a.technique), ("weakened by", a.weak), ("stopped by", a.stops_it)):
        if value:
            t.append(f"\n{label}: ", style="bold")
            t.append(value)
    return t


def result_text(r: dict) -> Text:
    escaped = r.get("escaped")
    verdict = "ESCAPED" if escaped else "skipped" if escaped is None else "stopped"
    t = Text(f"{r.get('attack')} under {r.get('profile')}: {verdict}",
             style="bold red" if escaped else "bold green" if escaped is False else "yellow")
    for key in ("evidence", "mitigation", "skipped"):
        if r.get(key):
            t.append(f"\n{key}: {r[key]}")
    return t


class AttackLabScreen(Screen):
    SUB_TITLE = "attack lab"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("w", "run('weak')", "Run weakened"),
        Binding("D", "run('default')", "Run default"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.items: list[adapter.AttackInfo] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="attacks-note")
        yield DataTable(id="attacks", cursor_type="row")
        with VerticalScroll(id="attack-detail-box"):
            yield Static("", id="attack-detail")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#attacks", DataTable)
        table.add_column("ATTACK", key="name")
        table.add_column("TITLE", key="title")
        items = adapter.attacks()
        note = self.query_one("#attacks-note", Static)
        self.items = items
        note.update(f"{len(items)} attacks. w runs the selected one weakened (it should escape), D under the "
                    "default profile (it should be stopped). Each run starts real containers.")
        for a in items:
            table.add_row(a.name, a.title, key=a.name)
        table.focus()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        a = next((x for x in self.items if x.name == event.row_key.value), None)
        if a is not None:
            self.query_one("#attack-detail", Static).update(attack_text(a))

    def action_run(self, profile: str) -> None:
        table = self.query_one("#attacks", DataTable)
        if not self.items or not table.row_count:
            self.notify("No attack to run.", severity="warning")
            return
        name = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        self.notify(f"running {name} ({profile})…", timeout=3)
        run_in_background(self, f"attack {name}", "", lambda: adapter.run_attack(name, profile))

    def on_action_done(self, message: ActionDone) -> None:
        if not message.ok:
            self.notify(message.message, title=f"{message.action} failed", severity="error")
            return
        if isinstance(message.result, dict):
            self.query_one("#attack-detail", Static).update(result_text(message.result))

    def action_back(self) -> None:
        self.app.pop_screen()
