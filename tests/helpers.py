"""Helpers for tests: run the real CLI, read the kernel, clean up."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LABTUI = [sys.executable, "-m", "labtui.cli"]
if os.environ.get("LABTUI_TEST_VIA") == "launcher":  # the Python launcher's way, through the helper
    LABTUI = [sys.executable, "-SI", str(Path(__file__).resolve().parents[1] / "labtui" / "launcher" / "launch.py")]
elif os.environ.get("LABTUI_TEST_VIA") == "installed":  # the C launcher scripts/install built from this tree
    LABTUI = ["/usr/local/bin/labtui"]


def labtui(*args: str, check: bool = True, timeout: float = 60, input: str | None = None,
           env: dict | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(LABTUI + list(args), capture_output=True, text=True, timeout=timeout,
                       input=input, env=env, stdin=None if input is not None else subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError(f"labtui {' '.join(args)} exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def run_d(*args: str) -> str:
    """`labtui run -d ...`; returns the container ID."""
    return labtui("run", "-d", *args).stdout.strip()


def inspect(ref: str) -> dict:
    return json.loads(labtui("inspect", ref).stdout)[0]


def ps_json(all_: bool = True) -> list[dict]:
    out = labtui("ps", "--format", "json", *(["-a"] if all_ else [])).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def lib() -> Path:
    return Path(os.environ["LABTUI_ROOT"]) / "lib"


def run_dir() -> Path:
    return Path(os.environ["LABTUI_ROOT"]) / "run"


def wait_for(pred, timeout: float = 10, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def remove_all() -> None:
    for c in ps_json(True):
        labtui("rm", "-f", c["Id"], check=False)


def our_processes() -> list[tuple[int, str]]:
    """labtui's supervisors, inits, helpers and their workers started under this test run's LABTUI_ROOT (other labtui
    users of the machine, a real install included, are not ours to judge)."""
    mark = f"LABTUI_ROOT={os.environ['LABTUI_ROOT']}".encode()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm in ("labtui-sup", "labtui-init", "labtui-helper", "labtui-worker", "labtui-spare"):
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    if mark not in f.read().split(b"\0"):
                        continue
            except OSError:
                continue
            out.append((int(name), comm))
    return out


def force_cleanup() -> None:
    """Last resort after a failed run: kill our processes so nothing lingers on the machine."""
    for pid, _ in our_processes():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def host_mounts() -> str:
    with open("/proc/self/mountinfo") as f:
        return f.read()


def proc_status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def remove_networks() -> None:
    """Every network of this test run, the default one included (its bridge too)."""
    if not (lib() / "networks").exists():
        return
    from engine import network

    for net in network.list_networks():
        try:
            network.remove_network(net["name"], lambda name: [], allow_default=True)
        except Exception:
            pass


def helper_pid(root: str | None = None) -> int | None:
    """The PID of the launcher's warm helper for this state directory, if one runs."""
    lock = Path(root or os.environ["LABTUI_ROOT"]) / "run" / "helper.lock"
    try:
        pid = int(lock.read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    return pid if pid and Path(f"/proc/{pid}").exists() else None


@contextlib.contextmanager
def own_state_dir(prefix: str = "labtui-helper-"):
    """A LABTUI_ROOT of the test's own; afterwards its helper is stopped and it is removed."""
    root = tempfile.mkdtemp(prefix=prefix, dir="/var/tmp")
    try:
        yield root
    finally:
        from labtui.launcher import helper as helper_mod

        os.environ["LABTUI_ROOT"], saved = root, os.environ["LABTUI_ROOT"]
        try:
            helper_mod.stop()
        finally:
            os.environ["LABTUI_ROOT"] = saved
        shutil.rmtree(root, ignore_errors=True)
