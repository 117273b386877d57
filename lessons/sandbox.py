"""Where lesson scripts run: `labtui` on PATH, `sh -e -c`, and a private state for replays and grading.

A lesson's setup and solve scripts are shell with `labtui` meaning this tree's command line (the
wrapper labtui_env() puts first on PATH), in whatever state the caller has: the student's own
(LABTUI_ROOT etc. inherited) or a PrivateState.

PrivateState is a fresh labtui for one replay or one graded transcript: its own LABTUI_ROOT (a
temp dir), cgroup parent (labtui-grade-XXXXXX) and default bridge (ltgXXXXXX, 9 characters: a
link name holds 15). Nothing of the student's or the real install's state is visible from it,
two of them run side by side (grade -j N), and leaving it removes everything it made: containers,
networks, the cgroup parent, mounts and the temp dir, also after a failure, ^C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lessons.recorder import QUIET_ENV

TREE = Path(__file__).resolve().parents[1]  # the worktree whose labtui the scripts run
SANDBOX_ENV = "LABTUI_SANDBOX_DIR"  # where private states go (default /var/tmp: /tmp may be a small tmpfs)
SCRIPT_TIMEOUT = 300.0  # seconds a setup or solve script may take
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STATE_VARS = ("LABTUI_ROOT", "LABTUI_CGROUP_PARENT", "LABTUI_DEFAULT_BRIDGE", "LABTUI_HELPER")

WRAPPER = """#!/bin/sh
# `labtui` for lesson scripts: this tree's command line, in the caller's state (lessons/sandbox.py).
export PYTHONPATH={tree}${{PYTHONPATH:+:$PYTHONPATH}}
exec {python} -P -m labtui.cli "$@"  # -P: the working directory (a lesson folder) never shadows the tree
"""


def sandbox_dir() -> str:
    return os.environ.get(SANDBOX_ENV) or "/var/tmp"


def _lib_dir(env: dict) -> Path:
    """engine.paths.lib_dir() for another environment (the one a script will get)."""
    root = env.get("LABTUI_ROOT")
    return Path(root, "lib") if root else Path("/var/lib/labtui")


def wrapper_path(env: dict | None = None) -> Path:
    return _lib_dir(os.environ if env is None else env) / "lessons" / "bin" / "labtui"


def _ensure_wrapper(path: Path) -> None:
    text = WRAPPER.format(tree=_sh_quote(str(TREE)), python=_sh_quote(sys.executable))
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".labtui.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.rename(tmp, path)  # atomic: a script running meanwhile sees the old wrapper or the new


def _sh_quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


def labtui_env(base: dict | None = None, *, quiet: bool = False) -> dict:
    """base (default: this process's environment) with a `labtui` wrapper first on PATH that runs
    this tree's CLI with the same state. quiet: the lesson transcript does not record the commands
    (setup scripts: a grade re-runs the setup itself, from the lesson's file)."""
    env = dict(os.environ if base is None else base)
    wrapper = wrapper_path(env)
    _ensure_wrapper(wrapper)
    env["PATH"] = f"{wrapper.parent}:{env.get('PATH') or DEFAULT_PATH}"
    env.setdefault("LABTUI_HELPER", "0")  # no warm helper to leave behind: the wrapper runs the CLI itself
    if quiet:
        env[QUIET_ENV] = "1"
    else:
        env.pop(QUIET_ENV, None)
    return env


@dataclass
class ScriptResult:
    exit_code: int
    output: str  # stdout and stderr, interleaved
    seconds: float


def run_script(script: str, *, env: dict | None = None, cwd: Path | str | None = None,
               timeout: float = SCRIPT_TIMEOUT) -> ScriptResult:
    """`sh -e -c SCRIPT` in its own process group, output to a file (a background job that keeps
    stdout open must not hang us). The group is killed when the script ends: background jobs it
    left (a `labtui logs -f &`) die with it; containers do not (their supervisors have their own
    sessions)."""
    env = labtui_env() if env is None else env
    t0 = time.monotonic()
    with tempfile.TemporaryFile(prefix="labtui-script-", dir=sandbox_dir()) as out:
        proc = subprocess.Popen(["sh", "-e", "-c", script], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = 124  # timeout(1)'s code
            out.write(f"\n[the script ran longer than {timeout:.0f} s and was killed]\n".encode())
        finally:
            _kill_group(proc)
        out.seek(0)
        text = out.read().decode(errors="replace")
    return ScriptResult(rc, text, time.monotonic() - t0)


def run_labtui(argv: list[str], *, env: dict | None = None, cwd: Path | str | None = None,
               timeout: float = SCRIPT_TIMEOUT) -> ScriptResult:
    """One labtui command (a recorded one, in a grade) through the wrapper; stdin is empty."""
    env = labtui_env() if env is None else env
    t0 = time.monotonic()
    with tempfile.TemporaryFile(prefix="labtui-cmd-", dir=sandbox_dir()) as out:
        proc = subprocess.Popen([str(wrapper_path(env)), *argv], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)  # a `logs -f` ends as at ^C, and says so
            try:
                rc = proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                rc = 124
        finally:
            _kill_group(proc)
        out.seek(0)
        text = out.read().decode(errors="replace")
    return ScriptResult(rc, text, time.monotonic() - t0)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


# ---- the private state --------------------------------------------------------------------------

def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like ^C


class PrivateState:
    """with PrivateState() as ps: ... : this process (and every script and command it starts)
    uses a fresh labtui state; on leaving, everything made in it is removed."""

    def __init__(self, tag: str | None = None) -> None:
        self.tag = tag or secrets.token_hex(3)
        self.root = Path()
        self.env_vars: dict[str, str] = {}
        self._saved: dict[str, str | None] = {}
        self._old_term = None
        self.problems: list[str] = []  # what the cleanup could not remove (reported, never raised)

    def __enter__(self) -> PrivateState:
        self.root = Path(tempfile.mkdtemp(prefix=f"labtui-grade-{self.tag}-", dir=sandbox_dir()))
        self.env_vars = {"LABTUI_ROOT": str(self.root), "LABTUI_CGROUP_PARENT": f"labtui-grade-{self.tag}",
                         "LABTUI_DEFAULT_BRIDGE": f"ltg{self.tag}", "LABTUI_HELPER": "0"}
        self._saved = {k: os.environ.get(k) for k in STATE_VARS}
        os.environ.update(self.env_vars)
        if threading.current_thread() is threading.main_thread():
            self._old_term = signal.signal(signal.SIGTERM, _interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        main = threading.current_thread() is threading.main_thread()
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None  # a 2nd ^C must not cut it short
        try:
            self.cleanup()
        finally:
            for k, v in self._saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            if main:
                signal.signal(signal.SIGINT, old_int)
                if self._old_term is not None:
                    signal.signal(signal.SIGTERM, self._old_term)

    def env(self, *, quiet: bool = False) -> dict:
        return labtui_env(quiet=quiet)

    def cleanup(self) -> None:
        """Every step runs, whatever the one before did; if one could not remove everything, the
        directory is kept (and named in problems), so what is left can be found."""
        for step in (self._remove_containers, self._remove_networks, self._remove_cgroups):
            try:
                step()
            except Exception as e:  # noqa: BLE001
                self.problems.append(f"{step.__name__.strip('_').replace('_', ' ')}: {e}")
        if self.problems:
            self.problems.append(f"kept {self.root} to show what is left")
            return
        try:
            self._remove_dir()
        except Exception as e:  # noqa: BLE001
            self.problems.append(f"remove dir: {e}")

    def _remove_containers(self) -> None:
        from engine import api, state

        for c in state.all_containers():
            try:
                api.remove(c.id, force=True)
            except Exception as e:  # noqa: BLE001
                self.problems.append(f"container {c.name}: {e}")

    def _remove_networks(self) -> None:
        from engine import paths

        if (paths.lib_dir() / "networks").exists():
            from engine import network

            for net in network.list_networks():
                network.remove_network(net["name"], lambda name: [], allow_default=True)
        bridge = self.env_vars["LABTUI_DEFAULT_BRIDGE"]
        if os.path.exists(f"/sys/class/net/{bridge}"):
            raise RuntimeError(f"the bridge {bridge} is still there")

    def _remove_cgroups(self) -> None:
        from engine import cgroups
        from engine.steps import null_recorder

        deadline = time.monotonic() + 5
        while True:  # a killed container's last tasks may still be leaving its cgroup
            cgroups.remove_empty_parents(null_recorder())
            left = self._cgroup_dirs()
            if not left:
                return
            for d in left:  # a container's empty cgroup that its removal missed: rmdir, deepest first
                for sub, _, _ in sorted(os.walk(d), key=lambda w: -len(w[0])):
                    with contextlib.suppress(OSError):
                        os.rmdir(sub)
            if time.monotonic() > deadline:
                raise RuntimeError(f"cgroups still there: {', '.join(left)}")
            time.sleep(0.1)

    def _cgroup_dirs(self) -> list[str]:
        """Our cgroup parent in every hierarchy where it still exists."""
        from engine import cgroups

        layout = cgroups.host_layout()
        mounts = set(layout.v1.values()) | ({layout.v2_mount} if layout.v2_mount else set())
        parent = self.env_vars["LABTUI_CGROUP_PARENT"]
        return sorted(f"{m}/{parent}" for m in mounts if os.path.isdir(f"{m}/{parent}"))

    def _remove_dir(self) -> None:
        from engine import procfs, syscalls

        root = str(self.root)
        mounts = [m["mountpoint"] for m in procfs.mountinfo() if m.get("mountpoint", "").startswith(root + "/")]
        for mp in sorted(mounts, key=len, reverse=True):  # deepest first
            syscalls.umount2(mp, syscalls.MNT_DETACH)
        left = [m["mountpoint"] for m in procfs.mountinfo() if m.get("mountpoint", "").startswith(root + "/")]
        if left:  # never rmtree through a mount: it would delete what it shows
            raise RuntimeError(f"still mounted, {self.root} kept: {', '.join(left)}")
        shutil.rmtree(self.root)
