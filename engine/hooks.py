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

from collections.abc import Callable

from engine.state import Container
from engine.steps import Recorder


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
    """Mechanism-specific validation of run options (cgroup limits, security) at create."""
    return None


def before_go(rec: Recorder, c: Container, pid: int) -> tuple[object | None, object | None]:
    cgroup = None
    net = None
    try:
        if _networked(c):
            net = attach_network(rec, c, pid)
    except BaseException:
        if net is not None:
            net.close()
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
    return None


def after_exit(rec: Recorder, c: Container, cgroup: object | None, net: object | None) -> None:
    if isinstance(net, NetHandle):
        from engine import network

        net.close()
        network.detach_container(c.id, net.network, rec)


def cleanup(rec: Recorder, c: Container) -> None:
    """Idempotent teardown used by rm: whatever an exited or killed container may have left."""
    if _networked(c):
        from engine import network

        network.cleanup_container(c.id, rec)


def thaw(c: Container) -> None:
    return None


def inspect_extra(c: Container, info: dict) -> None:
    return None
