"""`labtui run --rm --network bridge busybox true` beside `podman run --rm busybox true` on podman's
default network, plus labtui's `--network none`, and a check that `--network none` never imports pyroute2.

labtui runs as the installed command runs (labtui/launcher/launcher.c, through its warm helper: docs/launcher.md),
and the bridge run once more the ordinary way (LABTUI_HELPER=0: a fresh interpreter that imports
pyroute2 itself). All four run in one process, interleaved (the order rotates each round), N times
each; prints the medians and the ratio labtui(bridge)/podman (the issue's target: <= 0.3x podman).
podman runs with runc (`--runtime runc`), on an --internal netavark bridge (no NAT rules), and
labtui's busybox layer through `podman import`: no registry.

The pyroute2 check, twice:
  1. `python -X importtime -m labtui.cli run --rm --network none busybox true`, once: its stderr
     must have no pyroute2 line. This sees only the CLI process: the supervisor is a fork whose
     stderr goes to the container's supervisor.log (removed by --rm), and the supervisor is where
     a bridge's veth is set up; a warm `--network bridge` run shows no pyroute2 line here either.
  2. The same run with an audit hook ("import" events, inherited by every fork: CLI, supervisor,
     container init) writing pyroute2 imports to a file; `--network bridge` is the control that
     shows the hook does see the supervisor's import.

Usage (root): /opt/labtui-venv/bin/python bench/bench_network.py [-n 20]
Needs podman (apt-get install podman) and runc. labtui gets its own LABTUI_ROOT, cgroup parent and
default bridge; everything started here (labtui state and bridge, podman containers and image) is
removed afterwards. Not a test: figures go into the issue's closing note.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABTUI = [sys.executable, "-m", "labtui.cli"]  # the ordinary way: setup, checks, cleanup
# The installed command's way (labtui/launcher/launch.py on python3 -SI): through its warm helper.
LAUNCH = [sys.executable, "-SI", os.path.join(REPO, "labtui", "launcher", "launch.py")]
# The helper, and the bench's cgroup parent (it stays between containers: engine/cgroups).
STOP_HELPER = [sys.executable, "-c", "from labtui.launcher import helper; helper.stop(); "
               "from engine import cgroups; from engine.steps import null_recorder; "
               "cgroups.remove_empty_parents(null_recorder())"]
PODMAN_IMAGE = f"localhost/labtui-bench-network-busybox:{os.getpid()}"
# An --internal network: netavark then adds no MASQUERADE rule (traffic toward the outside), which
# podman's default network would; the bench sends nothing anywhere anyway.
PODMAN_NET = f"ltbench-{os.getpid()}"
PODMAN_RUN = ["podman", "--runtime", "runc", "run", "--rm", "--network", PODMAN_NET,
              "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
BRIDGE = "ltbenchnet0"
TARGET = 0.3

# Runs labtui.cli as `-m` does, with an audit hook that appends "pid module" for every pyroute2
# import to $BENCH_IMPORT_LOG, in whichever process (forks inherit the hook; the file is opened
# per event because the supervisor and the container's init move their fds around).
HOOKED_CLI = r"""
import os, runpy, sys
LOG = os.environ["BENCH_IMPORT_LOG"]
def hook(event, args):
    if event == "import" and str(args[0]).split(".")[0] == "pyroute2":
        try:
            fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.write(fd, f"{os.getpid()} {args[0]}\n".encode())
            os.close(fd)
        except OSError:
            pass
