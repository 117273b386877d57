"""`labtui exec` as a program of its own: `python -m engine.exec_main [OPTIONS] CONTAINER COMMAND...`.

engine/exec.py starts a process inside a running container; it needs a single-threaded caller
(setns and fork). Callers with threads (a supervisor running health checks, the terminal app)
start this program instead, as the supervisor's exec'd form is `python -m engine.supervisor`;
command_line() builds its argv. It takes `labtui exec`'s options (-d -i -t -e -u -w), prints an
error as the CLI does ("labtui: ..." on stderr) and exits with docker's codes (125 engine error,
126 cannot execute, 127 not found, else the command's own).

exec_in() is the foreground part of every exec, here and in `labtui exec`: start the command,
relay the terminal (-t) or forward signals to it, and wait for its exit code.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import selectors
import signal
import struct
import sys
import termios
import time
import tty as tty_mod

from engine import exec as exec_
from engine.errors import InvalidArgument, command_exit


def terminal_size(fd: int | None = None) -> tuple[int, int] | None:
    """(rows, cols) of fd's terminal, else of the first of stdin, stdout, stderr that is one."""
    for cand in ((fd,) if fd is not None else (0, 1, 2)):
        try:
            sz = os.get_terminal_size(cand)
            return sz.lines, sz.columns
        except OSError:
            continue
    return None


FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def exec_in(ref: str, argv: list[str], *, tty: bool = False, interactive: bool = False, detach: bool = False,
            env: list[str] | None = None, user: str | None = None, workdir: str | None = None,
            winsize: tuple[int, int] | None = None) -> int:
    """`labtui exec`: start the command, relay the terminal (-t) or let it use ours, and return its
    exit code (0 at once with -d). Raises EngineError (125) / ExecError (126, 127)."""
    if tty and interactive and not detach and not os.isatty(0):
        raise InvalidArgument("the input device is not a TTY")
    if tty and winsize is None:
        winsize = terminal_size()
    req = exec_.ExecRequest(list(argv), tty=tty, interactive=interactive, detach=detach, env=list(env or []),
                            user=user, workdir=workdir, winsize=winsize)
    proc = exec_.start(ref, req)
    if detach:
        return 0
    if proc.master is not None:
        return relay_pty(proc, interactive)
    saved = {s: signal.getsignal(s) for s in FORWARDED}
    try:
        # Without a terminal the command is in its own session: a Ctrl-C on our terminal reaches
        # only us, and we pass it on (docker's --sig-proxy, as `run` does).
        for s in FORWARDED:
            signal.signal(s, lambda signum, frame: proc.signal(signum))
        return proc.wait()
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


