"""Lesson files and transcripts: random text and random mutations are refused with the file
and line (LessonError "file:line: ...", TranscriptError "file: line N: ..."), never another
exception (docs/lessons.md, docs/lessons-grading.md)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from lessons import transcript
from lessons.core import schema
from lessons.core.model import Lesson
from tests.fuzz.argv import examples

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "lessons" / "fixture-basic"
FIXTURE_LINES = (FIXTURE / "lesson.toml").read_text().splitlines()
KEY = b"fuzz-grader-key"

toml_values = st.one_of(
    st.integers(-5, 10**20).map(str), st.sampled_from(['""', '"x"', "true", "[]", "[1, 2]", '["a", 3]', "{}",
                                                       '{type = "started"}', "1979-05-27", "nan", "'''a'''",
                                                       '"intro.md"', '"../../etc/passwd"', '"/etc/passwd"']),
    st.text(max_size=10).map(json.dumps),
)
keys = st.sampled_from(["id", "version", "title", "objectives", "intro", "finish", "tasks", "requires", "kind",
                        "checks", "hints", "needs", "depends", "points", "after_failures", "on_step", "on_event",
                        "container", "status", "cmd", "equals", "setup", "solve", "panel", "x"])
headers = st.sampled_from(["[[tasks]]", "[[tasks.checks]]", "[[tasks.hints]]", "[tasks]", "[x]", "[[tasks.x]]"])


@st.composite
def mutated_lesson(draw) -> str:
    """The fixture lesson with a few lines deleted, duplicated, replaced or inserted."""
    lines = list(FIXTURE_LINES)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines)))
        op = draw(st.sampled_from(["delete", "dup", "value", "insert", "header", "garbage"]))
        if op == "delete" and i < len(lines):
            del lines[i]
        elif op == "dup" and i < len(lines):
            lines.insert(i, lines[i])
        elif op == "value" and i < len(lines) and "=" in lines[i]:
            lines[i] = lines[i].split("=", 1)[0] + "= " + draw(toml_values)
        elif op == "insert":
            lines.insert(i, f"{draw(keys)} = {draw(toml_values)}")
        elif op == "header":
            lines.insert(i, draw(headers))
        else:
            lines.insert(i, draw(st.text(max_size=20)))
    return "\n".join(lines) + "\n"


def _load(tmp: Path, text: str) -> None:
    folder = tmp / "fixture-basic"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(FIXTURE, folder)
    (folder / "lesson.toml").write_text(text, errors="surrogateescape")
    try:
        lesson = schema.load(folder)
    except schema.LessonError as e:
        assert re.match(r"^.*lesson\.toml:\d+: \S", str(e)), str(e)
    else:
        assert isinstance(lesson, Lesson)


@settings(max_examples=examples(250))
@given(mutated_lesson())
@example(text="\n".join(FIXTURE_LINES).replace('needs = ["start"]', 'needs = ["start"]\nhints = 3'))  # found
def test_mutated_lesson_loads_or_names_its_line(tmp_path_factory, text):
    _load(tmp_path_factory.mktemp("lesson"), text)


@settings(max_examples=examples(60))
@given(st.text(max_size=200))
def test_random_text_lesson_loads_or_names_its_line(tmp_path_factory, text):
    _load(tmp_path_factory.mktemp("lesson"), text)


# ---- transcripts ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63), st.text(max_size=8)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6)
entries = st.fixed_dictionaries(
    {"type": st.sampled_from(["setup", "command", "step", "event", "evaluation", "hint"])},
    optional={"argv": json_values, "exit": json_values, "results": json_values, "task": json_values,
              "ts": json_values})


def _make(path: Path, body: list[dict], key: bytes | None) -> None:
    w = transcript.Writer.create(path, {"lesson": "fixture-basic", "student": "fuzz"}, key)
    w.append(*body)


@st.composite
def mutated_transcript(draw) -> tuple[list[dict], list[tuple]]:
    body = draw(st.lists(entries, min_size=1, max_size=5))
    ops = draw(st.lists(st.tuples(
        st.sampled_from(["flip", "delete", "swap", "truncate", "insert", "field", "last", "rechain", "crlf"]),
        st.integers(0, 10**6), st.integers(0, 255), json_values), min_size=1, max_size=3))
    return body, ops


def _rechain(lines: list[bytes]) -> list[bytes]:
    """Recompute every n and prev: what an editor who read the format would do."""
    out: list[bytes] = []
    for i, raw in enumerate(lines, 1):
        try:
            rec = json.loads(raw)
        except ValueError:
            out.append(raw)
            continue
        if isinstance(rec, dict):
            rec["n"] = i
            rec["prev"] = transcript.sha(out[-1]) if out else None
            raw = json.dumps(rec, separators=(",", ":")).encode()
        out.append(raw)
    return out


def _mutate(data: bytes, ops: list[tuple]) -> bytes:
    for op, where, byte, value in ops:
        lines = data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n")
        i = where % max(1, len(lines))
        if op == "flip" and data:
            j = where % len(data)
            data = data[:j] + bytes([byte]) + data[j + 1:]
            continue
        if op == "truncate":
            data = data[:where % (len(data) + 1)]
            continue
        if op == "crlf":
            data = data.replace(b"\n", b"\r\n")
            continue
        if op == "delete" and lines:
            del lines[i]
        elif op == "swap" and len(lines) > 1:
            lines[i], lines[i - 1] = lines[i - 1], lines[i]
        elif op == "insert":
            lines.insert(i, json.dumps(value).encode())
        elif op in ("field", "last", "rechain") and lines:
            if op == "last":  # the seal (with a key) or the last entry
                i = len(lines) - 1
            try:
                rec = json.loads(lines[i])
            except ValueError:
                rec = None
            if isinstance(rec, dict):
                field = ["type", "n", "prev", "hmac", "format", "lesson", "results"][byte % 7]
                rec[field] = value
                lines[i] = json.dumps(rec).encode()
            if op == "rechain":
                lines = _rechain(lines)
        data = b"".join(line + b"\n" for line in lines)
    return data


@settings(max_examples=examples(300))
@given(mutated_transcript(), st.booleans())
@example(case=([{"type": "setup"}], [("last", 0, 3, None)]), keyed=True)  # found: a non-str hmac
@example(case=([{"type": "setup"}], [("last", 0, 3, "é")]), keyed=True)  # a non-ASCII one
def test_mutated_transcript_verifies_or_names_a_line(tmp_path_factory, case, keyed):
    body, ops = case
    path = tmp_path_factory.mktemp("tr") / "t.jsonl"
    key = KEY if keyed else None
    _make(path, body, key)
    assert transcript.verify(path, key).entries  # the unmutated one is fine
    path.write_bytes(_mutate(path.read_bytes(), ops))
    try:
        t = transcript.verify(path, key)
    except transcript.TranscriptError as e:
        assert str(e).startswith(f"{path}: ") and e.what, str(e)
        assert e.line > 0 or "cannot read" in e.what, str(e)
    else:
        # Accepted: then what readers of a transcript use works on it.
        assert isinstance(t.header, dict) and isinstance(t.student, str) and isinstance(t.lesson, str)
        t.last_evaluation()
