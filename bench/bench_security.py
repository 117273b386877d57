"""What seccomp, capabilities and a user namespace add to `labtui run --rm busybox true`.

Runs the same container N times in each configuration, round-robin so drift hits all of them
alike, and prints the median wall time of the whole CLI process, the ratio to the bare run, and
the median time of the security steps themselves (from the container's recorded steps):

    sudo /opt/labtui-venv/bin/python bench/bench_security.py [-n 15] [--keep-root]

Configurations:
    bare          no filter, every capability kept, no masked paths (seccomp=unconfined,
                  --cap-add ALL, systempaths=unconfined)
    +caps         docker's 14 capabilities and no_new_privs (seccomp still off)
    +seccomp      + docker's default seccomp filter (labtui's default: the filter comes from
                  the compiled-program cache)
    +seccomp cold the same with the cache emptied before each run (libseccomp compiles it)
    +userns       the default plus --userns=private (maps written, mapped layer cache warm)
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

CONFIGS = [
    ("bare", ["--security-opt", "seccomp=unconfined", "--cap-add", "ALL", "--security-opt", "systempaths=unconfined"]),
    ("+caps", ["--security-opt", "seccomp=unconfined"]),
    ("+seccomp", []),
    ("+seccomp cold", []),
    ("+userns", ["--userns=private"]),
]
SECURITY_MECHANISMS = ("capability", "seccomp", "userns")


PYC_PREFIX: str | None = None


def labtui(root: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, LABTUI_ROOT=root)
    if PYC_PREFIX:  # bytecode cached outside the source tree, as an installed labtui would have it
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = PYC_PREFIX
    return subprocess.run([sys.executable, "-m", "labtui.cli", *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)


def security_ms(root: str, name: str) -> dict[str, float]:
    """Sum of recorded step durations per security mechanism (plus masked-path mounts) for a run."""
    out = {m: 0.0 for m in (*SECURITY_MECHANISMS, "masks")}
    steps = Path(root, "lib", "steps.jsonl")
    for line in steps.read_text().splitlines():
        s = json.loads(line)
        if s.get("_bench") or not s.get("container"):
            continue
        if s.get("container") != name:
            continue
        d = s.get("duration_ms") or 0.0
        if s.get("mechanism") in SECURITY_MECHANISMS:
            out[s["mechanism"]] += d
        elif s.get("op") in ("mask path", "bind read-only path", "remount ro") and "/proc" in str(s.get("target")):
            out["masks"] += d
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=15, help="runs per configuration (default 15)")
    ap.add_argument("--keep-root", action="store_true", help="keep the temporary LABTUI_ROOT")
    ap.add_argument("--pyc", action="store_true",
                    help="let the runs cache bytecode (in a temporary PYTHONPYCACHEPREFIX, not the source tree); "
                         "without it, under PYTHONDONTWRITEBYTECODE=1, every run compiles the modules it imports")
    ap.add_argument("--json", metavar="FILE", help="also write each configuration's samples (ms) to FILE (bench/run)")
    a = ap.parse_args()
    global PYC_PREFIX
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 1
    root = tempfile.mkdtemp(prefix="labtui-bench-", dir="/var/tmp")
    os.chmod(root, 0o711)
    if a.pyc:
        PYC_PREFIX = os.path.join(root, "pycache")
    times: dict[str, list[float]] = {n: [] for n, _ in CONFIGS}
    parts: dict[str, list[dict]] = {n: [] for n, _ in CONFIGS}
    races = 0
    try:
        for name, flags in CONFIGS:  # warm up: image build, mapped layers, compiled filters
            p = labtui(root, "run", "--rm", *flags, "busybox", "true")
            if p.returncode != 0:
                print(f"{name}: {p.stderr.strip()}", file=sys.stderr)
                return 1
        for i in range(a.n):
            for name, flags in CONFIGS:
                if name == "+seccomp cold":
                    shutil.rmtree(Path(root, "lib", "seccomp-cache"), ignore_errors=True)
                for attempt in range(3):
                    cname = f"bench-{i}-{name.strip('+').replace(' ', '-')}-{attempt}"
                    t0 = time.perf_counter()
                    p = labtui(root, "run", "--rm", "--name", cname, *flags, "busybox", "true")
                    elapsed = time.perf_counter() - t0
                    # `run --rm` of a command this short can lose a race in the CLI (the container
                    # is gone before the CLI reads it back): not what is measured here, run it again.
                    if p.returncode == 0 or "no such container" not in p.stderr:
                        break
                    races += 1
                if p.returncode != 0:
                    print(f"{name}: {p.stderr.strip()}", file=sys.stderr)
                    return 1
                times[name].append(elapsed)
                parts[name].append(_by_name(root, cname))
        base = statistics.median(times["bare"])
        pyc = "bytecode cached" if a.pyc else ("no bytecode cache" if os.environ.get("PYTHONDONTWRITEBYTECODE")
                                               else "bytecode as the environment has it")
        print(f"labtui run --rm busybox true, median of {a.n} runs each ({os.uname().release}, "
              f"{os.cpu_count()} cpus, {pyc})\n")
        hdr = f"{'configuration':<15} {'median ms':>10} {'vs bare':>8} {'caps ms':>8} {'seccomp ms':>11} " \
              f"{'userns ms':>10} {'masks ms':>9}"
        print(hdr)
        print("-" * len(hdr))
        for name, _ in CONFIGS:
            med = statistics.median(times[name])
            m = {k: statistics.median([p[k] for p in parts[name]]) for k in (*SECURITY_MECHANISMS, "masks")}
            print(f"{name:<15} {med * 1000:>10.1f} {med / base:>7.2f}x {m['capability']:>8.2f} "
                  f"{m['seccomp']:>11.2f} {m['userns']:>10.2f} {m['masks']:>9.2f}")
        print("\n(step columns: median sum of the recorded steps' duration_ms of that mechanism in one run)")
        if races:
            print(f"({races} run(s) repeated after the CLI lost a `run --rm` race: no such container)")
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"ms": {n: [t * 1000 for t in ts] for n, ts in times.items()},
                           "steps_ms": {n: {k: statistics.median([p[k] for p in parts[n]])
                                            for k in (*SECURITY_MECHANISMS, "masks")} for n, _ in CONFIGS},
                           "races": races}, f)
        return 0
    finally:
        labtui(root, "ps", "-a")
        if not a.keep_root:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")


def _by_name(root: str, cname: str) -> dict:
    """The run's container id is gone with --rm; find it by the name in the event stream."""
    cid = None
    ev = Path(root, "lib", "events.jsonl")
    for line in reversed(ev.read_text().splitlines()):
        e = json.loads(line)
        if e.get("name") == cname and e.get("type") == "created":
            cid = e["container"]
            break
    return security_ms(root, cid) if cid else {m: 0.0 for m in (*SECURITY_MECHANISMS, "masks")}


if __name__ == "__main__":
    sys.exit(main())
