"""The attach protocol between a client (CLI, app) and a container's supervisor.

A stream of frames over a Unix socket: one type byte, a 4-byte big-endian length, the payload.
The supervisor owns the container's stdio; clients come and go.
"""

from __future__ import annotations

import os
import socket
import struct

STDIN, STDOUT, STDERR, RESIZE, STDIN_EOF, EXIT = range(6)
_HDR = struct.Struct(">BI")


def pack(kind: int, payload: bytes = b"") -> bytes:
    return _HDR.pack(kind, len(payload)) + payload


class FrameReader:
    """Incremental frame parser: feed bytes, get complete (kind, payload) frames."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buf += data
        out = []
        while len(self.buf) >= _HDR.size:
            kind, n = _HDR.unpack_from(self.buf)
            if len(self.buf) < _HDR.size + n:
                break
            out.append((kind, self.buf[_HDR.size : _HDR.size + n]))
            self.buf = self.buf[_HDR.size + n :]
        return out


def send(sock: socket.socket, kind: int, payload: bytes = b"") -> None:
    sock.sendall(pack(kind, payload))


def resize_payload(rows: int, cols: int) -> bytes:
    return struct.pack(">HH", rows, cols)


def parse_resize(payload: bytes) -> tuple[int, int]:
    return struct.unpack(">HH", payload[:4])


def listen_unix(path: str, kind: int = socket.SOCK_STREAM, backlog: int = 8) -> socket.socket:
    """A listening Unix socket at path (a stale one there is replaced), for root only: 0600, and
    connecting to a Unix socket needs write permission on it (unix(7))."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX, kind)
    srv.bind(path)
    os.chmod(path, 0o600)
    srv.listen(backlog)
    return srv
