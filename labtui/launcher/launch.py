"""The `labtui` command's first few milliseconds: hand the command to the warm helper if one runs.

Python needs ~9 ms to start and labtui ~30 ms more to import the engine, which is most of what a
`labtui run --rm busybox true` costs. So the installed `labtui` command (scripts/install writes it
with `python3 -SI`: no site-packages, nothing but this module) first tries the helper's socket,
$RUN/helper.sock (labtui/launcher/helper.py: a process that imported everything once and forks one worker
per command). It sends the arguments, environment, working directory and umask, and its own
stdin, stdout and stderr (SCM_RIGHTS, unix(7)); the worker runs the very same `labtui.cli` code on
those descriptors. Signals this process receives are passed on to the worker, and the worker's
exit status comes back and becomes ours (a death by signal too).

When there is no helper (first use, not root, LABTUI_HELPER=0, or a helper whose code is older
than the files on disk) the command runs here, the ordinary way, and starts a helper for the
next command. A helper that refuses this caller (confined otherwise than it: trust.py) also
means the ordinary way, here, in the caller's own world, and no new helper. Only the standard
library's C modules are imported on the fast path.
"""

import _signal
import _socket
import posix  # not os: with -S nothing has imported os yet, and it costs ~1 ms
import sys

PROTOCOL = b"labtui-helper-1"
# The terminal app and the web server keep running for hours with threads of their own: they
# gain nothing from the helper.
LOCAL_COMMANDS = {"serve"}
REFUSED: list = []  # set when the helper refused this caller (labtui/launcher/trust.py)
FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1,
             _signal.SIGUSR2, _signal.SIGWINCH, _signal.SIGTSTP, _signal.SIGCONT)


def run_dir() -> str:
    """engine.paths.run_dir(), without importing pathlib."""
    root = posix.environ.get(b"LABTUI_ROOT")
    return root.decode(sys.getfilesystemencoding(), "surrogateescape") + "/run" if root else "/run/labtui"


def socket_path() -> str:
    return run_dir() + "/helper.sock"


def wants_helper(argv: list) -> bool:
    if not argv or posix.environ.get(b"LABTUI_HELPER", b"1") == b"0" or posix.geteuid() != 0:
        return False
    first = _command(argv)
    return first is not None and first not in LOCAL_COMMANDS


def _command(argv: list) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def _fsencode(s: str) -> bytes:
    return s.encode(sys.getfilesystemencoding(), "surrogateescape")


def request(argv: list) -> bytes:
    """NUL-separated: protocol, cwd, umask, argc, argv..., then KEY=VALUE environment entries."""
    mask = posix.umask(0o022)
    posix.umask(mask)
    try:
        cwd = posix.getcwdb()
    except OSError:  # a removed working directory
        cwd = b"/"
    env = [k + b"=" + v for k, v in posix.environ.items()]
    return b"\0".join([PROTOCOL, cwd, b"%d" % mask, b"%d" % len(argv), *map(_fsencode, argv), *env])


def stdio_fds() -> list:
    """0, 1 and 2, with /dev/null standing in for any that is closed (SCM_RIGHTS needs real fds)."""
    fds = []
    for fd in (0, 1, 2):
        try:
            posix.fstat(fd)
            fds.append(fd)
        except OSError:
            fds.append(posix.open("/dev/null", posix.O_RDWR))
    return fds


