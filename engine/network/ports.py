"""Published ports (-p): parsing, collision checks, and a userspace proxy like docker-proxy.

Why a userspace proxy and no NAT: labtui never installs iptables/nftables rules. The proxy is
an ordinary process-level listener on the host (bound to HOSTIP:HOSTPORT) that opens a second
connection to CONTAINER_IP:PORT over the bridge and copies bytes both ways; `ss -ltnp` shows
it as the supervisor's socket, which is also how a student finds who holds a port.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import selectors
import socket
import threading
import time
from collections.abc import Iterable, Mapping

from engine.errors import Conflict, InvalidArgument
from engine.record import dataclass

DEFAULT_HOST_IP = "0.0.0.0"  # docker's default: every host address (documented in networking.md)
PROTOS = ("tcp", "udp")
TCP_LISTEN = "0A"  # st column of /proc/net/tcp for LISTEN
UDP_IDLE_SECONDS = 60.0
BUF_LIMIT = 256 * 1024  # per direction; reading stops while the other side is this far behind


@dataclass(frozen=True)
class PortSpec:
    host_ip: str
    host_port: int
    container_port: int
    proto: str = "tcp"

    def __str__(self) -> str:
        host = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        return f"{host}:{self.host_port}->{self.container_port}/{self.proto}"

    def to_dict(self) -> dict:
        return {"host_ip": self.host_ip, "host_port": self.host_port,
                "container_port": self.container_port, "proto": self.proto}

    @classmethod
    def from_dict(cls, d: Mapping) -> PortSpec:
        proto = str(d.get("proto", "tcp"))
        return cls(str(d["host_ip"]), int(d["host_port"]), int(d["container_port"]), proto)


# ---------------------------------------------------------------------------------------- parsing

def _port(text: str, what: str, spec: str) -> int:
    if not text.isdigit():
        raise InvalidArgument(f"invalid port spec {spec!r}: {what} {text!r} is not a number "
                              "(expected [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp])")
    n = int(text)
    if not 1 <= n <= 65535:
        raise InvalidArgument(f"invalid port spec {spec!r}: {what} {n} is out of range 1-65535")
    return n


def _host_ip(text: str, spec: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise InvalidArgument(f"invalid port spec {spec!r}: {text!r} is not an IP address") from None


def parse_port(spec: str) -> PortSpec:
    """`[HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]`; an IPv6 HOSTIP goes in brackets."""
    text = spec.strip()
    proto = "tcp"
    if "/" in text:
        text, proto = text.rsplit("/", 1)
        if proto not in PROTOS:
            raise InvalidArgument(f"invalid port spec {spec!r}: protocol {proto!r} is not tcp or udp")
    host_ip = DEFAULT_HOST_IP
    if text.startswith("["):
        end = text.find("]:")
        if end < 0:
            raise InvalidArgument(f"invalid port spec {spec!r}: expected [IPv6]:HOSTPORT:CONTAINERPORT")
        host_ip, text = _host_ip(text[1:end], spec), text[end + 2:]
        parts = text.split(":")
        if len(parts) != 2:
            raise InvalidArgument(f"invalid port spec {spec!r}: expected [IPv6]:HOSTPORT:CONTAINERPORT")
    else:
        parts = text.split(":")
        if len(parts) == 3:
            host_ip, parts = _host_ip(parts[0], spec), parts[1:]
        elif len(parts) != 2:
            raise InvalidArgument(
                f"invalid port spec {spec!r}: expected [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]"
            )
    host_port = _port(parts[0], "host port", spec)
    return PortSpec(host_ip, host_port, _port(parts[1], "container port", spec), proto)


def parse_ports(specs: Iterable[str]) -> list[PortSpec]:
    """Parse every -p; two of them claiming the same host port are refused here already."""
    out: list[PortSpec] = []
    for s in specs:
        p = parse_port(s)
        for q in out:
            if _clash(p, q):
                raise InvalidArgument(f"port {p.host_port}/{p.proto} is published twice ({q} and {p})")
        out.append(p)
    return out


def _wildcard(ip: str) -> bool:
    return ipaddress.ip_address(ip).is_unspecified


def _clash(a: PortSpec, b: PortSpec) -> bool:
    """Same port and protocol on addresses that overlap (a wildcard overlaps everything)."""
    if a.host_port != b.host_port or a.proto != b.proto:
        return False
    return a.host_ip == b.host_ip or _wildcard(a.host_ip) or _wildcard(b.host_ip)


# ---------------------------------------------------------------------------------------- collisions

def check_ports(
    specs: Iterable[PortSpec], published_by_others: Mapping[str, Iterable[PortSpec | str]]
) -> None:
    """Refuse, before anything is created, a host port that is already taken.

    published_by_others: container name -> the ports it publishes (PortSpec or -p text).
    Another labtui container is named; any other holder is found by a bind test and named by
    pid and command.
    """
    specs = list(specs)
    for name, theirs in published_by_others.items():
        for t in theirs:
            other = t if isinstance(t, PortSpec) else parse_port(t)
            for p in specs:
                if _clash(p, other):
                    raise Conflict(
                        f"port {p.host_port} is already published by container {name} ({other})"
                    )
    for p in specs:
        probe = _bind(p)
        probe.close()


def _bind(spec: PortSpec) -> socket.socket:
    """Bind (and for TCP listen on) HOSTIP:HOSTPORT; Conflict naming the holder if it is taken.

    Why SO_REUSEADDR for TCP: without it the bind also fails on mere TIME_WAIT leftovers of
    earlier connections, which every server (and docker-proxy) ignores.
    """
    family = socket.AF_INET6 if ":" in spec.host_ip else socket.AF_INET
    kind = socket.SOCK_STREAM if spec.proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(family, kind)
    try:
        if spec.proto == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((spec.host_ip, spec.host_port))
        if spec.proto == "tcp":
            sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise Conflict(_in_use_message(spec)) from None
        if e.errno == errno.EADDRNOTAVAIL:
            msg = f"cannot publish {spec}: {spec.host_ip} is not an address of this host"
            raise InvalidArgument(msg) from None
        raise
    return sock


def _in_use_message(spec: PortSpec) -> str:
    holder = find_port_holder(spec.host_port, spec.proto, spec.host_ip)
    if holder is None:
        who = "a process labtui cannot identify"
        return f"port {spec.host_port} is already in use by {who}; cannot publish {spec}"
    pid, comm = holder
    return f"port {spec.host_port} is already in use by pid {pid} ({comm}); cannot publish {spec}"


def _decode_addr(hexaddr: str) -> str:
    """/proc/net/{tcp,udp}{,6} print addresses as host-order 32-bit words (little-endian here)."""
    raw = bytes.fromhex(hexaddr)
    packed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(packed))


def socket_inodes(port: int, proto: str, host_ip: str = DEFAULT_HOST_IP, proc: str = "/proc") -> set[int]:
    """Inodes of the sockets bound to `port` that overlap host_ip (TCP: listening ones only)."""
    inodes: set[int] = set()
    for table in (proto, proto + "6"):
        try:
            with open(f"{proc}/net/{table}") as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], int(fields[9])
            addr_hex, port_hex = local.split(":")
            if int(port_hex, 16) != port or inode == 0 or (proto == "tcp" and state != TCP_LISTEN):
                continue
            addr = _decode_addr(addr_hex)
            if addr == host_ip or _wildcard(addr) or _wildcard(host_ip):
                inodes.add(inode)
    return inodes


def pid_of_inodes(inodes: set[int], proc: str = "/proc") -> tuple[int, str] | None:
    """The first process holding one of the socket inodes, via the /proc/<pid>/fd symlinks."""
    if not inodes:
        return None
    targets = {f"socket:[{i}]" for i in inodes}
    for entry in sorted(os.listdir(proc), key=lambda s: (len(s), s)):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir(f"{proc}/{entry}/fd"):
                if os.readlink(f"{proc}/{entry}/fd/{fd}") in targets:
                    with open(f"{proc}/{entry}/comm") as f:
                        return int(entry), f.read().strip()
        except OSError:
            continue  # the process exited, or is not ours to look at
    return None


def find_port_holder(port: int, proto: str = "tcp", host_ip: str = DEFAULT_HOST_IP) -> tuple[int, str] | None:
    """(pid, command) of the process bound to port, or None if it cannot be found."""
    return pid_of_inodes(socket_inodes(port, proto, host_ip))


# ---------------------------------------------------------------------------------------- proxy

class _Pair:
    """One relayed TCP connection: client <-> upstream, with a buffer per direction."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.peer = {client: upstream, upstream: client}
        self.pending = {client: bytearray(), upstream: bytearray()}  # bytes waiting to go TO a socket
        self.eof: set[socket.socket] = set()  # sockets that sent EOF
        self.shut: set[socket.socket] = set()  # sockets we shut for writing
        self.connected = False

    def socks(self) -> list[socket.socket]:
        return list(self.peer)

    def done(self) -> bool:
        return all(s in self.shut for s in self.peer)


