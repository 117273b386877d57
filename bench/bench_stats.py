"""One `stats` tick for 50 running containers, beside `podman stats --no-stream` for 50 of podman's.

A labtui tick is what `labtui stats` does every second: api.stats_snapshot() (list the running
containers, read each one's cgroup files) and stats_rows() (CPU %, memory %, ... for all counters),
measured in this process so interpreter start-up is not counted. Reports the median wall time and
CPU time per tick, and the CPU share of ticking at 1 Hz (measured over a few seconds of it).
podman's tick is a whole `podman stats --no-stream` (that is how it is used), its wall time and
the CPU time of the podman process (getrusage of children).

Usage (root): /opt/labtui-venv/bin/python bench/bench_stats.py [-n 50] [--ticks 30] [--no-podman]
podman (apt-get install podman) gets labtui's busybox layer through `podman import`: no registry.
Everything started here is removed afterwards. Not a test: figures go into the issue's closing note.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

LABTUI = [sys.executable, "-m", "labtui.cli"]
PODMAN_IMAGE = "localhost/labtui-bench-busybox:latest"
PODMAN_RUN = ["podman", "run", "-d", "--network", "none",
              "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
TARGET_MS = 20.0


def sh(cmd: list[str], env: dict | None = None, input: bytes | None = None) -> str:
    p = subprocess.run(cmd, capture_output=True, env=env, input=input)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed ({p.returncode}): {p.stderr.decode().strip()}")
    return p.stdout.decode()


def labtui_ticks(n_ticks: int, hz_seconds: float) -> dict:
    """Tick in this process (LABTUI_ROOT is already in the environment)."""
    from engine import api
    from labtui.cli.resources import stats_rows

    prev = {s["id"]: s for s in api.stats_snapshot()}
    walls, cpus, count = [], [], 0
    for _ in range(n_ticks):
        c0, t0 = time.process_time(), time.perf_counter()
        cur = api.stats_snapshot()
        rows = stats_rows(prev, cur)
        walls.append((time.perf_counter() - t0) * 1000)
        cpus.append((time.process_time() - c0) * 1000)
        prev = {s["id"]: s for s in cur}
        count = len(rows)
        time.sleep(0.02)
    # At 1 Hz, as `labtui stats` runs: CPU time used over the whole period, sleeping included.
    c0, t0 = time.process_time(), time.perf_counter()
    while time.perf_counter() - t0 < hz_seconds:
        cur = api.stats_snapshot()
        stats_rows(prev, cur)
        prev = {s["id"]: s for s in cur}
        time.sleep(1.0)
    share = (time.process_time() - c0) / (time.perf_counter() - t0) * 100 if hz_seconds > 0 else float("nan")
    return {"rows": count, "wall": statistics.median(walls), "cpu": statistics.median(cpus),
            "min": min(walls), "max": max(walls), "share": share, "walls": walls, "cpus": cpus}


def podman_ticks(n_ticks: int) -> dict:
    walls, cpus, rows = [], [], 0
    for _ in range(n_ticks):
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        out = sh(["podman", "stats", "--no-stream", "--no-reset", "--format", "{{.ID}} {{.CPUPerc}} {{.MemUsage}}"])
        walls.append((time.perf_counter() - t0) * 1000)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime) * 1000)
        rows = len([line for line in out.splitlines() if line.strip()])
    cpu = statistics.median(cpus)
    return {"rows": rows, "wall": statistics.median(walls), "cpu": cpu, "min": min(walls),
            "max": max(walls), "share": cpu / 10}  # ms of CPU per 1000 ms, in percent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=50, help="containers of each runtime")
    ap.add_argument("--ticks", type=int, default=30, help="labtui ticks measured back to back")
    ap.add_argument("--podman-ticks", type=int, default=5)
    ap.add_argument("--hz-seconds", type=float, default=5.0, help="seconds of ticking at 1 Hz")
    ap.add_argument("--no-podman", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    work = tempfile.mkdtemp(prefix="labtui-bench-stats-", dir="/var/tmp")
    os.environ.update(LABTUI_ROOT=os.path.join(work, "state"), LABTUI_CGROUP_PARENT="labtui-bench-stats")
    env = dict(os.environ)
    use_podman = not args.no_podman and shutil.which("podman") is not None
    ids: list[str] = []
    podman_names = [f"labtui-bench-stats-{os.getpid()}-{i}" for i in range(args.n)]
    podman_started: list[str] = []
    image_made = False
    try:
        t0 = time.perf_counter()
        for _ in range(args.n):
            ids.append(sh(LABTUI + ["run", "-d", "busybox", "sleep", "600"], env).strip())
        print(f"started {len(ids)} labtui containers in {time.perf_counter() - t0:.1f} s")
        lab = labtui_ticks(args.ticks, args.hz_seconds)
        assert lab["rows"] == args.n, f"stats saw {lab['rows']} containers, not {args.n}"

        pod = None
        if use_podman:
            layers = os.path.join(env["LABTUI_ROOT"], "lib", "layers")
            layer = os.path.join(layers, sorted(os.listdir(layers))[0])
            tar = subprocess.run(["tar", "-C", layer, "-c", "."], capture_output=True, check=True).stdout
            sh(["podman", "import", "-", PODMAN_IMAGE], input=tar)
            image_made = True
            t0 = time.perf_counter()
            for name in podman_names:
                sh(PODMAN_RUN + ["--name", name, PODMAN_IMAGE, "sleep", "600"])
                podman_started.append(name)
            print(f"started {len(podman_started)} podman containers in {time.perf_counter() - t0:.1f} s")
            pod = podman_ticks(args.podman_ticks)

        print()
        print(f"labtui stats tick, {lab['rows']} containers (api.stats_snapshot + stats_rows, in-process, "
              f"{args.ticks} ticks):")
        print(f"  median {lab['wall']:.2f} ms wall (min {lab['min']:.2f}, max {lab['max']:.2f}), "
              f"{lab['cpu']:.2f} ms CPU; at 1 Hz {lab['share']:.2f} % of one CPU "
              f"(target < {TARGET_MS:.0f} ms: {'met' if lab['wall'] < TARGET_MS else 'MISSED'})")
        if pod is not None:
            print(f"podman stats --no-stream, {pod['rows']} containers ({args.podman_ticks} runs):")
            print(f"  median {pod['wall']:.1f} ms wall (min {pod['min']:.1f}, max {pod['max']:.1f}), "
                  f"{pod['cpu']:.1f} ms CPU; at 1 Hz {pod['share']:.1f} % of one CPU")
            cpu_ratio = pod["cpu"] / max(lab["cpu"], 1e-3)
            print(f"ratio podman/labtui: {pod['wall'] / lab['wall']:.1f}x wall, {cpu_ratio:.1f}x CPU")
        else:
            print("podman: not measured (" + ("--no-podman" if args.no_podman else "podman is not installed") + ")")
    finally:
        if ids:
            subprocess.run(LABTUI + ["rm", "-f", *ids], env=env, capture_output=True)
        subprocess.run([sys.executable, "-c", "from engine import cgroups; from engine.steps import null_recorder; "
                        "cgroups.remove_empty_parents(null_recorder())"], env=env, capture_output=True)
        if podman_started:
            subprocess.run(["podman", "rm", "-f", "-t", "0", *podman_started], capture_output=True)
        if image_made:
            subprocess.run(["podman", "rmi", "-f", PODMAN_IMAGE], capture_output=True)
        left = subprocess.run(LABTUI + ["ps", "-aq"], env=env, capture_output=True, text=True).stdout.split()
        if left:
            print(f"warning: {len(left)} labtui containers left: {left}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
