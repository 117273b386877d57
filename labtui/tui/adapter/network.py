"""The network tab: the container's interfaces, addresses and routes (engine.network.procnet,
read from the host), its published ports, and the host side of its link (veth and bridge)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from engine import api, procfs
from engine.network.procnet import Iface, interfaces, routes
from labtui.tui.adapter.base import ERRORS, host_ns_ref, init_pid, load

__all__ = ["HostLink", "Iface", "NetworkView", "host_link", "network_view"]


@dataclass
class HostLink:
    network: str
    host_veth: str
    bridge: str
    ip: str = ""
    prefix: int | None = None
    gateway: str = ""
    mac: str = ""
    veth_exists: bool = False
    veth_state: str = ""  # /sys/class/net/VETH/operstate
    veth_master: str = ""  # the bridge it is enslaved to (/sys/class/net/VETH/master)
    bridge_exists: bool = False
    bridge_state: str = ""


@dataclass
class NetworkView:
    running: bool
    mode: str = "none"
    shares_host: bool = False
    ifaces: list[Iface] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)
    ip: str = ""
    link: HostLink | None = None
    """The host side of a bridged container's link (its network's lease, checked in /sys/class/net)."""
    inside_iface: str = ""  # the container's end of the veth (the interface with its address)


def _sys_net(name: str) -> tuple[bool, str, str]:
    """(exists, operstate, master) of a host interface, from /sys/class/net."""
    if not name:
        return False, "", ""
    base = Path("/sys/class/net") / name
    if not base.exists():
        return False, "", ""
    try:
        master = os.path.basename(os.readlink(base / "master"))
    except OSError:
        master = ""
    return True, (procfs.read_text(str(base / "operstate")) or "").strip(), master


def host_link(cid: str) -> HostLink | None:
    try:
        nets = api.inspect(cid).get("NetworkSettings", {}).get("Networks", {})
    except ERRORS:
        return None
    for name, n in nets.items():
        if not n or not (n.get("HostVeth") or n.get("Bridge")):
            continue
        link = HostLink(name, n.get("HostVeth", ""), n.get("Bridge", ""), n.get("IPAddress", ""),
                        n.get("IPPrefixLen"), n.get("Gateway", ""), n.get("MacAddress", ""))
        link.veth_exists, link.veth_state, link.veth_master = _sys_net(link.host_veth)
        link.bridge_exists, link.bridge_state, _ = _sys_net(link.bridge)
        return link
    return None


def network_view(cid: str) -> NetworkView:
    c = load(cid)
    pid = init_pid(c)
    cfg = c.config if c else {}
    view = NetworkView(running=bool(pid), mode=str(cfg.get("network", "none")), ip=str(cfg.get("ip") or ""),
                       ports=[_port_text(p) for p in cfg.get("ports", [])])
    if not pid:
        return view
    view.shares_host = procfs.ns_inode(pid, "net") == procfs.ns_inode(host_ns_ref(), "net")
    table = routes(pid)
    view.ifaces = interfaces(pid, table)
    view.routes = [f"{d}/{m} via {g} dev {i}" if g != "0.0.0.0" else f"{d}/{m} dev {i}" for i, d, g, m in table]
    if not view.shares_host:
        view.link = host_link(cid)
        view.inside_iface = next((i.name for i in view.ifaces if i.name != "lo" and
                                  (not view.link or not view.link.ip or
                                   any(a == view.link.ip for a in i.addresses))), "")
    return view


def _port_text(p: object) -> str:
    if isinstance(p, dict):
        if p.get("text"):
            return str(p["text"])
        return (f"{p.get('host_ip', '0.0.0.0')}:{p.get('host_port', '?')}->"
                f"{p.get('container_port', '?')}/{p.get('proto', p.get('protocol', 'tcp'))}")
    return str(p)
