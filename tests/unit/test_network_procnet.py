"""engine.network.procnet: a network namespace's interfaces, addresses and routes from
/proc/PID/net (fixed samples, and a fake /proc; no root)."""

from __future__ import annotations

from engine.network import procnet

FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 172.18.0.0/16 2 0 2
        |-- 172.18.0.0
           /16 link UNICAST
Local:
  +-- 0.0.0.0/0 3 0 5
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.0
           /8 host LOCAL
        |-- 127.0.0.1
           /32 host LOCAL
     |-- 172.18.0.5
        /32 host LOCAL
     |-- 172.18.255.255
        /32 link BROADCAST
"""

NET_DEV = """Inter-|   Receive |  Transmit
 face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed
    lo: 140 2 0 0 0 0 0 0 140 2 0 0 0 0 0 0
  eth0: 1076 12 0 0 0 0 0 0 626 7 0 0 0 0 0 0
"""

ROUTE = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010012AC\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
"""

IF_INET6 = """00000000000000000000000000000001 01 80 10 80       lo
fe800000000000004c6a3bfffe1b2c3d 02 40 20 80     eth0
"""


def test_network_parsers():
    assert procnet.parse_fib_local(FIB_TRIE) == ["127.0.0.1", "172.18.0.5"]
    ifaces = procnet.parse_net_dev(NET_DEV)
    assert [(i.name, i.rx_bytes, i.tx_packets) for i in ifaces] == [("lo", 140, 2), ("eth0", 1076, 7)]
    routes = procnet.parse_routes(ROUTE)
    assert routes[0] == ("eth0", "0.0.0.0", "172.18.0.1", "0.0.0.0")
    assert routes[1] == ("eth0", "172.18.0.0", "0.0.0.0", "255.255.0.0")
    assert procnet._iface_for("172.18.0.5", routes) == "eth0"
    assert procnet._iface_for("127.0.0.1", routes) == "lo"


def test_interfaces_puts_each_address_on_its_interface(tmp_path):
    net = tmp_path / "42" / "net"
    net.mkdir(parents=True)
    for name, text in (("dev", NET_DEV), ("route", ROUTE), ("fib_trie", FIB_TRIE), ("if_inet6", IF_INET6)):
        (net / name).write_text(text)
    ifaces = {i.name: i.addresses for i in procnet.interfaces(42, proc=str(tmp_path))}
    assert ifaces == {"lo": ["127.0.0.1", "::1/128"], "eth0": ["172.18.0.5", "fe80::4c6a:3bff:fe1b:2c3d/64"]}
    assert procnet.interfaces(43, proc=str(tmp_path)) == []  # a process that is gone
