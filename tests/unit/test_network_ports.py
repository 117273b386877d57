"""-p parsing, collision checks and the userspace proxy, all on loopback."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import pytest

from engine.errors import Conflict, InvalidArgument
from engine.network import ports
from engine.network.ports import PortProxy, PortSpec, check_ports, parse_port, parse_ports

# ---------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("8080:80", PortSpec("0.0.0.0", 8080, 80, "tcp")),
        ("127.0.0.1:8080:80", PortSpec("127.0.0.1", 8080, 80, "tcp")),
        ("127.0.0.1:53:5353/udp", PortSpec("127.0.0.1", 53, 5353, "udp")),
        ("1:65535/tcp", PortSpec("0.0.0.0", 1, 65535, "tcp")),
        ("[::1]:8080:80", PortSpec("::1", 8080, 80, "tcp")),
    ],
)
def test_parse_port(text: str, spec: PortSpec) -> None:
    assert parse_port(text) == spec
    assert PortSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("80", "expected [HOSTIP:]HOSTPORT:CONTAINERPORT"),
        ("0:80", "out of range 1-65535"),
        ("8080:65536", "out of range 1-65535"),
        ("70000:80", "out of range"),
        ("http:80", "not a number"),
        ("8080:80/sctp", "not tcp or udp"),
        ("300.1.1.1:8080:80", "not an IP address"),
        ("a:b:c:d", "expected [HOSTIP:]HOSTPORT"),
        ("8000-8010:80", "not a number"),
        ("[::1]8080:80", "[IPv6]"),
        ("-1:80", "not a number"),
    ],
)
def test_parse_port_refuses(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_port(text)
    assert fragment in str(e.value)
    assert text in str(e.value)


def test_spec_text() -> None:
    assert str(parse_port("127.0.0.1:8080:80")) == "127.0.0.1:8080->80/tcp"
    assert str(parse_port("[::1]:53:53/udp")) == "[::1]:53->53/udp"


def test_same_host_port_twice_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="published twice"):
        parse_ports(["8080:80", "127.0.0.1:8080:81"])
    assert len(parse_ports(["8080:80", "8080:80/udp", "8081:80"])) == 3


# ---------------------------------------------------------------------------------------- collisions

def _free_port() -> int:
    """A port nothing listens on now: check_ports also asks the kernel, and a lab VM in use may
    publish any fixed number (18080 was one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_port_published_by_another_container_is_named() -> None:
    port = _free_port()
    mine = parse_ports([f"127.0.0.1:{port}:80"])
    with pytest.raises(Conflict, match="already published by container web"):
        check_ports(mine, {"web": [f"{port}:80"]})
    with pytest.raises(Conflict, match="container db"):
        check_ports(mine, {"web": [], "db": [PortSpec("127.0.0.1", port, 5432)]})
    # Other protocol, other address: no clash.
    check_ports(mine, {"dns": [f"127.0.0.1:{port}:53/udp"], "alt": [f"127.0.0.2:{port}:80"]})


@pytest.fixture
def held_port() -> Iterator[int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


def test_port_held_by_a_process_names_its_pid(held_port: int) -> None:
    with open("/proc/self/comm") as f:
        comm = f.read().strip()
    with pytest.raises(Conflict) as e:
        check_ports([PortSpec("127.0.0.1", held_port, 80)], {})
    assert f"port {held_port} is already in use by pid {os.getpid()} ({comm})" in str(e.value)
    # The wildcard address clashes with a listener on loopback too.
    with pytest.raises(Conflict, match=f"pid {os.getpid()}"):
        check_ports([PortSpec("0.0.0.0", held_port, 80)], {})
    assert ports.find_port_holder(held_port, "tcp", "127.0.0.1") == (os.getpid(), comm)


def test_free_port_passes_and_foreign_address_is_refused(held_port: int) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    free = s.getsockname()[1]
    s.close()
    check_ports([PortSpec("127.0.0.1", free, 80)], {})
    with pytest.raises(InvalidArgument, match="not an address of this host"):
        check_ports([PortSpec("198.51.100.7", free, 80)], {})


def test_udp_holder_is_found() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    try:
        with pytest.raises(Conflict, match=f"pid {os.getpid()}"):
            check_ports([PortSpec("127.0.0.1", port, 53, "udp")], {})
    finally:
        s.close()


def test_decode_proc_net_addresses() -> None:
    assert ports._decode_addr("0100007F") == "127.0.0.1"
    assert ports._decode_addr("00000000000000000000000001000000") == "::1"


# ---------------------------------------------------------------------------------------- proxy

def _tcp_echo() -> tuple[socket.socket, threading.Thread]:
    """An upper-casing echo server on loopback that answers until the client half-closes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                data = b""
                while chunk := c.recv(65536):
                    data += chunk
                c.sendall(data.upper())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv, t


def _proxy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("labtui-proxy")]


def test_tcp_proxy_relays_both_ways_with_half_close() -> None:
    srv, t = _tcp_echo()
    proxy = PortProxy(PortSpec("127.0.0.1", 0, srv.getsockname()[1]), "127.0.0.1")
    proxy.start()
    try:
        payload = os.urandom(600_000).hex().encode()  # 1.2 MB: exercises back-pressure
        for _ in range(3):
            with socket.create_connection(proxy.address, timeout=5) as c:
                sender = threading.Thread(target=lambda c=c: (c.sendall(payload), c.shutdown(socket.SHUT_WR)))
                sender.start()
                got = b""
                while chunk := c.recv(65536):
                    got += chunk
                sender.join()
            assert got == payload.upper()
    finally:
        proxy.close()
        srv.close()
    assert _proxy_threads() == []


def test_tcp_proxy_closes_client_when_container_refuses() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead_port = s.getsockname()[1]
    s.close()
    proxy = PortProxy(PortSpec("127.0.0.1", 0, dead_port), "127.0.0.1")
    proxy.start()
    try:
        with socket.create_connection(proxy.address, timeout=5) as c:
            assert c.recv(10) == b""
    finally:
        proxy.close()


def test_udp_proxy_returns_replies_to_each_client() -> None:
    up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    up.bind(("127.0.0.1", 0))

    def echo() -> None:
        while True:
            try:
                data, addr = up.recvfrom(65535)
            except OSError:
                return
            up.sendto(b"re:" + data, addr)

    threading.Thread(target=echo, daemon=True).start()
    proxy = PortProxy(PortSpec("127.0.0.1", 0, up.getsockname()[1], "udp"), "127.0.0.1")
    proxy.start()
    try:
        clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        for i, c in enumerate(clients):
            c.settimeout(5)
            c.sendto(f"hello{i}".encode(), proxy.address)
        for i, c in enumerate(clients):
            assert c.recvfrom(100)[0] == f"re:hello{i}".encode()
            c.close()
    finally:
        proxy.close()
        up.close()
    assert _proxy_threads() == []


def test_proxy_start_fails_at_once_on_a_taken_port(held_port: int) -> None:
    proxy = PortProxy(PortSpec("127.0.0.1", held_port, 80), "127.0.0.1")
    with pytest.raises(Conflict, match=f"pid {os.getpid()}"):
        proxy.start()
    proxy.close()
    assert _proxy_threads() == []
