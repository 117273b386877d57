"""`labtui run --rm busybox true` beside `runc run` on the same busybox root filesystem.

Both run in one process, interleaved, N times each; prints the medians and the ratio.
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

LABTUI = [sys.executable, "-m", "labtui.cli"]


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
    args = ap.parse_args()
    if shutil.which("runc") is None:
        raise SystemExit("runc is not installed: apt-get install runc")
    work = tempfile.mkdtemp(prefix="labtui-bench-", dir="/var/tmp")
    env = dict(os.environ, LABTUI_ROOT=os.path.join(work, "state"), LABTUI_CGROUP_PARENT="labtui-bench",
               LABTUI_DEFAULT_BRIDGE="ltbench0")
    try:
        subprocess.run(["python3", "-m", "compileall", "-q", "engine", "labtui"], stdout=subprocess.DEVNULL,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        lab_cmd = LABTUI + ["run", "--rm", "--network", args.network, "busybox", "true"]
        timed(lab_cmd, env)  # builds the busybox image once
        layer_dir = os.path.join(env["LABTUI_ROOT"], "lib", "layers")
        layer = os.path.join(layer_dir, os.listdir(layer_dir)[0])
        bundle = runc_bundle(layer, work)
        lab, runc = [], []
        for i in range(args.n):
            lab.append(timed(lab_cmd, env))
            runc.append(timed(["runc", "run", "--bundle", bundle, f"labtui-bench-{os.getpid()}-{i}"]))
        ml, mr = statistics.median(lab), statistics.median(runc)
        print(f"labtui run --rm --network {args.network} busybox true: median {ml:.1f} ms "
              f"(min {min(lab):.1f}, max {max(lab):.1f}, n={args.n})")
        print(f"runc run (busybox rootfs, true):      median {mr:.1f} ms (min {min(runc):.1f}, max {max(runc):.1f})")
        print(f"ratio labtui/runc: {ml / mr:.2f}x")
    finally:
        if args.network != "none":
            subprocess.run(LABTUI + ["system", "prune"], env=env, capture_output=True)
            code = "from engine import network; network.remove_network('bridge', lambda n: [], allow_default=True)"
            subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
