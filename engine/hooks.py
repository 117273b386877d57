"""Supervisor-side setup between clone and "go", watchers while running, teardown after exit.

Each mechanism that needs the container's host PID (its cgroup, its network) plugs in here, so
the supervisor's start sequence stays one readable list:

    validate(extra)              at create, before anything exists
    before_go(rec, c, pid)       after clone, before the child goes on: cgroup, network
    watcher(c, cgroup)           called every 250 ms while the container runs (alerts)
    after_exit(rec, c, ...)      the init is gone: proxies closed, veth detached, cgroup removed
    cleanup(rec, c)              rm: whatever may be left, idempotent
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from engine.state import Container
from engine.steps import Recorder

SECURITY_WIRED = True  # the security mechanism's calls below are made here, not by a wrapper


class NetHandle:
    """What the supervisor holds for a networked container: its network and port proxies."""

    def __init__(self, network: str, info: dict, proxies: list) -> None:
        self.network = network
        self.info = info
        self.proxies = proxies

    def close(self) -> None:
        for p in self.proxies:
            p.close()
        self.proxies = []


def _networked(c: Container) -> bool:
    return c.config.get("network", "none") not in ("none", "host")


def validate(extra: dict) -> None:
    """Mechanism-specific validation of run options at create: cgroup limits, scheduling."""
    raw = extra.get("limits")
    if raw:
        from engine.cgroups import limits as lim

        extra["limits"] = lim.validate(lim.Limits.from_dict(raw)).to_dict()
    if any(k in extra for k in ("nice", "sched_policy", "sched_priority")):
        from engine import sched

        sched.validate(extra)


def cgroup_driver(c: Container, rec: Recorder):
    """engine.cgroups.for_container, under the name labtui/tui/adapter.py looks up here."""
    from engine import cgroups

    return cgroups.for_container(c, rec)


def before_go(rec: Recorder, c: Container, pid: int, cgroup: object | None = None,
              child_joins: bool = False) -> tuple[object | None, object | None]:
    """The child exists: make its cgroup and put it there (before it unshares its cgroup
    namespace, whose root is the cgroup it is in at that moment), then wire its network.
    With child_joins the child moves itself into the cgroup after "go" (v1: cheaper)."""
    from engine import cgroups, sched, security
    from engine.cgroups import Limits

    # User namespace maps (setgroups deny, uid_map, gid_map: written once, by the parent) and the
    # seccomp denial watcher learning which init is ours.
    security.supervisor_before_go(rec, c, pid)
    if cgroup is None:
        cgroup = cgroups.for_container(c, rec)
    net = None
    try:
        cgroup.create()
        devices = cgroup.paths().get("devices")
        if devices and not (c.config.get("security") or {}).get("privileged"):
            try:
                from engine import devices as dev
            except ImportError:  # the device allowlist arrives with the security work
                dev = None
            if dev is not None:
                dev.apply_allowlist(rec, devices, c.config)
        sched.prepare_cgroup(rec, c.config, cgroup)
        cgroup.apply(Limits.from_dict(c.config.get("limits") or {}))
        if not child_joins:
            cgroup.add_pid(pid)
        if _networked(c):
            net = attach_network(rec, c, pid)
        if c.config.get("strace"):
            from engine import strace

            strace.start_for_new_container(c, pid)  # last: returns once strace has attached
    except BaseException:
        if net is not None:
            net.close()
        cgroup.destroy()
        raise
    return cgroup, net


def attach_network(rec: Recorder, c: Container, pid: int) -> NetHandle:
    from engine import network

    cfg = c.config
    info = network.attach_container(c.id, pid, cfg["network"], cfg.get("ip"), rec, cfg.get("aliases", []),
                                    name=cfg["name"], hostname=cfg["hostname"])
    handle = NetHandle(cfg["network"], info, [])
    try:
        for spec in cfg.get("ports", []):
            proxy = network.PortProxy(network.PortSpec.from_dict(spec), info["ip"])
            with rec.step("network", "publish port", target=str(proxy.spec) if hasattr(proxy, "spec") else "",
                          value=f"{spec['host_ip']}:{spec['host_port']} -> {info['ip']}:{spec['container_port']}",
                          shell=f"# a proxy in the supervisor: socat TCP-LISTEN:{spec['host_port']},fork "
                                f"TCP:{info['ip']}:{spec['container_port']}"):
                proxy.start()
            handle.proxies.append(proxy)
    except BaseException:
        handle.close()
        network.detach_container(c.id, cfg["network"], rec)
        raise
    return handle


def watcher(c: Container, cgroup: object | None) -> Callable[[], None] | None:
    """Called every 250 ms while the container runs: alerts from the cgroup's counters (OOM
    kill, throttling, pids limit, memory > 90 %) and seccomp denials from the audit records."""
    from engine import security

    alerts = _alert_watcher(c, cgroup)
    if security.denial_watcher() is None:
        return alerts

    def both() -> None:
        if alerts is not None:
            alerts()
        security.poll_denials()

    return both


def _alert_watcher(c: Container, cgroup: object | None) -> Callable[[], None] | None:
    w = alert_watcher(c, cgroup)
    return w.check if w is not None else None


def alert_watcher(c: Container, cgroup: object | None):  # -> AlertWatcher | None
    """The cgroup counters' watcher of a running container (None without cgroups)."""
    if cgroup is None or getattr(cgroup, "version", "none") == "none":
        return None
    from engine.cgroups import AlertWatcher

    return AlertWatcher(cgroup, c.id, alert_emitter(c))