class PortProxy:
    """Relays HOSTIP:HOSTPORT on the host to CONTAINER_IP:PORT, for one -p.

    Runs as one daemon thread with a selector over every socket it owns. start() binds
    synchronously, so a taken port fails the start itself; close() stops the thread, joins it
    and closes every socket, so nothing outlives it.
    """

    def __init__(self, spec: PortSpec, container_ip: str) -> None:
        self.spec = spec
        self.target = (container_ip, spec.container_port)
        self._listener: socket.socket | None = None
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._pairs: set[_Pair] = set()
        self._udp: dict[tuple, tuple[socket.socket, float]] = {}  # client addr -> (upstream, last use)

    @property
    def address(self) -> tuple[str, int]:
        """Where the proxy listens (useful when host_port was 0 and the kernel picked one)."""
        assert self._listener is not None
        return self._listener.getsockname()[:2]

    def start(self, listener: socket.socket | None = None) -> None:
        """Bind and start relaying; or relay on `listener`, the socket this proxy had before the
        supervisor's idle phase (engine/idle.py), which kept it bound all along."""
        self._listener = listener if listener is not None else _bind(self.spec)
        self._listener.set_inheritable(False)
        self._listener.setblocking(False)
        self._sel.register(self._listener, selectors.EVENT_READ, "listen")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self.resume()

    def resume(self) -> None:
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name=f"labtui-proxy {self.spec}", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        """Stop the relaying thread, keeping every socket (before the supervisor's exec)."""
        self._stop = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def idle(self) -> bool:
        """No connection or UDP session is being relayed."""
        return not self._pairs and not self._udp

    def listener_fd(self) -> int:
        assert self._listener is not None
        return self._listener.fileno()

    def close(self) -> None:
        self.pause()
        for s in [*(s for p in self._pairs for s in p.socks()), *(u for u, _ in self._udp.values())]:
            s.close()
        self._pairs.clear()
        self._udp.clear()
        for s in (self._listener, self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        self._sel.close()

    # -- the loop ----------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop:
            for key, events in self._sel.select(timeout=1.0):
                if self._stop:
                    break
                try:
                    self._dispatch(key, events)
                except Exception:  # one broken connection must never kill the proxy
                    if isinstance(key.data, _Pair):
                        self._drop(key.data)
            self._expire_udp()

    def _dispatch(self, key: selectors.SelectorKey, events: int) -> None:
        data = key.data
        if data == "wake":
            self._wake_r.recv(64)
        elif data == "listen":
            self._on_listen()
        elif isinstance(data, _Pair):
            self._on_pair(data, key.fileobj, events)  # type: ignore[arg-type]
        elif isinstance(data, tuple) and data[0] == "udp":
            self._on_udp_reply(key.fileobj, data[1])  # type: ignore[arg-type]

    def _on_listen(self) -> None:
        assert self._listener is not None
        if self.spec.proto == "udp":
            self._on_udp_datagram()
            return
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        client.setblocking(False)
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        upstream.setblocking(False)
        pair = _Pair(client, upstream)
        self._pairs.add(pair)
        err = upstream.connect_ex(self.target)  # non-blocking: finishes when it turns writable
        if err not in (0, errno.EINPROGRESS):
            self._drop(pair)
            return
        self._sel.register(upstream, selectors.EVENT_WRITE, pair)

    # -- TCP relay -----------------------------------------------------------------------------

    def _on_pair(self, pair: _Pair, sock: socket.socket, events: int) -> None:
        if not pair.connected:
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self._drop(pair)  # container refused or unreachable: the client sees a close
                return
            pair.connected = True
            client = pair.peer[sock]
            self._sel.register(client, selectors.EVENT_READ, pair)
            self._interest(pair)
            return
        if events & selectors.EVENT_READ:
            self._read(pair, sock)
        if pair not in self._pairs:
            return
        if events & selectors.EVENT_WRITE:
            self._flush(pair, sock)
        if pair.done():
            self._drop(pair)
        elif pair in self._pairs:
            self._interest(pair)

    def _read(self, pair: _Pair, sock: socket.socket) -> None:
        other = pair.peer[sock]
        try:
            chunk = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(pair)  # a reset: nothing sensible to relay any more
            return
        if chunk:
            pair.pending[other] += chunk
            self._flush(pair, other)
        else:
            pair.eof.add(sock)
            self._flush(pair, other)

    def _flush(self, pair: _Pair, sock: socket.socket) -> None:
        """Send what is pending to sock; once drained after the other side's EOF, pass it on."""
        buf = pair.pending[sock]
        if buf:
            try:
                sent = sock.send(buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._drop(pair)
                return
            del buf[:sent]
        if not buf and pair.peer[sock] in pair.eof and sock not in pair.shut:
            try:
                sock.shutdown(socket.SHUT_WR)  # half-close: "no more data", replies still flow
            except OSError:
                pass
            pair.shut.add(sock)

    def _interest(self, pair: _Pair) -> None:
        """Read from a socket while it is open and its peer is not too far behind; write while
        something is pending for it. A socket with nothing to wait for leaves the selector."""
        for sock in pair.socks():
            other = pair.peer[sock]
            ev = 0
            if sock not in pair.eof and len(pair.pending[other]) < BUF_LIMIT:
                ev |= selectors.EVENT_READ
            if pair.pending[sock]:
                ev |= selectors.EVENT_WRITE
            registered = self._registered(sock)
            if ev and registered:
                self._sel.modify(sock, ev, pair)
            elif ev:
                self._sel.register(sock, ev, pair)
            elif registered:
                self._sel.unregister(sock)

    def _registered(self, sock: socket.socket) -> bool:
        try:
            self._sel.get_key(sock)
            return True
        except (KeyError, ValueError):
            return False

    def _drop(self, pair: _Pair) -> None:
        for s in pair.socks():
            if self._registered(s):
                self._sel.unregister(s)
            s.close()
        self._pairs.discard(pair)

    # -- UDP relay -----------------------------------------------------------------------------

    def _on_udp_datagram(self) -> None:
        """A datagram from a client: send it on from this client's own upstream socket, so the
        container's replies can be told apart and returned to the right client."""
        assert self._listener is not None
        try:
            data, addr = self._listener.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        entry = self._udp.get(addr)
        if entry is None:
            up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            up.setblocking(False)
            up.connect(self.target)
            self._sel.register(up, selectors.EVENT_READ, ("udp", addr))
        else:
            up = entry[0]
        self._udp[addr] = (up, time.monotonic())
        try:
            up.send(data)
        except OSError:
            pass  # e.g. ECONNREFUSED left over from an earlier ICMP: UDP drops, so do we

    def _on_udp_reply(self, up: socket.socket, addr: tuple) -> None:
        assert self._listener is not None
        try:
            data = up.recv(65535)
        except OSError:
            return  # ICMP port unreachable from the container shows up here; nothing to relay
        self._udp[addr] = (up, time.monotonic())
        try:
            self._listener.sendto(data, addr)
        except OSError:
            pass

    def _expire_udp(self) -> None:
        now = time.monotonic()
        for addr, (up, last) in list(self._udp.items()):
            if now - last > UDP_IDLE_SECONDS:
                self._sel.unregister(up)
                up.close()
                del self._udp[addr]
