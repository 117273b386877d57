"""`labtui run --rm busybox true` beside `runc run` on the same busybox root filesystem.

labtui is run as the installed command runs (labtui/launcher/launcher.c, built from this tree by
scripts/build-launcher), once through its warm helper (the usual case: any earlier labtui command
started it) and once the ordinary way (LABTUI_HELPER=0: the launcher execs labtui/launcher/launch.py and a
fresh interpreter imports everything, as the first command does); and once more warm through the
Python launcher (labtui/launcher/launch.py on `python3 -SI`, what install writes without a C compiler).
All run in one process, N rounds, in a shuffled order each round (so none always follows the same
neighbour), and print the medians, the quartiles and the ratios to runc.

runc is run with the spec `runc spec` writes (no seccomp filter), and once more with labtui's
default filter added (docker's profile, as docker hands it to runc): labtui loads that filter in
every container, so the second is the like-for-like figure.

Two ways to space the runs, each fair to all three:
  default          before each run, wait until the CPUs are idle (whatever the previous command
                   left running in the background has finished: labtui's cleanup,
                   the kernel's namespace teardown), then --gap seconds (0.1): commands typed
                   by a person.
  --back-to-back   a script running one command over and over: each of the four runs 10 times
                   in a row, without waiting, then the next (blocks in a shuffled order); each
                   run pays for what the one before it (of its own kind) left running.
Usage (root): /opt/labtui-venv/bin/python bench/bench_run.py [-n 30] [--back-to-back] [--network none|bridge]
Needs runc (apt-get install runc). Not a test: figures go into the issue's closing note.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABTUI = [sys.executable, "-SI", os.path.join(REPO, "labtui", "launcher", "launch.py")]
# The helper, and the bench's cgroup parent (it stays between containers: engine/cgroups).
STOP_HELPER = [sys.executable, "-c", "from labtui.launcher import helper; helper.stop(); "
               "from engine import cgroups; from engine.steps import null_recorder; "
               "cgroups.remove_empty_parents(null_recorder())"]


def timed(cmd: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.decode()}")
    return dt * 1000


def cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    return sum(vals), vals[3] + vals[4]  # total, idle + iowait


def wait_quiet(limit: float = 3.0) -> None:
    """Until the CPUs were at least 95% idle over 20 ms (or `limit` seconds passed)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        t0, i0 = cpu_times()
        time.sleep(0.02)
        t1, i1 = cpu_times()
        if t1 > t0 and (i1 - i0) / (t1 - t0) >= 0.95:
            return


def summary(xs: list[float]) -> str:
    q = statistics.quantiles(xs, n=4)
    return f"median {statistics.median(xs):.1f} ms (quartiles {q[0]:.1f}-{q[2]:.1f}, n={len(xs)})"


def oci_seccomp() -> dict:
    """labtui's default filter (docker's profile resolved for docker's default capabilities) as
    an OCI runtime spec linux.seccomp: what runc loads when docker runs a container."""
    sys.path.insert(0, REPO)
    from engine import security

    plan = security.seccomp_plan({"id": "bench", "security": {}})
    out: dict = {"defaultAction": plan.default_action, "architectures": plan.arches, "syscalls": []}
    if plan.default_errno is not None:
        out["defaultErrnoRet"] = plan.default_errno
    for r in plan.rules:
        rule: dict = {"names": [r.name], "action": r.action,
                      "args": [{"index": a["index"], "value": a["value"], "valueTwo": a.get("valueTwo", 0),
                                "op": a["op"]} for a in r.args]}
        if r.errno is not None:
            rule["errnoRet"] = r.errno
        out["syscalls"].append(rule)
    return out


def runc_bundle(layer: str, workdir: str, name: str, seccomp: dict | None = None) -> str:
    bundle = os.path.join(workdir, name)
    os.makedirs(bundle)
    shutil.copytree(layer, os.path.join(bundle, "rootfs"), symlinks=True)
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["true"]
    if seccomp is not None:
        spec["linux"]["seccomp"] = seccomp
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f)
    return bundle


