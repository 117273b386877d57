"""The foreground side of `labtui run` (without -d): relay stdio to the container's supervisor.

The supervisor owns the container's stdio; this client only relays. For `run` the client's
socket is handed to the supervisor before the container starts (a socketpair), so not one byte
of early output can be missed. With -t the local terminal goes raw and its size follows along.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import sys
import termios
import tty

from engine import api, attach
from engine.errors import EngineError


def terminal_size() -> tuple[int, int] | None:
    try:
        sz = os.get_terminal_size(sys.stdout.fileno())
        return sz.lines, sz.columns
    except OSError:
        return None


def run_attached(c, opts) -> int:
    return _attached(c, opts.interactive, opts.tty, opts.autoremove)


def start_attached(c) -> int:
    cfg = c.config
    return _attached(c, cfg.get("interactive", False), cfg.get("tty", False), cfg.get("autoremove", False))


def _attached(c, interactive: bool, use_tty: bool, autoremove: bool) -> int:
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    winsize = terminal_size() if use_tty else None
    try:
        started = api.start(c, client=theirs, winsize=winsize)
    except EngineError:
        theirs.close()
        mine.close()
        if autoremove:
            _wait_removed(c)
        raise
    theirs.close()
    code = relay(mine, c, interactive, use_tty)
    if autoremove:
        # docker run --rm returns once the container is gone: the supervisor removes it, then
        # lets its clients go, so the end of our socket is the moment (its own exit comes later).
        _wait_eof(mine)
        if c.dir.exists():
            _wait_removed(c)
    mine.close()
    sup = getattr(started, "supervisor_pid", None)
    if sup:
        try:
            os.waitpid(sup, os.WNOHANG)  # no zombie if it is done already; else init adopts it
        except ChildProcessError:
            pass
    return code


def _wait_eof(sock: socket.socket) -> None:
    sock.settimeout(10)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def _wait_removed(c) -> None:
    import time

    for _ in range(500):
        if not c.dir.exists():
            return
        time.sleep(0.01)


def relay(sock: socket.socket, c, interactive: bool, use_tty: bool) -> int:
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "sock")
    stdin_fd = sys.stdin.fileno() if interactive else None
    if stdin_fd is not None:
        try:
            sel.register(stdin_fd, selectors.EVENT_READ, "stdin")
        except (ValueError, PermissionError, OSError):  # e.g. a regular file: send it whole
            data = sys.stdin.buffer.read()
            if data:
                attach.send(sock, attach.STDIN, data)
            attach.send(sock, attach.STDIN_EOF)
            stdin_fd = None
    saved = None
    if use_tty and stdin_fd is not None and os.isatty(stdin_fd):
        saved = termios.tcgetattr(stdin_fd)
        tty.setraw(stdin_fd)

        def on_winch(signum, frame) -> None:
            ws = terminal_size()
            if ws:
                try:
                    attach.send(sock, attach.RESIZE, attach.resize_payload(*ws))
                except OSError:
                    pass

        signal.signal(signal.SIGWINCH, on_winch)
    elif not use_tty:
        # docker's --sig-proxy: signals to the CLI go to the container.
        def proxy(signum, frame) -> None:
            try:
                api.kill(c.id, str(signum))
            except EngineError:
                pass

        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(s, proxy)
    reader = attach.FrameReader()
    out = sys.stdout.buffer
    err = sys.stderr.buffer
    try:
        while True:
            for key, _ in sel.select():
                if key.data == "stdin":
                    data = os.read(stdin_fd, 65536)
                    if data:
                        attach.send(sock, attach.STDIN, data)
                    else:
                        sel.unregister(stdin_fd)
                        attach.send(sock, attach.STDIN_EOF)
                    continue
                data = sock.recv(65536)
                if not data:
                    return 125  # the supervisor went away without an exit frame
                for kind, payload in reader.feed(data):
                    if kind == attach.STDOUT:
                        out.write(payload)
                        out.flush()
                    elif kind == attach.STDERR:
                        err.write(payload)
                        err.flush()
                    elif kind == attach.EXIT:
                        return int(payload)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved)
