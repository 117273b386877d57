"""Latency of `labtui exec CONTAINER true` beside `runc exec ID true`, on the same root filesystem.

    sudo /opt/labtui-venv/bin/python bench/bench_exec.py [-n 30]

Starts a labtui container (busybox, sleep 600) and a runc container whose bundle rootfs is a copy
of the same busybox layer directory, then times N runs of each exec (after 3 warm-up runs each)
and prints the medians and the ratio. Also timed: the engine's exec API in-process (what the CLI
costs beyond Python's start-up) and a bare `python -c pass` (that start-up). Everything it made
is removed at the end, whatever happens. LABTUI_ROOT defaults to a temporary directory.
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
from pathlib import Path


def timed(fn, n: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def run(args: list[str], **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


def make_bundle(bundle: Path, layers: list[str], runc: str) -> None:
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    for layer in layers:  # bottom first; busybox has one layer
        run(["cp", "-a", f"{layer}/.", str(rootfs)])
    run([runc, "spec"], cwd=bundle)
    cfg_path = bundle / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["sleep", "600"]
    cfg["root"]["readonly"] = False
    cfg_path.write_text(json.dumps(cfg, indent=2))


def summary(name: str, ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=10)
    return f"{name:34} median {statistics.median(ms):7.1f} ms   p10 {q[0]:7.1f}   p90 {q[-1]:7.1f}   (n={len(ms)})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=30, help="timed runs of each (default 30)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    runc = shutil.which("runc")
    if runc is None:
        raise SystemExit("runc is not installed: apt-get install runc")
    own_root = None
    if not os.environ.get("LABTUI_ROOT"):
        own_root = tempfile.mkdtemp(prefix="labtui-bench-", dir="/var/tmp")
        os.environ["LABTUI_ROOT"] = own_root
    work = Path(tempfile.mkdtemp(prefix="bench-exec-", dir="/var/tmp"))
    labtui = [sys.executable, "-m", "labtui.cli"]
    name = f"bench-exec-{os.getpid()}"
    rid = f"bench-exec-{os.getpid()}"
    runc_root = str(work / "runc-state")
    runc_cmd = [runc, "--root", runc_root]
    started_runc = False
    try:
        run(labtui + ["run", "-d", "--name", name, "busybox", "sleep", "600"])
        info = json.loads(run(labtui + ["inspect", name]).stdout)[0]
        cfg = json.loads((Path(os.environ["LABTUI_ROOT"]) / "lib" / "containers" / info["Id"] / "config.json")
                         .read_text())
        make_bundle(work / "bundle", cfg["layers"], runc)
        subprocess.run(runc_cmd + ["run", "-d", "--bundle", str(work / "bundle"), rid], check=True, timeout=30,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started_runc = True

        def runc_exec() -> None:
            run(runc_cmd + ["exec", rid, "true"])

        def labtui_exec() -> None:
            run(labtui + ["exec", name, "true"])

        from engine import exec as exec_

        def api_exec() -> None:
            code = exec_.start(name, exec_.ExecRequest(["true"])).wait()
            assert code == 0

        def python_start() -> None:
            run([sys.executable, "-c", "pass"])

        results = {
            "runc exec ID true": timed(runc_exec, args.n),
            "labtui exec NAME true": timed(labtui_exec, args.n),
            "engine.exec API in-process": timed(api_exec, args.n),
            "python -c pass (start-up)": timed(python_start, args.n),
        }
        print(f"kernel {os.uname().release}, {os.cpu_count()} CPUs, runc "
              f"{run([runc, '--version']).stdout.split()[2]}")
        for label, ms in results.items():
            print(summary(label, ms))
        r = statistics.median(results["runc exec ID true"])
        lab = statistics.median(results["labtui exec NAME true"])
        api = statistics.median(results["engine.exec API in-process"])
        print(f"ratio labtui/runc: {lab / r:.2f}x   (engine API alone: {api / r:.2f}x)")
        return 0
    finally:
        if started_runc:
            subprocess.run(runc_cmd + ["delete", "-f", rid], capture_output=True, timeout=30)
        subprocess.run(labtui + ["rm", "-f", name], capture_output=True, timeout=60)
        shutil.rmtree(work, ignore_errors=True)
        if own_root:
            shutil.rmtree(own_root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
