"""The networks store and IP address management (IPAM): plain files, no kernel calls.

Each network is one JSON file, paths.lib_dir()/networks/<name>.json:

    {name, id, subnet, gateway, bridge, created, leases: {container_id: {ip, name, hostname,
     aliases, attached, host_veth, mac}}}

Why the leases live in the network's own file: one atomic rename then updates a network and its
addresses together, so a reader never sees a lease for a network that does not exist.
Why one lock for the whole store (an flock on networks/.lock): creating a network must check
its subnet against every other network, and an allocation must read-modify-write a file; one
lock makes both simple and correct across processes (flock) and threads (each thread opens its
own file description, and flock locks on different descriptions exclude each other).
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from engine import paths
from engine.errors import Conflict, InvalidArgument, NotFound
from engine.network.procnet import parse_routes

DEFAULT_NETWORK = "bridge"
DEFAULT_BRIDGE = "labtui0"
RESERVED_NAMES = ("none", "host")
# Candidate subnets for the default network and for networks created without --subnet, in order.
# Private ranges that the usual home/office/cloud networks (192.168.0/1.x, 10.0.x, 172.17 docker)
# do not use; the first one that overlaps no host route and no other labtui network wins.
SUBNET_POOL: tuple[str, ...] = (
    *(f"10.{n}.0.0/16" for n in range(88, 100)),
    "172.30.0.0/16",
    "172.31.0.0/16",
    *(f"192.168.{n}.0/24" for n in range(200, 256)),
)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")  # IFNAMSIZ is 16 with the NUL


# ---------------------------------------------------------------------------------------- paths

def default_bridge() -> str:
    """labtui0, unless LABTUI_DEFAULT_BRIDGE names another (tests keep off a real install's)."""
    return os.environ.get("LABTUI_DEFAULT_BRIDGE") or DEFAULT_BRIDGE


def networks_dir() -> Path:
    return paths.lib_dir() / "networks"


def network_file(name: str) -> Path:
    return networks_dir() / f"{name}.json"


# ---------------------------------------------------------------------------------------- lock

_held = threading.local()


@contextmanager
def store_lock() -> Iterator[None]:
    """Exclusive lock over the whole store; re-entrant within one thread.

    Why re-entrant: create_network holds the lock while it also creates the bridge and may call
    helpers that take it again; a second flock on a new descriptor in the same thread would
    deadlock against the first.
    """
    depth = getattr(_held, "depth", 0)
    if depth:
        _held.depth = depth + 1
        try:
            yield
        finally:
            _held.depth -= 1
        return
    networks_dir().mkdir(parents=True, exist_ok=True)
    fd = os.open(networks_dir() / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _held.depth = 1
        try:
            yield
        finally:
            _held.depth = 0
    finally:
        os.close(fd)  # closing the last descriptor releases the flock


# ---------------------------------------------------------------------------------------- files

def _write_atomic(path: Path, data: dict) -> None:
    """Write then rename: a reader sees the old file or the new one, never half of one."""
    from engine.jsonl import write_json_atomic

    write_json_atomic(path, data, indent=2, sort_keys=True, durable=True)


def load_network(name: str) -> dict:
    try:
        with open(network_file(name)) as f:
            net = json.load(f)
    except FileNotFoundError:
        raise NotFound(f"network {name} not found") from None
    net.setdefault("leases", {})
    return net


def save_network(net: dict) -> None:
    _write_atomic(network_file(net["name"]), net)


def delete_network_file(name: str) -> None:
    try:
        network_file(name).unlink()
    except FileNotFoundError:
        pass


def list_networks() -> list[dict]:
    """Every network, sorted by name (reads need no lock: files are replaced atomically)."""
    nets = []
    d = networks_dir()
    if not d.is_dir():
        return []
    for p in sorted(d.glob("*.json")):
        try:
            nets.append(load_network(p.stem))
        except (NotFound, json.JSONDecodeError):
            continue  # removed (or being replaced) while we listed
    return nets


def inspect_network(name: str) -> dict:
    """The network's record, leases included; NotFound if there is no such network."""
    return load_network(name)


# ---------------------------------------------------------------------------------------- validation

def validate_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidArgument(
            f"invalid network name {name!r}: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    if name in RESERVED_NAMES:
        raise InvalidArgument(f"{name} is a reserved network name (--network {name} needs no network)")


def validate_ifname(ifname: str) -> None:
    if not _IFNAME_RE.match(ifname or ""):
        raise InvalidArgument(
            f"invalid bridge name {ifname!r}: Linux interface names are 1-15 characters "
            "(letters, digits, '_', '.', '-')"
        )


def parse_subnet(subnet: str) -> ipaddress.IPv4Network:
    """Parse 'A.B.C.D/N' strictly; the message says what is wrong and what would be right."""
    if not isinstance(subnet, str):
        raise InvalidArgument(f"invalid subnet {subnet!r}: expected an IPv4 CIDR like 10.90.0.0/16")
    if "/" not in subnet:
        raise InvalidArgument(f"invalid subnet {subnet!r}: give a prefix length, e.g. {subnet.strip()}/24")
    try:
        net = ipaddress.ip_network(subnet.strip(), strict=True)
    except ValueError as e:
        if "host bits set" in str(e):
            fixed = ipaddress.ip_network(subnet.strip(), strict=False)
            raise InvalidArgument(
                f"invalid subnet {subnet!r}: host bits are set; did you mean {fixed}?"
            ) from None
        raise InvalidArgument(f"invalid subnet {subnet!r}: expected an IPv4 CIDR like 10.90.0.0/16") from None
    if net.version != 4:
        raise InvalidArgument(f"invalid subnet {subnet!r}: only IPv4 subnets are supported")
    if not 8 <= net.prefixlen <= 30:
        raise InvalidArgument(
            f"invalid subnet {subnet!r}: the prefix length must be between /8 and /30 "
            "(a /30 holds the gateway and one container)"
        )
    if net.is_loopback or net.is_multicast or net.is_link_local or net.is_unspecified:
        raise InvalidArgument(
            f"invalid subnet {subnet!r}: loopback, link-local and multicast ranges are not allowed"
        )
    return net


def parse_gateway(gateway: str | None, subnet: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """The gateway is the bridge's own address; by default the subnet's first host."""
    if gateway is None:
        return subnet.network_address + 1
    try:
        gw = ipaddress.IPv4Address(gateway)
    except ValueError:
        raise InvalidArgument(f"invalid gateway {gateway!r}: expected an IPv4 address") from None
    if gw not in subnet:
        raise InvalidArgument(f"gateway {gw} is outside the subnet {subnet}")
    if gw in (subnet.network_address, subnet.broadcast_address):
        raise InvalidArgument(f"gateway {gw} is the network or broadcast address of {subnet}")
    return gw


# ---------------------------------------------------------------------------------------- routes

def host_routes(route_file: str = "/proc/net/route") -> list[tuple[str, ipaddress.IPv4Network]]:
    """The host's IPv4 routes (main table) as (interface, network), the default route left out.

    Why /proc/net/route and not netlink: it is a file read, so choosing a subnet costs no
    pyroute2 import, and the main table is where connected and LAN routes live.
    """
    try:
        with open(route_file) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    out: list[tuple[str, ipaddress.IPv4Network]] = []
    for iface, dest, _gateway, mask in parse_routes(text):
        net = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
        if net.prefixlen == 0:
            continue  # the default route "overlaps" everything; it is not a conflict
        out.append((iface, net))
    return out


def find_overlap(
    subnet: ipaddress.IPv4Network,
    routes: Iterable[tuple[str, ipaddress.IPv4Network]],
    networks: Iterable[dict],
) -> str | None:
    """A sentence naming what subnet collides with, or None if it is free."""
    for other in networks:
        if subnet.overlaps(ipaddress.IPv4Network(other["subnet"])):
            return f"subnet {subnet} overlaps network {other['name']} ({other['subnet']})"
    for iface, route in routes:
        if subnet.overlaps(route):
            return f"subnet {subnet} overlaps the host route {route} on {iface}"
    return None


def choose_subnet(
    routes: Iterable[tuple[str, ipaddress.IPv4Network]],
    networks: Iterable[dict],
    pool: Iterable[str] = SUBNET_POOL,
) -> ipaddress.IPv4Network:
    """The first pool subnet that overlaps no host route and no labtui network."""
    routes, networks = list(routes), list(networks)
    for cand in pool:
        net = ipaddress.IPv4Network(cand)
        if find_overlap(net, routes, networks) is None:
            return net
    raise Conflict("no free subnet left in labtui's pool; create the network with --subnet")


# ---------------------------------------------------------------------------------------- records

def new_network_record(
    name: str,
    subnet: str | None,
    gateway: str | None,
    bridge: str | None,
    routes: list[tuple[str, ipaddress.IPv4Network]] | None = None,
) -> dict:
    """Validate a create request against the store and the host; call with the lock held."""
    validate_name(name)
    if network_file(name).exists():
        raise Conflict(f"network with name {name} already exists")
    others = list_networks()
    routes = host_routes() if routes is None else routes
    if subnet is None:
        if gateway is not None:
            raise InvalidArgument("--gateway needs --subnet")
        net = choose_subnet(routes, others)
    else:
        net = parse_subnet(subnet)
        clash = find_overlap(net, routes, others)
        if clash:
            raise InvalidArgument(f"cannot create network {name}: {clash}")
    gw = parse_gateway(gateway, net)
    net_id = secrets.token_hex(32)
    if bridge is None:
        bridge = default_bridge() if name == DEFAULT_NETWORK else f"ltbr-{net_id[:6]}"
    validate_ifname(bridge)
    for other in others:
        if other["bridge"] == bridge:
            raise Conflict(f"bridge {bridge} is already used by network {other['name']}")
    return {
        "name": name,
        "id": net_id,
        "subnet": str(net),
        "gateway": str(gw),
        "bridge": bridge,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "leases": {},
    }


def prefixlen(net: dict) -> int:
    return ipaddress.IPv4Network(net["subnet"]).prefixlen


# ---------------------------------------------------------------------------------------- leases

def _leased_by(net: dict) -> dict[str, str]:
    return {lease["ip"]: cid for cid, lease in net["leases"].items()}


def _check_requested(net: dict, requested: str) -> str:
    try:
        ip = ipaddress.IPv4Address(requested)
    except ValueError:
        raise InvalidArgument(f"invalid IP address {requested!r}: expected an IPv4 address") from None
    subnet = ipaddress.IPv4Network(net["subnet"])
    if ip not in subnet:
        raise InvalidArgument(f"address {ip} is outside network {net['name']}'s subnet {subnet}")
    if ip in (subnet.network_address, subnet.broadcast_address):
        raise InvalidArgument(f"address {ip} is the network or broadcast address of {subnet}")
    if str(ip) == net["gateway"]:
        raise Conflict(f"address {ip} is the gateway of network {net['name']}")
    holder = _leased_by(net).get(str(ip))
    if holder is not None:
        who = net["leases"][holder].get("name") or holder[:12]
        raise Conflict(f"address {ip} is already in use by container {who} on network {net['name']}")
    return str(ip)


def _first_free(net: dict) -> str:
    """Lowest free host address. Reusing a freed address early is harmless because the MAC is
    derived from the address (veth.mac_for_ip), so neighbours' ARP caches stay right."""
    subnet = ipaddress.IPv4Network(net["subnet"])
    taken = set(_leased_by(net)) | {net["gateway"]}
    for ip in subnet.hosts():
        if str(ip) not in taken:
            return str(ip)
    raise Conflict(f"no free address left in network {net['name']} ({subnet})")


def allocate(
    network: str,
    container_id: str,
    requested_ip: str | None = None,
    *,
    name: str = "",
    hostname: str = "",
    aliases: Iterable[str] = (),
) -> str:
    """Lease an address on network for container_id; idempotent for a container that has one."""
    with store_lock():
        net = load_network(network)
        lease = net["leases"].get(container_id)
        if lease is not None:
            if requested_ip is not None and requested_ip != lease["ip"]:
                raise Conflict(
                    f"container {name or container_id[:12]} already has address {lease['ip']} "
                    f"on network {network}"
                )
            return lease["ip"]
        ip = _check_requested(net, requested_ip) if requested_ip is not None else _first_free(net)
        net["leases"][container_id] = {
            "ip": ip, "name": name, "hostname": hostname or name, "aliases": list(aliases),
            "attached": False, "host_veth": "", "mac": "",
        }
        save_network(net)
        return ip


def update_lease(network: str, container_id: str, **fields: object) -> dict:
    """Merge fields into a container's lease (attach/detach record their state here)."""
    with store_lock():
        net = load_network(network)
        lease = net["leases"].get(container_id)
        if lease is None:
            raise NotFound(f"container {container_id[:12]} has no address on network {network}")
        lease.update(fields)
        save_network(net)
        return dict(lease)


def release(network: str, container_id: str) -> str | None:
    """Give the container's address back; returns it, or None if it held none (idempotent)."""
    with store_lock():
        try:
            net = load_network(network)
        except NotFound:
            return None
        lease = net["leases"].pop(container_id, None)
        if lease is None:
            return None
        save_network(net)
        return lease["ip"]


def networks_of(container_id: str) -> list[str]:
    """Names of the networks on which container_id holds a lease."""
    return [n["name"] for n in list_networks() if container_id in n["leases"]]


def network_members(network: str) -> list[dict]:
    """The attached containers of a network, as hosts.py wants them: id, name, hostname, ip, aliases."""
    net = load_network(network)
    return [
        {"id": cid, "name": lease.get("name", ""), "hostname": lease.get("hostname", ""),
         "ip": lease["ip"], "aliases": list(lease.get("aliases", []))}
        for cid, lease in sorted(net["leases"].items(), key=lambda kv: ipaddress.IPv4Address(kv[1]["ip"]))
        if lease.get("attached")
    ]
