"""Probes of the network: links, addresses, routes and bridge ports (rtnetlink, through
pyroute2 in the container's network namespace) and TCP reachability (a socket made there).

Why pyroute2 is imported only inside the functions: importing it costs ~200 ms, which a lesson
without a network check must never pay (engine/network/netlink.py's rule too).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lessons.probes import target
from lessons.probes.registry import Context, Observation, ProbeError, probe

IFF_UP = 0x1
MAIN_TABLE = 254  # `ip route` shows the main table


@contextmanager
def _ipr(name: str | None) -> Iterator[Any]:
    """An rtnetlink socket in the container's network namespace (the host's for None/"host")."""
    from engine.network import netlink

    fd = target.netns_fd(name)
    try:
        ipr = netlink.host_ipr() if fd is None else netlink.netns_ipr(fd)
    except OSError as e:
        raise ProbeError(f"cannot open rtnetlink in {name or 'the host'}'s network namespace: {e.strerror}") from None
    finally:
        if fd is not None:
            os.close(fd)  # the socket keeps the namespace alive by itself
    with ipr:
        try:
            yield ipr
        except Exception as e:  # pyroute2's NetlinkError is no OSError: the kernel's errno is in .code
            if type(e).__name__ != "NetlinkError":
                raise
            code = getattr(e, "code", 0) or 0
            raise ProbeError(f"netlink in {name or 'the host'}: {os.strerror(code) if code else e}") from None


def _links(ipr: Any) -> dict[str, dict]:
    """Every link of the namespace by name: index, flags, kind, master index, peer index."""
    out = {}
    for msg in ipr.get_links():
        info = msg.get_attr("IFLA_LINKINFO")
        out[msg.get_attr("IFLA_IFNAME")] = {
            "index": msg["index"], "flags": msg["flags"],
            "kind": (info.get_attr("IFLA_INFO_KIND") if info is not None else None) or "",
            "master": msg.get_attr("IFLA_MASTER"), "peer": msg.get_attr("IFLA_LINK")}
    return out


def _where(p: dict) -> str:
    return p.get("container") or "the host"


def _ns_name(p: dict) -> str | None:
    c = p.get("container")
    return None if c in (None, "", "host") else c


@probe("link", "a network interface in a container's network namespace (or the host's)",
       required={"name": str},
       optional={"container": str, "exists": bool, "state": str, "type": str, "master": str},
       describe=lambda p: f"interface {p['name']} in {_where(p)}")
def link(ctx: Context, p: dict) -> Observation:
    """state is "up" (IFF_UP, `ip link set NAME up`) or "down"; type is the driver, as in `ip link
    add NAME type veth` (veth, bridge; loopback has none; not "kind": a check's kind is its probe's
    name); master the bridge it is a port of."""
    with _ipr(_ns_name(p)) as ipr:
        links = _links(ipr)
    lk = links.get(p["name"])
    want = p.get("exists", True)
    if lk is None:
        why = [f"{_where(p)} has no interface {p['name']} (it has {', '.join(sorted(links))})"] if want else []
        return Observation(not want, "(absent)", why)
    state = "up" if lk["flags"] & IFF_UP else "down"
    by_index = {v["index"]: k for k, v in links.items()}
    master = by_index.get(lk["master"], "") if lk["master"] else ""
    why = [] if want else [f"{p['name']} exists in {_where(p)}"]
    if "state" in p and state != p["state"]:
        why.append(f"{p['name']} is {state}, not {p['state']}")
    if "type" in p and lk["kind"] != p["type"]:
        why.append(f"{p['name']} is a {lk['kind'] or 'device without a type'}, not a {p['type']}")
    if "master" in p and master != p["master"]:
        why.append(f"{p['name']} is {'a port of ' + master if master else 'in no bridge'}, not of {p['master']}")
    shown = f"{p['name']}: {lk['kind'] or 'device'}, {state}" + (f", master {master}" if master else "")
    return Observation(not why, shown, why)


@probe("address", "an IP address on an interface of a container (or the host)",
       required={"address": str}, optional={"container": str, "iface": str, "exists": bool},
       describe=lambda p: f"{p['address']} on {p.get('iface', 'an interface')} of {_where(p)}")
def address(ctx: Context, p: dict) -> Observation:
    """address is an IP (any prefix) or a CIDR (that prefix too), e.g. 172.18.0.2/16."""
    try:
        want_if = ipaddress.ip_interface(p["address"])
    except ValueError:
        raise ProbeError(f"address must be an IP address or CIDR, not {p['address']!r}") from None
    with _ipr(_ns_name(p)) as ipr:
        names = {v["index"]: k for k, v in _links(ipr).items()}
        seen = [(names.get(m["index"], "?"), ipaddress.ip_interface(
                 f"{m.get_attr('IFA_LOCAL') or m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}")) for m in ipr.get_addr()]
    if "iface" in p:
        seen = [(n, a) for n, a in seen if n == p["iface"]]
    found = [(n, a) for n, a in seen if a.ip == want_if.ip and ("/" not in p["address"] or a == want_if)]
    want = p.get("exists", True)
    shown = ", ".join(f"{n} {a}" for n, a in seen) or "(no address)"
    why = [] if bool(found) == want else [
        f"{p['address']} is {'not ' if not found else ''}on {p.get('iface', 'any interface')} of {_where(p)}"]
    return Observation(bool(found) == want, shown, why)


def _route_text(dst: str, gw: str | None, dev: str) -> str:
    return f"{dst}" + (f" via {gw}" if gw else "") + (f" dev {dev}" if dev else "")


@probe("route", "a route in a container's main routing table (or the host's)",
       required={"destination": str}, optional={"container": str, "via": str, "dev": str, "exists": bool},
       describe=lambda p: f"a route to {p['destination']} in {_where(p)}")
def route(ctx: Context, p: dict) -> Observation:
    """destination is "default" or a CIDR; via the gateway; dev the interface (`ip route`)."""
    dest = p["destination"]
    try:
        want_net = None if dest == "default" else ipaddress.ip_network(dest, strict=False)
    except ValueError:
        raise ProbeError(f"destination must be 'default' or a CIDR such as 10.0.0.0/8, not {dest!r}") from None
    family = socket.AF_INET6 if want_net is not None and want_net.version == 6 else socket.AF_INET
    with _ipr(_ns_name(p)) as ipr:
        names = {v["index"]: k for k, v in _links(ipr).items()}
        routes = []
        for r in ipr.get_routes(family=family, table=MAIN_TABLE):
            dst = "default" if r["dst_len"] == 0 else f"{r.get_attr('RTA_DST')}/{r['dst_len']}"
            routes.append((dst, r.get_attr("RTA_GATEWAY"), names.get(r.get_attr("RTA_OIF"), "")))
    found = [rt for rt in routes
             if (dest == "default" and rt[0] == "default"
                 or want_net is not None and rt[0] != "default" and ipaddress.ip_network(rt[0]) == want_net)
             and ("via" not in p or rt[1] == p["via"]) and ("dev" not in p or rt[2] == p["dev"])]
    want = p.get("exists", True)
    shown = "; ".join(_route_text(*rt) for rt in routes) or "(no route)"
    asked = _route_text(dest, p.get("via"), p.get("dev", ""))
    why = [] if bool(found) == want else [f"{_where(p)} has {'no' if not found else 'a'} route {asked}"]
    return Observation(bool(found) == want, shown, why)


def _bridge_name(p: dict, host_links: dict[str, dict]) -> str:
    """The bridge: a host link of that name, else the bridge of a network of that name, else the
    bridge of the container's own network."""
    from engine import network
    from engine.errors import NotFound

    name = p.get("bridge") or target.container(p["container"]).config.get("network", "none")
    if name in host_links:
        return name
    try:
        return network.inspect_network(name)["bridge"]
    except NotFound:
        raise ProbeError(f"there is no bridge or network named {name!r}") from None


