"""Chaos (issue 15): container lifecycles while SIGKILLs land at random moments.

LABTUI_CHAOS_LIFECYCLES (default 200) containers each go through create, start, exec, pause,
unpause, stop and rm, on LABTUI_CHAOS_THREADS (default 3) threads: about 40% on a user-defined
network with a port published on 127.0.0.1, half of them through the warm helper (the Python
launcher, labtui/launcher/launch.py) and half the ordinary way (LABTUI_HELPER=0), a tenth left
half-way (created, running, paused or exited) for the final checks. Meanwhile a killer thread
SIGKILLs, at random moments, the supervisors (labtui-sup), the CLI invocations in flight, the
helper and its workers, and the terminal app, which runs as a real process in tmux (restarted
in a loop each time it is killed).

Expected: a killed CLI invocation fails (SIGKILL, or "the helper process went away"), and so
may the next step of that container; a start whose supervisor is killed fails. Each lifecycle
then looks at its container (inspect) and goes on from whatever state it is really in. A
traceback, a command that hangs, a container that vanishes or is stuck, a status that the kernel
contradicts, or a leak that `system prune` cannot repair is a bug.

Afterwards every container's status (ps -a, inspect) is compared with the kernel: its init's PID
and start time, its cgroup, its root overlay mount, its freezer; and the other way round, every
labtui process, cgroup and veth of this state directory belongs to a running container. Then
the containers left without a supervisor are stopped (the repair `system check` names), `system
prune` runs, and `system check` must find nothing; the same again after removing everything.

The seed is printed; LABTUI_CHAOS_SEED=N repeats its random choices (the interleaving of threads
is the machine's). docs/reliability.md ("Chaos") gives the counts of a run.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.privatelab import (
    HANG,
    LAUNCH,
    REPO,
    Lab,
    Reaper,
    cgroup_pids,
    comm,
    describe,
    done,
    free_port_base,
    our_processes,
    popen,
    read,
    run,
    supervisor_cid,
    verify,
)

pytestmark = [pytest.mark.root, pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]

SEED = int(os.environ.get("LABTUI_CHAOS_SEED") or random.SystemRandom().randrange(1 << 31))
LIFECYCLES = int(os.environ.get("LABTUI_CHAOS_LIFECYCLES", "200"))
THREADS = int(os.environ.get("LABTUI_CHAOS_THREADS", "3"))
KILL_GAP = 0.12  # mean seconds between two kills
MAX_STEPS = 25  # a lifecycle that needs more commands than this is stuck
VERBS = ("create", "start", "exec", "pause", "unpause", "stop", "rm")
AFTER = {"create": "created", "start": "running", "exec": "running", "pause": "paused", "unpause": "running",
         "stop": "exited", "rm": None}  # a step's status once it succeeded
OBSERVE = 0.3  # the share of steps that succeeded after which inspect reads the status (always after a failure)
KEEP_AFTER = {"created": "create", "running": "exec", "paused": "pause", "exited": "stop"}  # left half-way
KILL_WEIGHTS = {"cli": 30, "supervisor": 30, "worker": 20, "helper": 2, "app": 1}


# ------------------------------------------------------------------------------- the kernel's view

def parent(pid: int) -> int:
    data = read(f"/proc/{pid}/stat")
    return int(data[data.rindex(")") + 2:].split()[1]) if data else 0


def helper_serves(lab: Lab) -> bool:
    """A helper holds helper.lock (its PID in it) and its socket is there (labtui/launcher/helper.py)."""
    pid = read(str(lab.run / "helper.lock")).strip()
    return pid.isdigit() and comm(pid) == "labtui-helper" and (lab.run / "helper.sock").exists()


def is_what(kind: str, pid: int) -> bool:
    """Whether PID is what the killer takes it for. A process forked is named as its parent
    until it renames itself: a worker's supervisor-to-be is a "labtui-worker" for a moment, a
    supervisor's container init a "labtui-sup". Those are not the targets: a worker is a child
    of the helper, a supervisor is no child of a supervisor."""
    name = {"supervisor": "labtui-sup", "helper": "labtui-helper", "worker": "labtui-worker"}[kind]
    if comm(pid) != name:
        return False
    if kind == "worker":
        return comm(parent(pid)) == "labtui-helper"
    if kind == "supervisor":
        return comm(parent(pid)) != "labtui-sup" and supervisor_cid(pid) is not None
    return True


def kernel_belongs(lab: Lab, infos: list[dict]) -> list[str]:
    """The other way round: every process, cgroup and veth of ours is a running container's."""
    running = {i["Id"]: i for i in infos if i["State"]["Status"] in ("running", "paused")}
    by_pid = {lab.record(cid).get("pid"): cid for cid in running}
    bad = []
    for pid, c in our_processes(lab):
        if c == "labtui-init" and pid not in by_pid:
            bad.append(f"labtui-init {pid} is no running container's init")
        elif c == "labtui-sup" and supervisor_cid(pid) not in running:
            bad.append(f"labtui-sup {pid} serves {supervisor_cid(pid)}, which is not running")
        elif c in ("labtui-worker", "labtui-spare"):
            bad.append(f"{c} {pid} is still there after every command ended")
    for d in lab.cgroup_dirs():
        for cid in os.listdir(d):
            full = os.path.join(d, cid)
            if os.path.isdir(full) and cgroup_pids([full]) and cid not in running:
                bad.append(f"cgroup {full} has processes but is no running container's")
    links = os.listdir("/sys/class/net")
    for cid in {i["Id"] for i in infos} - set(running):
        if f"lt{cid[:10]}" in links:
            bad.append(f"veth lt{cid[:10]} of {cid[:12]}, which is not running")
    return bad


