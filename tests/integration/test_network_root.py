"""Networking against the real kernel: bridges, veth pairs, addresses, isolation, ports.

Packets go only to loopback and to addresses inside the namespaces and bridges these tests make.
Every name carries a per-run tag (bridges ltbrt<tag><n>, host veths lt<tag>...), and the last
check of the module asserts that no such link (and no rule naming one) is left on the host.
"""

from __future__ import annotations

import http.client
import ipaddress
import itertools
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from engine import paths, syscalls
from engine.errors import Conflict, InvalidArgument, NotFound, StepError
from engine.network import (
    PortProxy,
    PortSpec,
    attach_container,
    check_ports,
    cleanup_container,
    create_network,
    detach_container,
    ensure_default_network,
    inspect_network,
    ipam,
    isolation,
    parse_port,
    remove_network,
)
from engine.network.netlink import host_ipr, netns_ipr
from engine.steps import Recorder

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs /bin/busybox"),
]

TAG = secrets.token_hex(2)
BRIDGE_PREFIX = f"ltbrt{TAG}"
VETH_PREFIX = f"lt{TAG}"
BUSYBOX = "/bin/busybox"
IFF_UP = 0x1
_ids = itertools.count()
_bridges = itertools.count()
_used_subnets: set[str] = set()


def new_cid() -> str:
    """A 64-hex container id whose first 10 chars (the host veth name) carry this run's tag."""
    return f"{TAG}{next(_ids):06x}{secrets.token_hex(27)}"


def new_subnet() -> str:
    """A free 10.213.X.0/24: overlapping no host route and nothing used earlier in this run."""
    routes = [r for _, r in ipam.host_routes()]
    for x in random.sample(range(256), 256):
        cand = f"10.213.{x}.0/24"
        net = ipaddress.IPv4Network(cand)
        if cand not in _used_subnets and not any(net.overlaps(r) for r in routes):
            _used_subnets.add(cand)
            return cand
    pytest.skip("no free 10.213.x.0/24 on this host")


class Box:
    """A stand-in container: a forked child alone in a new network namespace, parked on a pipe."""

    def __init__(self) -> None:
        ready_r, ready_w = os.pipe()
        hold_r, hold_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.close(ready_r)
                os.close(hold_w)
                syscalls.unshare(syscalls.CLONE_NEWNET)
                os.write(ready_w, b"1")
                os.read(hold_r, 1)  # returns when the parent closes (or dies)
            finally:
                os._exit(0)
        os.close(ready_w)
        os.close(hold_r)
        assert os.read(ready_r, 1) == b"1"
        os.close(ready_r)
        self.pid, self._hold = pid, hold_w

    def kill(self) -> None:
        if self._hold < 0:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        os.close(self._hold)
        self._hold = -1


def in_netns(pid: int, *, hosts_file: Path | None = None) -> Callable[[], None]:
    """A preexec_fn that moves the child into pid's network namespace (and, with hosts_file,
    into a private mount namespace where hosts_file is bind-mounted on /etc/hosts, as the
    runtime does)."""
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    def enter() -> None:
        syscalls.setns(fd, syscalls.CLONE_NEWNET)
        if hosts_file is not None:
            syscalls.unshare(syscalls.CLONE_NEWNS)
            syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
            syscalls.mount(str(hosts_file), "/etc/hosts", None, syscalls.MS_BIND)

    enter.fd = fd  # type: ignore[attr-defined]  # closed by the caller
    return enter


def run_in(pid: int, argv: list[str], timeout: float = 10, **kw: object) -> subprocess.CompletedProcess:
    enter = in_netns(pid, **kw)  # type: ignore[arg-type]
    try:
        return subprocess.run(argv, preexec_fn=enter, capture_output=True, text=True, timeout=timeout)
    finally:
        os.close(enter.fd)  # type: ignore[attr-defined]


def ping(pid: int, target: str) -> bool:
    return run_in(pid, [BUSYBOX, "ping", "-c1", "-W1", target]).returncode == 0


