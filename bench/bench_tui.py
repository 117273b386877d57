"""The terminal app under load: dashboard refresh rate and CPU with N running containers, and how
long a kernel step takes to reach the Steps tab.

Targets (the issue): with 50 running containers the dashboard refreshes at >= 4 Hz using < 15 %
of one core; a step is on screen < 100 ms after it happens; engine polling and stats run in
workers, never on the UI thread.

What is measured, in this process (the app runs headless through App.run_test(), as the Pilot
tests do; the CLI runs in child processes, whose CPU is not counted):

  refresh   applications of a poll result to the dashboard: calls of
            DashboardScreen.on_containers_polled that carry rows (wrapped on the class, which is
            where Textual looks handlers up), per second of the measured interval. Each one
            syncs the ContainersTable and the facts line. Also shown: the wall time of one
            engine poll (adapter.Sampler.rows, in the worker) and the UI time of one application.
  CPU       time.process_time() (every thread of the app's process: UI loop, poll worker, events
            follower) over the same interval, as % of one core. Only the dashboard is open.
  steps     --starts times (default 5): a container is created with the CLI, its screen opened on
            the Steps tab (over the dashboard, which keeps polling), then `labtui start` runs.
            For each step of those starts: happened = ts + duration_ms (the moment the engine
            finished it and appended it to steps.jsonl; ts itself is when the step began),
            received = StepsPanel.add_steps called with it (time.time(), UI thread), on screen =
            the first screen refresh after that call (a call_after_refresh callback).
            Latency = on screen - happened.
  UI thread calls of adapter.Sampler.rows, Tail.read, container_info, host_facts and
            gate_pending made on the UI (main) thread: must be 0.

Usage (root): /opt/labtui-venv/bin/python bench/bench_tui.py [-n 50] [--seconds 10] [--starts 5]
             [--batch 8] [--warmup 1] [--size 120x40]
Uses its own LABTUI_ROOT (a temp dir) and LABTUI_CGROUP_PARENT=labtui-bench; every container
started here is removed at the end (`labtui rm -f`), failure or not. Not a test: figures go
into the issue's closing note.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LABTUI = [sys.executable, "-m", "labtui.cli"]
TARGET_HZ = 4.0
TARGET_CPU = 15.0
TARGET_STEP_MS = 100.0


def cli(*args: str, timeout: float = 120) -> str:
    p = subprocess.run(LABTUI + list(args), capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise RuntimeError(f"labtui {' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")
    return p.stdout


def start_containers(n: int, batch: int) -> list[str]:
    """`labtui run -d busybox sleep 600`, `batch` at a time."""
    ids: list[str] = []
    for first in range(0, n, batch):
        procs = [subprocess.Popen(LABTUI + ["run", "-d", "busybox", "sleep", "600"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
                 for _ in range(min(batch, n - first))]
        errors = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            if p.returncode == 0:
                ids.append(out.strip())
            else:
                errors.append(err.strip())
        if errors:
            raise RuntimeError(f"labtui run failed ({len(errors)} of a batch): {errors[0]}")
    return ids


def remove_all() -> list[str]:
    """rm -f every container of this LABTUI_ROOT; returns what is left."""
    ids = subprocess.run(LABTUI + ["ps", "-aq"], capture_output=True, text=True).stdout.split()
    for i in range(0, len(ids), 25):
        subprocess.run(LABTUI + ["rm", "-f", *ids[i:i + 25]], capture_output=True, timeout=300)
    return subprocess.run(LABTUI + ["ps", "-aq"], capture_output=True, text=True).stdout.split()


# ---- hooks ---------------------------------------------------------------------------------------


class Probe:
    """What the wrapped methods record."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()
        self.ui_thread_calls: dict[str, int] = {}
        self.step_seen: dict[tuple[str, int], dict] = {}  # (cid, seq) -> {step, received, shown}
        self.watch_cid = ""
        self.add_steps_ms: list[float] = []  # UI time of one add_steps call (the watched container)

    def reset(self) -> None:
        with self.lock:
            self.applied: list[float] = []  # monotonic time of each applied poll
            self.applied_rows: list[int] = []
            self.apply_ms: list[float] = []
            self.sample_ms: list[float] = []

    def on_ui_thread(self, what: str) -> None:
        if threading.current_thread() is threading.main_thread():
            with self.lock:
                self.ui_thread_calls[what] = self.ui_thread_calls.get(what, 0) + 1