# -------------------------------------------------------------------------------------------- app

class App:
    """The terminal app as a real process in tmux, started again each time it is killed."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.socket = f"labtui-chaos-{os.getpid()}"
        self.stopfile = lab.root / "app.stop"
        self.exits = lab.root / "app.exits"  # one exit status a line: 137 when killed
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in lab.env.items() if k.startswith("LABTUI_"))
        app = f"env {env} {shlex.quote(sys.executable)} -m labtui.cli"
        self.loop = (f"cd {shlex.quote(str(REPO))}; while :; do {app}; rc=$?; "
                     f"echo $rc >> {shlex.quote(str(self.exits))}; echo \"[labtui exited $rc]\"; "
                     f"[ -e {shlex.quote(str(self.stopfile))} ] && break; sleep 0.2; done; sleep 600")

    def tmux(self, *args: str) -> subprocess.CompletedProcess:
        return run(["tmux", "-L", self.socket, "-f", "/dev/null", *args], timeout=10)

    def start(self) -> None:
        self.tmux("new-session", "-d", "-s", "app", "-x", "160", "-y", "50", self.loop)
        self.tmux("set-option", "-t", "app", "history-limit", "100000")

    def shell_pid(self) -> int | None:
        out = self.tmux("list-panes", "-t", "app", "-F", "#{pane_pid}").stdout.strip()
        return int(out) if out.isdigit() else None

    def pid(self) -> int | None:
        shell = self.shell_pid()
        for name in filter(str.isdigit, os.listdir("/proc")):
            stat = read(f"/proc/{name}/stat")
            if stat and int(stat[stat.rindex(")") + 2:].split()[1]) == shell \
                    and "labtui.cli" in read(f"/proc/{name}/cmdline"):
                return int(name)
        return None

    def screen(self, history: bool = False) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-t", "app", *(["-S", "-"] if history else [])).stdout

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.screen()
            if text in shown:
                return shown
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared in the app:\n{self.screen()}")

    def quit(self) -> str:
        """Stop the loop, let the app come up once more and quit it with q; its whole history."""
        self.stopfile.touch()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pid = self.pid()
            if pid is not None and "labtui — containers" in self.screen():
                time.sleep(1.5)  # its first poll of the dashboard
                self.tmux("send-keys", "-t", "app", "q")
                for _ in range(50):
                    if self.pid() != pid:
                        break
                    time.sleep(0.1)
                if self.pid() is None:
                    break
            time.sleep(0.2)
        return self.screen(history=True)

    def kill(self) -> None:
        self.tmux("kill-server")


# ------------------------------------------------------------------------------------------ chaos

class Chaos:
    def __init__(self, lab: Lab, app: App, network: str, port_base: int) -> None:
        self.lab, self.app = lab, app
        self.network, self.port_base = network, port_base  # each lifecycle publishes its own port
        self.lock = threading.Lock()
        self.inflight: dict[int, int] = {}  # CLI PID -> its pidfd (a PID is reused once reaped)
        self.killed_cli: set[int] = set()
        self.killed_pids: set[int] = set()  # every process the killer signalled (the reaper's list)
        self.untracked: set[str] = set()  # containers found running unrecorded (untracked_run)
        self.log: list[str] = []  # LABTUI_CHAOS_VERBOSE: every kill
        self.killed_sup: collections.Counter = collections.Counter()  # container id -> kills
        self.kills: collections.Counter = collections.Counter()
        self.misses: collections.Counter = collections.Counter()
        self.errors: collections.Counter = collections.Counter()
        self.examples: dict[str, str] = {}  # category -> one failed command's stderr
        self.steps: collections.Counter = collections.Counter()
        self.kinds: collections.Counter = collections.Counter()
        self.seen: dict[str, set[int]] = {"helper": set(), "worker": set()}
        self.bugs: list[str] = []
        self.stop = threading.Event()
        self.next_index = 0
        self.commands = 0

    # ---- the lifecycles -------------------------------------------------------------------------
    def command(self, via: str, args: list[str]) -> tuple[subprocess.CompletedProcess | None, int]:
        env = self.lab.env if via == "helper" else self.lab.cold_env
        if via == "helper":  # whether a helper was there to take it (killed, it is started again)
            self.add(self.kinds, "helper up" if helper_serves(self.lab) else "helper down")
        p = popen(LAUNCH + args, env=env, cwd="/")
        fd = os.pidfd_open(p.pid)
        with self.lock:
            self.inflight[p.pid] = fd
            self.commands += 1
        try:
            out, err = p.communicate(timeout=HANG)
            return subprocess.CompletedProcess(p.args, p.returncode, out, err), p.pid
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            return None, p.pid
        finally:
            with self.lock:
                del self.inflight[p.pid]
                os.close(fd)
            done(p)

    def classify(self, verb: str, p: subprocess.CompletedProcess | None, pid: int, via: str,
                 cid: str | None, disturbed: bool) -> str:
        """The category of a failed step; a bug is recorded unless the chaos explains it."""
        if p is None:
            return self.bug(f"{verb} hung for {HANG} s")
        if "Traceback" in p.stderr:
            return self.bug(f"{verb}: a traceback\n{p.stderr[-3000:]}")
        with self.lock:
            cli_killed = pid in self.killed_cli
            sup_killed = bool(cid and self.killed_sup[cid])
        if p.returncode == -signal.SIGKILL:
            if cli_killed:
                return "CLI killed"
            if via == "helper":
                return "its helper worker killed"
            return self.bug(f"{verb} died of SIGKILL that the chaos did not send")
        msg = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}, no message"
        if not msg.startswith("labtui: "):
            return self.bug(f"{verb} exited {p.returncode} without a labtui message: {p.stderr[-2000:]}")
        if "the helper process went away" in msg:
            return "helper killed under the command"
        if "exited during start" in msg and sup_killed:
            return "supervisor killed during start"
        if disturbed or sup_killed:
            # The step before was killed, or the supervisor: this one may meet what they left.
            return f"{verb} after a kill: {generic(msg)}"
        log = read(str(self.lab.lib / "containers" / cid / "supervisor.log"))[-2000:] if cid else ""
        return self.bug(f"{verb} failed with nothing killed: rc {p.returncode}: {msg}\nsupervisor.log: {log}")

    def add(self, counter: collections.Counter, key: str) -> None:
        with self.lock:
            counter[key] += 1

    def bug(self, what: str) -> str:
        with self.lock:
            self.bugs.append(what)
        return "BUG"

    def worker(self, k: int) -> None:
        while not self.stop.is_set():
            with self.lock:
                i = self.next_index
                if i >= LIFECYCLES:
                    return
                self.next_index += 1
            try:
                self.lifecycle(i, random.Random(SEED * 1000 + i))
            except Exception as e:  # a bug in the test itself must not hang the others
                self.bug(f"lifecycle {i}: the test failed: {e!r}")

    def lifecycle(self, i: int, rng: random.Random) -> None:
        name = f"chaos{i}"
        via = "helper" if rng.random() < 0.5 else "cold"
        net = rng.random() < 0.4
        keep = rng.choice(["created", "running", "paused", "exited"]) if i % 10 == 5 else None
        self.add(self.kinds, f"via {via}")
        self.add(self.kinds, "published port" if net else "no network")
        port = self.port_base + i
        if net:
            create = ["create", "--name", name, "--network", self.network, "-p", f"127.0.0.1:{port}:80",
                      "busybox", "httpd", "-f", "-p", "80"]
        else:
            create = ["create", "--name", name, "--network", "none", "busybox", "sleep", "3600"]
        done: set[str] = set()
        cid: str | None = None
        disturbed = False
        status: str | None = None  # what inspect last said (None: no such container)
        for _ in range(MAX_STEPS):
            if keep is not None and status == keep and KEEP_AFTER[keep] in done:
                self.add(self.kinds, f"left {keep}")
                return
            verb, args, want = self.next_step(name, create, status, done)
            if verb == "end":
                self.add(self.kinds, "completed")
                return
            if verb == "lost":
                self.bug(f"{name} ({cid and cid[:12]}) vanished: nobody removed it (done: {sorted(done)})")
                return
            p, pid = self.command(via, args)
            ok = p is not None and p.returncode == want
            if ok:
                self.add(self.steps, verb)
                done.add(verb)
                disturbed = False
                if verb == "create":
                    cid = p.stdout.strip()
                if verb == "start" and net:
                    self.try_port(name, port)
            else:
                cat = self.classify(verb, p, pid, via, cid, disturbed)
                with self.lock:
                    self.errors[cat] += 1
                    self.examples.setdefault(cat, f"{name} {' '.join(args)}: {p and p.stderr.strip()[-300:]}")
                disturbed = True
                if verb == "rm":
                    done.add("rm-tried")
            if ok and rng.random() > OBSERVE:
                status = AFTER[verb]  # what a step that succeeded leaves, taken on trust this time
                continue
            info = self.observe(name)
            status = info["State"]["Status"] if info else None
            if info:
                cid = info["Id"]
            if ok and status != AFTER[verb]:
                more = ""
                if os.environ.get("LABTUI_CHAOS_VERBOSE") and info:
                    more = (f"\nrecord {self.lab.record(info['Id'])}\nsupervisor.log "
                            f"{read(str(self.lab.lib / 'containers' / info['Id'] / 'supervisor.log'))[-1500:]}"
                            f"\ntimeline {info.get('Timeline')}\nkilled: supervisor {self.killed_sup[info['Id']]}"
                            f"\nstdout {p.stdout!r} stderr {p.stderr!r}")
                self.bug(f"{name}: {verb} succeeded, but then its status is {status}{more}")
            if info:
                problems = self.settled_verify(name, info)
                if problems:
                    self.bug("; ".join(problems))
        self.bug(f"{name} stuck: still {status} after {MAX_STEPS} commands (done: {sorted(done)})")

    def next_step(self, name: str, create: list[str], status: str | None,
                  done: set[str]) -> tuple[str, list[str], int]:
        if status is None:
            if "rm" in done or "rm-tried" in done:
                return "end", [], 0
            if "create" in done:
                return "lost", [], 0
            return "create", create, 0
        if status == "created" or status == "exited" and not {"pause", "unpause", "stop"} & done:
            return "start", ["start", name], 0
        if status == "running":
            if "exec" not in done:
                return "exec", ["exec", name, "sh", "-c", "exit 7"], 7
            if "pause" not in done:
                return "pause", ["pause", name], 0
            return "stop", ["stop", "-t", "2", name], 0
        if status == "paused":
            return "unpause", ["unpause", name], 0
        if status == "exited":
            return "rm", ["rm", name], 0
        return "rm", ["rm", "-f", name], 0  # dead, removing, restarting: what rm -f makes of it

    def observe(self, name: str) -> dict | None:
        p = self.lab.cli("inspect", name)
        if "Traceback" in p.stderr:
            self.bug(f"inspect {name}: a traceback\n{p.stderr[-3000:]}")
        if p.returncode != 0:
            if "no such container" not in p.stderr:
                self.bug(f"inspect {name} failed: {p.stderr.strip()}")
            return None
        return json.loads(p.stdout)[0]

    def settled_verify(self, name: str, info: dict) -> list[str]:
        """verify(), read again once if it disagrees: a supervisor killed during a start leaves
        its child to end on its own a moment later."""
        problems = verify(self.lab, info)
        if problems:
            time.sleep(0.5)
            again = self.observe(name)
            problems = verify(self.lab, again) if again else []
        return problems

    def try_port(self, name: str, port: int) -> None:
        """The published port answers (busybox httpd: a 404), or its supervisor was killed."""
        for _ in range(20):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/"):
                        self.add(self.kinds, "port answered")
                        return
            except OSError:
                pass
            time.sleep(0.05)
        info = self.observe(name)
        if info and info["State"]["Status"] == "running" and info["State"]["SupervisorPid"]:
            self.bug(f"{name}: port {port} never answered, though its supervisor runs")
        self.add(self.kinds, "port closed: supervisor killed")

    # ---- the killer -----------------------------------------------------------------------------
    def killer(self, rng: random.Random) -> None:
        kinds, weights = zip(*KILL_WEIGHTS.items(), strict=True)
        while not self.stop.wait(rng.expovariate(1 / KILL_GAP)):
            kind = rng.choices(kinds, weights)[0]
            targets = self.targets(kind)
            if not targets:
                self.add(self.misses, kind)
                continue
            pid = rng.choice(sorted(targets))
            if self.kill(kind, pid, targets[pid]):
                self.add(self.kills, kind)

    def targets(self, kind: str) -> dict[int, object]:
        if kind == "cli":
            with self.lock:
                return dict(self.inflight)
        if kind == "app":
            pid = self.app.pid()
            return {pid: None} if pid else {}
        want = {"supervisor": "labtui-sup", "helper": "labtui-helper", "worker": "labtui-worker"}[kind]
        out = {pid: None for pid, c in our_processes(self.lab) if c == want and is_what(kind, pid)}
        if kind in self.seen:
            self.seen[kind].update(out)
        return out

    def kill(self, kind: str, pid: int, pidfd: object) -> bool:
        with self.lock:
            if kind == "cli":
                if pid not in self.inflight:
                    return False
                try:
                    signal.pidfd_send_signal(self.inflight[pid], signal.SIGKILL)
                except ProcessLookupError:
                    return False
                self.killed_cli.add(pid)
                return True
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return False
        try:
            # The same process as the scan found (its PID is pinned by the pidfd now).
            if kind != "app" and not is_what(kind, pid):
                return False
            # Whatever it was taken for, a process whose stderr is a container's supervisor.log
            # is that container's supervisor (or its init-to-be): counted for it.
            cid = supervisor_cid(pid)
            # Counted before the signal: the start it breaks may fail, and be classified by its
            # thread, before this one runs again.
            with self.lock:
                self.killed_pids.add(pid)
                if cid:
                    self.killed_sup[cid] += 1
                if os.environ.get("LABTUI_CHAOS_VERBOSE"):
                    self.log.append(f"{time.monotonic():.2f} kill {kind} {describe(pid)} of {cid}")
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        except ProcessLookupError:
            return False  # (a supervisor that ended meanwhile stays counted: it can explain nothing)
        finally:
            os.close(fd)
        return True


def generic(msg: str) -> str:
    """A message without its container's name and ID, to count alike ones together."""
    msg = re.sub(r"chaos\d+", "NAME", msg)
    msg = re.sub(r"\b[0-9a-f]{12,64}\b", "ID", msg)
    msg = re.sub(r"/var/tmp/\S+", "PATH", msg)
    return msg[:160]


