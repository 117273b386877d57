"""A private labtui for the tests that break things on purpose (tests/integration/test_chaos_root.py,
test_reboot_root.py): its own LABTUI_ROOT, cgroup parent and default bridge, driven through the
real `labtui` command; and what the kernel says of its containers, to hold their records against.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAUNCH = [sys.executable, "-SI", str(REPO / "labtui" / "launcher" / "launch.py")]
HANG = 45.0  # a command that takes longer than this hangs
CGROUP_BASE = "/sys/fs/cgroup"


class Lab:
    """A private labtui: its own LABTUI_ROOT, cgroup parent and default bridge (named after the
    test run's, with `kind` added), commands run through the launcher (labtui/launcher/launch.py)
    with or without the warm helper."""

    def __init__(self, kind: str, rng: random.Random) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"labtui-{kind}-", dir="/var/tmp"))
        self.lib, self.run = self.root / "lib", self.root / "run"
        self.parent = f"{os.environ.get('LABTUI_CGROUP_PARENT', 'labtui-test')}-{kind}"
        self.bridge = (os.environ.get("LABTUI_DEFAULT_BRIDGE", "lttest0")[:11] + kind[:4])[:15]
        self.env = dict(os.environ, LABTUI_ROOT=str(self.root), LABTUI_CGROUP_PARENT=self.parent,
                        LABTUI_DEFAULT_BRIDGE=self.bridge, LABTUI_HELPER_IDLE="300")
        self.env.pop("LABTUI_HELPER", None)
        self.cold_env = dict(self.env, LABTUI_HELPER="0")
        self.rng = rng
        self.networks: list[str] = []

    def new_network(self) -> str:
        name = f"lt{self.rng.randrange(1 << 24):06x}"
        p = self.cli("network", "create", "--subnet", free_subnet(self.rng), name)
        assert p.returncode == 0, p.stderr
        self.networks.append(name)
        return name

    def bridges(self) -> list[str]:
        """The bridge of each of this state's networks (lib/networks, engine/network/ipam.py)."""
        out = []
        for f in sorted((self.lib / "networks").glob("*.json")):
            with contextlib.suppress(OSError, ValueError):
                out.append(json.loads(f.read_text())["bridge"])
        return out

    def cli(self, *args: str, timeout: float = HANG) -> subprocess.CompletedProcess:
        """An observer's command: the ordinary way, never killed by the chaos."""
        return run(LAUNCH + list(args), env=self.cold_env, timeout=timeout, cwd="/")

    def inspect(self, ref: str) -> dict | None:
        p = self.cli("inspect", ref)
        assert "Traceback" not in p.stderr, p.stderr
        if p.returncode != 0:
            assert "no such container" in p.stderr, p.stderr
            return None
        return json.loads(p.stdout)[0]

    def ps(self) -> list[dict]:
        p = self.cli("ps", "-a", "--format", "json")
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
        return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]

    def check(self) -> list[dict]:
        p = self.cli("system", "check", "--format", "json")
        assert p.returncode in (0, 1) and "Traceback" not in p.stderr, p.stderr
        return json.loads(p.stdout or "[]")

    def prune(self) -> str:
        p = self.cli("system", "prune", timeout=120)
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
        return p.stdout

    def record(self, cid: str) -> dict:
        try:
            return json.loads((self.lib / "containers" / cid / "state.json").read_text())
        except (OSError, ValueError):
            return {}

    def cgroup_dirs(self, name: str = "") -> list[str]:
        out = []
        for base in os.listdir(CGROUP_BASE):
            d = os.path.join(CGROUP_BASE, base, self.parent, name)
            if os.path.isdir(d):
                out.append(d.rstrip("/"))
        return out

    def close(self) -> None:
        """Whatever a failed run left: its processes, cgroups, links and files."""
        from labtui.launcher import helper as helper_mod

        saved = os.environ["LABTUI_ROOT"]
        os.environ["LABTUI_ROOT"] = str(self.root)
        try:
            helper_mod.stop()
        finally:
            os.environ["LABTUI_ROOT"] = saved
        with contextlib.suppress(Exception):
            for c in self.ps():
                self.cli("rm", "-f", c["Id"])
            for name in self.networks:
                self.cli("network", "rm", name)
            self.cli("system", "prune", timeout=120)
        for pid, _comm in our_processes(self):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for d in self.cgroup_dirs():
            for sub, _dirs, _files in sorted(os.walk(d), key=lambda t: -len(t[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(sub)
        shutil.rmtree(self.root, ignore_errors=True)


def free_subnet(rng: random.Random) -> str:
    """A /24 in 10.0.0.0/8 that no route of the host covers (other test runs have bridges)."""
    routes = run(["ip", "-4", "route", "show", "table", "all"], timeout=10).stdout
    for _ in range(100):
        net = f"10.{rng.randrange(100, 250)}.{rng.randrange(256)}"
        if f"{net}." not in routes:
            return f"{net}.0/24"
    raise AssertionError("no free subnet")


def free_port_base(rng: random.Random, count: int) -> int:
    """`count` consecutive TCP ports nobody on the host listens on."""
    used = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                used.add(int(line.split()[1].rsplit(":", 1)[1], 16))
    for _ in range(100):
        base = rng.randrange(30000, 60000 - count)
        if not used.intersection(range(base, base + count)):
            return base
    raise AssertionError("no free port range")


# ----------------------------------------------------------------------------- children and orphans

# Orphans must be reaped, as systemd (PID 1 on a lab VM) reaps them at once. This VM's PID 1 (a
# firecracker agent) reaps them only now and then, and an exec'd command's zombie left by a
# SIGKILLed `labtui exec` (its parent: the CLI, outside the container's PID namespace) keeps the
# container's init in zap_pid_ns_processes: the container could not finish stopping until then
# (docs/reliability.md, "Chaos"). So the test is a child subreaper (prctl(2)), and reaps.
REAP_LOCK = threading.Lock()
OWN_CHILDREN: set[int] = set()  # what popen() started: their own Popen reaps them


def popen(args: list[str], **kw) -> subprocess.Popen:
    with REAP_LOCK:  # registered before the reaper could see it exit
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, **kw)
        OWN_CHILDREN.add(p.pid)
    return p


def done(p: subprocess.Popen) -> None:
    with REAP_LOCK:
        OWN_CHILDREN.discard(p.pid)


def run(args: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    p = popen(args, **kw)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise
    finally:
        done(p)
    return subprocess.CompletedProcess(args, p.returncode, out, err)


class Reaper:
    """A child subreaper that reaps every orphan it adopts (not what popen() started)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reaped = 0
        self.odd: list[str] = []  # diagnostics: labtui processes reaped with an unusual status
        self.expected: set[int] = set()  # PIDs the test SIGKILLed itself
        self.sups: list[str] = []  # diagnostics: every supervisor reaped, with its status
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def __enter__(self) -> Reaper:
        from engine import syscalls

        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        from engine import syscalls

        self.stop.set()
        self.thread.join()
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 0)
        self.reap()

    def loop(self) -> None:
        while not self.stop.wait(0.1):
            self.reap()

    def reap(self) -> None:
        me = str(os.getpid())
        with REAP_LOCK:
            for name in filter(str.isdigit, os.listdir("/proc")):
                data = read(f"/proc/{name}/stat")
                if not data:
                    continue
                fields = data[data.rindex(")") + 2:].split()
                if fields[1] == me and fields[0] == "Z" and int(name) not in OWN_CHILDREN:
                    name_ = data[data.index("(") + 1:data.rindex(")")]
                    with contextlib.suppress(ChildProcessError):
                        _, status = os.waitpid(int(name), os.WNOHANG)
                        self.reaped += 1
                        if name_ == "labtui-sup":
                            self.sups.append(f"{time.monotonic():.2f} {name} status {status:#x}"
                                             f"{' (killed by the test)' if int(name) in self.expected else ''}")
                        if name_.startswith("labtui-") and os.WIFSIGNALED(status) \
                                and (os.WTERMSIG(status) != signal.SIGKILL or int(name) not in self.expected) or \
                                name_ in ("labtui-sup", "labtui-spare") and os.WIFEXITED(status) \
                                and os.WEXITSTATUS(status) not in (0, 7, 137, 143):
                            self.odd.append(f"{name} {name_} status {status:#x} at {time.monotonic():.1f}")


# ------------------------------------------------------------------------------- the kernel's view

def read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def start_time(pid: int) -> int | None:
    data = read(f"/proc/{pid}/stat")
    if not data:
        return None
    rest = data[data.rindex(")") + 2:].split()
    return None if rest[0] in ("Z", "X") else int(rest[19])


def comm(pid: int | str) -> str:
    return read(f"/proc/{pid}/comm").strip()


def our_processes(lab: Lab) -> list[tuple[int, str]]:
    """labtui's processes of this state directory: supervisors (their stderr is in our lib
    directory), inits (their mounts are below it), helpers, workers and spares (their environment
    names our root)."""
    mark = f"LABTUI_ROOT={lab.root}".encode()
    out = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        c = comm(name)
        if not c.startswith("labtui-"):
            continue
        try:
            if c == "labtui-sup":
                ours = os.readlink(f"/proc/{name}/fd/2").startswith(f"{lab.lib}/")
            elif c == "labtui-init":
                ours = f" {lab.lib}/" in read(f"/proc/{name}/mountinfo")
            else:
                with open(f"/proc/{name}/environ", "rb") as f:
                    ours = mark in f.read().split(b"\0")
        except OSError:
            continue
        if ours:
            out.append((int(name), c))
    return out


def parent(pid: int) -> int:
    data = read(f"/proc/{pid}/stat")
    return int(data[data.rindex(")") + 2:].split()[1]) if data else 0


def supervisor_cid(pid: int) -> str | None:
    try:
        target = os.readlink(f"/proc/{pid}/fd/2")
    except OSError:
        return None
    parts = target.split("/")
    return parts[-2] if len(parts) > 2 and parts[-1].startswith("supervisor.log") else None


def cgroup_pids(dirs: list[str]) -> set[int]:
    pids: set[int] = set()
    for d in dirs:
        for sub, _dirs, _files in os.walk(d):
            pids.update(int(x) for x in read(os.path.join(sub, "cgroup.procs")).split())
    return pids


def freezer_state(lab: Lab, cid: str) -> str:
    v1 = read(os.path.join(CGROUP_BASE, "freezer", lab.parent, cid, "freezer.state")).strip()
    if v1:
        return v1
    for base in os.listdir(CGROUP_BASE):
        v2 = read(os.path.join(CGROUP_BASE, base, lab.parent, cid, "cgroup.freeze")).strip()
        if v2:
            return "FROZEN" if v2 == "1" else "THAWED"
    return read(os.path.join(CGROUP_BASE, lab.parent, cid, "cgroup.freeze")).strip() and "?"


def host_mounts_below(path: str) -> list[str]:
    out = []
    for line in read("/proc/self/mountinfo").splitlines():
        point = line.split()[4]
        if point == path or point.startswith(path + "/"):
            out.append(point)
    return out


def describe(pid: int) -> str:
    """Diagnostics: a process's name, parent, state, wait channel and pid namespace levels."""
    status = dict(line.split(":\t", 1) for line in read(f"/proc/{pid}/status").splitlines() if ":\t" in line)
    return (f"{pid} ({status.get('Name')}, ppid {status.get('PPid')}, {status.get('State')}, "
            f"NSpid {status.get('NSpid')}, wchan {read(f'/proc/{pid}/wchan')})")


def suspects(init: int) -> list[str]:
    """Diagnostics: processes in a nested pid namespace started after init (zombies too)."""
    t0 = start_time(init) or 0
    out = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        data = read(f"/proc/{name}/stat")
        if not data or int(data[data.rindex(")") + 2:].split()[19]) < t0 or int(name) == init:
            continue
        nspid = [ln for ln in read(f"/proc/{name}/status").splitlines() if ln.startswith("NSpid:")]
        if nspid and len(nspid[0].split()) > 2:
            out.append(describe(int(name)) + " cmd " + read(f"/proc/{name}/cmdline").replace("\0", " ")[:80])
    return out


def verify(lab: Lab, info: dict, ps_status: str | None = None) -> list[str]:
    """What the kernel contradicts in one container's inspect record (empty when nothing)."""
    cid, name, st = info["Id"], info["Name"].lstrip("/"), info["State"]
    status = st["Status"]
    rec = lab.record(cid)
    pid, pid_start = rec.get("pid"), rec.get("pid_start")
    alive = bool(pid) and pid_start is not None and start_time(pid) == pid_start
    dirs = lab.cgroup_dirs(cid)
    in_cgroup = cgroup_pids(dirs)
    bad = []
    if ps_status is not None and ps_status != status:
        bad.append(f"ps says {ps_status}, inspect {status}")
    if status in ("running", "paused"):
        if not alive:
            bad.append(f"{status}, but its init (PID {pid}) is gone")
        elif st["Pid"] != pid:
            bad.append(f"inspect's Pid {st['Pid']} is not the recorded init {pid}")
        else:
            if pid not in in_cgroup:
                bad.append(f"its init {pid} is not in its cgroup {lab.parent}/{cid[:12]} ({dirs})")
            if f"{lab.lib}/containers/{cid}/upper" not in read(f"/proc/{pid}/mountinfo"):
                bad.append(f"its init {pid} does not have the container's overlay as its root")
            if bad and os.environ.get("LABTUI_CHAOS_VERBOSE"):
                bad.append(f"init {pid}: {read(f'/proc/{pid}/status')[:400]} wchan {read(f'/proc/{pid}/wchan')} "
                           f"stack {read(f'/proc/{pid}/stack')} fds {sorted(os.listdir(f'/proc/{pid}/fd'))} "
                           f"supervisor.log {read(str(lab.lib / 'containers' / cid / 'supervisor.log'))[-1500:]} "
                           f"record {rec}; freezer {freezer_state(lab, cid)}; in its cgroup: "
                           f"{[describe(p) for p in sorted(in_cgroup)]}; nested processes younger than it: "
                           f"{suspects(pid)}")
            frozen = freezer_state(lab, cid)
            want = "FROZEN" if status == "paused" else "THAWED"
            if frozen != want:
                bad.append(f"{status}, but the freezer says {frozen or 'nothing'}")
    elif status in ("created", "exited", "dead"):
        if alive:
            bad.append(f"{status}, but its init {pid} runs")
        if in_cgroup:
            bad.append(f"{status}, but processes {sorted(in_cgroup)} run in its cgroup")
            if os.environ.get("LABTUI_CHAOS_VERBOSE"):
                sups = [p for p, c in our_processes(lab) if c == "labtui-sup" and supervisor_cid(p) == cid]
                bad.append(f"{[describe(p) for p in sorted(in_cgroup)]}; its supervisors {sups}; record {rec}; "
                           f"supervisor.log {read(str(lab.lib / 'containers' / cid / 'supervisor.log'))[-1500:]}")
        if st["Pid"]:
            bad.append(f"{status} with Pid {st['Pid']}")
        mounts = host_mounts_below(str(lab.lib / "containers" / cid))
        if mounts:
            bad.append(f"{status}, but the host has mounts {mounts}")
    else:
        bad.append(f"status {status} after everything settled")
    return [f"{name} ({cid[:12]}): {b}" for b in bad]


