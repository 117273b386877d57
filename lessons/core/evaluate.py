"""Evaluate a lesson's checks with check50's semantics.

Each result is `passed` true or false, or null when it was not run: a check it depends on did
not pass, or a task its task needs is not done. A failed check carries a `cause` (the lesson's
rationale and help) and the probe's log; points are earned per check (partial credit).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lessons import probes
from lessons.core.model import Check, Lesson, Task


@dataclass
class Result:
    task: str
    check: str
    description: str
    passed: bool | None
    points: int
    max_points: int
    observed: str = ""
    log: list[str] = field(default_factory=list)
    cause: dict | None = None

    def as_json(self) -> dict:
        return {"name": self.check, "task": self.task, "description": self.description, "passed": self.passed,
                "points": self.points, "max_points": self.max_points, "observed": self.observed,
                "log": self.log, "cause": self.cause}


def _cause(check: Check, fallback: str) -> dict:
    return {"rationale": check.rationale or fallback, "help": check.help or None}


def run_check(check: Check, task: Task, ctx: probes.Context) -> Result:
    p = probes.get(check.kind)
    assert p is not None  # the schema accepted only known kinds
    obs = p.run(ctx, check.params)
    res = Result(task.id, check.id, check.description, obs.passed, check.points if obs.passed else 0,
                 check.points, obs.observed, list(obs.log))
    if not obs.passed:
        res.cause = _cause(check, "; ".join(obs.log) or "the kernel does not show this yet")
    return res


def evaluate(lesson: Lesson, ctx: probes.Context | None = None, only: set[str] | None = None,
             done: set[str] | None = None) -> list[Result]:
    """Every check of the lesson (or of the tasks in `only`), in order. `done` holds tasks already
    passed earlier (student mode keeps a passed task passed): their checks are not run again and
    count as passed for the tasks and checks that need them."""
    ctx = ctx or probes.Context(lesson_id=lesson.id)
    done = done or set()
    passed: dict[str, bool | None] = {}
    task_ok: dict[str, bool] = {}
    out: list[Result] = []
    for task in lesson.tasks:
        if only is not None and task.id not in only and task.id not in done:
            task_ok[task.id] = False
            continue
        missing = [n for n in task.needs if not task_ok.get(n)]
        results = []
        for check in task.checks:
            if task.id in done:
                res = Result(task.id, check.id, check.description, True, check.points, check.points,
                             log=["passed earlier in this lesson"])
            elif missing:
                res = Result(task.id, check.id, check.description, None, 0, check.points,
                             cause=_cause(check, f"not run: task '{missing[0]}' is not done yet"))
            elif [d for d in check.depends if passed.get(d) is not True]:
                dep = next(d for d in check.depends if passed.get(d) is not True)
                res = Result(task.id, check.id, check.description, None, 0, check.points,
                             cause=_cause(check, f"not run: check '{dep}' did not pass"))
            else:
                res = run_check(check, task, ctx)
            passed[check.id] = res.passed
            results.append(res)
        task_ok[task.id] = all(r.passed for r in results)
        out.extend(results)
    return out


def summary(lesson: Lesson, results: list[Result]) -> dict:
    """check50's JSON shape, with points: what `--json` writes and a transcript records."""
    return {"slug": lesson.id, "version": lesson.version, "digest": lesson.digest,
            "results": [r.as_json() for r in results],
            "score": sum(r.points for r in results), "max_score": lesson.max_score,
            "passed": all(r.passed for r in results) and len(results) == len(lesson.checks())}


def tasks_done(lesson: Lesson, results: list[Result]) -> set[str]:
    by_task: dict[str, list[Result]] = {}
    for r in results:
        by_task.setdefault(r.task, []).append(r)
    return {t.id for t in lesson.tasks if by_task.get(t.id) and all(r.passed for r in by_task[t.id])}
