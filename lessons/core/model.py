"""A lesson as data: what lessons/<id>/lesson.toml holds once the schema (schema.py) accepted it.

Field names follow the teaching platforms students and authors know: Killercoda's intro/finish
and per-step text, iximiuz's `needs`, check50's checks that depend on checks, rustlings' hints,
GitHub Classroom's points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Hint:
    text: str
    after_failures: int | None = None  # shown by itself after this many failed evaluations
    on_step: dict[str, str] | None = None  # shown when a step matching these fields is recorded
    on_event: dict[str, str] | None = None  # shown when an event matching these fields happens


@dataclass(frozen=True)
class Check:
    id: str
    kind: str  # a probe's name (lessons/probes): status_field, cgroup_file, step, ...
    description: str
    params: dict  # the kind's own fields, validated by the probe's parameter list
    points: int = 1
    depends: tuple[str, ...] = ()  # checks (of this lesson) that must pass for this one to run
    rationale: str = ""  # check50's cause: why it failed, and what to try
    help: str = ""
    line: int = 0  # where it stands in lesson.toml, for messages


@dataclass(frozen=True)
class Task:
    id: str
    title: str
    text: str  # Markdown
    checks: tuple[Check, ...]
    hints: tuple[Hint, ...] = ()
    needs: tuple[str, ...] = ()  # tasks that must be done first
    setup: str = ""  # shell run before the task (the containers the lesson starts for the student)
    solve: str = ""  # shell that solves the task (replay --solve, the walkthrough)
    panel: str = ""  # the app's panel brought forward for this task (steps, ns, cgroups, ...)
    line: int = 0

    @property
    def points(self) -> int:
        return sum(c.points for c in self.checks)


@dataclass(frozen=True)
class Lesson:
    id: str
    version: str
    title: str
    objectives: tuple[str, ...]
    intro: str  # Markdown
    finish: str
    tasks: tuple[Task, ...]
    requires: tuple[str, ...] = ()  # host features (lessons/core/features.py)
    prerequisites: tuple[str, ...] = ()  # lesson ids
    containers: tuple[str, ...] = ()  # container names the lesson uses (reset removes them)
    networks: tuple[str, ...] = ()  # network names the lesson creates
    topic: str = ""
    path: Path = field(default=Path("."))  # the lesson's folder
    digest: str = ""  # SHA-256 over the lesson's files: a transcript names the exact lesson it ran

    def task(self, task_id: str) -> Task:
        for t in self.tasks:
            if t.id == task_id:
                return t
        raise KeyError(task_id)

    def checks(self) -> list[tuple[Task, Check]]:
        return [(t, c) for t in self.tasks for c in t.checks]

    @property
    def max_score(self) -> int:
        return sum(t.points for t in self.tasks)
