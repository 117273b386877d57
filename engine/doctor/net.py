"""Checks of the network side: links (veths, bridges), isolation rules, leases, port proxies.

Which links are this state's: those its step stream (lib/steps.jsonl, every step of every
container and of the host) records a `link_add` of, and the host ends named after its
containers (engine/network/veth.py). A bridge or veth of another state directory (a real
install's labtui0, another test run) is never judged.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from engine import paths, state
from engine.doctor.base import GRACE, Ctx, Finding, host_recorder


def _is_bridge(name: str) -> bool:
    return os.path.isdir(f"/sys/class/net/{name}/bridge")  # sysfs-class-net: only bridges have it


def links(ctx: Ctx) -> list[Finding]:
    from engine.network import ipam, veth

    try:
        present = set(os.listdir("/sys/class/net"))
    except OSError:
        return []
    nets = ipam.list_networks()
    bridges = {n["bridge"] for n in nets}
    by_veth = {veth.host_veth_name(cid): cid for cid in ctx.containers}
    ours = (ctx.created()["link_add"] | set(by_veth)) & present
    out = []
    for name in sorted(ours - bridges):
        if _is_bridge(name):
            out.append(Finding("bridge", name, "bridge of a network that no longer exists", _del_bridge(name)))
            continue
        cid = by_veth.get(name)
        if cid in ctx.busy:
            continue
        why = (f"host end of container {ctx.label(cid)}, which is not running" if cid
               else "host end of a veth whose container no longer exists")
        out.append(Finding("veth", name, why, _del_veth(name, cid)))
    out += _rules(ours | bridges, nets)
    return out


def _del_bridge(name: str) -> Callable[[], str]:
    def fix() -> str:
        from engine.network import bridge, ipam, isolation

        rec = host_recorder()
        with ipam.store_lock():
            bridge.delete_bridge(name, rec)
            isolation.sync_isolation(ipam.list_networks(), rec, forget=[name])
        return f"Removed leaked bridge {name}"
    return fix


def _del_veth(name: str, cid: str | None) -> Callable[[], str]:
    def fix() -> str:
        from engine import network
        from engine.network import veth

        if cid:  # the container stays: its lease is marked detached, as a stop does
            for net in network.networks_of(cid):
                network.detach_container(cid, net, host_recorder())
        veth.delete_pair(name, host_recorder())
        return f"Removed leaked veth {name}"
    return fix


def _rules(bridges: set[str], nets: list[dict]) -> list[Finding]:
    """Isolation rules of our bridges that the networks no longer want (a removed network's)."""
    from engine.network import isolation

    if not bridges:
        return []  # no netlink (and no pyroute2 import) for a state without networks
    from engine.network.netlink import host_ipr
    from engine.steps import null_recorder

    with host_ipr() as ipr:
        have = isolation._current_rules(ipr, bridges, null_recorder())
    out = []
    for rule in sorted(have - isolation.desired_rules(nets)):
        text = isolation._shell(rule, "add").removeprefix("ip rule add ")
        out.append(Finding("rule", text, "isolation rule of a network that no longer exists", _del_rule(rule)))
    return out


def _del_rule(rule: tuple[str, str]) -> Callable[[], str]:
    def fix() -> str:
        from engine.network import ipam, isolation

        with ipam.store_lock():
            isolation.sync_isolation(ipam.list_networks(), host_recorder(), forget=[rule[0]])
        return f"Removed rule {isolation._shell(rule, 'add').removeprefix('ip rule add ')}"
    return fix


def leases(ctx: Ctx) -> list[Finding]:
    """Addresses held by no container; leases marked attached for a container that is not
    running; port proxies still listening for one."""
    from engine.network import ipam

    out = []
    for net in ipam.list_networks():
        for cid, lease in sorted(net["leases"].items()):
            where = f"{lease.get('ip')} on network {net['name']}"
            if cid not in ctx.containers:
                if _young(paths.container_dir(cid)):
                    continue  # a create in flight
                out.append(Finding("lease", where, f"leased to container {cid[:12]}, which does not exist",
                                   _release(net["name"], cid)))
            elif lease.get("attached") and cid not in ctx.busy:
                out.append(Finding("lease", where, f"marked attached, but container {ctx.label(cid)} is not running",
                                   _detach(net["name"], cid)))
    out += _proxies(ctx)
    return out


def _young(d: os.PathLike | str) -> bool:
    try:
        return os.stat(d).st_mtime > time.time() - GRACE
    except OSError:
        return False


def _release(net: str, cid: str) -> Callable[[], str]:
    def fix() -> str:
        from engine.network import hosts, ipam

        ip = ipam.release(net, cid)
        hosts.refresh_network_hosts(net)
        return f"Released address {ip} on network {net}"
    return fix


def _detach(net: str, cid: str) -> Callable[[], str]:
    def fix() -> str:
        from engine import network

        network.detach_container(cid, net, host_recorder())
        return f"Marked container {cid[:12]} detached from network {net}"
    return fix


def _proxies(ctx: Ctx) -> list[Finding]:
    """labtui publishes ports with a userspace proxy in the supervisor (engine/network/ports.py):
    a supervisor that still listens once its container has exited, and will not restart it."""
    from engine.network import ports

    out = []
    for cid, c in ctx.containers.items():
        s = c.state
        if not c.config.get("ports") or c.init_alive() or not c.supervisor_alive() or s.get("restarting"):
            continue
        if not s.get("finished_at") or time_since(s["finished_at"]) < GRACE:
            continue  # exiting right now: its supervisor closes the proxies itself
        for p in c.config["ports"]:
            holder = ports.find_port_holder(int(p["host_port"]), p.get("proto", "tcp"), p.get("host_ip", "0.0.0.0"))
            if holder and holder[0] == s.get("supervisor_pid"):
                spec = f"{p.get('host_ip', '0.0.0.0')}:{p['host_port']}/{p.get('proto', 'tcp')}"
                out.append(Finding("proxy", spec, f"the supervisor of {ctx.label(cid)} still listens, but the "
                                   "container is not running", _kill_supervisor(c)))
    return out


def time_since(iso: str) -> float:
    try:
        return time.time() - state.parse_iso(iso)
    except ValueError:
        return 1e9


def _kill_supervisor(c: state.Container) -> Callable[[], str]:
    def fix() -> str:
        import signal

        pid, start = c.state["supervisor_pid"], c.state.get("supervisor_start")
        if state.proc_start_time(pid) == start:  # the same process, not a reused PID
            os.kill(pid, signal.SIGKILL)
        return f"Killed the supervisor {pid} of {c.name} (its port proxies)"
    return fix