# ------------------------------------------------------------------------------------------- test

@pytest.fixture
def lab():
    lb = Lab("chaos", random.Random(SEED))
    try:
        yield lb
    finally:
        lb.close()


def test_chaos(lab: Lab, capsys):
    t0 = time.monotonic()
    say = print
    with capsys.disabled():
        say(f"\nchaos: seed {SEED} (LABTUI_CHAOS_SEED={SEED} repeats it), {LIFECYCLES} lifecycles, "
            f"{THREADS} threads, state {lab.root}")
    app = App(lab)
    chaos = Chaos(lab, app, lab.new_network(), free_port_base(random.Random(SEED), LIFECYCLES))
    reaper = Reaper()
    reaper.expected = chaos.killed_pids
    with reaper:
        try:
            app.start()
            run_chaos(lab, app, chaos, t0, say, capsys, reaper)
        finally:
            chaos.stop.set()
            app.kill()


def run_chaos(lab: Lab, app: App, chaos: Chaos, t0: float, say, capsys, reaper: Reaper) -> None:
    app.wait_for("labtui — containers")
    threads = [threading.Thread(target=chaos.worker, args=(k,), daemon=True) for k in range(THREADS)]
    killer = threading.Thread(target=chaos.killer, args=(random.Random(SEED),), daemon=True)
    killer.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    chaos.stop.set()
    killer.join(timeout=30)
    t_chaos = time.monotonic() - t0
    assert not any(t.is_alive() for t in threads), "a lifecycle thread never ended"

    history = app.quit()
    exits = collections.Counter(read(str(app.exits)).split())
    if "Traceback" in history:
        chaos.bug("the app printed a traceback:\n" + history[history.index("Traceback"):][:3000])
    if set(exits) - {"137", "0"} or exits["0"] != 1:
        chaos.bug(f"the app ended otherwise than killed or quit once: exit statuses {dict(exits)}")

    # Every command has returned; a killed worker's or spare's last moments are over soon.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(c in ("labtui-worker", "labtui-spare")
                                              for _, c in our_processes(lab)):
        time.sleep(0.1)
    time.sleep(1)  # supervisors that just recorded an exit finish their teardown

    infos = check_consistency(lab, chaos)
    before = lab.check()
    for cid in chaos.untracked:  # what nothing else knows of, `system check` must
        if not any(f["kind"] == "state" and cid[:12] in f["object"] and f["fixable"] for f in before):
            chaos.bug(f"{cid[:12]} runs unrecorded, and system check does not say so: {before}")
    orphans = [i for i in infos if i["State"]["Status"] in ("running", "paused")
               and not i["State"]["SupervisorPid"]]
    for i in orphans:  # the repair `check` names: `labtui stop` (unpause first)
        if i["State"]["Status"] == "paused":
            assert lab.cli("unpause", i["Id"]).returncode == 0
        p = lab.cli("stop", "-t", "1", i["Id"])
        assert p.returncode == 0, p.stderr
    pruned = lab.prune()
    after = lab.check()
    if after:
        chaos.bug(f"after system prune, system check still finds: {after}")
    infos = check_consistency(lab, chaos, untracked=False)
    kept = collections.Counter(i["State"]["Status"] for i in infos)

    for i in infos:
        p = lab.cli("rm", "-f", i["Id"])
        assert p.returncode == 0, p.stderr
    lab.prune()
    final = lab.check()
    if final:
        chaos.bug(f"with every container removed, system check still finds: {final}")
    left = [f"{c} {pid}" for pid, c in our_processes(lab) if c != "labtui-helper"]
    if left:
        chaos.bug(f"processes left: {left}")
    cg = [d for base in lab.cgroup_dirs() for d in os.listdir(base) if os.path.isdir(os.path.join(base, d))]
    if cg:
        chaos.bug(f"cgroups left: {cg}")
    with capsys.disabled():
        total = time.monotonic() - t0
        k = chaos.kinds
        left = {st: k[f"left {st}"] for st in KEEP_AFTER if k[f"left {st}"]}
        say(f"chaos: {k['completed'] + sum(left.values())} lifecycles: {k['completed']} to rm, left half-way "
            f"{left}; {k['via helper']} through the helper ({k['helper up']} of their commands found it up, "
            f"{k['helper down']} ran the ordinary way while it was down), {k['via cold']} without; "
            f"{k['published port']} "
            f"with a network and a published port ({k['port answered']} answered, "
            f"{k['port closed: supervisor killed']} closed with their killed supervisor)")
        say(f"chaos: {chaos.commands} commands, {sum(chaos.steps.values())} steps that succeeded "
            f"{dict(sorted(chaos.steps.items(), key=lambda kv: VERBS.index(kv[0])))}")
        say(f"chaos: {sum(chaos.kills.values())} SIGKILLs {dict(chaos.kills.most_common())} (no target at "
            f"that moment: {dict(chaos.misses.most_common())}); helpers started {len(chaos.seen['helper'])}, "
            f"workers seen {len(chaos.seen['worker'])}; the app's exits {dict(exits)}; orphans reaped "
            f"{reaper.reaped}")
        say("chaos: failed steps by category:")
        for cat, n in chaos.errors.most_common():
            say(f"  {n:4d}  {cat}")
            if os.environ.get("LABTUI_CHAOS_VERBOSE"):
                say(f"        e.g. {chaos.examples[cat]}")
        say(f"chaos: system check before prune {dict(collections.Counter(f['kind'] for f in before))}; "
            f"{len(orphans)} containers without a supervisor stopped; prune repaired or removed "
            f"{len(pruned.splitlines())}; then system check: {len(after)} findings; still running after it "
            f"{dict(kept)}")
        say(f"chaos: starts cut short between the init's go and its record (engine/supervisor.py), found "
            f"by system check and repaired by prune: {len(chaos.untracked)}")
        say(f"chaos: {t_chaos:.1f} s of chaos, {total:.1f} s in all")
        if os.environ.get("LABTUI_CHAOS_VERBOSE"):
            say(f"chaos: reaped with an unusual status: {reaper.odd}")
            diag = f"/tmp/labtui-chaos-{SEED}.txt"
            with open(diag, "w") as f:
                f.write("\n".join(chaos.log + ["--- supervisors reaped"] + reaper.sups) + "\n")
            say(f"chaos: every kill and every supervisor reaped: {diag}")
    assert not chaos.bugs, "\n\n".join(chaos.bugs[:20])


