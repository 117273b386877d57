"""The IPC tab: SysV shared memory, semaphores and message queues on the host and in the
container, side by side, with keys that create a segment on one side to show it is invisible
on the other."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from labtui.tui import adapter
from labtui.tui.widgets.background import run_in_background
from labtui.tui.widgets.panel import Panel
from labtui.tui.widgets.tables import sync_table

COLUMNS = (("kind", "TYPE"), ("id", "ID"), ("key", "KEY"), ("perms", "PERMS"), ("size", "SIZE/N"), ("uid", "UID"))


def rows(objs: list[adapter.IpcObject]) -> list[tuple[str, tuple]]:
    return [(f"{o.kind}-{o.id}", (o.kind, o.id, o.key, o.perms, o.size, o.owner)) for o in objs]


class IpcPanel(Panel):
    TAB_ID = "ipc"
    TITLE = "IPC"
    KEYS = [
        Binding("h", "host_shm", "shm on host"),
        Binding("c", "container_shm", "shm in container"),
        Binding("x", "remove_host_shm", "Drop host shm", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield Static(Text("SysV IPC objects (/proc/sysvipc/*). Each IPC namespace has its own: h creates a "
                          "shared-memory segment on the host, c one in the container; watch which side sees it.",
                          style="dim"), id="ipc-note")
        with Horizontal(id="ipc-sides"):
            with Vertical():
                yield Static(Text("host", style="bold"), classes="side-title")
                yield DataTable(id="ipc-host", cursor_type="row")
            with Vertical():
                yield Static(Text("container", style="bold"), classes="side-title", id="ipc-ctr-title")
                yield DataTable(id="ipc-ctr", cursor_type="row")

    def on_mount(self) -> None:
        for wid in ("#ipc-host", "#ipc-ctr"):
            table = self.query_one(wid, DataTable)
            for key, label in COLUMNS:
                table.add_column(label, key=key)

    def on_unmount(self) -> None:
        adapter.remove_host_shm()

    @classmethod
    def fetch(cls, cid: str) -> object:
        return adapter.ipc_view(cid)

    def show(self, data: object) -> None:
        if not isinstance(data, adapter.IpcView):
            return
        sync_table(self.query_one("#ipc-host", DataTable), rows(data.host))
        sync_table(self.query_one("#ipc-ctr", DataTable), rows(data.container))
        title = self.query_one("#ipc-ctr-title", Static)
        if not data.running:
            title.update(Text("container: not running", style="bold yellow"))
        elif data.error:
            title.update(Text(f"container: {data.error}", style="bold red"))
        elif data.same_namespace:
            title.update(Text("container: SHARES the host's IPC namespace", style="bold yellow"))
        else:
            title.update(Text(f"container ({len(data.container)} objects)", style="bold"))

    def action_host_shm(self) -> None:
        run_in_background(self, "shm on host", self.cid, adapter.create_host_shm)

    def action_container_shm(self) -> None:
        run_in_background(self, "shm in container", self.cid, lambda: adapter.create_container_shm(self.cid))

    def action_remove_host_shm(self) -> None:
        run_in_background(self, "drop host shm", self.cid, adapter.remove_host_shm)
