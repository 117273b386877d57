"""The run form: a modal that returns an adapter.RunForm (or None when cancelled).

Only the common fields have their own inputs; every other `labtui run` flag (limits, network,
ports, security) goes in "more flags", parsed by the options the command line itself uses
(labtui.common.runopts), so the form never falls behind the command line.
"""

from __future__ import annotations

import shlex

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static

from labtui.tui import adapter

FIELDS = (
    ("image", "image", "busybox"),
    ("command", "command", "sleep 3600   (empty: the image's command)"),
    ("name", "name", "random when empty"),
    ("env", "env", "K=V K2=V2"),
    ("volumes", "volumes", "/host/dir:/in/container[:ro] ..."),
    ("flags", "more flags", "--memory 64m --cpus 0.5 --network bridge -p 8080:80 ..."),
)


class TickBox(Checkbox):
    """A checkbox whose mark is a character, not only a colour (readable with NO_COLOR)."""

    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]  # noqa: N802 - Textual's name
        return "X" if self.value else " "


class RunFormScreen(ModalScreen[adapter.RunForm | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "submit", "Run")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="run-form"):
            yield Static("Run a container", id="run-title")
            for key, label, placeholder in FIELDS:
                with Horizontal(classes="form-row"):
                    yield Label(label, classes="form-label")
                    yield Input(value="busybox" if key == "image" else "", placeholder=placeholder,
                                id=f"f-{key}", compact=True)
            with Horizontal(classes="form-row"):
                yield TickBox("read-only root", id="f-read-only", compact=True)
                yield TickBox("step gate (hold each kernel step)", id="f-gate", compact=True)
            with Horizontal(id="run-buttons"):
                yield Button("Run", variant="primary", id="run-ok", compact=True)
                yield Button("Cancel", id="run-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#f-image", Input).focus()

    def value(self, key: str) -> str:
        return self.query_one(f"#f-{key}", Input).value.strip()

    def form(self) -> adapter.RunForm:
        return adapter.RunForm(
            image=self.value("image") or "busybox", command=self.value("command"), name=self.value("name"),
            env=shlex.split(self.value("env")), volumes=shlex.split(self.value("volumes")),
            read_only=self.query_one("#f-read-only", Checkbox).value, gate=self.query_one("#f-gate", Checkbox).value,
            flags=self.value("flags"),
        )

    def action_submit(self) -> None:
        try:
            form = self.form()
            adapter.run_options(form)  # parse now: a typo is reported here, the form stays open
        except adapter.ERRORS as e:
            self.notify(str(e), title="cannot run", severity="error")
            return
        self.dismiss(form)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "run-ok":
            self.action_submit()
        else:
            self.action_cancel()
