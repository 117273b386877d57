"""Command lines: random argv of labtui's commands, built from their real flags with garbage
values, run in-process (labtui.cli.main.main) as root against the real engine. Never a
traceback; a message on stderr whenever the exit code is not 0, and only the documented codes:

    0    success
    1    docker's "No such container" of rm/inspect (docs/engine.md); no lesson open; `grade`
         with a transcript refused (docs/lessons-grading.md)
    2    argparse's usage errors: "usage: ..." and "error: ..." (tests of the launcher and
         exec already hold labtui to it, so it is kept rather than docker's 125)
    125  everything else labtui refused (EngineError)

Names are "zzfz..." (tests/fuzz/argv.py): a fuzzed `rm -f` or `kill` only ever misses.
run/create name an image that does not exist, so every check of create runs and nothing is
made (the image is resolved after validation); test_fuzz_create_root.py creates for real."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.argv import INTS, LIMIT_FLAGS, examples, flags, garbage, names, ref, run_argv, values
from tests.fuzz.leftovers import new_since, snapshot

pytestmark = pytest.mark.root

NO_IMAGE = "zzfz-no-such-image"


def _positional(n_min: int = 1, n_max: int = 3):
    return st.lists(ref, min_size=n_min, max_size=n_max)


def _cmd(words: list[str], opts, positional=None):
    parts = [st.just(words), opts] + ([positional] if positional is not None else [])
    return st.tuples(*parts).map(lambda t: [w for p in t for w in p])


# Where grade's reports go: nowhere writable (`--json nan` once wrote ./nan into the tree).
NOWHERE = st.one_of(st.just("/nonexistent/d/x.json"), garbage.map(lambda g: "/nonexistent/" + g.replace("/", "")))
FORMAT = [("--format", values("table", "json", "pfc", "bpf"))]
# Every command that reads state or refuses a missing container; none that follows forever
# (events -f, stats without --no-stream), serves, or removes what is not its own (system prune).
COMMANDS = st.one_of(
    _cmd(["run"], run_argv(NO_IMAGE).map(lambda a: a)),
    _cmd(["run", "-d"], run_argv(NO_IMAGE)),
    _cmd(["create"], run_argv(NO_IMAGE)),
    _cmd(["start"], flags([("-a", None)]), _positional()),
    _cmd(["stop"], flags([("-t", values("0", "1", "-1", "x", "1e400"))]), _positional()),
    _cmd(["restart"], flags([("-t", values("0", "x"))]), _positional()),
    _cmd(["kill"], flags([("-s", values("KILL", "TERM", "SIGHUP", "9", "0", "65", "-1", "FOO", "SIGRTMIN+1"))]),
         _positional()),
    _cmd(["rm"], flags([("-f", None)]), _positional()),
    _cmd(["wait"], flags([]), _positional()),
    _cmd(["ps"], flags([("-a", None), ("-q", None)] + FORMAT), st.lists(garbage, max_size=1)),
    _cmd(["inspect"], flags([]), _positional(0)),
    _cmd(["logs"], flags([("--tail", values("all", "0", "5", "-1", "x")), ("-t", None)]), _positional(0, 2)),
    _cmd(["top"], flags([]), _positional(0, 2)),
    _cmd(["steps"], flags(FORMAT), _positional(0, 2)),
    _cmd(["events"], flags([("--since", values("10m", "0", "2024-01-01T00:00:00Z", "x", "-1m", "1e400")),
                            ("--until", values("10m", "0", "x")),
                            ("--filter", values("container=zzfz", "type=start", "x", "=", "type="))] + FORMAT)),
    _cmd(["gate"], st.just([]), st.tuples(values("next", "show"), ref, st.one_of(st.just([]), INTS.map(
        lambda v: ["-n", v]))).map(lambda t: [t[0], t[1], *t[2]])),
    _cmd(["exec"], flags([("-d", None), ("-i", None), ("-e", values("A=1", "=x")), ("-u", values("0", "a:b:c", "")),
                          ("-w", values("/", "rel"))]), _positional(0, 3)),
    _cmd(["update"], flags(LIMIT_FLAGS), _positional(0, 2)),
    _cmd(["stats", "--no-stream"], flags(FORMAT), _positional(0, 2)),
    _cmd(["pause"], flags([]), _positional(0)),
    _cmd(["unpause"], flags([]), _positional(0)),
    _cmd(["info"], flags(FORMAT)),
    _cmd(["network"], st.one_of(st.just(["ls"]), st.just(["inspect"]), st.just(["rm"]), st.just(["x"])),
         _positional(0, 2)),
    _cmd(["network", "ls"], flags(FORMAT)),
    _cmd(["seccomp", "show"], flags(FORMAT), _positional(0, 2)),
    _cmd(["trace"], flags([("--summary", None)] + FORMAT), _positional(0, 2)),
    _cmd(["checkpoint"], flags([("--list", None), ("--rm", None), ("--leave-running", None)]), _positional(0, 2)),
    _cmd(["restore"], flags([]), _positional(0, 2)),
    _cmd(["image"], st.one_of(st.just(["ls"]), st.just(["rm"]), st.just(["import"]), st.just([])),
         st.lists(st.one_of(names.map(lambda n: f"/nonexistent/{n}.tar"), ref), max_size=2)),
    _cmd(["lesson"], st.sampled_from([["status"], ["hint"], ["stop"], ["list"], ["start"], ["reset"], ["replay"],
                                      ["status", "--format", "json"], ["start", "--student", "x"]]),
         _positional(0, 2)),  # "zzfz..." ids: never a lesson, so nothing opens
    _cmd(["grade"], flags([("-j", values("0", "1", "2", "-1", "x")), ("--lesson", ref),
                           ("--json", NOWHERE), ("--junit", NOWHERE),
                           ("--key", st.sampled_from(["/nonexistent/key", "/dev/null", "/etc/hostname"]))]),
         st.lists(st.one_of(names.map(lambda n: f"/nonexistent/{n}.jsonl"), st.just("/dev/null"),
                            st.just("/etc/hostname")), max_size=2)),
    st.lists(st.one_of(garbage, names), min_size=1, max_size=4),  # no command at all
)


def run_main(argv: list[str], capfd) -> tuple[int, str, str]:
    from labtui.cli.main import main

    # A command line cannot hold a NUL (execve(2)'s argv are C strings; the launcher sends them
    # as such): the garbage's NULs are dropped here, not fed to the CLI.
    argv[:] = [w.replace("\x00", "") for w in argv]
    capfd.readouterr()
    try:
        rc = main(list(argv))
    except SystemExit as e:  # argparse's usage errors (and --help)
        rc = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    out, err = capfd.readouterr()
    return rc, out, err


def check_outcome(argv: list[str], rc: int, err: str, out: str = "") -> None:
    assert "Traceback" not in err + out, (argv, err)
    assert rc in (0, 1, 2, 125), (argv, rc, err)
    if rc == 2:
        assert "usage:" in err and "error:" in err, (argv, err)
    elif rc != 0:  # `grade`'s refusals are its report, on stdout (docs/lessons-grading.md)
        assert (err if argv[:1] != ["grade"] else err + out).strip(), (argv, rc)


def warm_up(capfd) -> None:
    """What the first command of a fresh state makes (its directories, busybox): not a leak."""
    rc, out, err = run_main(["create", "busybox", "true"], capfd)
    assert rc == 0, err
    assert run_main(["rm", "-f", out.strip()], capfd)[0] == 0


def test_cli_never_a_traceback_and_nothing_made(capfd, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever a fuzzed command writes to a relative path lands here
    warm_up(capfd)
    before = snapshot()

    @settings(max_examples=examples(500))
    @given(COMMANDS)
    def one(argv: list[str]) -> None:
        rc, out, err = run_main(argv, capfd)
        check_outcome(argv, rc, err, out)

    one()
    assert not new_since(before), new_since(before)


REPO = str(Path(__file__).resolve().parents[2])


def test_cli_subprocess_never_a_traceback(tmp_path):
    """A few through the real entry point (tests.helpers.LABTUI: `python -m labtui.cli`, or the
    launcher under LABTUI_TEST_VIA): what a user sees, os._exit and all. They run in a scratch
    directory (relative paths land there), with the tree on PYTHONPATH for `-m labtui.cli`."""
    from tests.helpers import LABTUI

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p))

    @settings(max_examples=examples(8))
    @given(COMMANDS)
    def one(argv: list[str]) -> None:
        argv = [w.replace("\x00", "") for w in argv]  # execve(2) refuses them (see run_main)
        p = subprocess.run(LABTUI + argv, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
                           stdin=subprocess.DEVNULL)
        check_outcome(argv, p.returncode, p.stderr, p.stdout)

    one()
