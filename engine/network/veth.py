"""The veth pair that plugs a container into its network's bridge.

A veth pair is a virtual cable: what enters one end leaves the other. The host end
("lt" + 10 hex chars of the container id) is a port of the bridge; the peer is created directly
inside the container's network namespace and named eth0, so the container never sees a
temporary name and nothing has to be moved afterwards.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import os
import re

from engine.errors import InvalidArgument, StepError
from engine.network.netlink import delete_link, host_ipr, netns_ipr, nl_step, step_errno
from engine.steps import Recorder

CONTAINER_IFNAME = "eth0"


def host_veth_name(container_id: str) -> str:
    """'lt' + 10 hex chars: unique enough, and within IFNAMSIZ (15 chars) as the kernel demands.
    A container id that is not hex (tests, odd callers) is hashed so the name stays valid."""
    if re.fullmatch(r"[0-9a-f]{10,}", container_id):
        return "lt" + container_id[:10]
    return "lt" + hashlib.sha256(container_id.encode()).hexdigest()[:10]


def mac_for_ip(ip: str) -> str:
    """02:42 + the four address bytes, as docker does. Why: an address that is freed and leased
    again gets the same MAC, so the neighbours' ARP caches never point at a dead interface.
    (02 = locally administered, unicast.)"""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


def nsenter(pid: int, cmd: str) -> str:
    """The shell equivalent of running `cmd` in the container's network namespace."""
    return f"nsenter -t {pid} -n {cmd}"


def open_netns(pid: int, rec: Recorder) -> int:
    """Open /proc/<pid>/ns/net. Holding the fd (not the pid) pins the namespace: if the process
    dies meanwhile the namespace stays valid until we close it, and a reused pid cannot fool us."""
    path = f"/proc/{pid}/ns/net"
    with rec.step("namespace", "open", target=path, value="O_RDONLY", shell=f"ls -l {path}"):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    theirs, ours = os.fstat(fd), os.stat("/proc/self/ns/net")
    if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
        os.close(fd)  # an eth0 made "inside" would land on the host itself
        raise InvalidArgument(f"process {pid} shares the host's network namespace; it cannot be attached")
    return fd


def create_pair(host_end: str, pid: int, ns_fd: int, mac: str, rec: Recorder) -> None:
    """`ip link add <host_end> type veth peer name eth0 address <mac> netns <pid>`.

    A leftover host end with the same name (a crashed earlier attach of this container) makes
    the add fail with EEXIST; it is deleted and the add retried once.
    """
    shell = f"ip link add {host_end} type veth peer name {CONTAINER_IFNAME} address {mac} netns {pid}"
    peer = {"ifname": CONTAINER_IFNAME, "address": mac, "net_ns_fd": ns_fd}
    peer_desc = f"veth peer {CONTAINER_IFNAME} netns {pid}"
    for attempt in (1, 2):
        try:
            with host_ipr() as ipr:
                with nl_step(rec, "link_add", target=host_end, value=peer_desc, shell=shell):
                    ipr.link("add", ifname=host_end, kind="veth", peer=peer)
            return
        except StepError as e:
            # EEXIST with no host end of ours to remove means eth0 itself exists in the
            # namespace (attached elsewhere): that is the caller's error, reported as is.
            if step_errno(e) != errno.EEXIST or attempt == 2 or not delete_link(host_end, rec):
                raise


def plug_into_bridge(host_end: str, bridge_index: int, bridge: str, rec: Recorder) -> None:
    """`ip link set <host_end> master <bridge> up`: one request makes it a port and brings it up."""
    with host_ipr() as ipr:
        with nl_step(rec, "link_set", target=host_end, value=f"master {bridge} up",
                     shell=f"ip link set {host_end} master {bridge} up"):
            ipr.link("set", index=ipr.link_lookup(ifname=host_end)[0], master=bridge_index, state="up")


def configure_inside(ns_fd: int, pid: int, ip: str, prefix: int, gateway: str, rec: Recorder) -> None:
    """Inside the namespace: lo up, the address on eth0, eth0 up, the default route."""
    with rec.step("namespace", "setns", target=f"/proc/{pid}/ns/net", value="CLONE_NEWNET",
                  shell=f"nsenter -t {pid} -n  # a helper thread opens a netlink socket there"):
        ipr = netns_ipr(ns_fd)
    with ipr:
        with nl_step(rec, "link_set", target="lo", value="up", shell=nsenter(pid, "ip link set lo up")):
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        with nl_step(rec, "link_show", target=CONTAINER_IFNAME,
                     shell=nsenter(pid, f"ip link show {CONTAINER_IFNAME}")):
            eth0 = ipr.link("get", ifname=CONTAINER_IFNAME)[0]["index"]
        cidr = f"{ip}/{prefix}"
        with nl_step(rec, "addr_add", target=CONTAINER_IFNAME, value=cidr,
                     shell=nsenter(pid, f"ip addr add {cidr} dev {CONTAINER_IFNAME}")):
            ipr.addr("add", index=eth0, address=ip, prefixlen=prefix)
        with nl_step(rec, "link_set", target=CONTAINER_IFNAME, value="up",
                     shell=nsenter(pid, f"ip link set {CONTAINER_IFNAME} up")):
            ipr.link("set", index=eth0, state="up")
        with nl_step(rec, "route_add", target="default", value=f"via {gateway}",
                     shell=nsenter(pid, f"ip route add default via {gateway}")):
            ipr.route("add", dst="0.0.0.0/0", gateway=gateway, oif=eth0)


def delete_pair(host_end: str, rec: Recorder) -> bool:
    """Delete the host end; the kernel deletes the peer with it. False if it was already gone
    (the container's namespace died, which destroys the pair by itself)."""
    return delete_link(host_end, rec)
