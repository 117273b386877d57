r"""Container networking: bridges, veth pairs, addresses, /etc/hosts and published ports.

    host netns:  labtui0 (bridge, 10.88.0.1/16) --- lt1a2b3c4d5e (veth) ===|=== eth0 10.88.0.2
                                                 \-- lt9f8e7d6c5b (veth) ===|=== eth0 10.88.0.3
                                                          (container netns) ^

What the runtime calls, and when (docs/networking.md has the whole story):

    create:  net = ensure_default_network(rec)            # for --network bridge (the default)
             inspect_network(name)                        # NotFound for an unknown --network
             specs = parse_ports(["8080:80"]); check_ports(specs, {other: their_specs})
             ip = allocate(network, cid, requested_ip, name=..., hostname=..., aliases=...)
             write_in_place(hosts_path(cid), render_hosts(cid, hostname, []))  # before bind-mounting
    start:   info = attach_container(cid, pid, network, ip, rec, aliases)   # child's netns exists
             proxies = [PortProxy(s, info["ip"]) for s in specs]; p.start() for each
    stop:    p.close() for each proxy; detach_container(cid, network, rec)
    rm:      cleanup_container(cid, rec)                  # idempotent
    network: create_network / list_networks / inspect_network / remove_network / prune

Nothing here imports pyroute2 at module level: a container with --network none never pays for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from engine.errors import Conflict, EngineError, NotFound
from engine.network import bridge, hosts, ipam, isolation, veth
from engine.network.hosts import hosts_path, refresh_network_hosts, render_hosts, write_in_place
from engine.network.ipam import (
    DEFAULT_BRIDGE,
    DEFAULT_NETWORK,
    allocate,
    inspect_network,
    list_networks,
    network_members,
    networks_of,
    release,
)
from engine.network.isolation import ip_forward_enabled
from engine.network.ports import PortProxy, PortSpec, check_ports, find_port_holder, parse_port, parse_ports
from engine.network.veth import host_veth_name, mac_for_ip
from engine.steps import Recorder, null_recorder

InUse = Callable[[str], list[str]]

__all__ = [
    "DEFAULT_BRIDGE", "DEFAULT_NETWORK", "PortProxy", "PortSpec", "allocate", "attach_container",
    "check_ports", "cleanup_container", "create_network", "detach_container", "ensure_default_network",
    "find_port_holder", "host_veth_name", "hosts_path", "inspect_network", "ip_forward_enabled",
    "list_networks", "mac_for_ip", "network_members", "networks_of", "parse_port", "parse_ports",
    "prune", "refresh_network_hosts", "release", "remove_network", "render_hosts", "write_in_place",
]


# ---------------------------------------------------------------------------------------- networks

def _bring_up(net: dict, rec: Recorder) -> int:
    """Bridge up with the gateway address; if it had to be made, (re)make the isolation rules
    too (a missing bridge means a new network or a reboot, and a reboot loses the rules as well)."""
    index, created = bridge.ensure_bridge(net["bridge"], net["gateway"], ipam.prefixlen(net), rec)
    if created:
        isolation.sync_isolation(ipam.list_networks(), rec)
    return index


def _create(name: str, subnet: str | None, gateway: str | None, bridge_name: str | None,
            rec: Recorder, routes: list | None = None) -> dict:
    with ipam.store_lock():
        net = ipam.new_network_record(name, subnet, gateway, bridge_name, routes)
        ipam.save_network(net)
        try:
            _bring_up(net, rec)
        except BaseException:
            # Roll back so a failed create leaves neither a record nor a half-made bridge.
            ipam.delete_network_file(name)
            _quietly(bridge.delete_bridge, net["bridge"], rec)
            _quietly(isolation.sync_isolation, ipam.list_networks(), rec, [net["bridge"]])
            raise
        return net


def create_network(name: str, subnet: str | None = None, gateway: str | None = None,
                   rec: Recorder | None = None, *, bridge: str | None = None) -> dict:
    """`labtui network create`: validate, persist, create the bridge. Returns the record.

    subnet None picks a free one from ipam.SUBNET_POOL; bridge None names it ltbr-<6 hex of id>.
    InvalidArgument: bad name/subnet/gateway, overlap with a host route or another network.
    Conflict: the name (or bridge) exists.
    """
    return _create(name, subnet, gateway, bridge, rec or null_recorder())


def ensure_default_network(rec: Recorder | None = None, *, routes: list | None = None) -> dict:
    """The default network "bridge" (bridge labtui0), created on first use with a subnet that
    overlaps no host route. Cheap (no netlink) once it exists; attach repairs the bridge."""
    with ipam.store_lock():
        try:
            return ipam.load_network(DEFAULT_NETWORK)
        except NotFound:
            return _create(DEFAULT_NETWORK, None, None, None, rec or null_recorder(), routes)


def remove_network(name: str, in_use: InUse, rec: Recorder | None = None, *,
                   allow_default: bool = False) -> None:
    """`labtui network rm`: refused (Conflict) while in_use(name) lists containers.

    The default network is kept, as docker keeps its "bridge", unless allow_default (for a full
    reset of labtui's state).
    """
    rec = rec or null_recorder()
    with ipam.store_lock():
        net = ipam.load_network(name)
        if name == DEFAULT_NETWORK and not allow_default:
            raise Conflict(f"{name} is labtui's default network and cannot be removed")
        users = list(in_use(name))
        if users:
            raise Conflict(f"network {name} is in use by container(s) {', '.join(users)}; remove them first")
        bridge.delete_bridge(net["bridge"], rec)
        ipam.delete_network_file(name)
        isolation.sync_isolation(ipam.list_networks(), rec, forget=[net["bridge"]])


def _lease_users(name: str) -> list[str]:
    net = ipam.load_network(name)
    return [lease.get("name") or cid[:12] for cid, lease in net["leases"].items()]


def prune(rec: Recorder | None = None, in_use: InUse | None = None) -> list[str]:
    """`labtui network prune`: remove every network no container uses; returns their names.

    Like docker, the default network survives a prune. in_use defaults to "holds a lease",
    which every created container of the network does until it is removed.
    """
    removed = []
    for net in ipam.list_networks():
        if net["name"] == DEFAULT_NETWORK:
            continue
        try:
            remove_network(net["name"], in_use or _lease_users, rec)
        except (Conflict, NotFound):
            continue  # in use, or gone meanwhile
        removed.append(net["name"])
    return removed


# ---------------------------------------------------------------------------------------- containers

def attach_container(container_id: str, pid: int, network: str, ip: str | None = None,
                     rec: Recorder | None = None, aliases: Iterable[str] = (), *,
                     name: str = "", hostname: str = "") -> dict:
    """Plug the process pid's network namespace into network; returns
    {network, ip, prefix, gateway, mac, host_veth, bridge}.

    ip None (or the container's existing lease) leases an address first. Then: the bridge
    (repaired if missing), the veth pair with eth0 made inside the namespace, the host end on
    the bridge, and inside: lo up, the address, eth0 up, the default route. Finally every
    member's /etc/hosts is rewritten. On failure the host end is deleted again; the lease stays
    for cleanup_container.
    """
    rec = rec or null_recorder()
    net = ipam.load_network(network)
    ip = ipam.allocate(network, container_id, ip, name=name, hostname=hostname, aliases=aliases)
    prefix = ipam.prefixlen(net)
    host_end, mac = host_veth_name(container_id), mac_for_ip(ip)
    with ipam.store_lock():  # two first attaches must not both create the bridge
        br_index = _bring_up(net, rec)
    ns_fd = veth.open_netns(pid, rec)
    try:
        veth.create_pair(host_end, pid, ns_fd, mac, rec)
        try:
            veth.plug_into_bridge(host_end, br_index, net["bridge"], rec)
            veth.configure_inside(ns_fd, pid, ip, prefix, net["gateway"], rec)
        except BaseException:
            _quietly(veth.delete_pair, host_end, rec)
            raise
    finally:
        os.close(ns_fd)
    fields: dict[str, object] = {"attached": True, "host_veth": host_end, "mac": mac}
    fields.update({k: v for k, v in (("name", name), ("hostname", hostname)) if v})
    if aliases:
        fields["aliases"] = list(aliases)
    ipam.update_lease(network, container_id, **fields)
    hosts.refresh_network_hosts(network)
    return {"network": network, "ip": ip, "prefix": prefix, "gateway": net["gateway"], "mac": mac,
            "host_veth": host_end, "bridge": net["bridge"]}


def detach_container(container_id: str, network: str, rec: Recorder | None = None,
                     deferred: list | None = None) -> bool:
    """On stop: delete the host veth (tolerating that the namespace's death already did), mark
    the lease detached (the address stays reserved until rm) and drop the name from the other
    members' hosts files. Returns whether a veth was actually deleted. With deferred (a list),
    the deletion is appended there as a callable instead: unregistering a netdevice waits for
    RCU grace periods (~15 ms here), which a `run --rm` caller need not wait for."""
    if deferred is not None:
        deferred.append(lambda: veth.delete_pair(host_veth_name(container_id), rec or null_recorder()))
        deleted = False
    else:
        deleted = veth.delete_pair(host_veth_name(container_id), rec or null_recorder())
    try:
        ipam.update_lease(network, container_id, attached=False, host_veth="")
        hosts.refresh_network_hosts(network)
    except NotFound:
        pass  # the network or the lease is gone already: nothing to mark
    return deleted


def cleanup_container(container_id: str, rec: Recorder | None = None, deferred: list | None = None) -> None:
    """On rm (idempotent): for every network the container holds a lease on, delete a veth
    that may still be there, release the address and refresh the others' hosts files. With
    deferred, a veth deletion is appended there (detach_container)."""
    rec = rec or null_recorder()
    for name in ipam.networks_of(container_id):
        try:
            lease = ipam.load_network(name)["leases"].get(container_id)
        except NotFound:
            continue
        if lease and lease.get("attached"):
            if deferred is not None:
                deferred.append(lambda: veth.delete_pair(host_veth_name(container_id), rec))
            else:
                veth.delete_pair(host_veth_name(container_id), rec)
        ipam.release(name, container_id)
        try:
            hosts.refresh_network_hosts(name)
        except NotFound:
            pass


def _quietly(fn: Callable, *args: object) -> None:
    """Best-effort cleanup on an error path: the original error is the one worth reporting."""
    try:
        fn(*args)
    except (EngineError, OSError):
        pass