def install_hooks(probe: Probe) -> None:
    from labtui.tui import adapter
    from labtui.tui.screens.dashboard import DashboardScreen
    from labtui.tui.widgets.steps_panel import StepsPanel

    applied = DashboardScreen.on_containers_polled

    def on_containers_polled(self, message) -> None:
        t0 = time.perf_counter()
        applied(self, message)
        if not message.error:
            probe.applied.append(time.monotonic())
            probe.applied_rows.append(sum(r.status == "running" for r in message.rows))
            probe.apply_ms.append((time.perf_counter() - t0) * 1000)

    DashboardScreen.on_containers_polled = on_containers_polled

    rows = adapter.Sampler.rows

    def sampler_rows(self):
        probe.on_ui_thread("Sampler.rows")
        t0 = time.perf_counter()
        out = rows(self)
        with probe.lock:
            probe.sample_ms.append((time.perf_counter() - t0) * 1000)
        return out

    adapter.Sampler.rows = sampler_rows

    def watched(name: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            probe.on_ui_thread(name)
            return fn(*args, **kwargs)
        return wrapper

    adapter.Tail.read = watched("Tail.read", adapter.Tail.read)
    for name in ("container_info", "host_facts", "gate_pending"):
        setattr(adapter, name, watched(name, getattr(adapter, name)))

    add_steps = StepsPanel.add_steps

    def add_steps_hook(self, steps: list[dict]) -> None:
        received = time.time()
        add_steps(self, steps)
        if self.cid == probe.watch_cid:
            probe.add_steps_ms.append((time.time() - received) * 1000)
        mine = [s for s in steps if self.cid == probe.watch_cid and isinstance(s.get("seq"), int)]
        for s in mine:
            probe.step_seen.setdefault((self.cid, s["seq"]), {"step": s, "received": received, "shown": None})

        def shown() -> None:
            now = time.time()
            for s in mine:
                rec = probe.step_seen[(self.cid, s["seq"])]
                if rec["shown"] is None:
                    rec["shown"] = now

        if mine:
            self.call_after_refresh(shown)

    StepsPanel.add_steps = add_steps_hook


# ---- the scenario ------------------------------------------------------------------------------------


async def until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while True:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - widgets not mounted yet
            pass
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def read_steps(cid: str) -> list[dict]:
    from engine import paths

    out = []
    try:
        with open(paths.container_dir(cid) / "steps.jsonl") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
    except OSError:
        pass
    return out


async def scenario(args: argparse.Namespace, probe: Probe) -> dict:
    from textual.widgets import DataTable

    from labtui.tui.app import LabApp
    from labtui.tui.screens.container import ContainerScreen
    from labtui.tui.screens.dashboard import DashboardScreen

    res: dict = {}
    app = LabApp()
    async with app.run_test(size=args.size) as _pilot:
        await until(lambda: isinstance(app.screen, DashboardScreen) and probe.applied_rows
                    and probe.applied_rows[-1] == args.n, timeout=60,
                    what=f"the dashboard showing {args.n} running containers")
        dash = app.screen
        warm = len(probe.applied) + 2  # CPU % needs two readings; let the table settle
        await until(lambda: len(probe.applied) >= warm, timeout=30, what="two more polls")
        await asyncio.sleep(args.warmup)

        # -- the dashboard, alone on screen ------------------------------------------------------
        probe.reset()
        polls0 = dash.polls
        c0, t0 = time.process_time(), time.monotonic()
        await asyncio.sleep(args.seconds)
        c1, t1 = time.process_time(), time.monotonic()
        polls1 = dash.polls
        with probe.lock:
            applied = [t for t in probe.applied if t0 <= t <= t1]
            res["rows_min"] = min(probe.applied_rows) if probe.applied_rows else 0
            res["apply_ms"] = statistics.median(probe.apply_ms) if probe.apply_ms else float("nan")
            res["sample_ms"] = statistics.median(probe.sample_ms) if probe.sample_ms else float("nan")
            res["sample_max_ms"] = max(probe.sample_ms) if probe.sample_ms else float("nan")
        gaps = [(b - a) * 1000 for a, b in zip(applied, applied[1:], strict=False)]
        res["wall"] = t1 - t0
        res["hz"] = len(applied) / (t1 - t0)
        res["polls_counter_hz"] = (polls1 - polls0) / (t1 - t0)  # cross-check: the screen's own counter
        res["gap_median_ms"] = statistics.median(gaps) if gaps else float("nan")
        res["gap_max_ms"] = max(gaps) if gaps else float("nan")
        res["gaps_ms"] = gaps
        res["cpu"] = (c1 - c0) / (t1 - t0) * 100

        # -- step latency: new containers, each watched on its Steps tab ----------------------------
        # All the steps of one start land within a few ms, so they share one feed tick: several
        # starts, at random phases of that tick, give the spread.
        recs: list[dict] = []
        res["created"] = created = []
        for _ in range(args.starts):
            cid = (await asyncio.to_thread(cli, "create", "busybox", "sleep", "600")).strip()
            created.append(cid)
            probe.watch_cid = cid
            app.open_container(cid)
            await until(lambda cid=cid: isinstance(app.screen, ContainerScreen) and app.screen.cid == cid
                        and app.screen.active_tab == "steps" and app.screen.query_one("#steps-table", DataTable),
                        timeout=15, what="the container screen on its Steps tab")
            await asyncio.sleep(0.6 + random.uniform(0, 0.5))  # the feed has read the (empty) history
            started = time.time()
            await asyncio.to_thread(cli, "start", cid)

            def settled(cid=cid, started=started) -> bool:
                on_disk = {s["seq"] for s in read_steps(cid) if isinstance(s.get("seq"), int)
                           and s.get("ts", 0) >= started}
                shown = {seq for (c, seq), r in probe.step_seen.items() if c == cid and r["shown"] is not None}
                return bool(on_disk) and on_disk <= shown

            await until(settled, timeout=15, what="every step of the start on screen")
            recs += [r for (c, _), r in sorted(probe.step_seen.items())
                     if c == cid and r["step"].get("ts", 0) >= started]
        happened = [r["step"]["ts"] + (r["step"].get("duration_ms") or 0) / 1000 for r in recs]
        res["steps"] = len(recs)
        res["lat_shown"] = [(r["shown"] - h) * 1000 for r, h in zip(recs, happened, strict=True)]
        res["lat_received"] = [(r["received"] - h) * 1000 for r, h in zip(recs, happened, strict=True)]
        res["lat_from_ts"] = [(r["shown"] - r["step"]["ts"]) * 1000 for r in recs]
    return res


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(args: argparse.Namespace, res: dict, probe: Probe) -> None:
    med, mx = statistics.median(res["lat_shown"]), max(res["lat_shown"])
    rmed, rmx = statistics.median(res["lat_received"]), max(res["lat_received"])
    tmed, tmx = statistics.median(res["lat_from_ts"]), max(res["lat_from_ts"])
    ui_calls = sum(probe.ui_thread_calls.values())
    w, h = args.size
    print()
    print(f"labtui TUI bench: {args.n} running containers, dashboard measured {res['wall']:.1f} s "
          f"(headless {w}x{h}), {res['steps']} steps of {args.starts} `labtui start`s")
    print(f"{'':34}{'value':>18}  {'target':<12}")
    rows = [
        ("containers on the dashboard", f"{res['rows_min']}", f"{args.n}", res["rows_min"] == args.n),
        ("dashboard refresh", f"{res['hz']:.2f} Hz", f">= {TARGET_HZ:.0f} Hz", res["hz"] >= TARGET_HZ),
        ("app CPU, all threads", f"{res['cpu']:.1f} % of 1 core", f"< {TARGET_CPU:.0f} %", res["cpu"] < TARGET_CPU),
        ("step on screen, median", f"{med:.0f} ms", f"< {TARGET_STEP_MS:.0f} ms", med < TARGET_STEP_MS),
        ("step on screen, max", f"{mx:.0f} ms", f"< {TARGET_STEP_MS:.0f} ms", mx < TARGET_STEP_MS),
        ("engine calls on the UI thread", f"{ui_calls}", "0", ui_calls == 0),
    ]
    for name, value, target, ok in rows:
        print(f"{name:34}{value:>18}  {target:<12}{verdict(ok)}")
    print()
    print(f"details: poll (Sampler.rows, worker) median {res['sample_ms']:.1f} ms, max {res['sample_max_ms']:.1f} ms; "
          f"applying one poll on the UI thread median {res['apply_ms']:.1f} ms; "
          f"gap between refreshes median {res['gap_median_ms']:.0f} ms, max {res['gap_max_ms']:.0f} ms "
          f"(screen's own polls counter: {res['polls_counter_hz']:.2f} Hz)")
    print(f"         step received by StepsPanel.add_steps median {rmed:.0f} ms, max {rmx:.0f} ms after it happened; "
          f"on screen counted from its ts (step start) median {tmed:.0f} ms, max {tmx:.0f} ms; "
          f"one add_steps call median {statistics.median(probe.add_steps_ms):.1f} ms, "
          f"max {max(probe.add_steps_ms):.1f} ms ({len(probe.add_steps_ms)} calls)")
    if ui_calls:
        print(f"         on the UI thread: {probe.ui_thread_calls}")


def size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=50, help="running containers (default 50)")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds of dashboard measured (default 10)")
    ap.add_argument("--batch", type=int, default=8, help="containers started in parallel (default 8)")
    ap.add_argument("--starts", type=int, default=5, help="containers started for the step latency (default 5)")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds on the dashboard before measuring")
    ap.add_argument("--size", type=size, default=(120, 40), help="terminal size WxH (default 120x40)")
    ap.add_argument("--existing", action="store_true",
                    help="the -n containers already run in $LABTUI_ROOT (bench/run's fleet): start and remove "
                         "none of them, only the --starts ones made here")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE (for bench/run)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")

    if args.existing:
        work = os.environ.get("LABTUI_ROOT") or ""
        if not work:
            raise SystemExit("--existing: set LABTUI_ROOT to the state the containers run in")
    else:  # short: the attach socket path under it must fit in 108 bytes
        work = tempfile.mkdtemp(prefix="lt-bt-", dir="/var/tmp")
        os.environ["LABTUI_ROOT"] = work
        os.environ.setdefault("LABTUI_CGROUP_PARENT", "labtui-bench")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the cleanup below still runs
    probe = Probe()
    res: dict = {}
    try:
        if not args.existing:
            t0 = time.perf_counter()
            ids = start_containers(args.n, args.batch)
            print(f"started {len(ids)} containers in {time.perf_counter() - t0:.1f} s (batches of {args.batch})")
        install_hooks(probe)
        res = asyncio.run(scenario(args, probe))
        report(args, res, probe)
        if args.json:
            res["ui_thread_calls"] = sum(probe.ui_thread_calls.values())
            with open(args.json, "w") as f:
                json.dump(res, f)
    finally:
        if args.existing:  # bench/run removes its fleet, and anything these left, itself
            made = res.get("created", [])
            if made:
                subprocess.run(LABTUI + ["rm", "-f", *made], capture_output=True, timeout=300)
        else:
            cleanup(work)


def cleanup(work: str) -> None:
    left = remove_all()
    from engine import cgroups
    from engine.steps import null_recorder

    cgroups.remove_empty_parents(null_recorder())  # the bench's parent (it stays between containers)
    if left:
        print(f"warning: {len(left)} containers left in {work}: {left}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
