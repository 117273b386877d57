"""The CRIU binary: finding it, checking it, running it, and its command lines (docs/checkpoint.md).

Both sides of a checkpoint use this: the caller's process runs `criu dump` (caller.py), the
supervisor runs `criu restore` (in_supervisor.py, through the child in criu_child.py).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from engine.checkpoint.store import checkpoint_dir
from engine.errors import EngineError
from engine.state import Container
from engine.steps import Recorder

CRIU_ENV = "LABTUI_CRIU"
CRIU_MIN_MAJOR = 3
FALLBACK_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
# The container has its own network namespace, dumped whole: its TCP connections (over its
# loopback) are restored in repair mode; file locks held by its processes are restored too.
SOCKETS_AND_LOCKS = ("--tcp-established", "--file-locks")
# Errors CRIU logs on every run here and that decide nothing: a probe of RLIMIT_NOFILE, and of
# /dev/net/tun from inside the container's devices cgroup at restore.
BENIGN = ("rlimit:", "Unable to create tun")
INSTALL_HINT = "run scripts/install-criu (it builds CRIU 4 from Debian's source package)"


def criu_path() -> str | None:
    """$LABTUI_CRIU, else the first CRIU >= 4 among `criu` on PATH and the usual sbin directories
    (scripts/install-criu puts one in /usr/local/sbin next to an older distribution one in
    /usr/sbin, and sudo's or CI's PATH may lack either), else the first criu found."""
    env = os.environ.get(CRIU_ENV)
    if env:
        return env if os.access(env, os.X_OK) else None
    found = [shutil.which("criu")] + [os.path.join(d, "criu") for d in FALLBACK_DIRS]
    cands = list(dict.fromkeys(os.path.realpath(p) for p in found if p and os.access(p, os.X_OK)))
    for p in cands:
        try:
            if _major(criu_version(p)) >= 4:
                return p
        except EngineError:
            continue
    return cands[0] if cands else None


def _major(version: str) -> int:
    head = version.split(".")[0]
    return int(head) if head.isdigit() else 0


def criu_reason(output: str) -> str:
    """CRIU's own words: its Error lines without the source location, else its last line."""
    errs = [re.sub(r"^.*?Error \([^)]*\):\s*", "", ln.strip()) for ln in output.splitlines() if "Error (" in ln]
    errs = [e for e in errs if e and not e.startswith(BENIGN)]
    if errs:
        return "; ".join(dict.fromkeys(errs))
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def criu_version(criu: str) -> str:
    try:
        out = subprocess.run([criu, "--version"], capture_output=True, text=True, timeout=10).stdout
    except OSError as e:
        raise EngineError(f"checkpoint needs CRIU, and {criu} cannot run: {e.strerror}") from None
    m = re.search(r"Version:\s*([0-9][0-9.]*)", out)
    return m.group(1) if m else "unknown"


def require_criu(rec: Recorder | None = None, check: bool = True) -> tuple[str, str]:
    """The CRIU binary and its version, after `criu check` passed; else an EngineError that
    carries CRIU's own reason (e.g. bookworm's 3.17 on a newer kernel: "vdso: Failed to fill self
    vdso symtable")."""
    criu = criu_path()
    if criu is None:
        where = f"${CRIU_ENV}={os.environ[CRIU_ENV]} is not executable" if os.environ.get(CRIU_ENV) \
            else "no criu binary found"
        raise EngineError(f"checkpoint/restore needs CRIU: {where}; {INSTALL_HINT}")
    version = criu_version(criu)
    if _major(version) < CRIU_MIN_MAJOR:
        raise EngineError(f"checkpoint/restore needs CRIU >= {CRIU_MIN_MAJOR}, {criu} is {version}; {INSTALL_HINT}")
    if not check:
        return criu, version
    argv = [criu, "check"]
    rec = rec or Recorder(None, lambda r: None)
    try:
        with rec.step("checkpoint", "criu check", target=criu, value=version, shell=shlex.join(argv)) as s:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            if p.returncode != 0:
                s["result_override"] = "failed"
                raise CheckFailed(criu_reason(p.stdout + p.stderr))
    except CheckFailed as e:
        raise EngineError(f"CRIU cannot checkpoint on this host: `criu check` says: {e} "
                          f"(CRIU {version} at {criu}; kernel {os.uname().release}); {INSTALL_HINT}") from None
    except subprocess.TimeoutExpired:
        raise EngineError(f"`{criu} check` did not answer within 60 s") from None
    return criu, version


class CheckFailed(Exception):
    """CRIU answered with a failure; the message is its reason (criu_reason)."""


def log_reason(log: Path, output: str) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        text = ""
    return criu_reason(text + "\n" + output)


def run_criu(rec: Recorder, argv: list[str], log: Path, *, op: str, target: str, value: str, what: str,
              **popen: object) -> None:
    shell = shlex.join(argv)
    try:
        with rec.step("checkpoint", op, target=target, value=value, shell=shell) as s:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=300, **popen)  # type: ignore[call-overload]
            if p.returncode != 0:
                s["result_override"] = "failed"
                s["criu_exit"] = p.returncode
                raise CheckFailed(log_reason(log, p.stdout + p.stderr))
    except CheckFailed as e:
        raise EngineError(f"{what}: {op} failed: {e} (full log: {log})") from None
    except subprocess.TimeoutExpired:
        raise EngineError(f"{what}: {op} did not finish within 300 s (log: {log})") from None


# ---- criu restore's command line -----------------------------------------------------------------

class RestorePlan:
    """What `criu restore` is given: its argv, and the fds it must inherit."""

    def __init__(self, argv: list[str], pass_fds: list[int], log: Path, pidfile: Path) -> None:
        self.argv = argv
        self.pass_fds = pass_fds
        self.log = log
        self.pidfile = pidfile


def build_restore(c: Container, manifest: dict, criu: str, stdio: dict[str, int]) -> RestorePlan:
    """criu restore's command line. stdio: role -> the fd the new supervisor made for the
    container's side of that stream (its new pipe end)."""
    d = checkpoint_dir(c, manifest["name"])
    pidfile = d / "restore.pid"
    try:
        pidfile.unlink()
    except FileNotFoundError:
        pass
    argv = [criu, "restore", "--images-dir", str(d), "--log-file", "restore.log", "-v4",
            "--root", str(c.dir / "merged"), "--restore-detached", "--restore-sibling",
            "--pidfile", str(pidfile), "--manage-cgroups=soft", *SOCKETS_AND_LOCKS]
    pass_fds: list[int] = []
    for key, m in manifest["external_mounts"].items():
        argv += ["--external", f"mnt[{key}]:{m['host']}"]
    for role, pipe in manifest["stdio"].items():
        fd = stdio.get(role)
        if fd is None:
            raise EngineError(f"cannot restore: the checkpoint has a {role} pipe and the new supervisor none")
        argv += ["--inherit-fd", f"fd[{fd}]:{pipe}"]
        pass_fds.append(fd)
    for key, f in manifest["external_files"].items():
        fd = os.open(f["path"], os.O_PATH | os.O_CLOEXEC)
        argv += ["--inherit-fd", f"fd[{fd}]:{key}"]
        pass_fds.append(fd)
    return RestorePlan(argv, pass_fds, d / "restore.log", pidfile)