def untracked_run(lab: Lab, chaos: Chaos, info: dict) -> bool:
    """A container that reads created or exited while processes run in its cgroup that no record
    names, whose supervisor was killed and none runs now: a start cut short after its supervisor
    let the init go and before it recorded it (engine/supervisor.py records the PID after
    writing "go", to keep the write off the start's path). Nothing but `system check` knows of
    them; `system prune` (or the next start, or rm) takes them down."""
    cid = info["Id"]
    pids = cgroup_pids(lab.cgroup_dirs(cid))
    return (info["State"]["Status"] in ("created", "exited") and bool(pids)
            and lab.record(cid).get("pid") not in pids and chaos.killed_sup[cid] > 0
            and not any(supervisor_cid(p) == cid for p, c in our_processes(lab) if c == "labtui-sup"))


def check_consistency(lab: Lab, chaos: Chaos, settle: float = 20, untracked: bool = True) -> list[dict]:
    """Every container: ps -a and inspect against the kernel; every kernel object against them.
    Read again (for up to `settle` seconds) while anything disagrees: a supervisor whose CLI was
    killed goes on starting its container on its own, and records it only once set-up is done.
    What still disagrees then is a bug."""
    deadline = time.monotonic() + settle
    while True:
        infos, problems = [], []
        for c in lab.ps():
            info = lab.inspect(c["Id"])
            if info is None:
                problems.append(f"{c['Names']} is in ps -a but inspect finds no such container")
                continue
            infos.append(info)
            found = verify(lab, info, c["State"])
            if found and untracked and untracked_run(lab, chaos, info):
                chaos.untracked.add(info["Id"])
                continue
            problems += found
        problems += kernel_belongs(lab, infos)
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(1)
    for problem in problems:
        chaos.bug(problem)
    return infos
