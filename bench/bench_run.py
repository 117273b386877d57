"""`labtui run --rm busybox true` beside `runc run` on the same busybox root filesystem.

labtui is run as the installed command runs (labtui/launch.py on `python3 -SI`), once through its
warm helper (the usual case: any earlier labtui command started it) and once the ordinary way
(LABTUI_HELPER=0: a fresh interpreter imports everything). All three run in one process,
interleaved, N times each, each after the same idle gap (--gap); prints the medians and the
ratios to runc.
Usage (root): /opt/labtui-venv/bin/python bench/bench_run.py [-n 30] [--network none|bridge]
Needs runc (apt-get install runc). Not a test: figures go into the issue's closing note.
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
LABTUI = [sys.executable, "-SI", os.path.join(REPO, "labtui", "launch.py")]
STOP_HELPER = [sys.executable, "-c", "from labtui import helper; helper.stop()"]


def timed(cmd: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.decode()}")
    return dt * 1000


def runc_bundle(layer: str, workdir: str) -> str:
    bundle = os.path.join(workdir, "bundle")
    os.makedirs(bundle)
    shutil.copytree(layer, os.path.join(bundle, "rootfs"), symlinks=True)
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["true"]
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f)
    return bundle


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=30)
    ap.add_argument("--network", default="none")
    ap.add_argument("--gap", type=float, default=0.1,
                    help="seconds of idle before each measured run, for all three alike (default 0.1: "
                         "commands typed by a person; 0 = back to back, the helper's spares then have no "
                         "idle time to be made ready in)")
    args = ap.parse_args()
    if shutil.which("runc") is None:
        raise SystemExit("runc is not installed: apt-get install runc")
    work = tempfile.mkdtemp(prefix="labtui-bench-", dir="/var/tmp")
    env = dict(os.environ, LABTUI_ROOT=os.path.join(work, "state"), LABTUI_CGROUP_PARENT="labtui-bench",
               LABTUI_DEFAULT_BRIDGE="ltbench0")
    try:
        subprocess.run([sys.executable, "-m", "compileall", "-q", "engine", "labtui"], stdout=subprocess.DEVNULL,
                       cwd=REPO)
        lab_cmd = LABTUI + ["run", "--rm", "--network", args.network, "busybox", "true"]
        cold_env = dict(env, LABTUI_HELPER="0")
        timed(lab_cmd, cold_env)  # builds the busybox image once
        timed(lab_cmd, env)  # starts the helper
        time.sleep(1.5)  # ... which imports everything in the background
        layer_dir = os.path.join(env["LABTUI_ROOT"], "lib", "layers")
        layer = os.path.join(layer_dir, os.listdir(layer_dir)[0])
        bundle = runc_bundle(layer, work)
        warm, cold, runc = [], [], []
        for i in range(args.n):
            time.sleep(args.gap)
            warm.append(timed(lab_cmd, env))
            time.sleep(args.gap)
            cold.append(timed(lab_cmd, cold_env))
            time.sleep(args.gap)
            runc.append(timed(["runc", "run", "--bundle", bundle, f"labtui-bench-{os.getpid()}-{i}"]))
        mw, mc, mr = statistics.median(warm), statistics.median(cold), statistics.median(runc)
        what = f"labtui run --rm --network {args.network} busybox true"
        print(f"{what}, warm helper:  median {mw:.1f} ms (min {min(warm):.1f}, max {max(warm):.1f}, n={args.n})")
        print(f"{what}, no helper:    median {mc:.1f} ms (min {min(cold):.1f}, max {max(cold):.1f})")
        print(f"runc run (busybox rootfs, true):{' ' * (len(what) - 17)}median {mr:.1f} ms "
              f"(min {min(runc):.1f}, max {max(runc):.1f})")
        print(f"ratio labtui/runc: {mw / mr:.2f}x with the helper, {mc / mr:.2f}x without")
    finally:
        subprocess.run(STOP_HELPER, env=env, capture_output=True, cwd=REPO)
        if args.network != "none":
            subprocess.run(LABTUI + ["system", "prune"], env=dict(env, LABTUI_HELPER="0"), capture_output=True)
            code = "from engine import network; network.remove_network('bridge', lambda n: [], allow_default=True)"
            subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, cwd=REPO)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
