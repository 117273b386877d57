"""Idle memory per container: the PSS of the processes labtui keeps for each container, beside
podman's (conmon).

What labtui keeps per container is the container's supervisor and its PID 1, whatever programs
they run: `labtui-sup` (Python, or `labtui-monitor` while idle: docs/idle.md) and `labtui-init`
(C once the command runs, or the Python init with LABTUI_NATIVE=0). They are found by the kernel's
process tree, not by name. PID 1 is the PID that `labtui inspect` records (State.Pid). The
supervisor is PID 1's parent, and must be the recorded State.SupervisorPid. Any other process
under the supervisor but outside PID 1's tree is counted too (there is none today). The user's
command (here `sleep`, PID 1's child) is not counted: it is the container's own work, as in
podman. podman keeps one process per container, conmon: the runtime exits once the container
runs, and PID 1 is the command (no --init here). So podman's figure is conmon's.

PSS (proportional set size, the Pss line of /proc/PID/smaps_rollup) counts each page divided by
the number of processes that map it, so summed over processes it is their real share of memory.
Pages that a process shares with the warm helper it was forked from, or with the other
containers' processes (an interpreter and its heap, a static program's text), are split among
all of them. The figure therefore depends on how many there are. It is given for 1 container and
for N (-n, 50), started one after the other, and measured once every container's processes have
kept the same programs for 3 s (a supervisor becomes labtui-monitor after 1 s of idle) and the
CPUs are idle.

labtui runs as the installed command runs: labtui/launcher/launcher.c built from this tree by
scripts/build-launcher (the Python launcher when there is no C compiler), and engine/native built
by scripts/build-native, as scripts/install leaves them. It is measured four ways:
  installed              through the warm helper (the usual case: any earlier command started it)
  installed, no helper   LABTUI_HELPER=0: each `run` a fresh interpreter, whose early fork becomes
                         the supervisor (docs/launcher.md)
  Python                 LABTUI_NATIVE=0 (the A/B of docs/idle.md): the Python PID 1 and the
                         supervisor kept in Python, through the warm helper
  Python, no helper      both
After each way through the helper, the same containers are measured again once the helper has left
("helper gone"; it leaves after LABTUI_HELPER_IDLE seconds, 15 minutes by default). A Python
process forked from it shares its pages with it, and they are then split among fewer processes.
For each way the bench prints the median per container and the total / N, split into the
supervisor and PID 1 with the program each runs. It then measures podman's conmon the same way
and prints the ratio labtui/podman.

Usage (root): /opt/labtui-venv/bin/python bench/bench_idle.py [-n 50] [--network none|bridge] [--no-podman]
Uses podman when it is installed (apt-get install podman). It runs with --runtime runc and
--ulimit nofile=1024:1024 --ulimit nproc=4096:4096, which this host needs, and with --network
bridge on an --internal network (no NAT rule). When podman cannot run, the bench says why.
Everything started here is removed afterwards. This is not a test: figures go into the issue's
closing note. labtui_kept() is also bench/run's identification of labtui's processes (its
idle-memory case, bench/peers.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABTUI = [sys.executable, "-m", "labtui.cli"]  # the ordinary way: inspect, cleanup
LAUNCH = [sys.executable, "-SI", os.path.join(REPO, "labtui", "launcher", "launch.py")]
# The helper, and the bench's cgroup parent (it stays between containers: engine/cgroups).
STOP_HELPER = [sys.executable, "-c", "from labtui.launcher import helper; helper.stop(); "
               "from engine import cgroups; from engine.steps import null_recorder; "
               "cgroups.remove_empty_parents(null_recorder())"]
PODMAN = ["podman", "--runtime", "runc"]
PODMAN_RUN = PODMAN + ["run", "-d", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
PODMAN_IMAGE = f"localhost/labtui-bench-idle-busybox:{os.getpid()}"
# --network bridge: an --internal network, on which netavark adds no MASQUERADE rule.
PODMAN_NET = f"ltbench-idle-{os.getpid()}"
BRIDGE = "ltbenchidle0"
TARGET_MB = 4.0  # issue 15: a 50-container exercise in 200 MB
MB = 1024.0  # smaps_rollup is in kB
WAYS = (  # name, environment, through the helper
    ("installed", {}, True),
    ("installed, no helper", {"LABTUI_HELPER": "0"}, False),
    ("Python", {"LABTUI_NATIVE": "0"}, True),
    ("Python, no helper", {"LABTUI_NATIVE": "0", "LABTUI_HELPER": "0"}, False),
)


def sh(cmd: list[str], env: dict | None = None, input: bytes | None = None) -> str:
    p = subprocess.run(cmd, capture_output=True, env=env, input=input, cwd=REPO)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed ({p.returncode}): {p.stderr.decode().strip()}")
    return p.stdout.decode()


def cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    return sum(vals), vals[3] + vals[4]  # total, idle + iowait


def wait_quiet(limit: float = 10.0) -> None:
    """Until the CPUs were at least 95% idle over 0.2 s (or `limit` seconds passed)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        t0, i0 = cpu_times()
        time.sleep(0.2)
        t1, i1 = cpu_times()
        if t1 > t0 and (i1 - i0) / (t1 - t0) >= 0.95:
            return


