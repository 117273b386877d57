"""Idle memory per container: the PSS of the processes labtui keeps for each container, beside
podman's (conmon).

What labtui keeps per container: the container's supervisor (`labtui-sup` today) and the
container's PID 1 (`labtui-init` today), found whatever their command names are: PID 1 is the PID
that `labtui inspect` records (State.Pid, checked against its start time), the supervisor is its
parent (checked against the recorded State.SupervisorPid), and any other process under the
supervisor that is not PID 1 or below it is counted too (none today). The user's command (here
`sleep`, PID 1's child) is not: it is the container's own work, as in podman. podman keeps one
process per container, conmon (the runtime exits once the container runs; PID 1 is the
command), so its figure is conmon's.

PSS (proportional set size, the Pss line of /proc/PID/smaps_rollup) counts each page divided by
the number of processes that map it: summed over processes it is their real share of memory.
Pages that a supervisor shares with the warm helper it was forked from, or with the other
containers' supervisors (the interpreter, libraries, a forked heap not yet written), are split
among all of them: so the figure depends on how many there are, and is given for 1 container and
for N (-n, 50), started one after the other, measured once the CPUs are idle.

labtui runs as the installed command runs (labtui/launcher/launcher.c built from this tree by
scripts/build-launcher; the Python launcher when there is no C compiler), three ways:
  no helper       LABTUI_HELPER=0: each `run` is a fresh interpreter, whose early fork becomes the
                  supervisor (docs/launcher.md); no helper runs
  warm helper     through the warm helper, which runs while they are measured: each supervisor is
                  a fork of a fork of it, and shares its pages
  helper gone     the same containers again after the helper left (it does after
                  LABTUI_HELPER_IDLE seconds, 15 minutes by default): their shared pages are then
                  split among fewer processes
Prints, for each, the median per container (supervisor + PID 1, and each) and the total / N, then
podman's conmon the same way (PSS, and RSS beside it) and the ratio labtui/podman.

Usage (root): /opt/labtui-venv/bin/python bench/bench_idle.py [-n 50] [--network none|bridge] [--no-podman]
Uses podman when it is installed (apt-get install podman; runs with --ulimit nofile=1024:1024
--ulimit nproc=4096:4096, which this host needs), and says why when it cannot run it. Everything
started here is removed afterwards. Not a test: figures go into the issue's closing note.
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
BRIDGE = "ltbenchidle0"
TARGET_MB = 4.0  # issue 15: a 50-container exercise in 200 MB
MB = 1024.0  # smaps_rollup is in kB


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
    """Until the CPUs were at least 95% idle over 0.2 s (or `limit` seconds passed): whatever
    the starts left running in the background has finished."""
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
    return out


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces and parentheses): field 3 on."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


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


def kept_by_labtui(infos: list[dict]) -> list[dict[str, int]]:
    """For each container {"supervisor": PID, "PID 1": PID, [comm: PID of any other]}: PID 1 as
    recorded (and still the recorded process: its start time), its parent the supervisor."""
    kids = children()
    out = []
    for info in infos:
        st = info["State"]
        pid1 = st["Pid"]
        sup = int(stat_fields(pid1)[1])
        if sup != st.get("SupervisorPid"):
            raise SystemExit(f"container {info['Id'][:12]}: PID 1 ({pid1}) has parent {sup} ({comm(sup)}), "
                             f"not the recorded supervisor {st.get('SupervisorPid')}")
        if comm(pid1) == os.path.basename(info["Path"]):
            raise SystemExit(f"container {info['Id'][:12]}: PID 1 ({pid1}) is the command itself "
                             f"({comm(pid1)}): nothing of labtui's to count there; update this bench")
        procs = {"supervisor": sup, "PID 1": pid1}
        for p in sorted(subtree(sup, kids) - subtree(pid1, kids) - {sup}):  # none today
            procs[f"{comm(p)} ({p})"] = p
        out.append(procs)
    return out


def pss(pids: list[int]) -> list[dict[str, int]]:
    return [rollup(p) for p in pids]


# ------------------------------------------------------------------------------------ report

def fmt(kb: float) -> str:
    return f"{kb / MB:.2f} MB"


def report(what: str, per: list[dict[str, dict[str, int]]]) -> float:
    """per: one {process: rollup} per container. Prints the median per container (and of each
    process) and total / N; returns the median PSS per container in kB."""
    n = len(per)
    totals = [sum(r["Pss"] for r in c.values()) for c in per]
    med = statistics.median(totals)
    parts = []
    for name in per[0]:
        vals = [c[name]["Pss"] for c in per if name in c]
        rss = statistics.median(c[name]["Rss"] for c in per if name in c)
        anon = statistics.median(c[name].get("Pss_Anon", 0) for c in per if name in c)
        parts.append(f"{name} {fmt(statistics.median(vals))} (anon {fmt(anon)}, RSS {fmt(rss)})")
    print(f"{what}, {n} idle: {fmt(med)} per container (median; total/{n} {fmt(sum(totals) / n)}): "
          + ", ".join(parts))
    return med


# ------------------------------------------------------------------------------------ labtui

class Lab:
    def __init__(self, work: str, network: str) -> None:
        self.env = dict(os.environ, LABTUI_ROOT=os.path.join(work, "state"), LABTUI_CGROUP_PARENT="labtui-bench-idle",
                        LABTUI_DEFAULT_BRIDGE=BRIDGE)
        self.network = network
        built = os.path.join(work, "labtui")
        # The command as scripts/install writes it (the Python launcher when there is no C compiler).
        has_c = subprocess.run([os.path.join(REPO, "scripts", "build-launcher"), built]).returncode == 0
        self.launch = [built] if has_c else LAUNCH
        self.how = "C launcher" if has_c else "Python launcher"
        self.ids: list[str] = []

    def start(self, n: int, warm: bool) -> list[str]:
        env = self.env if warm else dict(self.env, LABTUI_HELPER="0")
        ids = []
        for _ in range(n):
            ids.append(sh(self.launch + ["run", "-d", "--network", self.network, "busybox", "sleep", "1000000"],
                          env).strip())
            self.ids.append(ids[-1])
        return ids

    def measure(self, ids: list[str]) -> list[dict[str, dict[str, int]]]:
        wait_quiet()
        infos = json.loads(sh(LABTUI + ["inspect", *ids], self.env))
        return [{name: rollup(pid) for name, pid in procs.items()} for procs in kept_by_labtui(infos)]

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
        sh(self.launch + ["ps"], self.env)  # served: refused or stale would show in helper.log
        return pid

    def refused(self) -> list[str]:
        try:
            with open(os.path.join(self.env["LABTUI_ROOT"], "run", "helper.log")) as f:
                return [line.strip() for line in f if "refused" in line or "stale" in line]
        except OSError:
            return []

    def stop_helper(self) -> None:
        subprocess.run(STOP_HELPER, env=self.env, capture_output=True, cwd=REPO)

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
    """Each size on its own (nothing else of the bench runs meanwhile): without a helper, then
    through a fresh helper, then the same containers once that helper left."""
    out: dict[str, dict[int, float]] = {"no helper": {}, "warm helper": {}, "helper gone": {}}
    what = f"labtui run -d --network {lab.network} busybox sleep"
    for n in counts:  # no helper has run yet
        ids = lab.start(n, warm=False)
        out["no helper"][n] = report(f"{what} (no helper)", lab.measure(ids))
        lab.remove(ids)
    helper_pss = []
    for n in counts:
        helper = lab.start_helper()
        ids = lab.start(n, warm=True)
        if lab.refused():
            raise SystemExit("the helper refused the bench's commands:\n" + "\n".join(lab.refused()))
        out["warm helper"][n] = report(f"{what} (warm helper)", lab.measure(ids))
        helper_pss.append(rollup(helper)["Pss"])
        lab.stop_helper()
        deadline = time.monotonic() + 30
        while os.path.exists(f"/proc/{helper}") and time.monotonic() < deadline:
            time.sleep(0.1)
        out["helper gone"][n] = report(f"{what} (helper gone)", lab.measure(ids))
        lab.remove(ids)
    print(f"  (the warm helper itself, once for all containers while it runs: PSS "
          f"{' and '.join(fmt(p) for p in helper_pss)} beside {' and '.join(map(str, counts))} containers; "
          f"commands through the {lab.how})")
    return out


# ------------------------------------------------------------------------------------ podman

class Podman:
    def __init__(self, network: str) -> None:
        self.network = network
        self.names: list[str] = []
        self.image = False

    def why_not(self, layer: str) -> str | None:
        """None when podman can run a container here; else why not."""
        if shutil.which("podman") is None:
            return "podman is not installed (apt-get install -y podman)"
        tar = subprocess.run(["tar", "-C", layer, "-c", "."], capture_output=True, check=True).stdout
        p = subprocess.run(["podman", "import", "-", PODMAN_IMAGE], input=tar, capture_output=True)
        if p.returncode != 0:
            return f"podman import failed: {p.stderr.decode().strip()[-500:]}"
        self.image = True
        name = self.name()
        p = subprocess.run(PODMAN_RUN + ["--rm", "--name", name, PODMAN_IMAGE, "true"], capture_output=True)
        if p.returncode != 0:
            return f"podman run failed ({p.returncode}): {p.stderr.decode().strip()[-500:]}"
        return None

    def name(self) -> str:
        self.names.append(f"labtui-bench-idle-{os.getpid()}-{len(self.names)}")
        return self.names[-1]

    def start(self, n: int) -> list[str]:
        net = ["--network", "none"] if self.network == "none" else []  # else podman's default bridge
        names = []
        for _ in range(n):
            names.append(self.name())
            sh(PODMAN_RUN + net + ["--name", names[-1], PODMAN_IMAGE, "sleep", "1000000"])
        return names

    def measure(self, names: list[str]) -> list[dict[str, dict[str, int]]]:
        wait_quiet()
        pids = sh(PODMAN + ["inspect", "--format", "{{.State.ConmonPid}}", *names]).split()
        return [{"conmon": rollup(int(p))} for p in pids]

    def remove(self, names: list[str]) -> None:
        sh(PODMAN + ["rm", "-f", "-t", "0", *names])

    def cleanup(self) -> None:
        if self.names:
            subprocess.run(PODMAN + ["rm", "-f", "-i", "-t", "0", *self.names], capture_output=True)
        if self.image:
            subprocess.run(["podman", "rmi", "-f", PODMAN_IMAGE], capture_output=True)


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
        print("idle memory per container: PSS (/proc/PID/smaps_rollup) of what each runtime keeps per container, "
              "not the command")
        print(f"labtui: the supervisor and PID 1; {len(counts)} sizes, started one after the other, "
              "measured once the CPUs are idle")
        lab_mb = measure_labtui(lab, counts)
        worst = max(d[counts[-1]] for d in lab_mb.values())  # the target is for a class exercise: N of them
        print(f"target: at most {TARGET_MB:.0f} MB per container with {counts[-1]} (issue 15): "
              f"{'met' if worst / MB <= TARGET_MB else 'MISSED'} (the worst of the three ways: {fmt(worst)})")
        why = "--no-podman" if args.no_podman else None
        if why is None:
            layers = os.path.join(lab.env["LABTUI_ROOT"], "lib", "layers")
            why = pod.why_not(os.path.join(layers, sorted(os.listdir(layers))[0]))
        if why is not None:
            print(f"podman: not measured: {why}")
            return
        runtime = f"podman --runtime runc run -d{' --network none' if args.network == 'none' else ''} busybox sleep"
        pod_mb = {}
        for n in counts:
            names = pod.start(n)
            pod_mb[n] = report(f"{runtime}", pod.measure(names))
            pod.remove(names)
        n = counts[-1]
        warm, cold, gone = (lab_mb[k][n] for k in ("warm helper", "no helper", "helper gone"))
        print(f"ratio labtui/podman ({n} containers): {warm / pod_mb[n]:.1f}x with the helper, "
              f"{gone / pod_mb[n]:.1f}x once it left, {cold / pod_mb[n]:.1f}x without it")
    finally:
        lab.cleanup()
        pod.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
