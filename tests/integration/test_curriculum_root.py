"""Every shipped lesson, proved on this kernel: its solve scripts make every check pass; from its
starting state (set-up only) no check passes; a deliberately wrong solution fails the very check it
names. Lessons this host cannot run (lesson.toml's requires) are skipped with the reason; the VM
lane (tests/vm) replays the ones that need cgroup v2.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from lessons.core import schema

pytestmark = [pytest.mark.root, pytest.mark.slow]

LESSONS = [p.name for p in schema.lesson_dirs(schema.LESSONS_DIR)]
WRONG = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "wrong-solutions").glob("*.sh"))


def _failed(results) -> str:
    return "\n".join(f"  {r.task}/{r.check}: passed={r.passed} {'; '.join(r.log)[:300]}"
                     for r in results if r.passed is not True)


def test_the_curriculum_covers_at_least_24_lessons():
    assert len(LESSONS) >= 24, LESSONS


@pytest.mark.parametrize("lesson_id", LESSONS)
def test_the_solve_scripts_pass_every_check(lesson_id):
    from lessons import replay

    out = replay.replay(schema.load(schema.LESSONS_DIR / lesson_id), solve=True)
    if out.unsupported:
        pytest.skip(f"unsupported here: {out.unsupported}")
    assert out.passed, f"{lesson_id} with its solve scripts:\n{_failed(out.results)}\n" + "\n".join(out.log)
    assert not [ln for ln in out.log if ln.startswith("cleanup")], out.log


@pytest.mark.parametrize("lesson_id", LESSONS)
def test_from_the_starting_state_no_check_passes(lesson_id):
    from lessons import replay

    out = replay.replay(schema.load(schema.LESSONS_DIR / lesson_id), solve=False)
    if out.unsupported:
        pytest.skip(f"unsupported here: {out.unsupported}")
    assert out.exit_code == 1
    passing = [f"{r.task}/{r.check}" for r in out.results if r.passed is True]
    assert passing == [], f"{lesson_id}: these checks pass before the student did anything"
    for task in out.lesson.tasks:  # each task fails on its own check, its dependents are not run
        first = [r for r in out.results if r.task == task.id]
        assert any(r.passed is False for r in first) or all(r.passed is None for r in first), task.id


def test_at_least_five_lessons_have_a_wrong_solution():
    assert len(WRONG) >= 5, WRONG


@pytest.mark.parametrize("script", WRONG, ids=[p.stem for p in WRONG])
def test_a_wrong_solution_fails_the_check_it_names(script):
    from lessons import session
    from lessons.core.evaluate import evaluate
    from lessons.probes import Context
    from lessons.sandbox import PrivateState, labtui_env, run_script

    lesson = schema.load(schema.LESSONS_DIR / script.stem)
    m = re.search(r"^#\s*fails:\s*(\S+)", script.read_text(), re.M)
    assert m, f"{script.name} names no check (# fails: CHECK)"
    check = m.group(1)
    assert check in {c.id for _, c in lesson.checks()}, check
    from lessons import features

    if features.unsupported(lesson):
        pytest.skip(f"unsupported here: {features.unsupported(lesson)}")
    with PrivateState() as ps:
        since = time.time() - 1
        for task in lesson.tasks:
            session.run_setup(lesson, task, None)
        res = run_script(script.read_text(), env=labtui_env(), cwd=lesson.path)
        time.sleep(0.5)  # events (died, oom) are written by the supervisor a moment after
        results = {r.check: r for r in evaluate(lesson, Context(lesson_id=lesson.id, since=since))}
    assert not ps.problems, ps.problems
    assert results[check].passed is False, (f"{script.name} should fail {check}; script exit {res.exit_code}\n"
                                            f"{res.output[-500:]}\n{results[check]}")