class Lab:
    """Per-test state: a recorder collecting steps, the networks and boxes to tear down."""

    def __init__(self) -> None:
        self.steps: list[dict] = []
        self.rec = Recorder("test", self.steps.append)
        self.boxes: list[Box] = []
        self.cids: list[str] = []

    def network(self, name: str, **kw: object) -> dict:
        bridge = f"{BRIDGE_PREFIX}{next(_bridges)}"
        return create_network(name, new_subnet(), rec=self.rec, bridge=bridge, **kw)

    def box(self) -> Box:
        b = Box()
        self.boxes.append(b)
        return b

    def cid(self, with_dir: bool = True) -> str:
        cid = new_cid()
        self.cids.append(cid)
        if with_dir:
            paths.container_dir(cid).mkdir(parents=True)
        return cid

    def teardown(self) -> None:
        for b in self.boxes:
            b.kill()
        for cid in self.cids:
            cleanup_container(cid, self.rec)
        for net in ipam.list_networks():
            remove_network(net["name"], lambda _n: [], self.rec, allow_default=True)


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    monkeypatch.setenv("LABTUI_ROOT", str(tmp_path))
    lab = Lab()
    try:
        yield lab
    finally:
        lab.teardown()


def _ours(name: str | None) -> bool:
    return bool(name) and (name.startswith(BRIDGE_PREFIX) or name.startswith(VETH_PREFIX))


