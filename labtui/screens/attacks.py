"""The attack lab: the attacks engine.attacks offers, or a note while it does not exist."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from labtui import adapter

NOT_YET = ("The attack lab is not available yet: this build has no engine.attacks module. When it lands, "
           "this screen lists each attack (container escapes, fork bombs, capability abuse) and the "
           "mechanism that stops it.")


class AttackLabScreen(Screen):
    BINDINGS = [Binding("escape", "back", "Back")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="attacks-note")
        yield DataTable(id="attacks", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "attack lab"
        table = self.query_one("#attacks", DataTable)
        table.add_column("ATTACK", key="name")
        table.add_column("WHAT IT TRIES", key="what")
        items = adapter.attacks()
        note = self.query_one("#attacks-note", Static)
        if items is None:
            note.update(NOT_YET)
            table.display = False
            return
        note.update(f"{len(items)} attacks (engine.attacks). Run them from the CLI for now.")
        for name, what in items:
            table.add_row(name, what)

    def action_back(self) -> None:
        self.app.pop_screen()