def alert_emitter(c: Container) -> Callable[[dict], None]:
    from engine import events

    def emit(ev: dict) -> None:
        ev = dict(ev)
        kind = ev.pop("type", "alert")
        ev.pop("container", None)
        events.emit(kind, c.id, c.name, **ev)

    return emit


def adopt_network(saved: dict) -> NetHandle:
    """A running container's network as the supervisor held it before its idle phase: the
    published ports' proxies restarted on the listening sockets the monitor kept."""
    from engine import network

    handle = NetHandle(saved["network"], saved["info"], [])
    for port in saved["ports"]:
        proxy = network.PortProxy(network.PortSpec.from_dict(port["spec"]), saved["info"]["ip"])
        proxy.start(listener=socket.socket(fileno=port["fd"]))
        handle.proxies.append(proxy)
    return handle


def after_exit(rec: Recorder, c: Container, cgroup: object | None, net: object | None,
               deferred: list | None = None) -> None:
    """After the container's init exited. deferred: a list for work the caller does once its
    clients are released (a --rm container's veth deletion)."""
    from engine import security

    # What the audit socket holds now; records still on their way are read by the supervisor's
    # last act (security.finish_denials), after the caller has its exit code.
    security.poll_denials()
    if c.config.get("strace"):
        from engine import strace

        strace.finish_for_container(c)
    if isinstance(net, NetHandle):
        from engine import network

        net.close()
        network.detach_container(c.id, net.network, rec, deferred)
    if cgroup is not None:
        # Empty now (its init is gone); a --rm container's are removed once its caller has
        # been released, with its directory and veth: ~16 rmdirs off the exit's critical path.
        if deferred is not None:
            deferred.append(cgroup.destroy)
        else:
            cgroup.destroy()


def cleanup(rec: Recorder, c: Container, deferred: list | None = None) -> None:
    """Idempotent teardown used by rm: whatever an exited or killed container may have left."""
    if _networked(c):
        from engine import network

        network.cleanup_container(c.id, rec, deferred)
    from engine import cgroups

    cg = cgroups.for_container(c, rec)
    if deferred is not None:  # after after_exit's own (deferred) destroy: a no-op then
        deferred.append(lambda: cg.exists() and cg.destroy())
    elif cg.exists():
        cg.destroy()


def thaw(c: Container) -> None:
    from engine import cgroups
    from engine.steps import container_recorder

    cg = cgroups.for_container(c, container_recorder(c.id))
    if cg.exists() and cg.is_frozen():
        cg.thaw()


def inspect_extra(c: Container, info: dict) -> None:
    from engine import cgroups, security
    from engine.steps import null_recorder

    cg = cgroups.for_container(c, null_recorder())
    info["Cgroup"] = cg.describe() | {"exists": cg.exists()}
    info["HostConfig"]["Resources"] = c.config.get("limits") or {}
    security.inspect_extra(c, info)  # capability sets decoded, seccomp, denials, userns maps
