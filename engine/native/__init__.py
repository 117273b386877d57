"""labtui's two small C programs, and how the engine finds them.

labtui-init (init.c) becomes the container's PID 1 once the command runs: tini's job (forward
signals, reap orphans, exit with the command's status) in a few pages instead of a Python
interpreter. labtui-monitor (monitor.c) is what the supervisor becomes while its container is
idle: it keeps writing the container's log and watches for anything that needs Python (a
client, the container's exit, a counter or audit record to report), then execs the Python
supervisor again (engine/idle.py). Both are built by scripts/build-native into bin/ beside this
file (scripts/install runs it); without them the engine keeps its Python versions.
"""

from __future__ import annotations

import os
from pathlib import Path

BIN = Path(__file__).resolve().parent / "bin"


def binary(name: str) -> str | None:
    """The built program's path, or None when it was not built (no C compiler) or
    LABTUI_NATIVE=0 asks for the Python versions (the A/B of bench/bench_idle.py)."""
    if os.environ.get("LABTUI_NATIVE") == "0":
        return None
    path = BIN / name
    return str(path) if os.access(path, os.X_OK) else None


def init_fd() -> int | None:
    """An O_PATH, close-on-exec descriptor of labtui-init, for PID 1 to fexecve(3) after
    pivot_root, where the host's path is out of its reach.

    Why the file is mode 0111 (scripts/build-native): execve(2) of a file its caller cannot
    read leaves the process non-dumpable from the first instruction (BINPRM_FLAGS_ENFORCE_NONDUMP
    in fs/exec.c), and PID 1 has no capability left to read it. So /proc/1/exe never opens for
    the container, and the host binary cannot be rewritten through it (CVE-2019-5736, where
    runc's own binary was). Not a memfd (runc's answer): CRIU 4.1 cannot restore a process whose
    executable is a memfd ("No entry for reg-file-ID"), and `labtui checkpoint` must keep working.
    """
    path = binary("labtui-init")
    if path is None:
        return None
    try:
        return os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return None