def via_helper(argv: list):
    """The command's exit code from a helper's worker, or None when no helper took it."""
    fds = stdio_fds()  # before the socket: a closed 0 must not become the socket
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    try:
        s.connect(socket_path())
    except OSError:
        s.close()
        return None
    pending = []
    worker = 0

    def forward(signum: int, frame: object) -> None:
        if not worker:
            pending.append(signum)
            return
        try:
            if signum == _signal.SIGTSTP:  # ^Z: the worker stops with us, and goes on with us
                stop_with_worker()
            else:
                posix.kill(worker, signum)
        except OSError:
            pass

    def stop_with_worker() -> None:
        """Stop the worker, then ourselves the default way. SIGCONT is held meanwhile to tell
        whether we stopped at all: in an orphaned process group (no job-control shell above it:
        setsid, nohup, a CI runner) the kernel discards SIGTSTP (POSIX; signal(7)), as it would
        for the command run the ordinary way; the worker must then go on too, or it stays
        stopped with no one to resume it. (labtui/launcher/launcher.c does the same.)"""
        cont = {_signal.SIGCONT}
        _signal.pthread_sigmask(_signal.SIG_BLOCK, cont)  # held pending; it still resumes us
        posix.kill(worker, _signal.SIGSTOP)
        _signal.signal(_signal.SIGTSTP, _signal.SIG_DFL)
        posix.kill(posix.getpid(), _signal.SIGTSTP)  # stopped here until SIGCONT, or discarded
        _signal.signal(_signal.SIGTSTP, forward)
        if _signal.SIGCONT not in _signal.sigpending():
            posix.kill(worker, _signal.SIGCONT)  # we never stopped
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, cont)  # a held SIGCONT is forwarded now

    saved = {}
    try:
        # Caught before the request goes (as launcher.c does): from then on a worker may be
        # running the command, and a signal must reach it, not end us without it.
        for sig in FORWARDED:
            saved[sig] = _signal.signal(sig, forward)
        fd_bytes = b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds)
        s.sendmsg([request(argv)], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd_bytes)])
        msg = s.recv(64)
    except OSError:
        msg = b""
    if msg[:1] != b"P":  # "S": the helper's code is stale; "R": refused; nothing: it went away
        s.close()
        if msg[:1] == b"R":
            REFUSED.append(True)  # a helper runs, but not for us (trust.py): starting another is useless
        # The command runs here after all: its signals are its own again, and one that came
        # meanwhile (^C during the hand-over) acts now.
        for sig, handler in saved.items():
            _signal.signal(sig, handler)
        try:
            for sig in pending:
                _signal.raise_signal(sig)
        except KeyboardInterrupt:  # ^C before the command began: it ends as ^C ends a command
            posix._exit(130)
        return None
    worker = int(msg[1:])
    for signum in pending:
        forward(signum, None)
    while True:
        msg = s.recv(64)  # interrupted by a forwarded signal, recv is resumed (PEP 475)
        if msg[:1] == b"X":
            return exit_code(int(msg[1:]))
        if not msg:
            posix.write(2, b"labtui: the helper process went away; run the command again\n")
            return 125


def exit_code(status: int) -> int:
    """The worker's wait status as our own: a worker killed by a signal kills us with it."""
    if posix.WIFSIGNALED(status):
        sig = posix.WTERMSIG(status)
        if sig not in (_signal.SIGKILL, _signal.SIGSTOP):  # these two have no handler to reset (EINVAL)
            _signal.signal(sig, _signal.SIG_DFL)
        posix.kill(posix.getpid(), sig)
        return 128 + sig
    return posix.waitstatus_to_exitcode(status)


def start_helper() -> None:
    """Start a helper in the background for the next command (it exits after a while idle)."""
    import os

    try:
        devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        # This launcher's own tree, whatever site-packages would find first (-I ignores
        # PYTHONPATH): the helper must run the code the command would have run.
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        code = f"import sys; sys.path.insert(0, {repo!r}); from labtui.launcher.helper import main; main()"
        os.posix_spawn(sys.executable, [sys.executable, "-I", "-c", code], os.environ,
                       setsid=True,
                       file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
                                     (os.POSIX_SPAWN_DUP2, devnull, 2)])
        os.close(devnull)
    except OSError:
        pass  # no helper: every command just takes the ordinary way


def _wants_network(argv: list) -> bool:
    """Whether `run` asks for a network of its own (--network NAME or --network=NAME, NAME not
    none or host). A guess from the words only: a wrong one costs an import, nothing else."""
    for i, a in enumerate(argv):
        if a in ("--network", "--net") and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(("--network=", "--net=")):
            value = a.split("=", 1)[1]
        else:
            continue
        return value not in ("none", "host") and not value.startswith("container:")
    return False


def run_here() -> None:
    """The ordinary way: import the CLI in this process (site-packages first, if -S left them out)."""
    argv = sys.argv[1:]
    if posix.geteuid() == 0 and _command(argv) in ("run", "start", "restart") \
            and "-h" not in argv and "--help" not in argv:
        from labtui.launcher import spare

        # Before site: the smaller this process is when it forks, the fewer pages the two of
        # them then copy on write.
        spare.prefork(_wants_network(argv))  # the supervisor-to-be imports its half on the other CPU
    if sys.flags.no_site:
        import site

        site.main()
    from labtui.cli.main import entry

    entry()


def main() -> None:
    argv = sys.argv[1:]
    if wants_helper(argv):
        code = via_helper(argv)
        if code is not None:
            posix._exit(code)
        if not REFUSED:
            start_helper()
    run_here()


if __name__ == "__main__":
    if sys.flags.no_site and __package__ in (None, ""):  # `python3 -SI labtui/launcher/launch.py ...`
        sys.path.insert(0, __file__.rsplit("/", 3)[0] if __file__.count("/") >= 3 else ".")
    main()