sys.addaudithook(hook)
sys.argv[0] = "labtui"
runpy.run_module("labtui.cli", run_name="__main__", alter_sys=True)
"""

# Creates labtui's default network up front, treating podman's default subnets as taken: podman's
# bridge only exists while one of its containers runs, so /proc/net/route alone would let labtui
# pick 10.88.0.0/16 too, and both bridges would hold the same subnet.
MAKE_DEFAULT_NETWORK = r"""
import ipaddress, sys
from engine import network
from engine.network import ipam
taken = [("podman", ipaddress.ip_network(s, strict=False)) for s in sys.argv[1:]]
net = network.ensure_default_network(routes=ipam.host_routes() + taken)
print(net["bridge"], net["subnet"])
"""


def timed(cmd: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=REPO)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.decode().strip()}")
    return dt * 1000


def sh(cmd: list[str], env: dict | None = None, input: bytes | None = None) -> str:
    p = subprocess.run(cmd, capture_output=True, env=env, input=input, cwd=REPO)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed ({p.returncode}): {p.stderr.decode().strip()}")
    return p.stdout.decode()


def summary(xs: list[float]) -> str:
    return f"median {statistics.median(xs):7.1f} ms (min {min(xs):.1f}, max {max(xs):.1f}, n={len(xs)})"


def importtime_check(env: dict) -> bool:
    """The CLI process's `-X importtime` lines: True if none names pyroute2."""
    cmd = [sys.executable, "-X", "importtime", "-m", "labtui.cli", "run", "--rm", "--network", "none",
           "busybox", "true"]
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=REPO, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr[-2000:]}")
    lines = [line for line in p.stderr.splitlines() if line.startswith("import time:")]
    hits = [line for line in lines if "pyroute2" in line]
    print(f"  -X importtime, CLI process stderr (--network none): {len(lines)} import lines, "
          f"{len(hits)} pyroute2 -> {'OK, not imported' if not hits else 'FAIL: ' + hits[0].strip()}")
    return not hits


