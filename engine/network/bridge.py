"""The Linux bridge behind a network: a virtual switch on the host whose own address is the
network's gateway. Each netlink request is one recorded step with its `ip` equivalent.
"""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING

from engine.errors import Conflict, StepError
from engine.network.netlink import delete_link, host_ipr, nl_step, step_errno
from engine.steps import Recorder

if TYPE_CHECKING:
    from pyroute2 import IPRoute

IFF_UP = 0x1


def _show_link(ipr: IPRoute, ifname: str, rec: Recorder) -> dict | None:
    """The link's index and flags, or None if there is no such link (ENODEV is an answer here)."""
    try:
        with nl_step(rec, "link_show", target=ifname, shell=f"ip link show {ifname}"):
            msg = ipr.link("get", ifname=ifname)[0]
    except StepError as e:
        if step_errno(e) == errno.ENODEV:
            return None
        raise
    return {"index": msg["index"], "flags": msg["flags"], "kind": _kind(msg)}


def _kind(msg: object) -> str:
    info = msg.get_attr("IFLA_LINKINFO")  # type: ignore[attr-defined]
    return (info.get_attr("IFLA_INFO_KIND") if info is not None else None) or ""


def _add_bridge(ipr: IPRoute, ifname: str, rec: Recorder) -> int:
    shell = f"ip link add {ifname} type bridge"
    with nl_step(rec, "link_add", target=ifname, value="type bridge", shell=shell):
        ipr.link("add", ifname=ifname, kind="bridge")
        return ipr.link_lookup(ifname=ifname)[0]


def _has_address(ipr: IPRoute, index: int, ifname: str, address: str, prefix: int, rec: Recorder) -> bool:
    with nl_step(rec, "addr_show", target=ifname, shell=f"ip -4 addr show dev {ifname}"):
        addrs = ipr.get_addr(index=index, family=socket.AF_INET)
    return any(a.get_attr("IFA_ADDRESS") == address and a["prefixlen"] == prefix for a in addrs)


def _add_address(ipr: IPRoute, index: int, ifname: str, address: str, prefix: int, rec: Recorder) -> None:
    cidr = f"{address}/{prefix}"
    with nl_step(rec, "addr_add", target=ifname, value=cidr, shell=f"ip addr add {cidr} dev {ifname}"):
        ipr.addr("add", index=index, address=address, prefixlen=prefix)


def _set_up(ipr: IPRoute, index: int, ifname: str, rec: Recorder) -> None:
    with nl_step(rec, "link_set", target=ifname, value="up", shell=f"ip link set {ifname} up"):
        ipr.link("set", index=index, state="up")


def ensure_bridge(bridge: str, gateway: str, prefix: int, rec: Recorder) -> tuple[int, bool]:
    """Make the bridge exist, carry gateway/prefix and be up; returns (ifindex, created).

    Idempotent, so it also repairs a network after a reboot (which empties the kernel's links
    but not the store). Callers hold the store lock so two attaches never both create it.
    """
    with host_ipr() as ipr:
        link = _show_link(ipr, bridge, rec)
        if link is not None and link["kind"] != "bridge":
            raise Conflict(f"interface {bridge} exists but is a {link['kind'] or 'non-bridge'} link, not a bridge")
        if link is None:
            index = _add_bridge(ipr, bridge, rec)
            _add_address(ipr, index, bridge, gateway, prefix, rec)
            _set_up(ipr, index, bridge, rec)
            return index, True
        index = link["index"]
        if not _has_address(ipr, index, bridge, gateway, prefix, rec):
            _add_address(ipr, index, bridge, gateway, prefix, rec)
        if not link["flags"] & IFF_UP:
            _set_up(ipr, index, bridge, rec)
        return index, False


def delete_bridge(bridge: str, rec: Recorder) -> bool:
    """Remove the bridge; its connected route and any leftover ports go with it."""
    return delete_link(bridge, rec)
