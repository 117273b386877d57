"""`labtui lesson replay ID [--solve]`: a lesson run headless in a private state, for authors and CI.

For each task in order: its setup, then (with --solve) its solve script, then its checks. Without
--solve the checks see the lesson's starting state, so a well-written lesson fails them there
(passed false, and null for what depends on them); with it every check passes. A task whose
checks fail does not stop the run: the tasks that need it are reported as not run (null).

With a transcript path the run is recorded like a student's session: the setups as "setup"
entries, each labtui command of the solve scripts (recorded by the CLI's hook, as a student's
are), the lesson containers' steps and events, and an evaluation after each task. `labtui grade`
accepts it like a student's; bench/ and the tests make their graded transcripts this way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from lessons import features, session, transcript
from lessons.core import evaluate as ev
from lessons.core.model import Lesson, Task
from lessons.sandbox import PrivateState, labtui_env, run_script

SETTLE = 5.0  # seconds a solved task's checks are retried: a died or oom event, a health change take a moment
SETTLE_POLL = 0.25


@dataclass
class ReplayResult:
    lesson: Lesson
    solve: bool
    results: list[ev.Result] = field(default_factory=list)
    unsupported: str | None = None
    log: list[str] = field(default_factory=list)  # scripts that failed, what cleanup could not remove
    seconds: float = 0.0

    @property
    def summary(self) -> dict:
        s = ev.summary(self.lesson, self.results)
        if self.unsupported:
            s.update(unsupported=self.unsupported, passed=None)
        return s

    @property
    def passed(self) -> bool:
        return not self.unsupported and bool(self.results) and all(r.passed for r in self.results) \
            and len(self.results) == len(self.lesson.checks())

    @property
    def exit_code(self) -> int:
        if self.unsupported:
            return features.UNSUPPORTED_EXIT
        return 0 if self.passed else 1


def replay(lesson: Lesson, *, solve: bool = False, transcript_path: Path | None = None,
           student: str = "replay", key: bytes | None = None) -> ReplayResult:
    """Run the lesson in a fresh private state, removed at the end (also on ^C)."""
    out = ReplayResult(lesson, solve)
    out.unsupported = features.unsupported(lesson)
    if out.unsupported:
        return out
    t0 = time.monotonic()
    if transcript_path is not None:
        transcript_path = Path(transcript_path).resolve()  # before the working state moves
        transcript_path.unlink(missing_ok=True)
    with PrivateState() as ps:
        writer = None
        if transcript_path is not None:
            writer = _open(lesson, student, transcript_path, key)
        try:
            _run_tasks(lesson, solve, writer, out)
        finally:
            if writer is not None:
                session.active_file().unlink(missing_ok=True)  # the CLI's hook stops recording
    out.log += [f"cleanup: {p}" for p in ps.problems]
    out.seconds = time.monotonic() - t0
    return out


def _open(lesson: Lesson, student: str, path: Path, key: bytes | None) -> transcript.Writer:
    """A session in the private state, as `lesson start` opens one (minus the setup, run per task
    below): its active.json is what makes the solve scripts' labtui commands record themselves."""
    session.open_session(lesson, student, path, key)
    session.activate(lesson, path, student, time.time(), key)
    return transcript.Writer(path, key)


def _run_tasks(lesson: Lesson, solve: bool, writer: transcript.Writer | None, out: ReplayResult) -> None:
    done: set[str] = set()
    ctx = session.Context(lesson_id=lesson.id, since=time.time() - 1)
    for task in lesson.tasks:
        res = session.run_setup(lesson, task, writer)
        if res is not None and res.exit_code != 0:
            out.log.append(f"task {task.id}: setup exited {res.exit_code}: {res.output.strip()[-500:]}")
        if solve and task.solve.strip():
            res = run_script(task.solve, env=labtui_env(), cwd=lesson.path)
            if res.exit_code != 0:
                out.log.append(f"task {task.id}: solve exited {res.exit_code}: {res.output.strip()[-500:]}")
        results = _evaluate_task(lesson, task, ctx, done, settle=SETTLE if solve else 0.0)
        if all(r.passed for r in results):
            done.add(task.id)
        out.results += results
        if writer is not None:
            _record(lesson, writer, out.results)


def _evaluate_task(lesson: Lesson, task: Task, ctx, done: set[str], settle: float) -> list[ev.Result]:
    """The task's checks; failing ones are tried again for up to `settle` seconds."""
    deadline = time.monotonic() + settle
    while True:
        results = [r for r in ev.evaluate(lesson, ctx, only={task.id}, done=done) if r.task == task.id]
        if all(r.passed for r in results) or time.monotonic() >= deadline:
            return results
        time.sleep(SETTLE_POLL)


def _record(lesson: Lesson, writer: transcript.Writer, results: list[ev.Result]) -> None:
    """What `lesson status` records: the containers' new steps and events, then the evaluation."""
    session.record_streams(lesson)
    writer.append({"type": "evaluation", "ts": round(time.time(), 3), "results": ev.summary(lesson, results)})