# ------------------------------------------------------------------------------------ /proc

def rollup(pid: int) -> dict[str, int]:
    """The kB lines of /proc/PID/smaps_rollup (Rss, Pss, Pss_Anon, Pss_File, ...)."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k, _, v = line.partition(":")
            if v.strip().endswith("kB"):
                out[k] = int(v.split()[0])
    if "Pss" not in out:
        raise ValueError(f"no Pss line for pid {pid}")
    return out


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces and parentheses): field 3 on."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def program(pid: int) -> str:
    """The file the process runs (exec changes it, not the PID: the supervisor's idle phase)."""
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return comm(pid)


def children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                out.setdefault(int(stat_fields(int(name))[1]), []).append(int(name))
            except (OSError, IndexError):
                pass
    return out


def subtree(pid: int, kids: dict[int, list[int]]) -> set[int]:
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        out.add(p)
        todo.extend(kids.get(p, []))
    return out


def labtui_kept(infos: list[dict]) -> dict[str, list[tuple[int, str]]]:
    """For each container (by name, from `labtui inspect`): [(PID, role)] of the processes labtui
    keeps for it: the supervisor, PID 1, and any other process under the supervisor outside PID
    1's tree. Raises ValueError when the kernel's tree disagrees with the record."""
    kids = children()
    out = {}
    for info in infos:
        st, name = info["State"], info["Name"].lstrip("/")
        pid1 = st["Pid"]
        sup = int(stat_fields(pid1)[1])
        if sup != st.get("SupervisorPid"):
            raise ValueError(f"container {name}: PID 1 ({pid1}) has parent {sup} ({comm(sup)}), "
                             f"not the recorded supervisor {st.get('SupervisorPid')}")
        if comm(pid1) == os.path.basename(info["Path"]):
            raise ValueError(f"container {name}: PID 1 ({pid1}) is the command itself ({comm(pid1)}): "
                             "nothing of labtui's to count there")
        procs = [(sup, "supervisor"), (pid1, "PID 1")]
        procs += [(p, comm(p)) for p in sorted(subtree(sup, kids) - subtree(pid1, kids) - {sup})]  # none today
        out[name] = procs
    return out


def wait_settled(pids: list[int], limit: float = 60.0) -> None:
    """Until every process has run the same program for 3 s, then until the CPUs are idle."""
    deadline = time.monotonic() + limit
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = [program(p) for p in pids]
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 3.0:
            break
        time.sleep(0.25)
    wait_quiet()


# ------------------------------------------------------------------------------------ report

def fmt(kb: float) -> str:
    return f"{kb / MB:.2f} MB"


def report(what: str, per: list[list[tuple[str, dict[str, int]]]]) -> float:
    """per: for each container [(role [program], rollup)]. Prints the median per container (and
    each role's) and total / N; returns the median PSS per container in kB."""
    n = len(per)
    totals = [sum(r["Pss"] for _, r in c) for c in per]
    med = statistics.median(totals)
    parts = []
    for i, (role, _) in enumerate(per[0]):
        rows = [c[i][1] for c in per if len(c) > i]
        parts.append(f"{role} {fmt(statistics.median(r['Pss'] for r in rows))} "
                     f"(RSS {fmt(statistics.median(r['Rss'] for r in rows))})")
    print(f"  {what}, {n} idle: {fmt(med)} per container (median; total/{n} {fmt(sum(totals) / n)}): "
          + ", ".join(parts), flush=True)
    return med


# ------------------------------------------------------------------------------------ labtui

class Lab:
    def __init__(self, work: str, network: str) -> None:
        self.env = dict(os.environ, LABTUI_ROOT=os.path.join(work, "state"), LABTUI_CGROUP_PARENT="labtui-bench-idle",
                        LABTUI_DEFAULT_BRIDGE=BRIDGE)
        for k in ("LABTUI_HELPER", "LABTUI_NATIVE", "LABTUI_MONITOR"):
            self.env.pop(k, None)
        self.network = network
        built = os.path.join(work, "labtui")
        # The command and the engine's C programs as scripts/install leaves them.
        has_c = subprocess.run([os.path.join(REPO, "scripts", "build-launcher"), built]).returncode == 0
        self.launch = [built] if has_c else LAUNCH
        native = os.path.join(REPO, "scripts", "build-native")
        self.native = os.path.exists(native) and subprocess.run([native]).returncode == 0
        self.how = ("C launcher" if has_c else "Python launcher") + \
            (", engine/native built" if self.native else ", engine/native not built: Python everywhere")
        self.ids: list[str] = []

    def start(self, n: int, extra: dict) -> list[str]:
        env = dict(self.env, **extra)
        ids = []
        for _ in range(n):
            ids.append(sh(self.launch + ["run", "-d", "--network", self.network, "busybox", "sleep", "1000000"],
                          env).strip())
            self.ids.append(ids[-1])
        return ids

    def kept(self, ids: list[str]) -> list[list[tuple[int, str]]]:
        infos = json.loads(sh(LABTUI + ["inspect", *ids], self.env))
        return list(labtui_kept(infos).values())

    def measure(self, kept: list[list[tuple[int, str]]]) -> list[list[tuple[str, dict[str, int]]]]:
        wait_settled([p for procs in kept for p, _ in procs])
        return [[(f"{role} [{program(pid)}]", rollup(pid)) for pid, role in procs] for procs in kept]

    def remove(self, ids: list[str]) -> None:
        for i in range(0, len(ids), 50):
            sh(LABTUI + ["rm", "-f", *ids[i:i + 50]], self.env)
        self.ids = [i for i in self.ids if i not in ids]

    def helper(self) -> int | None:
        """The helper's PID once it serves (its lock names it, its socket says it is ready)."""
        run = os.path.join(self.env["LABTUI_ROOT"], "run")
        try:
            with open(os.path.join(run, "helper.lock")) as f:
                pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            return None
        return pid if pid and os.path.exists(f"/proc/{pid}") and os.path.exists(os.path.join(run, "helper.sock")) \
            else None

    def start_helper(self) -> int:
        sh(self.launch + ["ps"], self.env)  # the first command starts it, in the background
        deadline = time.monotonic() + 120
        while (pid := self.helper()) is None:
            if time.monotonic() > deadline:
                raise SystemExit("the helper did not start serving in 120 s")
            time.sleep(0.1)
        return pid

    def refused(self) -> list[str]:
        try:
            with open(os.path.join(self.env["LABTUI_ROOT"], "run", "helper.log")) as f:
                return [line.strip() for line in f if "refused" in line or "stale" in line]
        except OSError:
            return []

    def stop_helper(self, pid: int | None = None) -> None:
        subprocess.run(STOP_HELPER, env=self.env, capture_output=True, cwd=REPO)
        deadline = time.monotonic() + 30
        while pid and os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.1)

    def cleanup(self) -> None:
        self.stop_helper()
        if self.ids:
            subprocess.run(LABTUI + ["rm", "-f", *self.ids], env=self.env, capture_output=True, cwd=REPO)
        subprocess.run(LABTUI + ["system", "prune"], env=self.env, capture_output=True, cwd=REPO)
        if self.network != "none":
            code = "from engine import network; network.remove_network('bridge', lambda n: [], allow_default=True)"
            subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, cwd=REPO)
        self.stop_helper()  # prune may have started one; and the cgroup parent goes


