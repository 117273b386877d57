"""The Network tab: interfaces and addresses inside the container's network namespace
(/proc/PID/net/dev, fib_trie, if_inet6, route), the host's veth peer and bridge (checked in
/sys/class/net), the ports published from its config and a small diagram of the link."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from labtui.tui import adapter
from labtui.tui.widgets.panel import Panel, not_running_text
from labtui.tui.widgets.tables import sync_table


def summary(view: adapter.NetworkView) -> Text:
    t = Text()
    t.append("mode: ", style="bold")
    t.append(view.mode)
    if view.ip:
        t.append("  ip: ", style="bold")
        t.append(view.ip)
    t.append("  published: ", style="bold")
    t.append(", ".join(view.ports) if view.ports else "none")
    if view.running:
        t.append("\n")
        if view.shares_host:
            t.append("The container SHARES the host's network namespace (--network host).", style="bold yellow")
        else:
            t.append("Its own network namespace: these interfaces exist only inside.", style="dim")
        link = view.link
        if link is not None:
            t.append("\nhost side: ", style="bold")
            t.append(f"veth {link.host_veth or '?'} ")
            if link.veth_exists:
                t.append(f"({link.veth_state or '?'}, master {link.veth_master or 'none'})",
                         style="" if link.veth_master == link.bridge else "yellow")
            else:
                t.append("(not in /sys/class/net)", style="yellow")
            t.append(f"  bridge {link.bridge or '?'} ")
            t.append(f"({link.bridge_state or '?'})" if link.bridge_exists else "(missing)",
                     style="" if link.bridge_exists else "yellow")
            t.append(f"  network {link.network}")
            if link.gateway:
                t.append(f", gateway {link.gateway}")
            if link.mac:
                t.append(f", mac {link.mac}")
        t.append("\n")
        t.append(diagram(view), style="cyan")
    return t


def diagram(view: adapter.NetworkView) -> str:
    if view.shares_host:
        return "[container] ══ shares the host's network namespace: the host's interfaces, no veth ══ host"
    link = view.link
    if link is None:
        names = [i.name for i in view.ifaces if i.name != "lo"]
        if not names or view.mode == "none":
            return "[container netns]  only lo, no link to the host"
        return f"[container netns]  {' '.join(names)} (no veth lease recorded)"
    inside = view.inside_iface or "eth0"
    ip = link.ip or view.ip
    gw = link.gateway + (f"/{link.prefix}" if link.prefix is not None else "") if link.gateway else ""
    br = f"{link.bridge} ({gw + ', ' if gw else ''}bridge)"
    return f"[container netns]  {inside} {ip} ══ veth ══ {link.host_veth or '?'} ── {br} ── host"


class NetworkPanel(Panel):
    TAB_ID = "net"
    TITLE = "Network"

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("", id="net-summary")
            yield DataTable(id="net-ifaces", cursor_type="row")
            yield Static("", id="net-routes")

    def on_mount(self) -> None:
        table = self.query_one("#net-ifaces", DataTable)
        for key, label in (("name", "IFACE"), ("addr", "ADDRESSES"), ("rx", "RX BYTES"), ("rxp", "RX PKTS"),
                           ("tx", "TX BYTES"), ("txp", "TX PKTS")):
            table.add_column(label, key=key)

    @classmethod
    def fetch(cls, cid: str) -> object:
        return adapter.network_view(cid)

    def show(self, data: object) -> None:
        if not isinstance(data, adapter.NetworkView):
            return
        self.query_one("#net-summary", Static).update(summary(data))
        rows = [(i.name, (i.name, " ".join(i.addresses) or "-", str(i.rx_bytes), str(i.rx_packets),
                          str(i.tx_bytes), str(i.tx_packets))) for i in data.ifaces]
        sync_table(self.query_one("#net-ifaces", DataTable), rows)
        routes = self.query_one("#net-routes", Static)
        if not data.running:
            routes.update(not_running_text("interfaces"))
        else:
            routes.update(Text("routes: " + ("; ".join(data.routes) if data.routes else "none (no default route)"),
                               style="dim"))
