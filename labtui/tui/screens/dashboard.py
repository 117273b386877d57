"""The dashboard: every container, live, with the host's facts and the lifecycle keys.

A thread worker polls the engine's state files (and the kernel for CPU and memory) POLL_EVERY
seconds and posts one ContainersPolled; the table updates changed cells in place. Another
labtui or the CLI changing a container shows here within a poll.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

from rich.text import Text
from textual import work
from textual.app import ComposeResult, SuspendNotSupported
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import get_current_worker

from labtui.tui import adapter
from labtui.tui.messages import ActionDone, ContainersPolled, HostFacts
from labtui.tui.screens.confirm import ConfirmScreen
from labtui.tui.screens.container import ContainerScreen
from labtui.tui.screens.run_form import RunFormScreen
from labtui.tui.widgets.background import run_in_background
from labtui.tui.widgets.containers_table import ContainersTable

POLL_EVERY = 0.2  # a fixed rate: 5 Hz (the target is >= 4 Hz with 50 containers)


def facts_text(facts: dict[str, str], rows: list[adapter.ContainerRow]) -> Text:
    running = sum(r.status == "running" for r in rows)
    t = Text()
    t.append("kernel ", style="bold")
    t.append(facts.get("kernel", "?"))
    t.append("   containers ", style="bold")
    t.append(f"{running} running / {len(rows)}")
    t.append("\ncgroups ", style="bold")
    t.append(facts.get("cgroups", "?"))
    t.append("\nstate ", style="bold")
    t.append(facts.get("state", "?"))
    t.append("  runtime ", style="bold")
    t.append(facts.get("runtime", "?"))
    return t


class DashboardScreen(Screen):
    SUB_TITLE = "containers"
    BINDINGS = [
        Binding("n", "run", "Run"),
        Binding("s", "stop", "Stop"),
        Binding("k", "kill", "Kill"),
        Binding("p", "pause", "Pause"),
        Binding("d", "remove", "Remove"),
        Binding("x", "shell", "Shell"),
        Binding("S", "start", "Start", show=False),
        Binding("R", "restart", "Restart", show=False),
        Binding("T", "strace", "strace", show=False),
        Binding("c", "checkpoint", "Checkpoint", show=False),
        Binding("C", "restore", "Restore", show=False),
        Binding("o", "open", "Open", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.facts: dict[str, str] = {}
        self.rows: list[adapter.ContainerRow] = []
        self.polls = 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="host-facts")
        yield ContainersTable(id="containers")
        yield Static("No containers yet: press n to run one, or use the labtui CLI.", id="empty-hint")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(ContainersTable).focus()
        self.poll()

    @work(thread=True, exclusive=True, group="dashboard-poll")
    def poll(self) -> None:
        worker = get_current_worker()
        try:
            adapter.on_startup()
        except adapter.ERRORS as e:
            self.log.warning(f"startup sweep failed: {e}")
        self.post_message(HostFacts(adapter.host_facts()))
        sampler = adapter.Sampler()
        while not worker.is_cancelled:
            t0 = time.monotonic()
            try:
                msg = ContainersPolled(sampler.rows())
            except adapter.ERRORS as e:  # a container half-created or half-removed: next poll
                msg = ContainersPolled([], error=f"{type(e).__name__}: {e}")
            self.post_message(msg)
            worker.cancelled_event.wait(max(0.0, POLL_EVERY - (time.monotonic() - t0)))

    def on_host_facts(self, message: HostFacts) -> None:
        self.facts = message.facts
        self._show_facts()

    def on_containers_polled(self, message: ContainersPolled) -> None:
        if message.error:
            self.log.warning(f"poll failed: {message.error}")
            return
        self.rows = message.rows
        self.polls += 1
        self.query_one(ContainersTable).sync(message.rows)
        self.query_one("#empty-hint").display = not message.rows
        self._show_facts()

    def _show_facts(self) -> None:
        if self.facts:
            self.query_one("#host-facts", Static).update(facts_text(self.facts, self.rows))

    # -- selection ------------------------------------------------------------------------------

    def selected(self) -> str | None:
        cid = self.query_one(ContainersTable).selected_id()
        if cid is None:
            self.notify("No container selected.", severity="warning", timeout=3)
        return cid

    def _label_of(self, cid: str) -> str:
        row = self.query_one(ContainersTable).rows_by_id.get(cid)
        return row.name if row else cid[:12]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.open_container(str(event.row_key.value))

    def open_container(self, cid: str, tab: str = "steps") -> None:
        self.app.push_screen(ContainerScreen(cid, tab))

    def action_open(self) -> None:
        cid = self.selected()
        if cid:
            self.open_container(cid)

    # -- lifecycle ------------------------------------------------------------------------------

    def _act(self, verb: str, fn: Callable[[str], object]) -> None:
        cid = self.selected()
        if cid is None:
            return
        self.notify(f"{verb} {self._label_of(cid)}…", timeout=2)
        run_in_background(self, verb, cid, lambda: fn(cid))

    def action_start(self) -> None:
        self._act("start", adapter.start)

    def action_stop(self) -> None:
        self._act("stop", adapter.stop)

    def action_kill(self) -> None:
        self._act("kill", adapter.kill)

    def action_restart(self) -> None:
        self._act("restart", adapter.restart)

    def action_pause(self) -> None:
        self._act("pause/resume", adapter.toggle_pause)

    def action_strace(self) -> None:
        self._act("strace on/off", adapter.toggle_trace)

    def action_checkpoint(self) -> None:
        self._act("checkpoint", adapter.checkpoint)

    def action_restore(self) -> None:
        self._act("restore", adapter.restore)

    def action_remove(self) -> None:
        cid = self.selected()
        if cid is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                run_in_background(self, "remove", cid, lambda: adapter.remove(cid))

        self.app.push_screen(ConfirmScreen(f"Remove {self._label_of(cid)}? A running container is killed first."),
                             answered)

    def action_run(self) -> None:
        self.app.push_screen(RunFormScreen(), self.run_form)

    def run_form(self, form: adapter.RunForm | None) -> None:
        if form is None:
            return

        def create_then_start() -> str:
            cid, gated = adapter.create(form)
            self.post_message(ActionDone("created", cid, True, result=gated))
            adapter.start(cid)  # a gated start returns once every step was let go
            return cid

        self.notify(f"running {form.image}…", timeout=2)
        run_in_background(self, "run", "", create_then_start)

    def action_shell(self) -> None:
        cid = self.selected()
        if cid is None:
            return
        try:
            with self.app.suspend():
                subprocess.run(adapter.shell_argv(cid), check=False)
        except SuspendNotSupported:
            self.notify("This terminal cannot be suspended (browser mode): use labtui exec from a shell.",
                        severity="warning")

    def on_action_done(self, message: ActionDone) -> None:
        if message.action == "created":
            if message.result:  # gated: watch the steps and let them go one by one
                self.open_container(message.container)
            return
        if not message.ok:
            self.notify(message.message, title=f"{message.action} failed", severity="error")
            return
        what = message.result if isinstance(message.result, str) and message.action != "run" else "done"
        target = self._label_of(message.container or str(message.result))
        self.notify(f"{message.action} {target}: {what}", timeout=3)
