"""The Namespaces tab: /proc/PID/ns/* inside beside the host's, PIDs on both sides, ID maps."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from labtui.tui import adapter
from labtui.tui.widgets.panel import Panel, not_running_text
from labtui.tui.widgets.tables import sync_table

NS_MEANING = {
    "cgroup": "its own cgroup root",
    "ipc": "own SysV IPC, POSIX mqueues",
    "mnt": "own mount table",
    "net": "own interfaces, routes, ports",
    "pid": "own PID numbers (init is 1)",
    "pid_for_children": "PID ns of future children",
    "time": "own boot/monotonic offsets",
    "user": "own UID/GID mapping",
    "uts": "own hostname",
}


def idmap_text(label: str, text: str) -> Text:
    t = Text(f"{label} (inside outside count): ", style="bold")
    t.append(" | ".join(" ".join(line.split()) for line in text.splitlines()) or "unreadable")
    if text.split() == ["0", "0", "4294967295"]:
        t.append("  identity map: no user namespace, root inside is root on the host", style="yellow")
    return t


class NamespacesPanel(Panel):
    TAB_ID = "ns"
    TITLE = "Namespaces"

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("", id="ns-note")
            yield DataTable(id="ns-table", cursor_type="row")
            yield Static("", id="uid-map")
            yield Static("", id="gid-map")
            yield Static(Text("PIDs seen outside and inside (NSpid in /proc/PID/status)", style="bold"))
            yield DataTable(id="ns-pids", cursor_type="row")

    def on_mount(self) -> None:
        ns = self.query_one("#ns-table", DataTable)
        for key, label in (("kind", "NAMESPACE"), ("inside", "CONTAINER"), ("host", "HOST"),
                           ("same", "ISOLATED?"), ("means", "WHICH MEANS")):
            ns.add_column(label, key=key)
        pids = self.query_one("#ns-pids", DataTable)
        for key, label in (("host", "HOST PID"), ("inside", "PID INSIDE"), ("chain", "NSpid"), ("cmd", "COMMAND")):
            pids.add_column(label, key=key)

    @classmethod
    def fetch(cls, cid: str) -> object:
        return adapter.namespaces_view(cid)

    def show(self, data: object) -> None:
        if not isinstance(data, adapter.NamespacesView):
            return
        note = self.query_one("#ns-note", Static)
        if not data.running:
            note.update(not_running_text("namespaces"))
            return
        note.update(Text(f"Inode of each /proc/PID/ns/* link: the container's init beside {data.host_ref}. "
                         "A different inode is a different namespace.", style="dim"))
        self._fill_ns(data.rows)
        self.query_one("#uid-map", Static).update(idmap_text("uid_map", data.uid_map))
        self.query_one("#gid-map", Static).update(idmap_text("gid_map", data.gid_map))
        self._fill_pids(data.procs)

    def _fill_ns(self, rows: list[adapter.NsRow]) -> None:
        out = []
        for r in rows:
            same = Text("yes", style="green") if r.isolated else Text("no (shared)", style="yellow")
            out.append((r.kind, (r.kind, str(r.inside or "-"), str(r.host or "-"), same,
                                 NS_MEANING.get(r.kind, "") if r.isolated else "")))
        sync_table(self.query_one("#ns-table", DataTable), out)

    def _fill_pids(self, procs: list[adapter.Proc]) -> None:
        rows = [(str(p.pid), (str(p.pid), str(p.nspid[-1]) if p.nspid else "?",
                              " → ".join(str(x) for x in p.nspid), p.cmd[:60])) for p in procs]
        sync_table(self.query_one("#ns-pids", DataTable), rows)