def interleaved(runs: dict, n: int, back_to_back: bool, gap: float) -> dict[str, list[float]]:
    """n runs of each, shuffled (each after the CPUs went idle + gap), or back to back in
    blocks of 10 of one kind, the blocks shuffled."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    order = list(runs)
    rng = random.Random(1)
    if back_to_back:  # a script running one command again and again: blocks of 10
        for _ in range(max(1, n // 10)):
            rng.shuffle(order)
            for which in order:
                wait_quiet()
                for _ in range(10):
                    times[which].append(runs[which]())
    else:
        for _ in range(n):
            rng.shuffle(order)
            for which in order:
                wait_quiet()
                time.sleep(gap)
                times[which].append(runs[which]())
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=30)
    ap.add_argument("--network", default="none")
    ap.add_argument("--gap", type=float, default=0.1, help="seconds of idle before each run (default 0.1)")
    ap.add_argument("--back-to-back", action="store_true",
                    help="no waiting between runs: each pays for what the one before it left running")
    args = ap.parse_args()
    if shutil.which("runc") is None:
        raise SystemExit("runc is not installed: apt-get install runc")
    work = tempfile.mkdtemp(prefix="labtui-bench-", dir="/var/tmp")
    env = dict(os.environ, LABTUI_ROOT=os.path.join(work, "state"), LABTUI_CGROUP_PARENT="labtui-bench",
               LABTUI_DEFAULT_BRIDGE="ltbench0")
    try:
        subprocess.run([sys.executable, "-m", "compileall", "-q", "engine", "labtui"], stdout=subprocess.DEVNULL,
                       cwd=REPO)
        # The command as scripts/install writes it: labtui/launcher/launcher.c, built here from this tree
        # (the Python launcher when there is no C compiler), and the Python launcher beside it.
        built = os.path.join(work, "labtui")
        has_c = subprocess.run([os.path.join(REPO, "scripts", "build-launcher"), built]).returncode == 0
        words = ["run", "--rm", "--network", args.network, "busybox", "true"]
        lab_cmd = ([built] if has_c else LABTUI) + words
        py_cmd = LABTUI + words
        cold_env = dict(env, LABTUI_HELPER="0")
        timed(lab_cmd, cold_env)  # builds the busybox image once
        timed(lab_cmd, env)  # starts the helper
        time.sleep(1.5)  # ... which imports everything in the background
        layer_dir = os.path.join(env["LABTUI_ROOT"], "lib", "layers")
        layer = os.path.join(layer_dir, os.listdir(layer_dir)[0])
        bundle = runc_bundle(layer, work, "bundle")
        bundle_sc = runc_bundle(layer, work, "bundle-seccomp", oci_seccomp())
        runs = {
            "warm": lambda: timed(lab_cmd, env),
            "warm-py": lambda: timed(py_cmd, env),
            "cold": lambda: timed(lab_cmd, cold_env),
            "runc": lambda: timed(["runc", "run", "--bundle", bundle, f"labtui-bench-{os.getpid()}-{next(ids)}"]),
            "runc+seccomp": lambda: timed(["runc", "run", "--bundle", bundle_sc,
                                           f"labtui-bench-{os.getpid()}-{next(ids)}"]),
        }
        if not has_c:
            del runs["warm-py"]  # the same thing as "warm"
        ids = iter(range(1 << 30))
        times = interleaved(runs, args.n, args.back_to_back, args.gap)
        mw, mc, mr = (statistics.median(times[k]) for k in ("warm", "cold", "runc"))
        what = f"labtui run --rm --network {args.network} busybox true"
        spacing = ("back to back, in blocks of 10 of one kind" if args.back_to_back
                   else f"shuffled, each after the CPUs went idle + {args.gap} s")
        print(f"{args.n} rounds, {spacing}")
        print(f"{what}, warm helper:  {summary(times['warm'])}")
        if has_c:
            print(f"  the same with the Python launcher:{' ' * (len(what) - 19)}{summary(times['warm-py'])}")
        print(f"{what}, no helper:    {summary(times['cold'])}")
        print(f"runc run (busybox rootfs, true):{' ' * (len(what) - 17)}{summary(times['runc'])}")
        print(f"  the same with labtui's seccomp filter:{' ' * (len(what) - 25)}{summary(times['runc+seccomp'])}")
        print(f"ratio labtui/runc: {mw / mr:.2f}x with the helper, {mc / mr:.2f}x without")
        ms = statistics.median(times["runc+seccomp"])
        print(f"  (against runc with the same seccomp filter as labtui: {mw / ms:.2f}x and {mc / ms:.2f}x)")
    finally:
        subprocess.run(STOP_HELPER, env=env, capture_output=True, cwd=REPO)
        if args.network != "none":
            subprocess.run(LABTUI + ["system", "prune"], env=dict(env, LABTUI_HELPER="0"), capture_output=True)
            code = "from engine import network; network.remove_network('bridge', lambda n: [], allow_default=True)"
            subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, cwd=REPO)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
