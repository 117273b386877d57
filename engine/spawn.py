"""Starting a container's supervisor (start and restore), and reading the first word it reports.

The supervisor (engine/supervisor.py) is the container's parent for its whole life, in a session
of its own. It reports one JSON line on a status pipe once the container's command runs (or why
it could not start): {"t": "started", "pid": N} or {"t": "error", "message": ..., "exit_code": N}.
"""

from __future__ import annotations

import json
import os
import sys

from engine import prefork
from engine.errors import EngineError
from engine.state import Container

# Descriptors of the calling process that a supervisor forked from it must not keep open, such as
# the connection of the client a labtui helper's worker serves: engine.prefork's very list, set
# through prefork.close_in_supervisor (the one hook of a process that imported the engine ahead
# of time; the engine itself never sets it).
FORK_CLOSE_FDS: list[int] = prefork.fork_close_fds()


def spawn_supervisor(cid: str, client, winsize, container: Container | None = None) -> tuple[int, int]:
    """Start the container's supervisor in its own session; returns (status fd, its pid).

    Forking without exec is the fast path (no interpreter start-up) and is safe only when the
    caller has a single thread; the terminal app has several, so it gets fork+exec.
    """
    # A process that never imported threading has no threads to worry about (and need not pay
    # for the import).
    threading = sys.modules.get("threading")
    r, w = os.pipe2(os.O_CLOEXEC)
    spawner = prefork.supervisor_spawner()
    pid = spawner(cid, w, client, winsize) if spawner is not None else None
    if pid:
        pass  # a process that was waiting for this took it over (labtui/launcher/spare.py)
    elif threading is None or threading.active_count() == 1:
        pid = os.fork()
        if pid == 0:
            code = 125
            try:
                os.close(r)
                for fd in FORK_CLOSE_FDS:
                    os.close(fd)
                from engine import supervisor

                supervisor.become_supervisor()
                code = supervisor.run(cid, w, client, winsize, container)
            finally:
                os._exit(code)
    else:
        import subprocess

        args = [sys.executable, "-m", "engine.supervisor", cid, str(w)]
        fds = [w]
        if client is not None:
            args.append(str(client.fileno()))
            fds.append(client.fileno())
        elif winsize:
            args.append("-")
        if winsize:
            args += [str(winsize[0]), str(winsize[1])]
        pid = subprocess.Popen(args, pass_fds=fds, start_new_session=True,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL).pid
        reap_later(pid)
    os.close(w)
    return r, pid


def reap_later(pid: int) -> None:
    """Wait for an exec'd supervisor in a thread (the caller has threads already), so it leaves
    no zombie behind."""
    import threading

    def reap() -> None:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass

    threading.Thread(target=reap, daemon=True).start()


def read_status(fd: int, c: Container) -> dict:
    """The supervisor's first report (one JSON line); closes fd."""
    buf = b""
    try:
        while b"\n" not in buf:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
    finally:
        os.close(fd)
    if not buf.strip():
        raise EngineError(f"the supervisor of {c.name} exited during start; see {c.dir}/supervisor.log")
    return json.loads(buf.split(b"\n")[0])