@probe("bridge_port", "a container's veth peer is a port of a bridge",
       required={"container": str}, optional={"bridge": str, "iface": str, "exists": bool},
       describe=lambda p: f"{p['container']}'s {p.get('iface', 'eth0')} is plugged into "
                          f"{p.get('bridge', 'its network bridge')}")
def bridge_port(ctx: Context, p: dict) -> Observation:
    """Read from the kernel, not the runtime's lease: eth0's IFLA_LINK inside the container is the
    index of its veth peer in the host's namespace, whose IFLA_MASTER is the bridge it is in.
    bridge may name a bridge or a labtui network (default: the container's own network)."""
    iface = p.get("iface", "eth0")
    with _ipr(p["container"]) as ipr:
        inside = _links(ipr).get(iface)
    if inside is None:
        raise ProbeError(f"{p['container']} has no interface {iface}")
    if inside["kind"] != "veth" or not inside["peer"]:
        raise ProbeError(f"{p['container']}'s {iface} is a {inside['kind'] or 'device'}, not one end of a veth pair")
    with _ipr(None) as ipr:
        host = _links(ipr)
    bridge = _bridge_name(p, host)
    by_index = {v["index"]: k for k, v in host.items()}
    peer = by_index.get(inside["peer"])
    master = by_index.get(host[peer]["master"], "") if peer and host[peer]["master"] else ""
    plugged = bool(peer) and master == bridge
    want = p.get("exists", True)
    shown = f"{iface}'s peer {peer or '(not in the host namespace)'} is " + (
        f"a port of {master}" if master else "in no bridge")
    why = [] if plugged == want else [f"{peer or 'the peer'} is {'' if plugged else 'not '}a port of {bridge}"]
    return Observation(plugged == want, shown, why)


@probe("tcp", "a TCP port is reachable (or not) from the host or from a container",
       required={"port": int},
       optional={"from": str, "host": str, "expect_open": bool, "timeout": (int, float)},
       describe=lambda p: f"TCP {p.get('host', '127.0.0.1')}:{p['port']} is "
                          f"{'open' if p.get('expect_open', True) else 'closed'} from {p.get('from', 'host')}")
def tcp(ctx: Context, p: dict) -> Observation:
    """Connects from a socket made in the `from` container's network namespace (the host's for
    "host"): what that container's network sees, with no tool needed in its image. host is an IP,
    localhost, or a container name (its address on a network the two share)."""
    if not 0 < p["port"] < 65536:
        raise ProbeError(f"port must be 1 to 65535, not {p['port']}")
    src = p.get("from", "host")
    ip = target.resolve_host(p.get("host", "127.0.0.1"), src)
    fd = target.netns_fd(src)
    try:
        sock = target.socket_in(fd, socket.AF_INET6 if ":" in ip else socket.AF_INET)
    finally:
        if fd is not None:
            os.close(fd)
    sock.settimeout(float(p.get("timeout", 2)))
    try:
        sock.connect((ip, p["port"]))
        seen = "open"
    except ConnectionRefusedError:
        seen = "closed (connection refused)"
    except TimeoutError:
        seen = f"closed (no answer within {float(p.get('timeout', 2)):g} s)"
    except OSError as e:
        seen = f"closed ({e.strerror})"
    finally:
        sock.close()
    is_open = seen == "open"
    want = p.get("expect_open", True)
    why = [] if is_open == want else [f"{ip}:{p['port']} is {seen} from {src}, expected it "
                                      f"{'open' if want else 'closed'}"]
    return Observation(is_open == want, f"{ip}:{p['port']} {seen}", why)