def measure_labtui(lab: Lab, counts: list[int]) -> dict[str, dict[int, float]]:
    """Each way and size on its own (nothing else of the bench runs meanwhile)."""
    out: dict[str, dict[int, float]] = {}
    helpers = []
    for way, extra, warm in WAYS:
        for n in counts:
            helper = lab.start_helper() if warm else None
            ids = lab.start(n, extra)
            if warm and lab.refused():
                raise SystemExit("the helper refused the bench's commands:\n" + "\n".join(lab.refused()))
            kept = lab.kept(ids)
            out.setdefault(way, {})[n] = report(way, lab.measure(kept))
            if warm:
                helpers.append(f"{fmt(rollup(helper)['Pss'])} beside {n} ({way})")
                lab.stop_helper(helper)
                out.setdefault(f"{way}, helper gone", {})[n] = report(f"{way}, helper gone", lab.measure(kept))
            lab.remove(ids)
    print(f"  (the warm helper itself, once for all containers while it runs: PSS {'; '.join(helpers)})")
    return out


# ------------------------------------------------------------------------------------ podman

class Podman:
    def __init__(self, network: str) -> None:
        self.network = network
        self.names: list[str] = []
        self.image = self.net = False

    def why_not(self, layer: str) -> str | None:
        """None when podman can run a container here; else why not."""
        if shutil.which("podman") is None:
            return "podman is not installed (apt-get install -y podman)"
        tar = subprocess.run(["tar", "-C", layer, "-c", "."], capture_output=True, check=True).stdout
        p = subprocess.run(["podman", "import", "-", PODMAN_IMAGE], input=tar, capture_output=True)
        if p.returncode != 0:
            return f"podman import failed: {p.stderr.decode().strip()[-500:]}"
        self.image = True
        if self.network != "none":
            p = subprocess.run(["podman", "network", "create", "--internal", "--disable-dns", PODMAN_NET],
                               capture_output=True)
            if p.returncode != 0:
                return f"podman network create failed: {p.stderr.decode().strip()[-500:]}"
            self.net = True
        p = subprocess.run(PODMAN_RUN + ["--rm", "--name", self.name(), *self.net_args(), PODMAN_IMAGE, "true"],
                           capture_output=True)
        if p.returncode != 0:
            return f"podman run failed ({p.returncode}): {p.stderr.decode().strip()[-500:]}"
        return None

    def net_args(self) -> list[str]:
        return ["--network", "none" if self.network == "none" else PODMAN_NET]

    def name(self) -> str:
        self.names.append(f"labtui-bench-idle-{os.getpid()}-{len(self.names)}")
        return self.names[-1]

    def start(self, n: int) -> list[str]:
        names = []
        for _ in range(n):
            names.append(self.name())
            sh(PODMAN_RUN + self.net_args() + ["--name", names[-1], PODMAN_IMAGE, "sleep", "1000000"])
        return names

    def measure(self, names: list[str]) -> list[list[tuple[str, dict[str, int]]]]:
        pids = [int(p) for p in sh(PODMAN + ["inspect", "--format", "{{.State.ConmonPid}}", *names]).split()]
        wait_settled(pids)
        return [[(f"conmon [{program(p)}]", rollup(p))] for p in pids]

    def remove(self, names: list[str]) -> None:
        sh(PODMAN + ["rm", "-f", "-t", "0", *names])

    def cleanup(self) -> None:
        if self.names:
            subprocess.run(PODMAN + ["rm", "-f", "-i", "-t", "0", *self.names], capture_output=True)
        if self.image:
            subprocess.run(["podman", "rmi", "-f", PODMAN_IMAGE], capture_output=True)
        if self.net:
            subprocess.run(["podman", "network", "rm", "-f", PODMAN_NET], capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=50, help="containers in the many case (default 50; 1 is always measured)")
    ap.add_argument("--network", default="none", choices=["none", "bridge"])
    ap.add_argument("--no-podman", action="store_true", help="labtui only")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    counts = sorted({1, args.n})
    work = tempfile.mkdtemp(prefix="labtui-bench-idle-", dir="/var/tmp")
    lab = Lab(work, args.network)
    pod = Podman(args.network)
    try:
        subprocess.run([sys.executable, "-m", "compileall", "-q", "engine", "labtui"], stdout=subprocess.DEVNULL,
                       cwd=REPO)
        sh(LABTUI + ["run", "--rm", "busybox", "true"], lab.env)  # builds the busybox image once
        print("idle memory per container: PSS (/proc/PID/smaps_rollup) of what the runtime keeps for each "
              "container, not the command; [the program each runs]")
        print(f"labtui run -d --network {args.network} busybox sleep: the supervisor and PID 1 ({lab.how})")
        lab_kb = measure_labtui(lab, counts)
        n = counts[-1]
        worst = max(lab_kb["installed"][n], lab_kb["installed, no helper"][n])
        print(f"target: at most {TARGET_MB:.0f} MB per container with {n} (issue 15), as installed: "
              f"{'met' if worst / MB <= TARGET_MB else 'MISSED'} ({fmt(worst)} with or without the helper)")
        why = "--no-podman" if args.no_podman else None
        if why is None:
            layers = os.path.join(lab.env["LABTUI_ROOT"], "lib", "layers")
            why = pod.why_not(os.path.join(layers, sorted(os.listdir(layers))[0]))
        if why is not None:
            print(f"podman: not measured: {why}")
            return
        net = "none" if args.network == "none" else "an --internal bridge"
        print(f"podman --runtime runc run -d busybox sleep, network {net}: conmon")
        pod_kb = {}
        for k in counts:
            names = pod.start(k)
            pod_kb[k] = report("podman", pod.measure(names))
            pod.remove(names)
        ratios = ", ".join(f"{lab_kb[w][n] / pod_kb[n]:.2g}x {w}" for w, _, _ in WAYS)
        print(f"ratio labtui/podman ({n} containers): {ratios}")
    finally:
        lab.cleanup()
        pod.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
