"""`labtui lesson ...` and `labtui grade` end to end, on the fixture lesson (tests/fixtures/lessons).

Student mode runs in the test run's own state (LABTUI_ROOT); replay and grade make private states of
their own, which must be gone afterwards (dirs, cgroup parents, bridges), also after ^C.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.helpers import LABTUI, labtui, lib, ps_json, wait_for

pytestmark = pytest.mark.root

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lessons"
LESSON = "fixture-basic"
CONTAINERS = ("ltfx-a", "ltfx-b")


@pytest.fixture(autouse=True)
def fixture_lessons(monkeypatch):
    """The fixture lessons, and a sandbox dir of the test's own for the private states of replays
    and grades: each keeps its dir when it could not remove something (a container, the cgroup
    parent, the bridge), so an empty sandbox afterwards means nothing was left behind. (Other
    people's replays on this machine use /var/tmp: a glob there would see theirs.)"""
    sandbox = tempfile.mkdtemp(prefix="ltsb-", dir="/var/tmp")  # short: socket paths live in it
    monkeypatch.setenv("LABTUI_LESSONS_DIR", str(FIXTURES))
    monkeypatch.setenv("LABTUI_SANDBOX_DIR", sandbox)
    monkeypatch.delenv("LABTUI_GRADER_KEY", raising=False)
    monkeypatch.delenv("LABTUI_GRADER_KEY_FILE", raising=False)
    try:
        yield sandbox
    finally:
        labtui("lesson", "stop", check=False)
        for name in CONTAINERS:
            labtui("rm", "-f", name, check=False)
        left = os.listdir(sandbox)
        if not left:
            os.rmdir(sandbox)
    assert not left, f"private states left behind in {sandbox}: {left}"


def _json(*args: str, check: bool = True) -> dict:
    return json.loads(labtui(*args, check=check).stdout)


def _transcript() -> Path:
    act = json.loads((lib() / "lessons" / "active.json").read_text())
    return Path(act["transcript"])


def _entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---- student mode -----------------------------------------------------------------------------------

def test_start_status_hints_stop_resume_reset():
    rows = _json("lesson", "list", "--format", "json")
    row = next(r for r in rows if r["id"] == LESSON)
    assert row["unsupported"] is None and row["tasks"] == 3 and row["points"] == 5 and not row["open"]

    p = labtui("lesson", "start", LESSON, "--student", "alice")
    assert "Task 1/3: Start a container" in p.stdout
    assert (lib() / "lessons" / "active.json").exists()
    path = _transcript()

    st = _json("lesson", "status", "--format", "json")
    assert st["current"] == "start" and st["failures"] == 1 and st["new_hints"] == []
    assert [(r["name"], r["passed"]) for r in st["summary"]["results"]] == [("a-running", False)]
    st = _json("lesson", "status", "--format", "json")
    assert st["failures"] == 2 and st["new_hints"] == ["second hint: name it with --name ltfx-a"]
    assert "hint 1/2" in labtui("lesson", "hint").stdout  # the ladder's first; the second was shown already
    assert "No more hints" in labtui("lesson", "hint").stdout

    labtui("run", "-d", "--name", "ltfx-a", "busybox", "sleep", "600")
    st = _json("lesson", "status", "--format", "json")
    assert st["passed_now"] == ["start"] and st["current"] == "write"
    labtui("exec", "ltfx-a", "sh", "-c", "echo hello > /tmp/greeting")
    st = _json("lesson", "status", "--format", "json")
    assert st["passed_now"] == ["write"] and st["current"] == "stop"
    assert any(c["Names"] == "ltfx-b" for c in ps_json())  # the set-up of task 3 ran
    st = _json("lesson", "status", "--format", "json")
    assert sorted(st["new_hints"]) == ["ltfx-b's sleep was execve'd (a step said so)",
                                       "the set-up started ltfx-b (an event said so)"]

    # Progress lives under the lib dir (a reboot keeps it), and a new session resumes it.
    assert (lib() / "lessons" / "progress.json").exists()
    assert "Closed fixture-basic" in labtui("lesson", "stop").stdout
    assert not (lib() / "lessons" / "active.json").exists()
    labtui("ps")  # not recorded: no lesson is open
    p = labtui("lesson", "start", LESSON)
    assert "Resuming fixture-basic" in p.stdout and "(2/3 tasks done)" in p.stdout and "Task 3/3" in p.stdout
    assert _transcript() == path  # the same transcript goes on
    labtui("stop", "-t", "1", "ltfx-b")
    st = _json("lesson", "status", "--format", "json")
    assert st["finished"] and st["summary"]["score"] == 5

    es = _entries(path)
    commands = [e["argv"] for e in es if e["type"] == "command"]
    # Every labtui command while the lesson was open; not the lesson's own, nor `ps` run while closed.
    assert commands == [["run", "-d", "--name", "ltfx-a", "busybox", "sleep", "600"],
                        ["exec", "ltfx-a", "sh", "-c", "echo hello > /tmp/greeting"],
                        ["ps", "--format", "json", "-a"], ["stop", "-t", "1", "ltfx-b"]]
    assert [e["task"] for e in es if e["type"] == "setup"] == ["stop"]
    assert any(e["type"] == "step" and e["container"] == "ltfx-a" for e in es)
    assert any(e["type"] == "event" and e["event"]["type"] == "died" for e in es)
    assert [e["task"] for e in es if e["type"] == "hint"] == ["start"]
    assert len([e for e in es if e["type"] == "evaluation"]) == 6
    from lessons import transcript

    transcript.verify(path)

    # Reset: containers gone, progress forgotten, and the open lesson starts over for the same student.
    p = labtui("lesson", "reset", LESSON)
    assert "progress forgotten" in p.stdout and "Task 1/3" in p.stdout
    assert not [c for c in ps_json() if c["Names"] in CONTAINERS]
    assert _transcript() != path
    assert transcript.verify(_transcript()).student == "alice"
    st = _json("lesson", "status", "--format", "json")
    assert st["current"] == "start" and st["done"] == []
    labtui("lesson", "stop")
    labtui("lesson", "reset", LESSON)
    assert _json("lesson", "list", "--format", "json")[0]["done"] == 0


def test_bad_input_gets_a_message_and_an_exit_code(tmp_path, monkeypatch):
    p = labtui("lesson", "start", "nope", check=False)
    assert p.returncode == 125 and "no lesson with id 'nope' (lessons: fixture-basic" in p.stderr
    p = labtui("lesson", "replay", "nope", check=False)
    assert p.returncode == 125 and "no lesson with id 'nope'" in p.stderr
    p = labtui("lesson", "status", check=False)
    assert p.returncode == 1 and "no lesson is open" in p.stderr
    p = labtui("grade", "-j", "0", "x.jsonl", check=False)
    assert p.returncode == 125 and "at least 1" in p.stderr
    p = labtui("grade", str(tmp_path / "missing.jsonl"), check=False)
    assert p.returncode == 1 and "cannot read" in p.stdout
    p = labtui("grade", "--key", str(tmp_path / "nokey"), str(tmp_path / "missing.jsonl"), check=False)
    assert p.returncode == 125 and "cannot use the key file" in p.stderr
    for name in ("broken", "fixture-basic"):
        shutil.copytree(FIXTURES / "fixture-basic", tmp_path / name)
    toml = tmp_path / "broken" / "lesson.toml"
    text = toml.read_text().replace('id = "fixture-basic"', 'id = "broken"')
    toml.write_text(text.replace('kind = "exec"', 'kind = "exce"'))
    monkeypatch.setenv("LABTUI_LESSONS_DIR", str(tmp_path))
    p = labtui("lesson", "start", "broken", check=False)
    line = toml.read_text().splitlines().index('kind = "exce"') + 1
    assert p.returncode == 125 and f"broken/lesson.toml:{line}: task 'write': unknown check kind 'exce'" in p.stderr
    p = labtui("lesson", "list", check=False)
    assert p.returncode == 1 and "fixture-basic" in p.stdout and "unknown check kind" in p.stderr
    assert not (lib() / "lessons" / "active.json").exists()


def test_a_lesson_this_host_cannot_run_is_unsupported(tmp_path, monkeypatch):
    from lessons import features

    missing = [f for f, (ok, _) in features.report().items() if not ok]
    if not missing:
        pytest.skip("this host has every feature")
    shutil.copytree(FIXTURES / "fixture-basic", tmp_path / "fixture-basic")
    toml = tmp_path / "fixture-basic" / "lesson.toml"
    toml.write_text(toml.read_text().replace('topic = "tests"', f'topic = "tests"\nrequires = ["{missing[0]}"]'))
    monkeypatch.setenv("LABTUI_LESSONS_DIR", str(tmp_path))
    p = labtui("lesson", "start", LESSON, check=False)
    assert p.returncode == 77 and "unsupported on this host" in p.stderr and missing[0] in p.stderr
    p = labtui("lesson", "replay", LESSON, "--solve", "--junit", str(tmp_path / "j.xml"), check=False)
    assert p.returncode == 77 and "unsupported" in p.stdout
    assert ET.parse(tmp_path / "j.xml").getroot().find("testsuite/testcase/skipped") is not None
    assert _json("lesson", "list", "--format", "json")[0]["unsupported"].startswith(missing[0])


def test_the_hook_imports_nothing_of_lessons_when_no_lesson_is_open():
    # The CLI's own process, whichever launcher the other tests go through (LABTUI_TEST_VIA):
    # -X importtime lists what that process imported.
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "labtui.cli", "ps"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert not [line for line in p.stderr.splitlines() if line.rstrip().split("|")[-1].strip().startswith("lessons")]


# ---- replay and grade --------------------------------------------------------------------------------

def test_replay_without_solve_sees_the_starting_state(tmp_path):
    p = labtui("lesson", "replay", LESSON, "--json", str(tmp_path / "r.json"), check=False, timeout=120)
    assert p.returncode == 1, p.stdout + p.stderr
    res = json.loads((tmp_path / "r.json").read_text())
    got = {r["name"]: r["passed"] for r in res["results"]}
    # greeting: its task needs 'start', not done: not run. b-exists: the set-up made it.
    assert got == {"a-running": False, "greeting": None, "b-exists": True, "b-exited": False}
    assert res["score"] == 1 and res["max_score"] == 5 and res["passed"] is False
    assert not ps_json()  # the student's state saw nothing of it


def _replay_solved(tmp_path: Path, key: bytes | None = None, name: str = "t.jsonl") -> Path:
    env = dict(os.environ)
    if key:
        env["LABTUI_GRADER_KEY"] = key.decode()
    path = tmp_path / name
    p = labtui("lesson", "replay", LESSON, "--solve", "--transcript", str(path), "--junit", str(tmp_path / "r.xml"),
               env=env, timeout=120, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "score 5/5, every check passed" in p.stdout
    return path


def test_grade_a_solved_replay_and_refuse_tampered_transcripts(tmp_path):
    key = b"k3y-for-the-class"
    (tmp_path / "key").write_bytes(key + b"\n")
    (tmp_path / "other.key").write_bytes(b"someone else's\n")
    good = _replay_solved(tmp_path, key)
    from lessons import transcript

    assert transcript.verify(good, key).seal_checked
    shutil.copy(good, tmp_path / "copy.jsonl")

    p = labtui("grade", str(good), str(tmp_path / "copy.jsonl"), "-j", "2", "--key", str(tmp_path / "key"),
               "--json", str(tmp_path / "g.json"), "--junit", str(tmp_path / "g.xml"), timeout=180, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("5/5") == 2 and "sealed, key ok" in p.stdout
    g = json.loads((tmp_path / "g.json").read_text())
    assert [(t["score"], t["max_score"], t["differences"]) for t in g["transcripts"]] == [(5, 5, [])] * 2
    assert g["transcripts"][0]["commands"] == 3
    junit = ET.parse(tmp_path / "g.xml").getroot()
    assert len(junit.findall("testsuite")) == 2 and junit.get("tests") == "8" and junit.get("failures") == "0"

    lines = good.read_bytes().splitlines(keepends=True)
    cmd = next(i for i, line in enumerate(lines) if b'"type":"command"' in line)
    bad = {
        "edited": lines[:cmd] + [lines[cmd].replace(b"ltfx-a", b"ltfx-z", 1)] + lines[cmd + 1:],
        "reordered": lines[:cmd] + [lines[cmd + 1], lines[cmd]] + lines[cmd + 2:],
        "truncated": lines[:-3],
    }
    for name, content in bad.items():
        (tmp_path / f"{name}.jsonl").write_bytes(b"".join(content))
    expect = {
        "edited": f"line {cmd + 1}: edited",
        "reordered": f"line {cmd + 1}: entry {cmd + 2} stands here",
        "truncated": "no seal after the last line",
    }
    for name, message in expect.items():
        p = labtui("grade", str(tmp_path / f"{name}.jsonl"), "--key", str(tmp_path / "key"), check=False)
        assert p.returncode == 1 and "REFUSED" in p.stdout and message in p.stdout, (name, p.stdout)
    p = labtui("grade", str(good), "--key", str(tmp_path / "other.key"), check=False)
    assert p.returncode == 1 and f"line {len(lines)}: the seal does not match the grader key" in p.stdout
    p = labtui("grade", str(good), "--lesson", "another-lesson", check=False)
    assert p.returncode == 1 and "line 1: a transcript of lesson 'fixture-basic'" in p.stdout
    (tmp_path / "cut.jsonl").write_bytes(b"".join(lines)[:-10])
    p = labtui("grade", str(tmp_path / "cut.jsonl"), check=False)
    assert p.returncode == 1 and f"line {len(lines)}: truncated" in p.stdout

    # Another version of the lesson on the grader's machine: the header's digest no longer matches.
    newer = tmp_path / "lessons"
    shutil.copytree(FIXTURES / LESSON, newer / LESSON)
    (newer / LESSON / "intro.md").write_text("changed\n")
    env = {**os.environ, "LABTUI_LESSONS_DIR": str(newer)}
    p = labtui("grade", str(good), env=env, check=False)
    assert p.returncode == 1 and "line 1: from another version of lesson fixture-basic" in p.stdout
    # One refused among good ones: the good are graded, the exit code says something was refused.
    p = labtui("grade", str(good), str(tmp_path / "edited.jsonl"), "-j", "2", timeout=180, check=False)
    assert p.returncode == 1 and "5/5" in p.stdout and "REFUSED" in p.stdout


def test_a_forged_result_does_not_grade(tmp_path):
    # The student edits nothing but writes an evaluation saying all passed, and runs no command:
    # the chain is intact, the replay finds nothing solved.
    from lessons import session, transcript
    from lessons.core import schema

    lesson = schema.find(LESSON)
    path = tmp_path / "forged.jsonl"
    w = transcript.Writer.create(path, session.header(lesson, "mallory"))
    results = [{"name": c.id, "task": t.id, "passed": True, "points": c.points} for t, c in lesson.checks()]
    w.append({"type": "evaluation", "ts": time.time(), "results": {"results": results, "score": 5, "max_score": 5}})
    p = labtui("grade", str(path), "--json", str(tmp_path / "g.json"), timeout=120, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    g = json.loads((tmp_path / "g.json").read_text())["transcripts"][0]
    assert g["score"] == 0 and len(g["differences"]) == 4
    assert "recorded passed, replayed failed" in " ".join(g["differences"])


def test_replay_interrupted_leaves_nothing(tmp_path, fixture_lessons):
    slow = tmp_path / "lessons"
    shutil.copytree(FIXTURES / LESSON, slow / LESSON)
    toml = slow / LESSON / "lesson.toml"
    toml.write_text(toml.read_text().replace('solve = "labtui run -d --name ltfx-a busybox sleep 600"',
                                             'solve = "labtui run -d --name ltfx-a busybox sleep 600; sleep 60"'))
    env = {**os.environ, "LABTUI_LESSONS_DIR": str(slow)}
    proc = subprocess.Popen([*LABTUI, "lesson", "replay", LESSON, "--solve"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        root = wait_for(lambda: next(iter(os.listdir(fixture_lessons)), None), 30, what="the replay's private state")
        root = os.path.join(fixture_lessons, root)
        wait_for(lambda: os.path.isdir(f"{root}/lib/containers") and os.listdir(f"{root}/lib/containers"), 30,
                 what="the replay's first container")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not os.path.exists(root)
