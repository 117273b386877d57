"""Transcripts (lessons/transcript.py): the hash chain, the seal, and messages that name the first bad line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lessons import transcript
from lessons.transcript import TranscriptError, Writer, verify

KEY = b"grader-key-for-tests"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lessons"


def _write(path: Path, n: int = 5, key: bytes | None = None, header: dict | None = None) -> Path:
    w = Writer.create(path, header or {"lesson": "fixture-basic", "version": "1", "digest": "x", "student": "alice"},
                      key)
    for i in range(n):
        w.append({"type": "command", "argv": ["run", "-d", "--name", f"c{i}", "busybox"], "cwd": "/", "exit": 0,
                  "ts": 1000.0 + i})
    return path


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_a_written_transcript_verifies_and_reads_back(tmp_path):
    t = verify(_write(tmp_path / "t.jsonl"))
    assert t.header["student"] == "alice" and t.header["format"] == transcript.FORMAT
    assert [e["argv"][3] for e in t.entries] == ["c0", "c1", "c2", "c3", "c4"]
    assert [e["n"] for e in t.entries] == [2, 3, 4, 5, 6]
    assert not t.sealed and not t.seal_checked
    lines = _lines(tmp_path / "t.jsonl")
    assert json.loads(lines[1])["prev"] == transcript.sha(lines[0])


def test_with_a_key_the_seal_is_always_the_one_last_line(tmp_path):
    path = _write(tmp_path / "t.jsonl", 3, KEY)
    Writer(path, KEY).append({"type": "evaluation", "results": {}}, {"type": "hint", "task": "a", "hint": 0})
    recs = [json.loads(x) for x in _lines(path)]
    assert [r["type"] for r in recs].count("seal") == 1 and recs[-1]["type"] == "seal"
    assert [r["n"] for r in recs] == list(range(1, len(recs) + 1))
    t = verify(path, KEY)
    assert t.sealed and t.seal_checked and t.entries[-1]["type"] == "hint"


def test_an_edited_line_is_named(tmp_path):
    path = _write(tmp_path / "t.jsonl")
    lines = _lines(path)
    lines[2] = lines[2].replace(b'"exit":0', b'"exit":1')
    path.write_bytes(b"".join(lines))
    with pytest.raises(TranscriptError) as e:
        verify(path)
    assert e.value.line == 3 and "edited" in str(e.value)
    assert f"{path}: line 3:" in str(e.value)


def test_reordered_lines_are_named(tmp_path):
    path = _write(tmp_path / "t.jsonl")
    lines = _lines(path)
    lines[2], lines[3] = lines[3], lines[2]
    path.write_bytes(b"".join(lines))
    with pytest.raises(TranscriptError) as e:
        verify(path)
    assert e.value.line == 3 and e.value.what == "entry 4 stands here: lines were reordered (entry 3 is at line 4)"


def test_a_removed_line_is_named(tmp_path):
    path = _write(tmp_path / "t.jsonl")
    lines = _lines(path)
    del lines[3]
    path.write_bytes(b"".join(lines))
    with pytest.raises(TranscriptError) as e:
        verify(path)
    assert e.value.line == 4 and "line 4 was removed" in e.value.what


def test_a_line_cut_in_the_middle_is_truncated(tmp_path):
    path = _write(tmp_path / "t.jsonl")
    data = path.read_bytes()
    path.write_bytes(data[:-20])
    with pytest.raises(TranscriptError) as e:
        verify(path)
    assert e.value.line == 6 and "truncated" in e.value.what


def test_with_a_key_cutting_whole_lines_loses_the_seal(tmp_path):
    path = _write(tmp_path / "t.jsonl", 4, KEY)
    lines = _lines(path)
    path.write_bytes(b"".join(lines[:-2]))  # the seal and the last entry
    verify(path)  # the chain alone cannot tell
    with pytest.raises(TranscriptError) as e:
        verify(path, KEY)
    assert e.value.line == 5 and "no seal" in e.value.what


def test_another_key_is_refused_at_the_seal(tmp_path):
    path = _write(tmp_path / "t.jsonl", 2, KEY)
    with pytest.raises(TranscriptError) as e:
        verify(path, b"another key")
    assert e.value.line == 4 and "does not match the grader key" in e.value.what


def test_an_unsealed_transcript_is_refused_when_a_key_is_required(tmp_path):
    path = _write(tmp_path / "t.jsonl", 2)
    with pytest.raises(TranscriptError) as e:
        verify(path, KEY)
    assert "no seal" in e.value.what


def test_a_rewritten_chain_without_the_key_breaks_the_seal(tmp_path):
    # A forger recomputes every prev after an edit: the chain is fine again, the seal is not.
    path = _write(tmp_path / "t.jsonl", 3, KEY)
    recs = [json.loads(x) for x in _lines(path)]
    recs[1]["exit"] = 7
    out, prev = [], None
    for r in recs:
        r["prev"] = prev
        line = json.dumps(r, separators=(",", ":")).encode()
        out.append(line + b"\n")
        prev = transcript.sha(line)
    path.write_bytes(b"".join(out))
    verify(path)
    with pytest.raises(TranscriptError) as e:
        verify(path, KEY)
    assert "does not match" in e.value.what


def test_not_json_and_empty_files_are_refused(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"")
    with pytest.raises(TranscriptError, match="line 1: the file is empty"):
        verify(path)
    path.write_bytes(b"hello\n")
    with pytest.raises(TranscriptError, match="line 1: not a JSON line"):
        verify(path)
    with pytest.raises(TranscriptError, match="cannot read"):
        verify(tmp_path / "missing.jsonl")


def test_a_header_must_come_first(tmp_path):
    path = _write(tmp_path / "t.jsonl", 1)
    lines = _lines(path)
    rec = json.loads(lines[0])
    rec["format"] = "something/9"
    path.write_bytes(json.dumps(rec, separators=(",", ":")).encode() + b"\n")
    with pytest.raises(TranscriptError, match="line 1: unknown format"):
        verify(path)


def test_create_never_overwrites(tmp_path):
    path = _write(tmp_path / "t.jsonl", 1)
    with pytest.raises(FileExistsError):
        Writer.create(path, {"lesson": "x"})


def test_appends_from_many_processes_keep_one_chain(tmp_path):
    path = _write(tmp_path / "t.jsonl", 0, KEY)
    pids = []
    for p in range(4):
        pid = os.fork()
        if pid == 0:
            try:
                w = Writer(path, KEY)
                for i in range(25):
                    w.append({"type": "command", "argv": [f"p{p}", str(i)], "cwd": "/", "exit": 0})
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    t = verify(path, KEY)
    assert len(t.entries) == 100
    for p in range(4):  # each writer's own entries keep their order
        mine = [int(e["argv"][1]) for e in t.entries if e["argv"][0] == f"p{p}"]
        assert mine == list(range(25))


def test_keys_come_from_the_environment_or_a_file(tmp_path):
    f = tmp_path / "key"
    f.write_text("s3cret\n")
    assert transcript.key_from_env({"LABTUI_GRADER_KEY": "abc"}) == b"abc"
    assert transcript.key_from_env({"LABTUI_GRADER_KEY_FILE": str(f)}) == b"s3cret"
    assert transcript.read_key_file(f) == b"s3cret"
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        transcript.read_key_file(empty)


def test_grade_refuses_another_lesson_version_or_lesson(tmp_path, monkeypatch):
    from lessons import grade
    from lessons.core import schema

    monkeypatch.setenv("LABTUI_LESSONS_DIR", str(FIXTURES))
    lesson = schema.find("fixture-basic")
    good = _write(tmp_path / "good.jsonl", 1, header={"lesson": lesson.id, "version": lesson.version,
                                                      "digest": lesson.digest, "student": "a"})
    t, found = grade.check(good)
    assert found.id == lesson.id and t.student == "a"
    old = _write(tmp_path / "old.jsonl", 1, header={"lesson": lesson.id, "version": "0", "digest": "0" * 64})
    with pytest.raises(TranscriptError) as e:
        grade.check(old)
    assert e.value.line == 1 and "from another version of lesson fixture-basic" in e.value.what
    with pytest.raises(TranscriptError, match="line 1: a transcript of lesson 'fixture-basic', not 'other'"):
        grade.check(good, lesson_id="other")
    unknown = _write(tmp_path / "unknown.jsonl", 1, header={"lesson": "no-such-lesson", "version": "1"})
    with pytest.raises(TranscriptError, match="no lesson with id 'no-such-lesson'"):
        grade.check(unknown)


def test_grade_outputs_have_the_promised_shapes():
    import xml.etree.ElementTree as ET

    from lessons import grade

    results = [{"name": "a", "task": "t1", "description": "A", "passed": True, "points": 2, "max_points": 2,
                "log": [], "cause": None},
               {"name": "b", "task": "t1", "description": "B", "passed": False, "points": 0, "max_points": 1,
                "log": ["saw x"], "cause": {"rationale": "why", "help": "try"}},
               {"name": "c", "task": "t2", "description": "C", "passed": None, "points": 0, "max_points": 1,
                "log": [], "cause": {"rationale": "not run: check 'b' did not pass", "help": None}}]
    ok = grade.Graded("a.jsonl", "alice", "les", "1", True, summary={"slug": "les", "results": results, "score": 2,
                                                                     "max_score": 4, "passed": False})
    bad = grade.Graded("b.jsonl", "bob", "les", "1", error="line 4: edited")
    j = grade.to_json([ok, bad])
    assert j["graded"] == 1 and j["refused"] == 1
    first = j["transcripts"][0]
    assert (first["score"], first["max_score"], first["student"]) == (2, 4, "alice")
    assert [r["passed"] for r in first["results"]] == [True, False, None]
    assert grade.Graded.from_json(json.loads(json.dumps(first))).score == 2
    root = ET.fromstring(grade.to_junit([ok, bad]))
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["alice: les", "bob: les"]
    cases = suites[0].findall("testcase")
    assert [c.get("name") for c in cases] == ["a", "b", "c"]
    assert cases[1].find("failure").get("message") == "why" and cases[2].find("skipped") is not None
    assert suites[1].find("testcase/error").get("message") == "line 4: edited"
    assert (root.get("tests"), root.get("failures"), root.get("skipped"), root.get("errors")) == ("4", "1", "1", "1")
    table = grade.table([ok, bad])
    assert "alice" in table and "2/4" in table and "REFUSED" in table and "line 4: edited" in table


def test_read_only_commands_are_not_replayed():
    from lessons.grade import read_only

    assert read_only(["ps", "-a"]) and read_only(["logs", "-f", "x"]) and read_only(["network", "ls"])
    assert read_only(["run", "--help"]) and read_only(["trace", "--summary", "x"])
    assert not read_only(["run", "-d", "busybox"]) and not read_only(["exec", "x", "ps"])
    assert not read_only(["network", "create", "n"]) and not read_only(["trace", "x"])
