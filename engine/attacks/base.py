"""The attack lab's frame: an Attack describes one escape; a Lab gives it a scratch directory on the
host, compiled helpers, and a way to run a real container and read back what happened.

Every attack runs twice over the same payload: under "weak" (the smallest weakening that makes it
work, stated in the attack's `weak` text) it succeeds and shows evidence checked from the host;
under "default" it fails and names what stopped it - a recorded step of the container or a
seccomp_denied event. Payloads only ever write marker files into the lab's own directory, read
secrets the lab planted, or target sacrificial processes and copies the lab started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import uuid
from pathlib import Path

from engine import paths
from engine.errors import EngineError
from engine.record import dataclass, field

PROFILES = ("weak", "default")


@dataclass
class Run:
    """One container run: its id, exit code, output, recorded steps and seccomp denials."""

    cid: str
    exit_code: int | None
    output: str
    steps: list[dict] = field(default_factory=list)
    denials: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    timed_out: bool = False

    def lines(self, prefix: str) -> list[str]:
        return [ln[len(prefix):].strip() for ln in self.output.splitlines() if ln.startswith(prefix)]

    def first(self, prefix: str) -> str | None:
        got = self.lines(prefix)
        return got[0] if got else None

    def step(self, mechanism: str | None = None, op: str | None = None, contains: str | None = None) -> dict | None:
        for s in self.steps:
            if mechanism and s.get("mechanism") != mechanism:
                continue
            if op and s.get("op") != op:
                continue
            if contains and contains not in json.dumps(s):
                continue
            return s
        return None


def step_text(s: dict | None) -> str:
    if not s:
        return ""
    return (f"step #{s.get('seq')} {s.get('mechanism')} {s.get('op')} {s.get('target', '')} "
            f"{s.get('value', '')}".rstrip() + (f" ($ {s['shell']})" if s.get("shell") else ""))


def seccomp_mitigation(run: Run, syscalls: tuple[str, ...]) -> str:
    """The seccomp_denied event for one of these calls, or (when no denial watcher ran in the
    container's supervisor) the filter's load step."""
    den = [d for d in run.denials if d.get("syscall") in syscalls]
    if den:
        return denial_text(den[0])
    load = run.step("seccomp", "load filter")
    return (step_text(load) + f" (it refuses {'/'.join(syscalls)} without the capability)") if load else ""


def denial_text(d: dict) -> str:
    return (f"seccomp_denied event: {d.get('syscall')} (nr {d.get('nr')}) -> {d.get('action')} "
            f"by pid {d.get('pid')} ({d.get('comm')})")


class Lab:
    """Scratch space for one attack run: payload/ is mounted read-only at /lab in the container,
    host/ stays on the host (secrets to steal, markers to find)."""

    def __init__(self, attack: str, profile: str) -> None:
        self.id = f"{attack}-{profile}-{uuid.uuid4().hex[:8]}"
        self.dir = paths.lib_dir() / "attack-lab" / "runs" / self.id
        self.payload = self.dir / "payload"
        self.host = self.dir / "host"
        self.payload.mkdir(parents=True)
        self.host.mkdir()
        os.chmod(self.dir, 0o755)
        os.chmod(self.payload, 0o755)
        self.secret = "labtui-secret-" + uuid.uuid4().hex[:12]
        (self.host / "secret.txt").write_text(self.secret + "\n")
        self.containers: list[str] = []
        self.procs: list = []

    def helper(self, name: str) -> str:
        from engine.attacks import helpers

        dst = self.payload / name
        shutil.copy2(helpers.build(name), dst)
        os.chmod(dst, 0o755)
        return f"/lab/{name}"

    def script(self, text: str, name: str = "attack.sh") -> str:
        p = self.payload / name
        p.write_text("#!/bin/sh\n" + text)
        os.chmod(p, 0o755)
        return f"/lab/{name}"

    def run(self, argv: list[str], extra: dict | None = None, volumes: list[str] | None = None,
            timeout: float = 30, during=None, env: list[str] | None = None) -> Run:
        """A real container (busybox) running argv with /lab mounted; waits for it, collects its
        output, steps and seccomp denials, removes it."""
        from engine import api, events, jsonl, state
        from engine.spec import RunOptions

        opts = RunOptions(image="busybox", command=argv, volumes=[f"{self.payload}:/lab:ro"] + (volumes or []),
                          env=env or [], extra=dict(extra or {}), name=f"lab-{self.id}")
        c = api.create(opts)
        self.containers.append(c.id)
        t0 = time.time()
        timed_out = False
        try:
            api.start(c.id)
            if during is not None:
                during(state.load(c.id))
            deadline = time.monotonic() + timeout
            while True:
                cur = state.load(c.id)
                if cur.status not in (state.RUNNING, state.PAUSED, state.RESTARTING) and not cur.supervisor_alive():
                    break
                if time.monotonic() > deadline:
                    timed_out = True
                    api.kill(c.id, "KILL")
                    deadline = time.monotonic() + 10
                time.sleep(0.05)
            cur = state.load(c.id)
            out = "".join(r.get("log", "") for r in api.read_logs(c.id))
            steps = jsonl.read_all(cur.dir / "steps.jsonl")
        except EngineError as e:
            return Run(c.id, 125, f"labtui: {e}\n", timed_out=timed_out)
        evs = [e for e in events.read_events() if e.get("container") == c.id and e.get("ts", 0) >= t0 - 1]
        denials = [e for e in evs if e.get("type") == "seccomp_denied"]
        return Run(c.id, cur.exit_code, out, steps, denials, evs, timed_out)

    def cleanup(self) -> None:
        from engine import api

        for p in self.procs:
            try:
                p.kill()
                p.wait(5)
            except Exception:
                pass
        for cid in self.containers:
            try:
                api.remove(cid, force=True)
            except EngineError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Outcome:
    escaped: bool
    evidence: str
    mitigation: str = ""
    details: dict = field(default_factory=dict)


class Attack:
    """One escape technique. Subclasses fill in the texts and the four methods."""

    name = ""
    title = ""
    cve = ""
    technique = ""  # what the payload does, in a sentence or two
    weak = ""  # the smallest weakening that makes it work (docker-style flags)
    stops_it = ""  # what defeats it by default, and the kernel mechanism behind it
    requires: tuple[str, ...] = ()

    def info(self) -> dict:
        return {"name": self.name, "title": self.title, "cve": self.cve or None, "technique": self.technique,
                "weak": self.weak, "default_mitigation": self.stops_it, "requires": list(self.requires)}

    def skip_reason(self, lab: Lab) -> str | None:
        return None

    def config(self, lab: Lab, profile: str) -> dict:
        """The container's extra config for a profile (RunOptions.extra)."""
        return {}

    def execute(self, lab: Lab, profile: str) -> Outcome:
        raise NotImplementedError

    def host_cleanup(self, lab: Lab) -> None:
        return None


def kill_quietly(proc) -> None:
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
    except Exception:
        pass


def fs_location(path: str) -> dict:
    """Which filesystem a host path is on, and the path relative to that filesystem's root
    (from /proc/self/mountinfo: the longest mount point above it, plus the mount's own root)."""
    real = os.path.realpath(path)
    best = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            parts = left.split()
            mroot, mpoint = parts[3], parts[4]
            fstype, source = right.split()[0], right.split()[1]
            if real == mpoint or real.startswith(mpoint.rstrip("/") + "/"):
                if best is None or len(mpoint) >= len(best[1]):
                    best = (mroot, mpoint, fstype, source, parts[2])
    if best is None:
        raise EngineError(f"cannot find the filesystem of {path}")
    mroot, mpoint, fstype, source, majmin = best
    rel = os.path.relpath(real, mpoint)
    inner = os.path.normpath(os.path.join(mroot, rel)).lstrip("/")
    return {"fstype": fstype, "source": source, "mountpoint": mpoint, "relpath": inner, "dev": majmin}


def read_text(p: Path) -> str | None:
    try:
        return p.read_bytes().decode(errors="replace")
    except OSError:
        return None