@pytest.fixture(scope="module", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    yield
    # A dead namespace takes its veth pair with it, but the kernel does that asynchronously.
    deadline = time.monotonic() + 5
    while True:
        with host_ipr() as ipr:
            links = [lk.get_attr("IFLA_IFNAME") for lk in ipr.get_links()]
            rules = [r.get_attr("FRA_IIFNAME") for r in ipr.rule("dump", family=socket.AF_INET)]
        leftovers = [n for n in links + rules if _ours(n)]
        if not leftovers or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert leftovers == [], f"links/rules left behind: {leftovers}"


# ---------------------------------------------------------------------------------------- wiring

def _inside(pid: int) -> dict:
    """What the container sees, read through netlink inside its namespace."""
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        with netns_ipr(fd) as ipr:
            links = {lk.get_attr("IFLA_IFNAME"): lk for lk in ipr.get_links()}
            addrs = [(a.get_attr("IFA_LABEL"), a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                     for a in ipr.get_addr(family=socket.AF_INET)]
            routes = [(r["dst_len"], r.get_attr("RTA_GATEWAY"))
                      for r in ipr.get_routes(family=socket.AF_INET)]
    finally:
        os.close(fd)
    return {
        "up": {n: bool(lk["flags"] & IFF_UP) for n, lk in links.items()},
        "mac": {n: lk.get_attr("IFLA_ADDRESS") for n, lk in links.items()},
        "addrs": addrs,
        "routes": routes,
    }


def test_attach_builds_bridge_veth_and_namespace_config(lab: Lab) -> None:
    net = lab.network("front")
    box, cid = lab.box(), lab.cid()
    info = attach_container(cid, box.pid, "front", rec=lab.rec, aliases=["www"], name="web")
    gw = ipaddress.IPv4Address(net["gateway"])
    assert info == {
        "network": "front", "ip": str(gw + 1), "prefix": 24, "gateway": str(gw),
        "mac": "02:42:" + ":".join(f"{b:02x}" for b in (gw + 1).packed),
        "host_veth": "lt" + cid[:10], "bridge": net["bridge"],
    }

    seen = _inside(box.pid)
    assert seen["up"] == {"lo": True, "eth0": True}
    assert seen["mac"]["eth0"] == info["mac"]
    assert ("eth0", info["ip"], 24) in seen["addrs"] and ("lo", "127.0.0.1", 8) in seen["addrs"]
    assert (0, str(gw)) in seen["routes"]

    with host_ipr() as ipr:
        br = ipr.link("get", ifname=net["bridge"])[0]
        host_end = ipr.link("get", ifname=info["host_veth"])[0]
        br_addrs = [(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=br["index"])]
    assert host_end.get_attr("IFLA_MASTER") == br["index"] and host_end["flags"] & IFF_UP
    assert (str(gw), 24) in br_addrs

    shells = [s["shell"] for s in lab.steps if s["mechanism"] == "network"]
    assert all(sh.startswith(("ip ", "nsenter -t ")) for sh in shells)
    assert f"ip link add {net['bridge']} type bridge" in shells
    assert (f"ip link add {info['host_veth']} type veth peer name eth0 address {info['mac']} "
            f"netns {box.pid}") in shells
    assert f"nsenter -t {box.pid} -n ip addr add {info['ip']}/24 dev eth0" in shells
    assert f"nsenter -t {box.pid} -n ip route add default via {gw}" in shells
    assert all(s["result"] == "ok" for s in lab.steps if s["op"] != "link_show")
    assert f"{info['ip']}\tweb www" in (paths.container_dir(cid) / "hosts").read_text()

    # Attaching again (a supervisor retrying) replaces the pair instead of failing on EEXIST.
    assert attach_container(cid, box.pid, "front", rec=lab.rec) == info
    assert ("eth0", info["ip"], 24) in _inside(box.pid)["addrs"]
    assert [s["result"] for s in lab.steps if s["op"] in ("link_add", "link_del")][-3:] == ["EEXIST", "ok", "ok"]

    assert detach_container(cid, "front", lab.rec) is True
    with host_ipr() as ipr:
        assert ipr.link_lookup(ifname=info["host_veth"]) == []
    assert inspect_network("front")["leases"][cid]["attached"] is False
    cleanup_container(cid, lab.rec)
    n_steps = len(lab.steps)
    cleanup_container(cid, lab.rec)  # idempotent, and with nothing to do it asks the kernel nothing
    assert len(lab.steps) == n_steps
    assert inspect_network("front")["leases"] == {}


def test_same_network_talks_by_address_and_name_other_network_does_not(lab: Lab) -> None:
    lab.network("alpha")
    lab.network("beta")
    a1, a2, b1 = lab.box(), lab.box(), lab.box()
    c_a1, c_a2, c_b1 = lab.cid(), lab.cid(), lab.cid()
    ip_a1 = attach_container(c_a1, a1.pid, "alpha", rec=lab.rec, name="web")["ip"]
    # web waits with /etc/hosts bind-mounted as the runtime would; db joins afterwards.
    waiter = subprocess.Popen(
        [BUSYBOX, "sh", "-c", f"read go; {BUSYBOX} ping -c1 -W1 db && {BUSYBOX} ping -c1 -W1 database"],
        preexec_fn=in_netns(a1.pid, hosts_file=paths.container_dir(c_a1) / "hosts"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        ip_a2 = attach_container(c_a2, a2.pid, "alpha", rec=lab.rec, name="db", aliases=["database"])["ip"]
        ip_b1 = attach_container(c_b1, b1.pid, "beta", rec=lab.rec, name="other")["ip"]
        out, _ = waiter.communicate("go\n", timeout=10)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert waiter.returncode == 0, out  # the in-place rewrite reached the bind-mounted /etc/hosts
    assert ip_a2 in out

    assert ping(a1.pid, ip_a2) and ping(a2.pid, ip_a1)
    assert not ping(a1.pid, ip_b1)
    assert not ping(b1.pid, ip_a2)
    assert "other" not in (paths.container_dir(c_a1) / "hosts").read_text()


def _private_host(body: Callable[[], dict]) -> dict:
    """Run body in a forked child that has a network namespace of its own as its "host", so it
    can turn on ip_forward and make labtui0 without touching the real host. Returns body()."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            os.close(r)
            syscalls.unshare(syscalls.CLONE_NEWNET)
            with host_ipr() as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            result = body()
            os.write(w, json.dumps(result).encode())
            code = 0
        except BaseException:
            os.write(w, json.dumps({"error": traceback.format_exc()}).encode())
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    result = json.loads(data)
    assert "error" not in result, result.get("error")
    return result


def test_isolation_holds_even_with_forwarding_on(lab: Lab, tmp_path: Path) -> None:
    def body() -> dict:
        # A store of its own: nothing this child records may be acted on by the real host's teardown.
        os.environ["LABTUI_ROOT"] = str(tmp_path / "private-host")
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write("1")  # only in this private namespace
        out: dict = {"forwarding": isolation.ip_forward_enabled()}
        net_a, net_b = lab.network("a"), lab.network("b")
        a, b = lab.box(), lab.box()
        try:
            ip_a = attach_container(lab.cid(False), a.pid, "a", rec=lab.rec)["ip"]
            ip_b = attach_container(lab.cid(False), b.pid, "b", rec=lab.rec)["ip"]
            out["same_host_gateway"] = ping(a.pid, net_a["gateway"])
            out["a_to_b_with_rules"] = ping(a.pid, ip_b)
            out["b_to_a_with_rules"] = ping(b.pid, ip_a)
            # Without the rules the host would route between the networks: the rules matter.
            isolation.sync_isolation([], lab.rec, forget=[net_a["bridge"], net_b["bridge"]])
            out["a_to_b_without_rules"] = ping(a.pid, ip_b)
        finally:
            for x in (a, b):
                x.kill()
        # The default network avoids the routes it finds: give it one on 10.88.0.0/16.
        with host_ipr() as ipr:
            ipr.route("add", dst="10.88.0.0/16", oif=ipr.link_lookup(ifname="lo")[0])
        default = ensure_default_network(lab.rec)
        out["default"] = [default["subnet"], default["gateway"], default["bridge"]]
        with host_ipr() as ipr:
            br = ipr.link_lookup(ifname=ipam.default_bridge())
            addrs = ipr.get_addr(index=br[0], family=socket.AF_INET)
            out["labtui0_addrs"] = [a.get_attr("IFA_ADDRESS") for a in addrs]
        out["default_again_same_id"] = ensure_default_network(lab.rec)["id"] == default["id"]
        return out

    out = _private_host(body)
    assert out["forwarding"] is True
    assert out["same_host_gateway"] is True
    assert out["a_to_b_with_rules"] is False and out["b_to_a_with_rules"] is False
    assert out["a_to_b_without_rules"] is True
    assert out["default"] == ["10.89.0.0/16", "10.89.0.1", ipam.default_bridge()]
    assert out["labtui0_addrs"] == ["10.89.0.1"]
    assert out["default_again_same_id"] is True


# ---------------------------------------------------------------------------------------- ports

def _wait_connect(addr: tuple[str, int], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(addr, timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _udp_echo_inside(pid: int) -> tuple[socket.socket, threading.Thread]:
    """A UDP echo socket created inside the namespace (by a thread that entered it)."""
    box: dict = {}
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)

    def make() -> None:
        syscalls.setns(fd, syscalls.CLONE_NEWNET)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", 5353))
        box["s"] = s

    t = threading.Thread(target=make)
    t.start()
    t.join()
    os.close(fd)
    sock = box["s"]

    def echo() -> None:
        while True:
            try:
                data, addr = sock.recvfrom(65535)
            except OSError:
                return
            sock.sendto(data[::-1], addr)

    et = threading.Thread(target=echo, daemon=True)
    et.start()
    return sock, et


def test_published_port_round_trip_tcp_and_udp(lab: Lab, tmp_path: Path) -> None:
    lab.network("web")
    box, cid = lab.box(), lab.cid()
    ip = attach_container(cid, box.pid, "web", rec=lab.rec, name="web")["ip"]
    docroot = tmp_path / "www"
    docroot.mkdir()
    (docroot / "index.html").write_text("hello from the container\n")
    enter = in_netns(box.pid)
    httpd = subprocess.Popen([BUSYBOX, "httpd", "-f", "-p", "8080", "-h", str(docroot)], preexec_fn=enter)
    os.close(enter.fd)  # type: ignore[attr-defined]
    udp_sock, _ = _udp_echo_inside(box.pid)
    tcp = PortProxy(PortSpec("127.0.0.1", 0, 8080), ip)
    udp = PortProxy(PortSpec("127.0.0.1", 0, 5353, "udp"), ip)
    try:
        _wait_connect((ip, 8080))
        tcp.start()
        udp.start()
        conn = http.client.HTTPConnection(*tcp.address, timeout=5)
        conn.request("GET", "/index.html")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"hello from the container\n")
        conn.close()

        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.settimeout(5)
        c.sendto(b"labtui", udp.address)
        assert c.recvfrom(100)[0] == b"iutbal"
        c.close()

        # While published, the port is refused to anyone else, with the holder named.
        with pytest.raises(Conflict, match=f"port {tcp.address[1]} is already in use by pid {os.getpid()}"):
            check_ports([PortSpec("127.0.0.1", tcp.address[1], 80)], {})
        with pytest.raises(Conflict, match="published by container web"):
            check_ports([PortSpec("127.0.0.1", tcp.address[1], 80)], {"web": [PortSpec(*tcp.address, 8080)]})
    finally:
        tcp.close()
        udp.close()
        httpd.kill()
        httpd.wait()
        udp_sock.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("labtui-proxy")]


def test_port_collision_names_the_holder(lab: Lab) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        with pytest.raises(Conflict, match=f"port {port} is already in use by pid {os.getpid()} "):
            check_ports([parse_port(f"127.0.0.1:{port}:80")], {})
    finally:
        s.close()


# ---------------------------------------------------------------------------------------- scale, errors

def test_twenty_parallel_attaches_get_distinct_addresses(lab: Lab) -> None:
    net = lab.network("many")
    boxes = [lab.box() for _ in range(20)]
    cids = [lab.cid() for _ in boxes]
    with ThreadPoolExecutor(20) as pool:
        jobs = [pool.submit(attach_container, c, b.pid, "many", rec=lab.rec)
                for b, c in zip(boxes, cids, strict=True)]
        infos = [j.result() for j in jobs]
    ips = [i["ip"] for i in infos]
    assert len(set(ips)) == 20
    with host_ipr() as ipr:
        br = ipr.link_lookup(ifname=net["bridge"])[0]
        ports = {lk.get_attr("IFLA_IFNAME") for lk in ipr.get_links() if lk.get_attr("IFLA_MASTER") == br}
    assert ports == {i["host_veth"] for i in infos}
    for b, info in zip(boxes[:3], infos[:3], strict=True):
        assert ("eth0", info["ip"], 24) in _inside(b.pid)["addrs"]
    assert ping(boxes[0].pid, ips[-1])
    with ThreadPoolExecutor(20) as pool:
        assert all(pool.map(lambda c: detach_container(c, "many", lab.rec), cids))


def test_bad_input_is_refused_before_anything_is_made(lab: Lab) -> None:
    net = lab.network("taken")
    bridge = net["bridge"]
    with pytest.raises(InvalidArgument, match="overlaps network taken"):
        create_network("clash", net["subnet"], rec=lab.rec, bridge=f"{BRIDGE_PREFIX}x")
    with pytest.raises(InvalidArgument, match="invalid subnet"):
        create_network("bad", "10.213.0.0/99", rec=lab.rec)
    with pytest.raises(InvalidArgument, match="outside the subnet"):
        create_network("bad", new_subnet(), "10.214.0.1", rec=lab.rec)
    host_routes = [(i, r) for i, r in ipam.host_routes() if not i.startswith("lt")]  # not labtui's
    if host_routes:
        iface, route = host_routes[0]
        with pytest.raises(InvalidArgument, match=f"overlaps the host route {route} on {iface}"):
            create_network("bad", str(route), rec=lab.rec)
    with pytest.raises(InvalidArgument, match="out of range"):
        parse_port("127.0.0.1:70000:80")
    box = lab.box()
    with pytest.raises(NotFound, match="network ghost not found"):
        attach_container(lab.cid(), box.pid, "ghost", rec=lab.rec)
    with pytest.raises(NotFound):
        remove_network("ghost", lambda _n: [], lab.rec)
    with pytest.raises(InvalidArgument, match="outside network taken's subnet"):
        attach_container(lab.cid(), box.pid, "taken", "10.214.0.5", rec=lab.rec)
    with pytest.raises(InvalidArgument, match="shares the host's network namespace"):
        attach_container(lab.cid(), os.getpid(), "taken", rec=lab.rec)
    # A process that is gone: the open of its namespace fails, and no veth is made.
    dead = lab.box()
    dead.kill()
    cid = lab.cid()
    with pytest.raises(StepError, match="ENOENT"):
        attach_container(cid, dead.pid, "taken", rec=lab.rec)
    with host_ipr() as ipr:
        assert ipr.link_lookup(ifname="lt" + cid[:10]) == []
    assert [n["name"] for n in ipam.list_networks()] == ["taken"]

    with pytest.raises(Conflict, match="in use by container\\(s\\) web"):
        remove_network("taken", lambda _n: ["web"], lab.rec)
    remove_network("taken", lambda _n: [], lab.rec)
    with host_ipr() as ipr:
        assert ipr.link_lookup(ifname=bridge) == []


def test_detach_and_cleanup_tolerate_a_dead_namespace(lab: Lab) -> None:
    lab.network("short")
    box, cid = lab.box(), lab.cid()
    info = attach_container(cid, box.pid, "short", rec=lab.rec)
    box.kill()
    detach_container(cid, "short", lab.rec)  # deleted it, or found it gone with the namespace
    cleanup_container(cid, lab.rec)
    cleanup_container(cid, lab.rec)
    assert inspect_network("short")["leases"] == {}
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        with host_ipr() as ipr:
            if not ipr.link_lookup(ifname=info["host_veth"]):
                break
        time.sleep(0.05)
    else:
        pytest.fail("host veth survived its namespace")
