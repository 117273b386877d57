"""Transcripts made for real: tests/fixtures/lessons/fixture-basic replayed with --solve
(lessons.replay, the way bench/ and `labtui grade`'s tests make graded transcripts), then
mutated at random (tests/fuzz/test_fuzz_lessons.py's edits: bytes flipped, lines removed,
swapped, inserted, fields changed, the chain recomputed). Verified, or TranscriptError naming
the file and a line; never another exception."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lessons import transcript
from tests.fuzz.argv import examples
from tests.fuzz.test_fuzz_lessons import FIXTURE, KEY, _mutate, json_values

pytestmark = pytest.mark.root

ops = st.lists(st.tuples(st.sampled_from(["flip", "delete", "swap", "truncate", "insert", "field", "last", "rechain",
                                          "crlf"]),
                         st.integers(0, 10**6), st.integers(0, 255), json_values), min_size=1, max_size=3)


@pytest.fixture(scope="module")
def real_transcript(tmp_path_factory) -> bytes:
    from lessons import replay
    from lessons.core import schema

    path = tmp_path_factory.mktemp("replay") / "fixture-basic.jsonl"
    result = replay.replay(schema.load(FIXTURE), solve=True, transcript_path=path, student="fuzz", key=KEY)
    assert result.passed, (result.summary, result.log)
    t = transcript.verify(path, KEY)
    assert t.seal_checked and t.last_evaluation(), t.entries[-3:]
    return path.read_bytes()


def test_mutated_real_transcript_verifies_or_names_a_line(real_transcript, tmp_path):
    counts = {"accepted": 0, "refused": 0}

    @settings(max_examples=examples(150))
    @given(ops, st.booleans())
    def one(edits: list[tuple], keyed: bool) -> None:
        path: Path = tmp_path / "t.jsonl"
        path.write_bytes(_mutate(real_transcript, edits))
        try:
            t = transcript.verify(path, KEY if keyed else None)
        except transcript.TranscriptError as e:
            counts["refused"] += 1
            assert str(e).startswith(f"{path}: ") and e.line > 0 and e.what, str(e)
        else:
            counts["accepted"] += 1
            assert isinstance(t.student, str) and isinstance(t.lesson, str)
            t.last_evaluation()

    one()
    print("real transcript:", counts)
    assert counts["refused"], counts
