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
        if comm in ("labtui-sup", "labtui-init", "labtui-helper", "labtui-worker", "labtui-spare", "labtui-oci-wait"):
            if _started_under_our_root(name, comm, mark):
                out.append((int(name), comm))
    return out


def _started_under_our_root(pid: str, comm: str, mark: bytes) -> bool:
    """Its environment names our LABTUI_ROOT; a container's init shows the container's environment
    instead (engine/proctitle.py), so for it: its root filesystem's layers are under our root."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            if mark in f.read().split(b"\0"):
                return True
        if comm == "labtui-init":
            with open(f"/proc/{pid}/mountinfo") as f:
                return f"{os.environ['LABTUI_ROOT']}/lib/" in f.read()
    except OSError:
        pass
    return False


def labtui_things() -> dict[str, set[str]]:
    """What of labtui's kind is on the machine: links (lt*, labtui*), mount points under a
    .../labtui/ directory or our LABTUI_ROOT, network namespaces. Taken when the suite starts
    (tests/conftest.py) and again at its end (test_zz_leaks.py): on a lab VM where labtui is in
    use (its labtui0 bridge, containers, a helper) only what appeared in between is the suite's."""
    root = os.environ.get("LABTUI_ROOT", "/nonexistent")
    try:
        links = {n for n in os.listdir("/sys/class/net") if n.startswith(("lt", "labtui"))
                 or n == os.environ.get("LABTUI_DEFAULT_BRIDGE")}
    except OSError:
        links = set()
    with open("/proc/self/mountinfo") as f:
        mounts = {line.split()[4] for line in f if root in line or "/labtui" in line.split()[4]}
    try:
        netns = {n for n in os.listdir("/run/netns") if "labtui" in n or n.startswith("lt")}
    except OSError:
        netns = set()
    return {"links": links, "mounts": mounts, "netns": netns}


BEFORE_SUITE: dict[str, set[str]] = {"links": set(), "mounts": set(), "netns": set()}


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


# How long a helper may take to start serving: it imports at nice 19 (labtui/launcher/helper.py),
# which a machine busy with other work (CI, other test runs, two cores) slows many times over.
HELPER_START = 120.0


def helper_pid(root: str | None = None) -> int | None:
    """The PID of the launcher's warm helper for this state directory once it serves: helper.lock
    names it from its start, its socket appears when it is ready."""
    run = Path(root or os.environ["LABTUI_ROOT"]) / "run"
    try:
        pid = int((run / "helper.lock").read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    return pid if pid and Path(f"/proc/{pid}").exists() and (run / "helper.sock").exists() else None


def fresh_helper() -> int:
    """A helper for this test run's state directory that serves this test process's commands.

    Whatever helper ran before is stopped (an earlier test's may hold a tampered stamp, or have
    been started from another cgroup or namespace), and a new one is started from this process's
    own context: the helper serves only callers confined as it is (labtui/launcher/trust.py), and
    the commands a test starts are its children. Returns its PID once it serves."""
    from labtui.launcher import helper as helper_mod
    from labtui.launcher import trust

    helper_mod.stop()
    # Through a short-lived process: the helper must not be a child of this one (never reaped here).
    subprocess.run([sys.executable, "-c", "from labtui.launcher.launch import start_helper; start_helper()"],
                   check=True, timeout=60, cwd=Path(__file__).resolve().parents[1])
    pid = wait_for(helper_pid, timeout=HELPER_START, what="a fresh helper to serve")
    diff = trust.differences(trust.facts(pid) or {}, trust.facts("self") or {})
    assert not diff, f"the helper (PID {pid}) would refuse this test's commands: {', '.join(diff)} differ"
    return pid


def helper_log(root: str | None = None) -> str:
    try:
        return (Path(root or os.environ["LABTUI_ROOT"]) / "run" / "helper.log").read_text()
    except OSError:
        return ""


def catches(pid: int, sig: int) -> bool:
    """Whether the process has a handler for sig (SigCgt, proc(5)): e.g. `labtui run` once it
    passes signals on to the container (docker's --sig-proxy); before that they end it."""
    return bool(int(proc_status(pid)["SigCgt"], 16) & (1 << (sig - 1)))


def served_worker(launcher: subprocess.Popen, timeout: float = 20) -> int:
    """The helper's worker serving this launcher (started with stdout=PIPE): the labtui-worker
    whose stdout is the launcher's pipe, whichever helper forked it. Neither its name alone (a
    worker an earlier test left finishing would be taken for it) nor the children of one helper's
    PID (a helper replaced meanwhile serves from another). When no worker serves it, fails
    saying why: the helper refused it or was stale (helper.log), or none was there."""
    pipe = os.fstat(launcher.stdout.fileno()).st_ino
    deadline = time.monotonic() + timeout
    while True:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/comm") as f:
                    if f.read().strip() == "labtui-worker" and os.stat(f"/proc/{name}/fd/1").st_ino == pipe:
                        return int(name)
            except OSError:
                pass
        if launcher.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no helper worker serves launcher PID {launcher.pid}: {_why_cold(launcher)}")
        time.sleep(0.05)


def _why_cold(launcher: subprocess.Popen) -> str:
    said = [ln for ln in helper_log().splitlines() if f"PID {launcher.pid}:" in ln]
    if said:
        return "; ".join(said)  # "refused PID N: its ... differ" or "stale for PID N: FILE changed"
    if launcher.returncode is not None:
        return f"it exited {launcher.returncode} first"
    try:
        exe = os.readlink(f"/proc/{launcher.pid}/exe")
    except OSError:
        exe = "?"
    where = f"helper PID {helper_pid()}" if helper_pid() else "no helper serving (no helper.sock)"
    return f"it runs {exe} (the ordinary way, if python); {where}"


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


def proxying_worker(launcher: subprocess.Popen, name: str) -> int:
    """The launcher's worker, once `run` passes signals on to the container (it catches SIGTERM:
    docker's --sig-proxy). Before that a SIGTERM ends the command, here as in the ordinary
    `labtui run`; a container seen running does not mean the command got that far."""
    worker = served_worker(launcher)
    wait_for(lambda: catches(worker, signal.SIGTERM), what=f"the worker of {name} to pass signals on")
    return worker


def process_state(pid: int) -> str:
    """The one-letter state of /proc/PID/stat (R, S, T, Z, ...), read after the command name's
    closing parenthesis: the name itself may hold spaces and parentheses."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
