"""Networking through the CLI on the real kernel: containers on bridges, names, ports, teardown.

Traffic goes only to loopback and to addresses of networks these tests create."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.helpers import LABTUI, inspect, labtui, lib, run_d, wait_for

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("clean_containers", "clean_networks")]

TAG = f"{os.getpid() % 10000:04d}"


@pytest.fixture
def clean_networks():
    yield
    for line in labtui("network", "ls", "--format", "json").stdout.splitlines():
        name = json.loads(line)["name"]
        if name.startswith("t" + TAG):
            labtui("network", "rm", name, check=False)


def links() -> set[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}


def net_inside(pid: int) -> tuple[list[str], list[str]]:
    """Addresses and routes read through netlink inside the container's network namespace."""
    from pyroute2 import IPRoute

    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        with IPRoute(netns=fd) as ipr:
            addrs = [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(family=socket.AF_INET)]
            routes = [f"{r.get_attr('RTA_DST') or 'default'} via {r.get_attr('RTA_GATEWAY')}"
                      for r in ipr.get_routes(family=socket.AF_INET, table=254)]
    finally:
        os.close(fd)
    return addrs, routes


def test_bridge_container_has_eth0_address_and_default_route():
    cid = run_d("--network", "bridge", "busybox", "sleep", "30")
    info = inspect(cid)
    net = info["NetworkSettings"]["Networks"]["bridge"]
    addrs, routes = net_inside(info["State"]["Pid"])
    assert f"{net['IPAddress']}/{net['IPPrefixLen']}" in addrs
    assert "127.0.0.1/8" in addrs
    assert f"default via {net['Gateway']}" in routes
    assert net["HostVeth"] in links()
    steps = labtui("steps", cid, "--format", "json").stdout
    assert "ip link add" in steps and "type veth peer name eth0" in steps and " netns " in steps


def test_names_resolve_and_networks_are_isolated():
    a, b = f"t{TAG}a", f"t{TAG}b"
    labtui("network", "create", "--subnet", "10.213.41.0/24", a)
    labtui("network", "create", "--subnet", "10.213.42.0/24", b)
    run_d("--name", f"web{TAG}", "--network", a, "--network-alias", f"www{TAG}", "busybox", "sleep", "60")
    p = labtui("run", "--rm", "--network", a, "busybox", "sh", "-c",
               f"ping -c1 -W2 web{TAG} && ping -c1 -W2 www{TAG}", check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    other_ip = None
    cid_b = run_d("--network", b, "busybox", "sleep", "60")
    other_ip = inspect(cid_b)["NetworkSettings"]["Networks"][b]["IPAddress"]
    p = labtui("run", "--rm", "--network", a, "busybox", "ping", "-c1", "-W1", other_ip, check=False)
    assert p.returncode != 0, "a container reached another network"
    p = labtui("run", "--rm", "--network", a, "busybox", "sh", "-c", f"ping -c1 -W1 {other_ip} || true; "
               f"grep -c web{TAG} /etc/hosts")
    assert p.stdout.strip().endswith("1")
    # removing the container removes its name from the others
    keeper = run_d("--network", a, "busybox", "sleep", "60")
    labtui("rm", "-f", f"web{TAG}")
    hosts = open(inspect(keeper)["HostsPath"]).read()
    assert f"web{TAG}" not in hosts
    # a network in use cannot be removed
    p = labtui("network", "rm", a, check=False)
    assert p.returncode != 0 and "in use" in p.stderr


def test_published_port_round_trip_and_collision():
    port = 18000 + int(TAG) % 1000
    cid = run_d("--name", f"srv{TAG}", "--network", "bridge", "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c",
                "echo served-by-container > /tmp/index.html; httpd -f -p 80 -h /tmp")

    def fetch() -> str:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
                return s.recv(4096).decode()
        except OSError:
            return ""

    body = wait_for(lambda: "served-by-container" in fetch() and fetch(), what="http through the port")
    assert "200 OK" in body
    row = [r for r in labtui("ps", "--format", "json").stdout.splitlines() if cid in r][0]
    assert f"127.0.0.1:{port}->80/tcp" in json.loads(row)["Ports"]
    # the same host port for another container is refused, naming the holder, leaving nothing
    before = set(os.listdir(lib() / "containers"))
    p = labtui("run", "-d", "--network", "bridge", "-p", f"127.0.0.1:{port}:80", "busybox", "true", check=False)
    assert p.returncode == 125 and f"srv{TAG}" in p.stderr
    assert set(os.listdir(lib() / "containers")) == before
    # a port held by another process on the host is refused too, naming the process
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    busy = holder.getsockname()[1]
    try:
        p = labtui("run", "-d", "--network", "bridge", "-p", f"127.0.0.1:{busy}:80", "busybox", "true", check=False)
        assert p.returncode == 125 and f"pid {os.getpid()}" in p.stderr
    finally:
        holder.close()
    labtui("rm", "-f", cid)
    assert fetch() == ""  # released on removal


def test_twenty_parallel_starts_get_distinct_addresses():
    procs = [subprocess.Popen(LABTUI + ["run", "-d", "--network", "bridge", "busybox", "sleep", "30"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(20)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0] * 20, [o[1] for o in outs]
    ips = [inspect(o[0].strip())["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] for o in outs]
    assert len(set(ips)) == 20


def test_teardown_after_rm_killed_supervisor_and_prune():
    import signal

    name = f"t{TAG}p"
    labtui("network", "create", "--subnet", "10.213.43.0/24", name)
    cid = run_d("--network", name, "busybox", "sleep", "60")
    info = inspect(cid)
    veth = info["NetworkSettings"]["Networks"][name]["HostVeth"]
    os.kill(info["State"]["SupervisorPid"], signal.SIGKILL)
    time.sleep(0.2)
    labtui("rm", "-f", cid)
    assert veth not in links()
    net = json.loads(labtui("network", "inspect", name).stdout)[0]
    assert net["containers"] == {}  # the lease went with the container
    bridge = net["bridge"]
    assert bridge in links()
    out = labtui("system", "prune").stdout
    assert f"Deleted network: {name}" in out
    assert bridge not in links()


def test_none_network_does_not_import_pyroute2():
    out = labtui("run", "--rm", "busybox", "ip", "-o", "link").stdout
    assert "lo" in out and "eth0" not in out
    code = ("import sys, os; sys.argv=['labtui','run','--rm','busybox','true'];"
            "from labtui.cli.main import main; rc=main(); print('pyroute2' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.stdout.strip().endswith("False"), p.stdout + p.stderr


def test_bad_network_input():
    cases = [
        (["network", "create", "--subnet", "10.213.44.0/33", f"t{TAG}x"], "subnet"),
        (["network", "create", "--subnet", "banana", f"t{TAG}x"], "subnet"),
        (["run", "--network", "nosuchnet", "busybox", "true"], "nosuchnet"),
        (["run", "--network", "bridge", "-p", "70000:80", "busybox", "true"], "out of range"),
        (["run", "--network", "bridge", "--ip", "192.0.2.5", "busybox", "true"], "outside"),
        (["run", "-p", "8080:80", "busybox", "true"], "bridge network"),
    ]
    for args, msg in cases:
        p = labtui(*args, check=False)
        assert p.returncode != 0 and "Traceback" not in p.stderr, (args, p.stderr)
        assert msg in p.stderr, (args, p.stderr)
    labtui("network", "create", "--subnet", "10.213.45.0/24", f"t{TAG}o")
    p = labtui("network", "create", "--subnet", "10.213.45.128/25", f"t{TAG}o2", check=False)
    assert p.returncode != 0 and "overlap" in p.stderr
