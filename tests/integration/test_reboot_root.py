"""A reboot, simulated on the real kernel (issue 15): nothing lost, and `ps` tells the truth.

A private labtui (tests/privatelab.py) gets what a lab VM has when it is switched off: two
networks (so isolation rules too), a published port and a bind volume, containers with every
restart policy (`always` running, `always` paused, `always` never started, `unless-stopped`
running, `unless-stopped` stopped by hand, no policy running, no policy exited after writing a
file into its upper directory), its warm helper, and a lesson in progress. Then everything a
reboot ends is ended, with the kernel, and only what this test created: every labtui process
(helper, supervisors, inits, the containers' processes) SIGKILLed, the cgroups removed, the
veths, bridges and isolation rules deleted, and the runtime directory (run/, a tmpfs under
/run/labtui on a lab VM: engine/paths.py) wiped. The boot id stays the kernel's, so the missing
runtime directory is what tells labtui (engine/boot.py).

Then: before any labtui command the records already say that nothing runs; the first command
(`ps -a`) records how the lost containers ended (255) and starts `always` and `unless-stopped`
ones again (not the one stopped by hand, nor the never-started one), all matching the kernel;
the next command pays one stamp read; and nothing of the persistent directory is lost: logs
(extended, never cut), the volume, images and layers, the stopped containers' upper directories,
configs, lesson progress, the event and step streams (extended), and `system check` finds nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.privatelab import (
    LAUNCH,
    REPO,
    Lab,
    Reaper,
    cgroup_pids,
    free_port_base,
    our_processes,
    read,
    run,
    verify,
)

pytestmark = pytest.mark.root

SEED = int(os.environ.get("LABTUI_CHAOS_SEED") or random.SystemRandom().randrange(1 << 31))
LESSONS = REPO / "tests" / "fixtures" / "lessons"


@pytest.fixture
def lab():
    lb = Lab("reboot", random.Random(SEED))
    lb.env["LABTUI_LESSONS_DIR"] = lb.cold_env["LABTUI_LESSONS_DIR"] = str(LESSONS)
    try:
        with Reaper():  # the processes the reboot kills are reaped, as by systemd (privatelab.py)
            yield lb
    finally:
        lb.cli("lesson", "stop")
        lb.close()


def sh(lab: Lab, *args: str, helper: bool = False, check: bool = True):
    p = run(LAUNCH + list(args), env=lab.env if helper else lab.cold_env, timeout=60, cwd="/")
    assert "Traceback" not in p.stderr, p.stderr
    if check:
        assert p.returncode == 0, f"labtui {' '.join(args)} exited {p.returncode}: {p.stderr}"
    return p


def tree_digest(root: Path) -> dict[str, str]:
    """Every file below root (symlinks by target) -> its sha256: what must not change."""
    out = {}
    if not root.exists():
        return out
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def answers(port: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            if s.recv(64).startswith(b"HTTP/"):
                return True
        time.sleep(0.1)
    return False


def reboot(lab: Lab, ids: list[str]) -> dict[str, int]:
    """What a reboot does to this state, done with the kernel and scoped to it. Returns counts."""
    done = {"processes": 0, "cgroups": 0, "links": 0, "rules": 0, "mounts": 0}
    # Every process: labtui's (helper, workers, supervisors, inits) and the containers' own.
    deadline = time.monotonic() + 20
    while True:
        pids = {pid for pid, _ in our_processes(lab)} | cgroup_pids(lab.cgroup_dirs())
        if not pids:
            break
        assert time.monotonic() < deadline, f"processes that do not die: {pids}"
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                done["processes"] += 1
        for d in lab.cgroup_dirs():  # a frozen task acts on SIGKILL once thawed (cgroup v1)
            for sub, _dirs, _files in os.walk(d):
                with contextlib.suppress(OSError), open(os.path.join(sub, "freezer.state"), "w") as f:
                    f.write("THAWED")
        time.sleep(0.1)
    # Their cgroups, deepest first, and the parent.
    for d in lab.cgroup_dirs():
        for sub, _dirs, _files in sorted(os.walk(d), key=lambda t: -len(t[0])):
            os.rmdir(sub)
            done["cgroups"] += 1
    # Links: the containers' host veths (gone with their namespaces by now) and the bridges;
    # the isolation rules name the bridges (engine/network/isolation.py).
    bridges = lab.bridges()
    links = set(os.listdir("/sys/class/net"))
    for name in [f"lt{cid[:10]}" for cid in ids] + bridges:
        if name in links:
            run(["ip", "link", "del", name], timeout=10)
            done["links"] += 1
    for line in run(["ip", "-4", "rule", "show"], timeout=10).stdout.splitlines():
        pref, _, rule = line.partition(":")
        if any(f"iif {br} " in rule + " " for br in bridges):
            words = [w for w in rule.split() if not w.startswith("[")]  # "[detached]": its bridge is gone
            assert run(["ip", "-4", "rule", "del", "pref", pref, *words], timeout=10).returncode == 0
            done["rules"] += 1
    # Mounts below the state directory in the host's namespace (none while all is well).
    for line in reversed(read("/proc/self/mountinfo").splitlines()):
        point = line.split()[4]
        if point.startswith(f"{lab.root}/"):
            run(["umount", "-l", point], timeout=10)
            done["mounts"] += 1
    # The runtime directory: a tmpfs that a reboot empties.
    shutil.rmtree(lab.run)
    assert not our_processes(lab) and not lab.cgroup_dirs()
    assert not set(os.listdir("/sys/class/net")) & set(bridges)
    return done


def statuses_from_records(lab: Lab) -> dict[str, str]:
    """What the records say before any labtui command runs (engine/state.py reads the kernel;
    no sweep): in a process of its own under the lab's environment."""
    code = ("import json; from engine import state; "
            "print(json.dumps({c.name: c.status for c in state.all_containers()}))")
    p = run([LAUNCH[0], "-c", code], env=lab.cold_env, timeout=60, cwd=str(REPO))
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_reboot(lab: Lab, capsys):
    t0 = time.monotonic()
    rng = random.Random(SEED)
    port = free_port_base(rng, 1)
    net1, net2 = lab.new_network(), lab.new_network()
    vol = lab.root / "volume"  # a bind volume's host side: persistent, outside run/
    vol.mkdir()

    def run_d(name: str, *args: str) -> str:
        return sh(lab, "run", "-d", "--name", name, *args).stdout.strip()

    ids = {
        "always": run_d("always", "--restart", "always", "--network", net1, "-p", f"127.0.0.1:{port}:80",
                        "-v", f"{vol}:/data", "busybox", "sh", "-c",
                        "echo boot >> /data/boots; echo always-up; exec httpd -f -p 80"),
        "unless": run_d("unless", "--restart", "unless-stopped", "busybox", "sh", "-c",
                        "echo unless-up; exec sleep 3600"),
        "stopped": run_d("stopped", "--restart", "unless-stopped", "busybox", "sh", "-c",
                         "echo stopped-up; exec sleep 3600"),
        "paused": run_d("paused", "--restart", "always", "busybox", "sh", "-c", "echo paused-up; exec sleep 3600"),
        "plain": run_d("plain", "--network", net2, "busybox", "sh", "-c", "echo plain-up; exec sleep 3600"),
    }
    sh(lab, "run", "--name", "done", "busybox", "sh", "-c", "echo kept > /kept; echo done-bye")
    ids["done"] = lab.inspect("done")["Id"]
    ids["fresh"] = sh(lab, "create", "--name", "fresh", "--restart", "always", "busybox", "true").stdout.strip()
    sh(lab, "stop", "-t", "0", "stopped")
    sh(lab, "pause", "paused")
    # A lesson in progress: its first task done, then closed (lib/lessons/progress.json).
    sh(lab, "lesson", "start", "fixture-basic", "--student", "alice")
    ids["ltfx-a"] = run_d("ltfx-a", "busybox", "sleep", "600")
    st = json.loads(sh(lab, "lesson", "status", "--format", "json", check=False).stdout)
    assert "start" in st["done"], st
    sh(lab, "lesson", "stop")
    # A warm helper, as on a lab VM in use.
    sh(lab, "ps", helper=True)
    deadline = time.monotonic() + 120
    while not (lab.run / "helper.sock").exists():
        assert time.monotonic() < deadline, "no helper started"
        time.sleep(0.1)
    assert answers(port), "the published port does not answer before the reboot"

    logs = {name: sh(lab, "logs", name).stdout for name in ids}
    assert logs["always"] == "always-up\n" and logs["done"] == "done-bye\n", logs
    ended = {n: lab.inspect(n)["State"] for n in ("stopped", "done")}
    lib = lab.lib

    def persistent() -> dict:
        return {
            "images": tree_digest(lib / "images"), "layers": tree_digest(lib / "layers"),
            "lessons": tree_digest(lib / "lessons"), "names": tree_digest(lib / "names"),
            **{f"upper of {n}": tree_digest(lib / "containers" / ids[n] / "upper")
               for n in ("done", "stopped", "fresh")},
            **{f"config of {n}": tree_digest(lib / "containers" / ids[n])["config.json"] for n in ids},
        }

    kept = persistent()
    assert kept["upper of done"].get("kept"), "the exited container's file is not in its upper directory"
    assert (vol / "boots").read_text() == "boot\n"
    assert kept["images"] and kept["layers"] and kept["lessons"]
    streams = {name: (lib / name).read_bytes() for name in ("events.jsonl", "steps.jsonl")}

    # ---- the reboot -------------------------------------------------------------------------------
    t_reboot = time.monotonic()
    gone = reboot(lab, list(ids.values()))
    records = statuses_from_records(lab)
    assert not [n for n, s in records.items() if s in ("running", "paused", "restarting")], records

    # ---- labtui runs again ------------------------------------------------------------------------
    t1 = time.monotonic()
    first = sh(lab, "ps", "-a", "--format", "json", helper=True)  # no helper: the ordinary way
    t_first = time.monotonic() - t1
    t1 = time.monotonic()
    sh(lab, "ps", "-a", "--format", "json")
    t_next = time.monotonic() - t1
    after = {c["Names"]: c for c in (json.loads(line) for line in first.stdout.splitlines() if line.strip())}
    want = {"always": "running", "unless": "running", "paused": "running", "stopped": "exited",
            "plain": "exited", "done": "exited", "fresh": "created", "ltfx-a": "exited"}
    assert {n: c["State"] for n, c in after.items()} == want, after
    assert read(str(lab.run / "boot_id")).strip() == read("/proc/sys/kernel/random/boot_id").strip()
    problems = [p for n in ids for p in verify(lab, lab.inspect(n), after[n]["State"])]
    assert not problems, problems

    for name in ("plain", "ltfx-a"):  # running when the machine went down: docker's 255
        st = lab.inspect(name)["State"]
        assert st["ExitCode"] == 255 and "machine restarted" in st["Error"], st
        assert after[name]["Status"].startswith("Exited (255)"), after[name]
    for name, st in ended.items():  # how they ended before the reboot is kept
        now_st = lab.inspect(name)["State"]
        assert (now_st["ExitCode"], now_st["FinishedAt"]) == (st["ExitCode"], st["FinishedAt"]), (st, now_st)
    assert lab.inspect("paused")["State"]["Paused"] is False

    # ---- nothing lost -----------------------------------------------------------------------------
    assert answers(port), "the always container's published port does not answer after the reboot"
    assert (vol / "boots").read_text() == "boot\nboot\n"  # the volume kept, and written again
    now = persistent()
    assert now == kept, {k: (kept[k], now[k]) for k in kept if kept[k] != now[k]}
    for name, old in logs.items():
        new = sh(lab, "logs", name).stdout
        assert new.startswith(old), (name, old, new)
    assert sh(lab, "logs", "always").stdout == "always-up\nalways-up\n"
    for name, old in streams.items():
        assert (lib / name).read_bytes().startswith(old), f"{name} lost records"
    p = sh(lab, "lesson", "start", "fixture-basic")
    assert "Resuming fixture-basic" in p.stdout and "(1/3 tasks done)" in p.stdout, p.stdout
    sh(lab, "lesson", "stop")
    findings = lab.check()
    assert findings == [], findings

    with capsys.disabled():
        print(f"\nreboot: seed {SEED}; removed {gone}; first command after it {t_first * 1000:.0f} ms "
              f"(the sweep: 3 started again, 2 exits recorded), the next {t_next * 1000:.0f} ms; "
              f"set-up {t_reboot - t0:.1f} s, all {time.monotonic() - t0:.1f} s")
