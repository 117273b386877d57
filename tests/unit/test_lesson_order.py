"""`labtui lesson list` and the picker show the curriculum in teaching order."""

from __future__ import annotations

from lessons.core import schema


def test_every_lesson_comes_after_its_prerequisites_and_topics_follow_the_course():
    ordered = schema.in_teaching_order(schema.load_all(schema.LESSONS_DIR))
    ids = [lesson.id for lesson in ordered]
    assert sorted(ids) == sorted(p.name for p in schema.lesson_dirs(schema.LESSONS_DIR))
    for lesson in ordered:
        for pre in lesson.prerequisites:
            assert ids.index(pre) < ids.index(lesson.id), (pre, lesson.id)
    ranks = [schema.TOPIC_ORDER.index(lesson.topic) for lesson in ordered]
    assert ranks == sorted(ranks)
    assert ids[0] == "pid-namespace"
    security = [i for i in ids if schema.load(schema.LESSONS_DIR / i).topic == "security"]
    assert [i for i in security if i.startswith("attack-")] == security[-3:]  # the attacks close the topic
