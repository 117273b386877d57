"""`sudo ./bench/run`: every case, labtui side by side with its peers, in one run.

    sudo ./bench/run [--quick] [--cases CASE,...] [--peers PEER,...] [-o FILE] [--seed N]
    ./bench/run --chart FILE [--chart-out docs/bench-chart.txt]

Peers (bench/peers.py): runc (and runc with labtui's seccomp filter), podman (with runc), docker
(Debian's docker.io, its daemon started here and stopped after), lxc, bwrap, and crun (checked:
it refuses cgroup-hybrid hosts). Each is installed from Debian's packages on first use, gets the
same busybox root filesystem (labtui's own layer, no registry), and is probed with one container;
one that cannot run is recorded with the reason.

Cases (docs/benchmarks.md says what each measures and how):
  start-true      `run --rm busybox true`: labtui warm (its helper running) and labtui:first (no
                  helper: the first command of a session), beside each peer
  start-bridge    the same with a bridge network
  exec            `exec CONTAINER true` into a running container (and labtui:api, in-process)
  image-import    importing the busybox image (a docker-save archive; runc: untar a rootfs)
  idle-memory     PSS of the processes a runtime keeps per container, with 1 and with 50 running
  parallel-start  50 containers started at once: wall time and failures
  stats-tick      one `stats --no-stream` over 50 containers (and labtui:tick, in-process)
  tui-refresh     the app's dashboard refresh with 50 containers (bench/bench_tui.py)
  lessons-replay  the lesson curriculum replayed with its solve scripts (bench/bench_lessons.py)
  security-cost   what seccomp, capabilities and a user namespace add to a start (bench/bench_security.py)

Order: the first four are run in rounds; each round runs every (case, runtime) pair once, in a
shuffled order, each after the CPUs went idle. The fleet cases (idle-memory, parallel-start,
stats-tick, tui-refresh) start 50 containers of one runtime, measure, remove them, then the next
runtime, the runtimes in a shuffled order each round. Results: a JSON file (bench/results.py says
its format) in bench/results/, and a table of medians, quartiles and ratios on stdout.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import io
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

from bench import peers as P
from bench import results as R

REPO = P.REPO
CASES = ("start-true", "start-bridge", "exec", "image-import", "idle-memory", "parallel-start", "stats-tick",
         "tui-refresh", "lessons-replay", "security-cost")
MICRO = ("start-true", "start-bridge", "exec", "image-import")
FLEET = ("idle-memory", "parallel-start", "stats-tick", "tui-refresh")
PEER_ORDER = ("runc", "podman", "docker", "lxc", "bwrap", "crun")
QUICK_LESSONS = ("cgroups-v1-v2", "exec-setns", "memory-oom")


RUNTIME_ORDER = ("labtui", "labtui:first", "labtui:api", "labtui:tick", "runc", "runc+seccomp", "podman", "docker",
                 "lxc", "bwrap", "crun")


def ordered(d: dict) -> dict:
    """The runtimes of a case in one order everywhere (labtui's first), whatever order they ran in."""
    rank = {rt: i for i, rt in enumerate(RUNTIME_ORDER)}
    return {k: d[k] for k in sorted(d, key=lambda k: rank.get(k, len(rank)))}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- set-up --------------------------------------------------------------------------------------


def make_archives(ctx: P.Ctx) -> None:
    """The busybox layer as a plain tarball (docker/podman import) and as a docker-save archive
    (labtui image import, docker load, podman load), both made here: no registry."""
    ctx.rootfs_tar = os.path.join(ctx.work, "busybox-rootfs.tar")
    P.sh(["tar", "-C", ctx.rootfs, "-cf", ctx.rootfs_tar, "."])
    with open(ctx.rootfs_tar, "rb") as f:
        layer = f.read()
    diff = hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                                                           "/sbin:/bin"]},
                         "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff}"]},
                         "created": "2026-01-01T00:00:00Z", "history": [{"created_by": "labtui bench"}]}).encode()
    cfg_id = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": f"{cfg_id}.json", "RepoTags": ["localhost/labtui-bench/import:latest"],
                            "Layers": [f"{diff}/layer.tar"]}]).encode()
    ctx.archive = os.path.join(ctx.work, "busybox-docker-save.tar")
    with tarfile.open(ctx.archive, "w") as t:
        for name, data in ((f"{diff}/layer.tar", layer), (f"{cfg_id}.json", config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            t.addfile(info, io.BytesIO(data))


def set_up_peers(ctx: P.Ctx, lab: P.Labtui, wanted: list[str], doc: dict) -> list[P.Peer]:
    """Install, set up and probe each peer; the ones that ran come back, the rest are recorded."""
    ready: list[P.Peer] = []
    for name in PEER_ORDER:
        if name not in wanted:
            doc["peers"][name] = {"status": "not asked", "reason": "not in --peers"}
            continue
        kinds = [P.PEERS[name](ctx)]
        if name == "runc":
            kinds.append(P.Runc(ctx, seccomp=True))
        for peer in kinds:
            entry: dict = {"what": peer.what}
            err = peer.install()
            try:
                if err:
                    raise P.Unsupported(err)
                peer.setup()
                peer.probe()
                entry.update(status="ran", version=peer.version())
                ready.append(peer)
                log(f"{peer.name}: ready ({entry['version']})")
            except (P.Unsupported, P.RunError) as e:
                entry.update(status="unavailable", reason=str(e).strip()[-500:] or type(e).__name__)
                log(f"{peer.name}: cannot run here: {entry['reason']}")
                peer.teardown()
            doc["peers"][peer.name] = entry
    return ready


# ---- micro cases: rounds of every (case, runtime), shuffled ----------------------------------------


class Micro:
    def __init__(self, case: str, title: str, unit: str, how: str) -> None:
        self.case, self.title, self.unit, self.how = case, title, unit, how
        self.jobs: dict[str, callable] = {}
        self.samples: dict[str, list[float]] = {}
        self.failures: dict[str, int] = {}
        self.errors: dict[str, str] = {}
        self.skipped: dict[str, str] = {}
        self.notes: dict[str, str] = {}

    def add(self, runtime: str, fn, note: str = "") -> None:
        self.jobs[runtime] = fn
        self.samples[runtime] = []
        if note:
            self.notes[runtime] = note

    def record(self) -> dict:
        skipped = dict(self.skipped)
        samples = {}
        for rt, xs in self.samples.items():
            if xs:
                samples[rt] = xs
            else:
                skipped[rt] = f"every run failed: {self.errors.get(rt, '?')}"
        extra = {"errors": self.errors} if self.errors else {}
        return R.case_record(self.case, self.title, self.unit, samples, how=self.how, failures=self.failures,
                             notes=self.notes, skipped=skipped, extra=extra)


def cmd_job(peer: P.Peer, op: str, *args, **kw):
    """A job timing one command of a peer (a fresh command per call: runc needs a new id)."""
    def job() -> float:
        cmd, env = getattr(peer, op)(*args, **kw)
        return P.timed(cmd, env)
    return job


def micro_cases(wanted: list[str], lab: P.Labtui, peers: list[P.Peer], quick: bool) -> tuple[list[Micro], list]:
    """The micro cases and what they need running (exec's containers), as (case list, cleanups)."""
    cases: list[Micro] = []
    cleanups: list = []
    everyone: list[P.Peer] = [lab, *peers]
    for network, case in (("none", "start-true"), ("bridge", "start-bridge")):
        if case not in wanted:
            continue
        m = Micro(case, f"run --rm busybox true, network {network}: start to exit", "ms",
                  f"each runtime's `run --rm` of busybox `true` with network {network}, timed from the command's "
                  "start to its exit")
        m.add("labtui", cmd_job(lab, "true_cmd", network), "through the warm helper (any earlier command started it)")
        m.add("labtui:first", cmd_job(lab, "true_cmd", network, first=True),
              "LABTUI_HELPER=0: a fresh interpreter imports everything, as the first command of a session does")
        for peer in peers:
            try:
                peer.true_cmd(network)
                m.add(peer.name, cmd_job(peer, "true_cmd", network))
            except P.Unsupported as e:
                m.skipped[peer.name] = str(e)
        cases.append(m)
    if "exec" in wanted:
        m = Micro("exec", "exec CONTAINER true into a running busybox", "ms",
                  "`exec NAME true` into a container running `sleep 600`, timed from the command's start to its exit")
        for peer in everyone:
            name = f"{peer.ctx.prefix}-exec-{peer.name.replace('+', '-')}"
            try:
                peer.exec_cmd(name)
                peer.start(name)
            except (P.Unsupported, P.RunError) as e:
                m.skipped[peer.name] = str(e)
                continue
            cleanups.append((peer, name))
            m.add(peer.name, cmd_job(peer, "exec_cmd", name))
            if peer is lab:
                def api(name=name) -> float:
                    from engine import exec as exec_

                    t0 = time.perf_counter()
                    code = exec_.start(name, exec_.ExecRequest(["true"])).wait()
                    if code != 0:
                        raise P.RunError(f"engine exec exited {code}")
                    return (time.perf_counter() - t0) * 1000
                m.add("labtui:api", api, "engine.exec in the bench's own process: the CLI's start-up not counted")
        cases.append(m)
    if "image-import" in wanted:
        m = Micro("image-import", "import the busybox image", "ms",
                  "labtui `image import`, `docker load`, `podman load` of the same docker-save archive (one "
                  "busybox layer); runc: untar the same layer into a directory (its bundle's rootfs). The image "
                  "is removed after each (not timed)")
        refs = iter(range(1 << 30))
        for peer in everyone:
            try:
                peer.import_cmd("probe")
            except P.Unsupported as e:
                m.skipped[peer.name] = str(e)
                continue
            if peer.name == "runc+seccomp":
                continue

            def imp(peer=peer) -> float:
                ref = f"localhost/labtui-bench/import:{next(refs)}" if peer is lab else "import"
                cmd, env = peer.import_cmd(ref)
                try:
                    return P.timed(cmd, env)
                finally:
                    peer.unimport(ref)
            m.add(peer.name, imp, "untar into a directory: what runc and bwrap need" if peer.name == "runc" else "")
        for name in ("bwrap", "crun"):
            if any(p.name == name for p in peers):
                m.skipped[name] = "uses an unpacked directory, like runc"
        cases.append(m)
    return cases, cleanups


def run_micro(cases: list[Micro], rounds: int, rng: random.Random, quiet_limit: float, gap: float) -> None:
    from bench.bench_run import wait_quiet

    pairs = [(m, rt) for m in cases for rt in m.jobs]
    log(f"micro cases: {len(pairs)} (case, runtime) pairs, 1 warm-up + {rounds} rounds, shuffled")
    for rnd in range(rounds + 1):
        rng.shuffle(pairs)
        for m, rt in pairs:
            wait_quiet(quiet_limit)
            time.sleep(gap)
            try:
                x = m.jobs[rt]()
            except (P.RunError, subprocess.TimeoutExpired, OSError) as e:
                m.failures[rt] = m.failures.get(rt, 0) + (rnd > 0)
                m.errors[rt] = str(e)[-300:]
                continue
            if rnd > 0:  # round 0 warms every path up (caches, the helper's spare, podman's storage)
                m.samples[rt].append(x)
        if rnd:
            log(f"  round {rnd}/{rounds} done")


# ---- fleet cases: 50 containers of one runtime at a time -------------------------------------------


class Fleet:
    """What the fleet cases gather, over the runtimes and the rounds."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.idle1: dict[str, list[float]] = {}
        self.idle_n: dict[str, list[float]] = {}
        self.roles: dict[str, list[str]] = {}
        self.daemons: dict[str, list[float]] = {}
        self.par_wall: dict[str, list[float]] = {}
        self.par_fail: dict[str, int] = {}
        self.par_each: dict[str, list[float]] = {}
        self.par_errors: dict[str, str] = {}
        self.stats: dict[str, list[float]] = {}
        self.stats_extra: dict[str, dict] = {}
        self.tui: dict = {}
        self.skipped: dict[str, dict[str, str]] = {c: {} for c in ("idle", "parallel", "stats", "tui")}


def kept_pss(peer: P.Peer, names: list[str]) -> tuple[list[float], list[str]]:
    """idle memory per container: PSS (kB) summed over the processes the runtime keeps for it.

    Which processes are labtui's is bench/bench_idle.py's labtui_kept (peers.Labtui.kept): the
    recorded PID 1, its parent checked against the recorded supervisor, and anything else under
    the supervisor outside PID 1's tree. The rest of the case is the runner's (which containers,
    when, how many)."""
    kept = peer.kept(names)
    per, roles = [], []
    for n in names:
        procs = kept.get(n, [])
        try:
            per.append(float(sum(P.pss_kb(pid) for pid, _ in procs)))
        except OSError as e:  # gone since it was listed: the container died; not a sample
            log(f"  {peer.name}: {n}: a kept process is gone ({e})")
            continue
        roles = [f"{role} ({P.comm_of(pid)})" for pid, role in procs] or roles
    return per, roles


def fleet_one(peer: P.Peer, fl: Fleet, wanted: list[str], rnd: int, quick: bool, lab: P.Labtui) -> None:
    prefix = f"{peer.ctx.prefix}-f{rnd}"
    name = peer.name
    try:
        peer.start_cmd(f"{prefix}-probe") if not isinstance(peer, P.Bwrap) else None
    except P.Unsupported as e:
        for c in fl.skipped:
            fl.skipped[c][name] = str(e)
        return
    if "idle-memory" in wanted:  # one container alone
        one = f"{prefix}-one"
        try:
            peer.start(one)
            time.sleep(1.0)
            per, roles = kept_pss(peer, [one])
            fl.idle1.setdefault(name, []).extend(per)
            fl.roles[name] = roles
        except (P.RunError, P.Unsupported, OSError) as e:
            fl.skipped["idle"][name] = str(e)[-300:]
        finally:
            peer.remove([one])
    names = [f"{prefix}-{i}" for i in range(fl.n)]
    started: list[str] = []
    each: list[float] = []
    errors: list[str] = []
    if isinstance(peer, P.Bwrap):
        fl.skipped["parallel"][name] = "no detached start: a bwrap sandbox lives as long as its parent"

    def one_start(n: str) -> tuple[str, float | None, str]:
        try:
            return n, peer.start(n), ""
        except (P.RunError, subprocess.TimeoutExpired, OSError) as e:
            return n, None, str(e)[-300:]

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=fl.n) as pool:
        for n, ms, err in pool.map(one_start, names):
            if ms is None:
                errors.append(err)
            else:
                started.append(n)
                each.append(ms)
    wall = (time.perf_counter() - t0) * 1000
    try:
        if not isinstance(peer, P.Bwrap):
            fl.par_wall.setdefault(name, []).append(wall)
            fl.par_fail[name] = fl.par_fail.get(name, 0) + len(errors)
            fl.par_each.setdefault(name, []).extend(each)
            if errors:
                fl.par_errors[name] = errors[0]
        log(f"  {name}: {len(started)}/{fl.n} started in parallel in {wall / 1000:.1f} s"
            + (f" ({len(errors)} failed: {errors[0][:120]})" if errors else ""))
        time.sleep(2.0)  # let them settle: the memory of a running container, not of one starting
        if "idle-memory" in wanted and started:
            try:
                per, roles = kept_pss(peer, started)
                fl.idle_n.setdefault(name, []).extend(per)
                fl.roles[name] = roles
                d = peer.daemons()
                if d:
                    fl.daemons.setdefault(name, []).append(float(sum(P.pss_kb(pid) for pid, _ in d)))
            except (P.RunError, OSError, ValueError) as e:
                fl.skipped["idle"][name] = str(e)[-300:]
        short = f"only {len(started)} of {fl.n} started"
        if "stats-tick" in wanted:
            if len(started) == fl.n:
                stats_ticks(peer, fl, quick, lab)
            else:
                fl.skipped["stats"][name] = short
        if "tui-refresh" in wanted and peer is lab:
            if len(started) == fl.n:
                tui_refresh(lab, fl, quick)
            else:
                fl.skipped["tui"][name] = short
    finally:
        t1 = time.perf_counter()
        peer.remove(names)
        log(f"  {name}: removed {fl.n} in {time.perf_counter() - t1:.1f} s")


STATS_NOTES = {
    "labtui": "two readings 0.5 s apart, for CPU % (labtui/cli/resources.py), through the warm helper",
    "labtui:tick": "one reading and its rows, in-process: what the app and `labtui stats` do each second",
    "docker": "the daemon answers after two of its readings, for CPU %",
    "podman": "--no-reset: one reading of each container's cgroup",
}


def stats_ticks(peer: P.Peer, fl: Fleet, quick: bool, lab: P.Labtui) -> None:
    ticks = 3 if quick else 10
    try:
        cmd, env = peer.stats_cmd()
    except P.Unsupported as e:
        fl.skipped["stats"][peer.name] = str(e)
        return
    try:
        P.timed(cmd, env, timeout=120)  # warm-up
        fl.stats.setdefault(peer.name, []).extend(P.timed(cmd, env, timeout=120) for _ in range(ticks))
    except P.RunError as e:
        fl.skipped["stats"][peer.name] = str(e)[-300:]
    if peer is lab:  # the tick `labtui stats` and the app do each second, in-process (bench/bench_stats.py)
        from bench.bench_stats import labtui_ticks

        res = labtui_ticks(ticks * 3, 0 if quick else 5.0)
        fl.stats.setdefault("labtui:tick", []).extend(res["walls"])
        fl.stats_extra["labtui:tick"] = {"rows": res["rows"], "cpu_ms_median": round(res["cpu"], 3)}
        if not quick:  # a few seconds of ticking at 1 Hz: its CPU share
            fl.stats_extra["labtui:tick"]["cpu_share_at_1hz_percent"] = round(res["share"], 3)


def tui_refresh(lab: P.Labtui, fl: Fleet, quick: bool) -> None:
    out = os.path.join(lab.ctx.work, "tui.json")
    cmd = [P.PY, os.path.join(REPO, "bench", "bench_tui.py"), "-n", str(fl.n), "--existing", "--json", out,
           "--seconds", "4" if quick else "10", "--starts", "2" if quick else "5"]
    p = subprocess.run(cmd, env=lab.env, cwd=REPO, capture_output=True, text=True, timeout=600)
    if p.returncode != 0 or not os.path.exists(out):
        fl.skipped["tui"]["labtui"] = f"bench_tui.py exited {p.returncode}: {p.stderr.strip()[-300:]}"
        return
    with open(out) as f:
        res = json.load(f)
    os.unlink(out)
    fl.tui.setdefault("gaps_ms", []).extend(res.get("gaps_ms", []))
    fl.tui.setdefault("hz", []).append(res["hz"])
    fl.tui.setdefault("cpu", []).append(res["cpu"])
    fl.tui.setdefault("step_ms", []).extend(res.get("lat_shown", []))
    fl.tui["sample_ms"] = res.get("sample_ms")
    fl.tui["apply_ms"] = res.get("apply_ms")
    fl.tui["ui_thread_calls"] = res.get("ui_thread_calls")
    fl.tui["rows_min"] = res.get("rows_min")


def fleet_records(fl: Fleet, wanted: list[str], everyone: list[str]) -> list[dict]:
    recs = []
    n = fl.n
    if "idle-memory" in wanted:
        how = ("PSS (kB, /proc/PID/smaps_rollup) summed over the processes the runtime keeps for each container, "
               "the workload (`sleep 600`) not counted: labtui its supervisor and PID 1; podman conmon and "
               "catatonit (--init); docker containerd-shim-runc-v2 and docker-init (--init); lxc its monitor; "
               "bwrap its two processes; runc none. Daemons shared by all containers (dockerd, containerd) are in "
               "extra.daemons_kb, not per container")
        notes = {rt: "keeps: " + ", ".join(fl.roles.get(rt) or ["nothing (runc exits once the container runs)"])
                 for rt in set(fl.idle1) | set(fl.idle_n)}
        recs.append(R.case_record("idle-memory-1", "idle memory per container, 1 running", "kB", fl.idle1, how=how,
                                  notes=notes, skipped=_missing(fl.skipped["idle"], fl.idle1, everyone)))
        recs.append(R.case_record(f"idle-memory-{n}", f"idle memory per container, {n} running", "kB", fl.idle_n,
                                  how=how + f"; one sample per container of the {n}", notes=notes,
                                  skipped=_missing(fl.skipped["idle"], fl.idle_n, everyone),
                                  extra={"daemons_kb": fl.daemons}))
    if "parallel-start" in wanted:
        recs.append(R.case_record(
            f"parallel-start-{n}", f"{n} containers started at once: wall time", "ms", fl.par_wall,
            how=f"{n} detached `run -d ... sleep 600` (runc: run -d; lxc: lxc-start -d) started together from {n} "
                "threads; wall time until the last returned. Failures are the starts that exited non-zero",
            failures=fl.par_fail, skipped=_missing(fl.skipped["parallel"], fl.par_wall, everyone),
            extra={"each_start_ms": {rt: R.summarize(xs) for rt, xs in fl.par_each.items()},
                   "first_error": fl.par_errors}))
    if "stats-tick" in wanted:
        recs.append(R.case_record(
            f"stats-tick-{n}", f"one stats tick over {n} running containers", "ms", fl.stats,
            how="one `stats --no-stream` (podman: --no-reset), as a command, timed from its start to its exit; "
                "labtui:tick is the tick `labtui stats` and the app do each second (api.stats_snapshot + "
                "stats_rows), in the bench's process (bench/bench_stats.py)",
            skipped=_missing(fl.skipped["stats"], fl.stats, everyone), extra=fl.stats_extra,
            notes={k: v for k, v in STATS_NOTES.items() if k in fl.stats}))
    if "tui-refresh" in wanted:
        tui = {"labtui": fl.tui["gaps_ms"]} if fl.tui.get("gaps_ms") else {}
        extra = {k: v for k, v in fl.tui.items() if k != "gaps_ms"}
        skipped = dict(fl.skipped["tui"])
        skipped.update({rt: "no terminal app" for rt in everyone if not R.is_labtui(rt)})
        recs.append(R.case_record(
            f"tui-refresh-{n}", f"the app's dashboard with {n} running containers: time between refreshes", "ms",
            tui, how="bench/bench_tui.py on the bench's running fleet: the headless app's dashboard, the gap between "
                     "two applied polls; extra: refreshes per second (hz), the app's CPU % of one core, a step's "
                     "latency to the screen (step_ms)", skipped=skipped, extra=extra))
    return recs


def _missing(skipped: dict[str, str], samples: dict, everyone: list[str]) -> dict[str, str]:
    out = {rt: why for rt, why in skipped.items() if rt not in samples}
    for rt in everyone:
        if rt not in samples and rt not in out and not R.is_labtui(rt):
            out[rt] = "no figure (see the peer's status)"
    return out


# ---- lessons --------------------------------------------------------------------------------------


def lessons_case(quick: bool) -> dict:
    from bench import bench_lessons

    ids = list(QUICK_LESSONS) if quick else bench_lessons.lesson_ids()
    res = bench_lessons.curriculum(ids)
    ran = {k: v for k, v in res["times"].items() if k not in res["skipped"] and k not in res["failed"]}
    return R.case_record(
        "lessons-replay", f"the lesson curriculum replayed ({len(ids)} lessons)", "s", {"labtui": list(ran.values())},
        how="`labtui lesson replay ID --solve` for each lesson, one after the other (bench/bench_lessons.py); one "
            "sample per lesson; extra.total_s is the whole curriculum",
        failures={"labtui": len(res["failed"])},
        skipped={"peers": "the lessons are labtui's"},
        extra={"total_s": round(res["total"], 2), "lessons": {k: round(v, 2) for k, v in res["times"].items()},
               "unsupported_here": res["skipped"], "failed": res["failed"], "checks": res["checks"]})


# ---- security: what each of labtui's defaults adds to a start ------------------------------------


def security_case(lab: P.Labtui, quick: bool) -> dict:
    out = os.path.join(lab.ctx.work, "security.json")
    cmd = [P.PY, os.path.join(REPO, "bench", "bench_security.py"), "-n", "3" if quick else "15", "--pyc",
           "--json", out]
    env = {k: v for k, v in lab.env.items() if k != "LABTUI_ROOT"}  # it makes its own state
    p = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=1800)
    how = ("bench/bench_security.py: `labtui run --rm busybox true` (python -m labtui.cli, no helper) in five "
           "configurations, round-robin: bare (no filter, every capability, no masked paths), +caps (docker's "
           "14 and no_new_privs), +seccomp (labtui's default: docker's profile, compiled-filter cache warm), "
           "+seccomp cold (the cache emptied each time), +userns (the default plus --userns=private)")
    if p.returncode != 0 or not os.path.exists(out):
        return R.case_record("security-cost", "what labtui's security defaults add to a start", "ms", {},
                             how=how, skipped={"labtui": f"bench_security.py exited {p.returncode}: "
                                                         f"{p.stderr.strip()[-300:]}"})
    with open(out) as f:
        res = json.load(f)
    bare = statistics.median(res["ms"]["bare"])
    names = {"bare": "labtui:bare", "+caps": "labtui:+caps", "+seccomp": "labtui",
             "+seccomp cold": "labtui:cold-filter", "+userns": "labtui:+userns"}
    return R.case_record("security-cost", "what labtui's security defaults add to a start", "ms",
                         {names.get(k, f"labtui:{k}"): v for k, v in res["ms"].items()}, how=how,
                         notes={"labtui": "the default: capabilities dropped, seccomp, masked paths"},
                         skipped={"peers": "labtui's own configurations (COMPARATIVE_ANALYSIS.md compares the "
                                           "defaults each runtime ships)"},
                         extra={"steps_ms": res["steps_ms"], "races": res["races"],
                                "median_over_bare": {names.get(k, k): round(statistics.median(v) / bare, 3)
                                                     for k, v in res["ms"].items()}})


# ---- the run --------------------------------------------------------------------------------------


def pick(arg: str | None, allowed: tuple[str, ...], what: str) -> list[str]:
    if not arg:
        return list(allowed)
    if arg == "none":
        return []
    out = []
    for word in arg.replace(",", " ").split():
        hits = [a for a in allowed if a == word or a.startswith(word) or word.startswith(a)]
        if not hits:
            raise SystemExit(f"bench/run: unknown {what} {word!r} (one of: {', '.join(allowed)})")
        out += [h for h in hits if h not in out]
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="cases: " + ", ".join(CASES) + "\npeers: " + ", ".join(PEER_ORDER))
    ap.add_argument("--quick", action="store_true", help="fewer rounds and ticks, 3 lessons: for development")
    ap.add_argument("--cases", help="comma-separated cases (default: all)")
    ap.add_argument("--peers", help="comma-separated peers (default: all; none: labtui alone)")
    ap.add_argument("-o", "--output", help="results file (default bench/results/bench-DATE[-quick].json)")
    ap.add_argument("--rounds", type=int, help="rounds of the micro cases (default 30, --quick 5)")
    ap.add_argument("--fleet-rounds", type=int, help="rounds of the fleet cases (default 3, --quick 1)")
    ap.add_argument("--fleet", type=int, default=50, help="containers in the fleet cases (default 50)")
    ap.add_argument("--seed", type=int, help="the shuffle's seed (default: random, recorded)")
    ap.add_argument("--chart", metavar="FILE", help="render the main ratios of a results file (no run)")
    ap.add_argument("--chart-out", default=os.path.join(REPO, "docs", "bench-chart.txt"),
                    help="where --chart writes (default docs/bench-chart.txt; - for stdout)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (debugging)")
    args = ap.parse_args(argv)

    if args.chart:
        from bench import chart

        text = chart.render(R.load(args.chart), source=os.path.relpath(args.chart, REPO))
        if args.chart_out == "-":
            sys.stdout.write(text)
        else:
            with open(args.chart_out, "w") as f:
                f.write(text)
            print(f"wrote {args.chart_out}")
        return 0
    if os.geteuid() != 0:
        raise SystemExit("bench/run: run as root (sudo ./bench/run)")
    cases = pick(args.cases, CASES, "case")
    wanted_peers = pick(args.peers, PEER_ORDER, "peer")
    rounds = args.rounds or (5 if args.quick else 30)
    fleet_rounds = args.fleet_rounds or (1 if args.quick else 3)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    out = args.output or os.path.join(REPO, "bench", "results",
                                      time.strftime("bench-%Y%m%d-%H%M%S") + ("-quick" if args.quick else "") + ".json")

    t_start = time.monotonic()
    work = tempfile.mkdtemp(prefix="ltb-", dir="/var/tmp")
    os.chmod(work, 0o711)
    ctx = P.Ctx(work, log)
    lab = P.Labtui(ctx)
    # The bench's own labtui state, for what runs in this process (engine.exec, the stats tick).
    os.environ.update(LABTUI_ROOT=lab.root, LABTUI_CGROUP_PARENT=ctx.cgroup_parent, LABTUI_DEFAULT_BRIDGE=ctx.bridge)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    doc = R.new_document(REPO, args.quick, argv)
    doc["seed"] = seed
    doc["settings"] = {"rounds": rounds, "fleet_rounds": fleet_rounds, "fleet": args.fleet, "cases": cases}
    ready: list[P.Peer] = []
    exec_cleanup: list = []
    try:
        log(f"labtui: setting up in {work} (cgroup parent {ctx.cgroup_parent}, bridge {ctx.bridge})")
        err = lab.install()
        if err:
            raise SystemExit(err)
        lab.setup()
        doc["peers"]["labtui"] = {"status": "ran", "version": lab.version(), "what": lab.what}
        make_archives(ctx)
        ready = set_up_peers(ctx, lab, wanted_peers, doc)

        micro, exec_cleanup = micro_cases(cases, lab, ready, args.quick)
        if micro:
            run_micro(micro, rounds, rng, quiet_limit=0.5 if args.quick else 3.0, gap=0.05 if args.quick else 0.1)
            for m in micro:
                doc["cases"].append(m.record())
        for peer, name in exec_cleanup:
            peer.remove([name])
        exec_cleanup = []

        if any(c in cases for c in FLEET):
            fl = Fleet(args.fleet)
            fleet_peers = [lab, *(p for p in ready if p.name not in ("runc+seccomp", "crun"))]
            for rnd in range(fleet_rounds):
                order = list(fleet_peers)
                rng.shuffle(order)
                log(f"fleet round {rnd + 1}/{fleet_rounds}: {', '.join(p.name for p in order)}")
                for peer in order:
                    fleet_one(peer, fl, cases, rnd, args.quick, lab)
            everyone = [p.name for p in fleet_peers]
            doc["cases"] += fleet_records(fl, cases, everyone)
        if "security-cost" in cases:
            log("security: what each default adds to a start (bench/bench_security.py)")
            doc["cases"].append(security_case(lab, args.quick))
        if "lessons-replay" in cases:
            log("lessons: the curriculum's replay")
            doc["cases"].append(lessons_case(args.quick))
    finally:
        for peer, name in exec_cleanup:
            peer.remove([name])
        for peer in reversed(ready):
            try:
                peer.teardown()
            except Exception as e:  # noqa: BLE001 - tear every peer down, whatever one does
                log(f"{peer.name}: teardown: {e}")
        lab.teardown()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    for rec in doc["cases"]:
        rec["runtimes"], rec["skipped"] = ordered(rec["runtimes"]), ordered(rec["skipped"])
        R.finish_case(rec)
    doc["duration_s"] = round(time.monotonic() - t_start, 1)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    R.dump(doc, out)
    print()
    print(report(doc))
    print(f"\nresults: {out} ({doc['duration_s']:.0f} s)")
    return 0


def report(doc: dict) -> str:
    h = doc["host"]
    lines = [f"labtui {doc['labtui']['commit'][:12]}{' (dirty)' if doc['labtui'].get('dirty') else ''}, "
             f"{doc['date']}, kernel {h['kernel']}, {h['cpu']} x{h['cpus']}, cgroup {h['cgroup'].get('kind')}"
             + (", --quick: figures not final" if doc.get("quick") else ""), "peers:"]
    for name, p in doc["peers"].items():
        lines.append(f"  {name:14} {p['status']:12} {p.get('version') or p.get('reason', '')}")
    for rec in doc["cases"]:
        lines.append("")
        lines += R.case_table(rec)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
