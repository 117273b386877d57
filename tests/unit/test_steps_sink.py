"""engine.steps.FileSink: sequence numbers shared by every writer of one container, and steps
that arrive together written together."""

from __future__ import annotations

import json

from engine import steps


def read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_writers_of_one_container_share_the_numbering(tmp_path, monkeypatch):
    monkeypatch.setenv("LABTUI_ROOT", str(tmp_path / "root"))
    (tmp_path / "root" / "lib").mkdir(parents=True)
    log = tmp_path / "c" / "steps.jsonl"
    log.parent.mkdir()
    a, b = steps.FileSink(log), steps.FileSink(log)  # the supervisor, and `labtui kill` say
    a({"op": "one"})
    b.many([{"op": "two"}, {"op": "three"}, {"op": "four"}])
    a.many([{"op": "five"}])
    b({"op": "six"})
    got = read(log)
    assert [(s["seq"], s["op"]) for s in got] == [(1, "one"), (2, "two"), (3, "three"), (4, "four"),
                                                 (5, "five"), (6, "six")]
    stream = read(tmp_path / "root" / "lib" / "steps.jsonl")
    assert [s["seq"] for s in stream] == [1, 2, 3, 4, 5, 6]


def test_recorder_hands_a_batch_to_the_sink_in_order_with_defaults():
    got: list[dict] = []

    class Sink:
        def __call__(self, rec: dict) -> None:
            raise AssertionError("one at a time")

        def many(self, recs: list[dict]) -> None:
            got.extend(recs)

    rec = steps.Recorder("cid", Sink())
    rec.record_many([{"op": "a", "ts": 1.0}, {"op": "b"}])
    assert [(r["op"], r["container"]) for r in got] == [("a", "cid"), ("b", "cid")]
    assert got[0]["ts"] == 1.0 and isinstance(got[1]["ts"], float)
