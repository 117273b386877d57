"""lesson.toml through the schema: every shipped lesson loads; bad files are named with their line."""

from __future__ import annotations

from pathlib import Path

import pytest

from lessons import features
from lessons.core import schema
from lessons.core.schema import LessonError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lessons"
SHIPPED = schema.lesson_dirs(schema.LESSONS_DIR)

GOOD = '''id = "demo"
version = "1"
title = "A demo"
objectives = ["learn"]
intro = "Hello"
finish = "Bye"
containers = ["demo-a"]

[[tasks]]
id = "first"
title = "Start it"
text = "Run it."
solve = "labtui run -d --name demo-a busybox sleep 60"

[[tasks.checks]]
id = "running"
kind = "container"
container = "demo-a"
status = "running"

[[tasks.hints]]
text = "labtui run -d"
after_failures = 2
'''


def _lesson(tmp_path: Path, text: str, name: str = "demo") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "lesson.toml").write_text(text)
    return folder


def _error(folder: Path) -> str:
    with pytest.raises(LessonError) as e:
        schema.load(folder)
    return str(e.value)


@pytest.mark.parametrize("folder", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_lesson_loads(folder):
    lesson = schema.load(folder)
    assert lesson.id == folder.name and lesson.tasks and lesson.max_score > 0
    for task in lesson.tasks:
        assert task.checks, task.id
    assert set(lesson.requires) <= set(schema.FEATURES)
    for pre in lesson.prerequisites:
        assert (schema.LESSONS_DIR / pre / "lesson.toml").is_file(), f"{lesson.id}: unknown prerequisite {pre}"


def test_the_test_fixture_loads():
    lesson = schema.load(FIXTURES / "fixture-basic")
    assert [t.id for t in lesson.tasks] == ["start", "write", "stop"] and lesson.max_score == 5


def test_a_good_lesson_loads(tmp_path):
    lesson = schema.load(_lesson(tmp_path, GOOD))
    assert lesson.task("first").hints[0].after_failures == 2 and len(lesson.digest) == 64


def test_malformed_toml_names_its_line(tmp_path):
    text = GOOD.replace('title = "Start it"', 'title = "Start it')
    msg = _error(_lesson(tmp_path, text))
    line = GOOD.splitlines().index('title = "Start it"') + 1
    assert f"lesson.toml:{line}: not valid TOML" in msg


def test_an_unknown_top_level_field_is_named(tmp_path):
    msg = _error(_lesson(tmp_path, GOOD.replace('finish = "Bye"', 'finish = "Bye"\ncolour = "blue"')))
    assert "lesson.toml:7: unknown field 'colour'" in msg


def test_an_unknown_task_field_is_named(tmp_path):
    msg = _error(_lesson(tmp_path, GOOD.replace('title = "Start it"', 'title = "Start it"\nverify = "x"')))
    assert "lesson.toml:12: task 'first': unknown field 'verify'" in msg


def test_an_unknown_check_kind_is_named_with_a_suggestion(tmp_path):
    msg = _error(_lesson(tmp_path, GOOD.replace('kind = "container"', 'kind = "containr"')))
    line = GOOD.splitlines().index('kind = "container"') + 1
    assert f"lesson.toml:{line}: task 'first': unknown check kind 'containr'" in msg
    assert "did you mean 'container'" in msg


def test_an_unknown_check_field_is_named(tmp_path):
    msg = _error(_lesson(tmp_path, GOOD.replace('status = "running"', 'state = "running"')))
    line = GOOD.splitlines().index('status = "running"') + 1
    assert f"lesson.toml:{line}: task 'first': check 'running': unknown field 'state'" in msg


def test_an_unknown_feature_is_named(tmp_path):
    msg = _error(_lesson(tmp_path, GOOD.replace('finish = "Bye"', 'finish = "Bye"\nrequires = ["cgroup-v3"]')))
    assert "unknown feature 'cgroup-v3'" in msg


def test_a_folder_and_id_that_differ_are_refused(tmp_path):
    msg = _error(_lesson(tmp_path, GOOD, name="other"))
    assert "differs from its folder's name 'other'" in msg


def test_an_unknown_lesson_id_lists_the_known_ones(monkeypatch):
    monkeypatch.setenv("LABTUI_LESSONS_DIR", str(FIXTURES))
    with pytest.raises(LessonError, match="no lesson with id 'nope' \\(lessons: fixture-basic"):
        schema.find("nope")
    with pytest.raises(LessonError, match="no lesson with id '../etc'"):
        schema.find("../etc")
    assert schema.find("fixture-basic").id == "fixture-basic"


def test_unsupported_names_every_missing_feature(tmp_path, monkeypatch):
    text = GOOD.replace('finish = "Bye"', 'finish = "Bye"\nrequires = ["criu", "userns"]')
    lesson = schema.load(_lesson(tmp_path, text))
    monkeypatch.setattr(features, "_CACHE", {"criu": (False, "no criu binary found"), "userns": (True, "ok")})
    assert features.unsupported(lesson) == "criu: no criu binary found"
    monkeypatch.setattr(features, "_CACHE", {"criu": (True, "ok"), "userns": (True, "ok")})
    assert features.unsupported(lesson) is None


def test_every_feature_has_a_verdict_with_a_reason():
    for name, (ok, reason) in features.report().items():
        assert isinstance(ok, bool) and reason, name
    facts = features.host_facts()
    assert facts["kernel"] and facts["arch"]
