"""Every message docs/COMMON_ERRORS.md lists is what the real command prints, on the real kernel.

Each entry's `$` lines run as written, in a private labtui (its own LABTUI_ROOT, cgroup parent and
default bridge, as tests/integration/test_faults_root.py's Lab): `sudo [VAR=value] labtui ...` as
root with those variables, `labtui ...` as the unprivileged user 65534. The earlier commands must
succeed; the last one must exit with the entry's code and print each documented line (`<...>`
matching anything, runs of spaces any run of spaces). Host port 8080 stands for a port that is free
here. An entry marked `recipe` needs something a `$` line cannot say (a program holding a port, a
layer deleted, a full disk, a written transcript): RECIPES below sets that up, then runs its last
command the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests import reports
from tests.helpers import LABTUI, labtui, wait_for
from tests.integration.test_faults_root import Lab

pytestmark = pytest.mark.root

ENTRIES = {e.id: e for e in reports.error_entries()}
DROP_ROOT = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]


@pytest.fixture(scope="module")
def lab():
    lb = Lab()
    try:
        yield lb
    finally:
        left = lb.close()
    assert left == [], f"rm left cgroups behind: {left}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(lab: Lab, extra: dict[str, str]) -> dict[str, str]:
    env = dict(lab.env)
    for k, v in extra.items():
        env[k] = str(reports.REPO / v) if v and not v.startswith("/") and (reports.REPO / v).exists() else v
    return env


def run(lab: Lab, cmd: reports.Command, subst: dict[str, str]) -> subprocess.CompletedProcess:
    """One documented command, as the document says to run it."""
    assert cmd.labtui, f"not a labtui command (give the entry a recipe): {cmd.line}"
    argv = [_subst(a, subst) for a in cmd.argv]
    env = _env(lab, {k: _subst(v, subst) for k, v in cmd.env.items()})
    if cmd.root:
        p = labtui(*argv, env=env, check=False, timeout=180)
    else:
        p = subprocess.run(DROP_ROOT + LABTUI + argv, env=env, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def _subst(text: str, subst: dict[str, str]) -> str:
    for k, v in subst.items():
        text = text.replace(k, v)
    return text


def run_all(lab: Lab, entry: reports.ErrorEntry, subst: dict[str, str],
            commands: list[reports.Command] | None = None) -> subprocess.CompletedProcess:
    cmds = entry.commands if commands is None else commands
    for cmd in cmds[:-1]:
        p = run(lab, cmd, subst)
        assert p.returncode == 0, f"$ {cmd.line}\n{p.stdout}{p.stderr}"
    return run(lab, cmds[-1], subst)


def reset(lab: Lab) -> None:
    for c in lab.ps():
        lab("rm", "-f", c["Id"], check=False)


# ---- recipes: what a `$` line cannot say -------------------------------------------------------

def _port_in_use(lab: Lab, entry: reports.ErrorEntry, subst: dict[str, str], tmp: Path):
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", int(subst["8080"])))
    holder.listen()
    try:
        return run(lab, entry.commands[-1], subst)
    finally:
        holder.close()


def _layer_missing(lab: Lab, entry: reports.ErrorEntry, subst: dict[str, str], tmp: Path):
    lab.still_works()  # builds busybox:latest
    rec = json.loads((lab.lib / "images" / "busybox" / "latest.json").read_text())
    shutil.rmtree(lab.lib / "layers" / rec["layers"][0])
    try:
        return run(lab, entry.commands[-1], subst)
    finally:
        lab("image", "rm", "busybox:latest")  # the repair the message names


def _disk_full(lab: Lab, entry: reports.ErrorEntry, subst: dict[str, str], tmp: Path):
    full = Lab()  # a state directory of its own, on a small tmpfs
    try:
        full.lib.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0711", "zz-errors-full", str(full.lib)],
                       check=True)
        full.mounted = full.lib
        full.still_works()
        # The --rm container's supervisor deletes its files just after `run` returned: let it finish,
        # or the space it frees would let the next command through.
        wait_for(lambda: not full.supervisors(), timeout=20, what="the --rm container's supervisor to end")
        with open(full.lib / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        assert os.statvfs(full.lib).f_bavail == 0
        return run(full, entry.commands[-1], subst)
    finally:
        left = full.close()
        assert left == [], left


def _criu_check_fails(lab: Lab, entry: reports.ErrorEntry, subst: dict[str, str], tmp: Path):
    old = entry.commands[-1].env["LABTUI_CRIU"]
    if not os.access(old, os.X_OK):
        pytest.skip(f"no {old} here (Debian bookworm's criu package)")
    if subprocess.run([old, "check"], capture_output=True, timeout=60).returncode == 0:
        pytest.skip(f"{old} passes `criu check` on this kernel")
    lab("run", "-d", "--name", "web", "busybox", "sleep", "600")
    return run(lab, entry.commands[-1], subst)


def _transcript_refused(lab: Lab, entry: reports.ErrorEntry, subst: dict[str, str], tmp: Path):
    from lessons import session, transcript
    from lessons.core import schema

    path = tmp / "alice.jsonl"
    w = transcript.Writer.create(path, session.header(schema.find("pid-namespace"), "alice"))
    for argv in (["run", "-d", "--name", "pidns", "busybox", "sleep", "600"], ["top", "pidns"]):
        w.append({"type": "command", "argv": argv, "cwd": "/root", "exit": 0, "ts": time.time(), "dur": 0.2})
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace("pidns", "pidnz", 1)  # line 2 edited after it was written
    path.write_text("".join(lines))
    return run(lab, entry.commands[-1], {**subst, "alice.jsonl": str(path)})


RECIPES = {"port-in-use": _port_in_use, "layer-missing": _layer_missing, "disk-full": _disk_full,
           "criu-check-fails": _criu_check_fails, "transcript-refused": _transcript_refused}


def _skip_reason(entry_id: str) -> str | None:
    if entry_id == "cgroup-v2-missing":
        from engine import cgroups
        from lessons import features

        if features.check("cgroup-v2")[0]:
            return "this host has cgroup v2 with its controllers: the lesson runs here"
        if cgroups.host_layout().kind != "hybrid":
            return f"the documented reason is a hybrid host's; this one is {cgroups.host_layout().kind}"
    return None


# ---- the test ----------------------------------------------------------------------------------

def test_every_entry_can_be_run():
    assert set(RECIPES) == {e.id for e in ENTRIES.values() if e.recipe}
    for e in ENTRIES.values():
        assert e.commands and e.expected, e.id
        assert e.recipe or all(c.labtui for c in e.commands), f"{e.id}: a `$` line that is not labtui's"


@pytest.mark.parametrize("entry_id", list(ENTRIES))
def test_the_message_is_the_documented_one(entry_id, lab, tmp_path):
    entry = ENTRIES[entry_id]
    reason = _skip_reason(entry_id)
    if reason:
        pytest.skip(reason)
    subst = {"8080": str(_free_port())}
    try:
        p = RECIPES[entry_id](lab, entry, subst, tmp_path) if entry.recipe else run_all(lab, entry, subst)
    finally:
        reset(lab)
    out = (p.stderr + p.stdout).splitlines()
    assert p.returncode == entry.exit, f"exit {p.returncode}, documented {entry.exit}\n{p.stdout}{p.stderr}"
    for pattern, line in zip(entry.patterns(subst), entry.expected, strict=True):
        assert any(pattern.match(o) for o in out), f"documented: {line}\nprinted:\n{p.stderr}{p.stdout}"