def relay_pty(proc: exec_.ExecProcess, interactive: bool) -> int:
    """Copy between our terminal (raw mode) and the pty master until the command exits. Ctrl-C is
    then just a byte: the container's pty turns it into SIGINT for the command's foreground job.
    SIGWINCH on our side becomes TIOCSWINSZ on the master, which signals SIGWINCH inside."""
    master = proc.master
    assert master is not None and proc.pid is not None
    stdin_fd = 0 if interactive else None
    saved_tc = None
    if stdin_fd is not None and os.isatty(stdin_fd):
        saved_tc = termios.tcgetattr(stdin_fd)
        tty_mod.setraw(stdin_fd)

    def on_winch(signum, frame) -> None:
        ws = terminal_size()
        if ws:
            try:
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", ws[0], ws[1], 0, 0))
            except OSError:
                pass

    old_winch = signal.signal(signal.SIGWINCH, on_winch)
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    for s in old:
        signal.signal(s, lambda signum, frame: proc.signal(signum))
    sel = selectors.DefaultSelector()
    pidfd = os.pidfd_open(proc.pid)
    sel.register(master, selectors.EVENT_READ, "master")
    sel.register(pidfd, selectors.EVENT_READ, "exit")
    if stdin_fd is not None:
        try:
            sel.register(stdin_fd, selectors.EVENT_READ, "stdin")
        except (ValueError, PermissionError, OSError):
            stdin_fd = None
    out_ok = True
    master_open = True
    try:
        done = False
        while not done:
            for key, _ in sel.select():
                if key.data == "master":
                    data = _read_master(master)
                    if data is None:
                        sel.unregister(master)
                        master_open = False
                        continue
                    out_ok = out_ok and _write_all(1, data)
                elif key.data == "stdin":
                    data = os.read(stdin_fd, 65536)
                    if not data:
                        sel.unregister(stdin_fd)
                        continue
                    _write_all(master, data)
                else:
                    done = True
        # The command is gone, but what it wrote last may still be on its way through the pty:
        # read until EIO (no slave left), or until it goes quiet (a background job keeps the
        # slave open and must not hold us).
        deadline = time.monotonic() + 1.0
        while out_ok and master_open and time.monotonic() < deadline:
            if not select.select([master], [], [], 0.1)[0]:
                break
            data = _read_master(master)
            if data is None:
                break
            out_ok = _write_all(1, data)
    finally:
        sel.close()
        os.close(pidfd)
        os.close(master)
        proc.master = None
        if saved_tc is not None:
            termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved_tc)
        signal.signal(signal.SIGWINCH, old_winch)
        for s, h in old.items():
            signal.signal(s, h)
    return proc.wait()


def _read_master(master: int) -> bytes | None:
    try:
        data = os.read(master, 65536)
    except BlockingIOError:
        raise
    except OSError as e:  # EIO: every slave fd is closed
        if e.errno == errno.EIO:
            return None
        raise
    return data or None


def _write_all(fd: int, data: bytes) -> bool:
    try:
        while data:
            n = os.write(fd, data)
            data = data[n:]
        return True
    except BlockingIOError:
        return True
    except OSError:
        return False


def command_line(ref: str, argv: list[str], *, tty: bool = False, interactive: bool = False,
                 detach: bool = False, env: list[str] | None = None, user: str | None = None,
                 workdir: str | None = None) -> list[str]:
    """The argv of the same exec as a program, for callers with threads:

        subprocess.run(engine.exec_main.command_line(name, ["sh"], tty=True, interactive=True))
    """
    out = [sys.executable, "-m", "engine.exec_main"]
    if detach:
        out.append("-d")
    if interactive:
        out.append("-i")
    if tty:
        out.append("-t")
    for item in env or []:
        out += ["-e", item]
    if user:
        out += ["-u", user]
    if workdir:
        out += ["-w", workdir]
    return out + [ref, "--", *argv]


def parse_args(args: list[str]):
    """`labtui exec`'s options (labtui/cli/living.py declares the same for the CLI)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m engine.exec_main",
                                description="run a command in a running container")
    p.add_argument("-d", "--detach", action="store_true", help="run the command in the background")
    p.add_argument("-i", "--interactive", action="store_true", help="keep STDIN open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V", help="set an environment variable")
    p.add_argument("-u", "--user", metavar="USER[:GROUP]", help="user name or uid (and group)")
    p.add_argument("-w", "--workdir", metavar="DIR", help="working directory inside the container")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER, help="command and arguments")
    return p.parse_args(args)


def main(args: list[str] | None = None) -> int:
    a = parse_args(sys.argv[1:] if args is None else args)
    command = a.command[1:] if a.command[:1] == ["--"] else list(a.command)

    def body() -> int:
        if not command:
            raise InvalidArgument("exec needs a command: labtui exec [OPTIONS] CONTAINER COMMAND [ARG...]")
        return exec_in(a.container, command, tty=a.tty, interactive=a.interactive, detach=a.detach,
                       env=a.env, user=a.user, workdir=a.workdir)

    return command_exit(body)


if __name__ == "__main__":
    sys.exit(main())
