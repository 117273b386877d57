"""A network namespace as procfs shows it: interfaces with their counters and addresses, and routes.

/proc/PID/net/* are the files of PID's network namespace (proc(5)), so the host reads a
container's network without joining it (no setns(2), no netlink, no pyroute2 import):

    /proc/PID/net/dev        one line of counters per interface (rx bytes, packets, ... tx ...)
    /proc/PID/net/route      the IPv4 main table, addresses as hex host-order integers
    /proc/PID/net/fib_trie   every IPv4 table as a trie; the Local table's "/32 host LOCAL"
                             leaves are the addresses the namespace owns
    /proc/PID/net/if_inet6   one line per IPv6 address: hex address, ifindex, prefix, scope, flags, name

The parsers take the file's text, so unit tests feed them fixed samples.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from engine.procfs import PROC, read_text

Route = tuple[str, str, str, str]
"""(interface, destination, gateway, mask), dotted quads."""


@dataclass
class Iface:
    name: str
    rx_bytes: int
    rx_packets: int
    tx_bytes: int
    tx_packets: int
    addresses: list[str] = field(default_factory=list)


def parse_net_dev(text: str) -> list[Iface]:
    """Interfaces and counters from /proc/net/dev (two header lines; fields 1, 2, 9, 10 are
    rx bytes, rx packets, tx bytes, tx packets)."""
    out = []
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        f = rest.split()
        if len(f) >= 10:
            out.append(Iface(name.strip(), int(f[0]), int(f[1]), int(f[8]), int(f[9])))
    return out


def parse_fib_local(text: str) -> list[str]:
    """The addresses the namespace owns: /32 host LOCAL leaves of the Local table (fib_trie)."""
    out: list[str] = []
    table, last_ip = "", ""
    for line in text.splitlines():
        if line and not line[0].isspace():
            table = line.rstrip(":")
            continue
        s = line.strip()
        if s.startswith("|-- "):
            last_ip = s[4:]
        elif s == "/32 host LOCAL" and table == "Local" and last_ip not in out:
            out.append(last_ip)
    return out


def _hex_ip(h: str) -> str:
    # The kernel prints the network-order address as a host-order (little-endian) integer.
    n = int(h, 16)
    return ".".join(str(n >> s & 0xFF) for s in (0, 8, 16, 24))


def parse_routes(text: str) -> list[Route]:
    """(iface, destination, gateway, mask) from /proc/net/route."""
    out = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) >= 8:
            out.append((f[0], _hex_ip(f[1]), _hex_ip(f[2]), _hex_ip(f[7])))
    return out


def parse_if_inet6(text: str) -> list[tuple[str, str]]:
    """(iface, "address/prefix") from /proc/net/if_inet6."""
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) == 6:
            out.append((f[5], f"{ipaddress.IPv6Address(bytes.fromhex(f[0]))}/{int(f[2], 16)}"))
    return out


def _ip_int(ip: str) -> int:
    a, b, c, d = (int(x) for x in ip.split("."))
    return a << 24 | b << 16 | c << 8 | d


def _iface_for(ip: str, routes: list[Route]) -> str:
    """The interface whose connected route holds ip (fib_trie lists addresses without their
    interface; the route of the address's own subnet names it)."""
    if ip.startswith("127."):
        return "lo"
    for iface, dest, _, mask in routes:
        if dest != "0.0.0.0" and _ip_int(ip) & _ip_int(mask) == _ip_int(dest):
            return iface
    return ""


def routes(pid: int | str, proc: str = PROC) -> list[Route]:
    """PID's network namespace's IPv4 main table ([] when the process is gone)."""
    return parse_routes(read_text(f"{proc}/{pid}/net/route") or "")


def interfaces(pid: int | str, route_table: list[Route] | None = None, proc: str = PROC) -> list[Iface]:
    """PID's network namespace's interfaces, counters and addresses (IPv4 then IPv6)."""
    ifaces = parse_net_dev(read_text(f"{proc}/{pid}/net/dev") or "")
    if route_table is None:
        route_table = routes(pid, proc)
    by_name = {i.name: i for i in ifaces}
    for ip in parse_fib_local(read_text(f"{proc}/{pid}/net/fib_trie") or ""):
        iface = by_name.get(_iface_for(ip, route_table))
        if iface is not None:
            iface.addresses.append(ip)
    for name, addr in parse_if_inet6(read_text(f"{proc}/{pid}/net/if_inet6") or ""):
        if name in by_name:
            by_name[name].addresses.append(addr)
    return ifaces