def hooked_check(env: dict, network: str, work: str) -> tuple[int, set[int]]:
    """Run labtui under the audit hook; (CLI pid, pids of the processes that imported pyroute2)."""
    log = os.path.join(work, f"imports-{network}.log")
    cmd = [sys.executable, "-c", HOOKED_CLI, "run", "--rm", "--network", network, "busybox", "true"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO,
                         env=dict(env, BENCH_IMPORT_LOG=log))
    _, err = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"hooked labtui run --network {network} failed ({p.returncode}): {err.decode()}")
    try:
        with open(log) as f:
            pids = {int(line.split()[0]) for line in f if line.strip()}
    except FileNotFoundError:
        pids = set()
    return p.pid, pids


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20, help="runs of each of the three")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    for tool, pkg in (("podman", "podman"), ("runc", "runc")):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: apt-get install -y {pkg}")
    work = tempfile.mkdtemp(prefix="labtui-bench-network-", dir="/var/tmp")
    env = dict(os.environ, LABTUI_ROOT=os.path.join(work, "state"), LABTUI_CGROUP_PARENT="labtui-bench-network",
               LABTUI_DEFAULT_BRIDGE=BRIDGE)
    names = [f"labtui-bench-net-{os.getpid()}-{i}" for i in range(args.n + 1)]
    podman_tried: list[str] = []
    image_made = network_made = False
    ok = True
    try:
        subprocess.run([sys.executable, "-m", "compileall", "-q", "engine", "labtui"], stdout=subprocess.DEVNULL,
                       cwd=REPO)
        # The command as scripts/install writes it: labtui/launcher/launcher.c built from this tree (the
        # Python launcher when there is no C compiler).
        built = os.path.join(work, "labtui")
        launch = [built] if subprocess.run([os.path.join(REPO, "scripts", "build-launcher"), built]).returncode == 0 \
            else LAUNCH
        lab_none = launch + ["run", "--rm", "--network", "none", "busybox", "true"]
        lab_bridge = launch + ["run", "--rm", "--network", "bridge", "busybox", "true"]
        cold_env = dict(env, LABTUI_HELPER="0")
        timed(lab_none, cold_env)  # builds the busybox image once

        podman_subnets = sh(["podman", "network", "inspect", "podman",
                             "--format", "{{range .Subnets}}{{.Subnet}} {{end}}"]).split()
        network_made = True
        bridge, subnet = sh([sys.executable, "-c", MAKE_DEFAULT_NETWORK, *podman_subnets], env).split()
        backend = sh(["podman", "info", "--format", "{{.Host.NetworkBackend}}"]).strip()
        print(f"labtui default network: bridge {bridge}, {subnet}; "
              f"podman default network: podman ({backend}), {' '.join(podman_subnets)}")

        layers = os.path.join(env["LABTUI_ROOT"], "lib", "layers")
        layer = os.path.join(layers, sorted(os.listdir(layers))[0])
        tar = subprocess.run(["tar", "-C", layer, "-c", "."], capture_output=True, check=True).stdout
        image_made = True
        sh(["podman", "import", "-", PODMAN_IMAGE], input=tar)
        sh(["podman", "network", "create", "--internal", "--disable-dns", PODMAN_NET])

        def podman(i: int) -> float:
            podman_tried.append(names[i])
            return timed(PODMAN_RUN + ["--name", names[i], PODMAN_IMAGE, "true"])

        timed(lab_bridge, env)  # warm: first veth, caches; starts the helper
        time.sleep(1.5)         # ... which imports everything (pyroute2 too) in the background
        podman(args.n)          # warm: podman's storage, network setup

        runs = {"bridge": [], "podman": [], "none": [], "cold": []}
        steps = [("bridge", lambda i: timed(lab_bridge, env)), ("podman", podman),
                 ("none", lambda i: timed(lab_none, env)), ("cold", lambda i: timed(lab_bridge, cold_env))]
        for i in range(args.n):
            for k in range(4):  # rotate the order so that no runtime always follows the same one
                key, fn = steps[(i + k) % 4]
                runs[key].append(fn(i))
        mb, mp, mn, mc = (statistics.median(runs[k]) for k in ("bridge", "podman", "none", "cold"))
        print(f"labtui run --rm --network bridge busybox true:    {summary(runs['bridge'])}")
        print(f"podman --runtime runc run --rm busybox true:     {summary(runs['podman'])}")
        print(f"labtui run --rm --network none busybox true:      {summary(runs['none'])}")
        print(f"  the same bridge run without the helper:        {summary(runs['cold'])}")
        print(f"ratio labtui(bridge)/podman: {mb / mp:.2f}x (target <= {TARGET}x: "
              f"{'met' if mb / mp <= TARGET else 'MISSED'}); {mc / mp:.2f}x without the helper; "
              f"bridge costs labtui {mb - mn:+.1f} ms over none")

        print("pyroute2 with --network none:")
        ok = importtime_check(env)
        cli, pids = hooked_check(env, "none", work)
        print("  audit hook, every labtui process (--network none): "
              + ("OK, not imported" if not pids else f"FAIL: imported in pid(s) {sorted(pids)} (CLI pid {cli})"))
        ok = ok and not pids
        cli, pids = hooked_check(env, "bridge", work)
        where = ", ".join("CLI" if p == cli else f"pid {p} (not the CLI)" for p in sorted(pids)) or "nowhere"
        print(f"  control, audit hook (--network bridge): pyroute2 imported in {where}"
              + ("" if pids else " -- the hook saw nothing, so the none check proves nothing"))
        ok = ok and bool(pids)
    finally:
        subprocess.run(STOP_HELPER, env=env, capture_output=True, cwd=REPO)
        if podman_tried:
            subprocess.run(["podman", "rm", "-f", "-i", "-t", "0", *podman_tried], capture_output=True)
        if image_made:
            subprocess.run(["podman", "rmi", "-f", PODMAN_IMAGE], capture_output=True)
            subprocess.run(["podman", "network", "rm", "-f", PODMAN_NET], capture_output=True)
        left = subprocess.run(LABTUI + ["ps", "-aq"], env=env, capture_output=True, text=True, cwd=REPO).stdout.split()
        if left:
            subprocess.run(LABTUI + ["rm", "-f", *left], env=env, capture_output=True, cwd=REPO)
        subprocess.run(LABTUI + ["system", "prune"], env=env, capture_output=True, cwd=REPO)
        if network_made:
            code = "from engine import network; network.remove_network('bridge', lambda n: [], allow_default=True)"
            subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, cwd=REPO)
        shutil.rmtree(work, ignore_errors=True)
        pod_left = subprocess.run(["podman", "ps", "-aq", "--filter", f"name=labtui-bench-net-{os.getpid()}-"],
                                  capture_output=True, text=True).stdout.split()
        img_left = subprocess.run(["podman", "images", "-q", PODMAN_IMAGE],
                                  capture_output=True, text=True).stdout.split()
        if pod_left or img_left or os.path.exists(f"/sys/class/net/{BRIDGE}"):
            print(f"warning: left behind: podman containers {pod_left}, podman image {img_left}, "
                  f"bridge {BRIDGE} {'present' if os.path.exists(f'/sys/class/net/{BRIDGE}') else 'gone'}",
                  file=sys.stderr)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
