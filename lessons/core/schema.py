"""Load and validate lessons/<id>/lesson.toml (tomllib: no dependency) into lessons.core.model.

Every error names the file, the line and the field, as an author needs it:

    lessons/userns/lesson.toml:14: task 'map-root': unknown check kind 'cgroupp'

tomllib keeps no positions, so the lines come from a small index of the raw text: the table
headers ([[tasks]], [[tasks.checks]], [[tasks.hints]]) in order and the keys under each. Lessons
write their tasks, checks and hints as arrays of tables (docs/lessons.md), which the index follows.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from pathlib import Path

from lessons.core.model import Check, Hint, Lesson, Task

# The shipped lessons; LABTUI_LESSONS_DIR points elsewhere (a course's own lessons, test fixtures).
LESSONS_DIR = Path(__file__).resolve().parents[1]
ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")
PANELS = ("steps", "ns", "cgroups", "ipc", "net", "sec", "procs", "logs", "timeline", "strace")
FEATURES = ("cgroup-v1", "cgroup-v2", "userns", "criu", "strace", "overlay", "seccomp")

LESSON_FIELDS = {"id", "version", "title", "objectives", "requires", "prerequisites", "intro", "finish",
                 "tasks", "containers", "networks", "topic"}
TASK_FIELDS = {"id", "title", "text", "checks", "hints", "needs", "setup", "solve", "panel"}
CHECK_FIELDS = {"id", "kind", "description", "points", "depends", "rationale", "help"}
HINT_FIELDS = {"text", "after_failures", "on_step", "on_event"}


class LessonError(Exception):
    """A lesson file that cannot be used; str() is the whole message, file and line first."""

    exit_code = 125


class _Lines:
    """Where each table and key of the raw TOML text stands (1-based lines)."""

    HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-]+)\s*\]\]?\s*(#.*)?$")
    KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")

    def __init__(self, text: str) -> None:
        # blocks: (table name, its index among same-name tables, header line, {key: line})
        self.blocks: list[tuple[str, int, int, dict[str, int]]] = [("", 0, 1, {})]
        counts: dict[str, int] = {}
        in_string = False
        for n, line in enumerate(text.splitlines(), 1):
            if line.count('"""') % 2 == 1 or line.count("'''") % 2 == 1:
                was = in_string
                in_string = not in_string
                if was:
                    continue
            elif in_string:
                continue
            m = self.HEADER.match(line)
            if m and not in_string:
                name = m.group(1)
                if name == "tasks":
                    counts.pop("tasks.checks", None)
                    counts.pop("tasks.hints", None)
                idx = counts.get(name, 0)
                counts[name] = idx + 1
                self.blocks.append((name, idx, n, {}))
                continue
            k = self.KEY.match(line)
            if k:
                self.blocks[-1][3].setdefault(k.group(1), n)

    def find(self, task: int | None = None, sub: str | None = None, sub_index: int | None = None,
             key: str | None = None) -> int:
        """The line of a key at the top, in the task-th [[tasks]], or in its sub_index-th
        [[tasks.<sub>]]; the block's header when the key is absent."""
        block = self.blocks[0]
        t = -1
        for b in self.blocks:
            if b[0] == "tasks":
                t += 1
            if task is None:
                if b[0] == "":
                    block = b
                continue
            if t == task and ((sub is None and b[0] == "tasks") or (sub is not None and b[0] == f"tasks.{sub}"
                                                                    and b[1] == sub_index)):
                block = b
                break
        if key and key in block[3]:
            return block[3][key]
        return block[2]


class _Ctx:
    def __init__(self, file: Path, lines: _Lines) -> None:
        self.file = file
        self.lines = lines

    def fail(self, line: int, what: str) -> LessonError:
        return LessonError(f"{_display(self.file)}:{line}: {what}")


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(LESSONS_DIR.parent))
    except ValueError:
        return str(path)


def _text_field(ctx: _Ctx, folder: Path, value: object, line: int, where: str) -> str:
    """A prose field: inline Markdown, or the name of a .md file in the lesson's folder."""
    if not isinstance(value, str):
        raise ctx.fail(line, f"{where} must be a string (Markdown, or a .md file's name)")
    if value.endswith(".md") and "\n" not in value:
        f = folder / value
        if not f.is_file() or f.resolve().parent != folder.resolve():
            raise ctx.fail(line, f"{where}: no file {value} in {_display(folder)}")
        return f.read_text()
    return value


def _str_list(ctx: _Ctx, value: object, line: int, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ctx.fail(line, f"{where} must be a list of strings")
    return tuple(value)


def _unknown(ctx: _Ctx, table: dict, allowed: set[str], line_of, where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ctx.fail(line_of(key), f"{where}unknown field '{key}' (one of: {', '.join(sorted(allowed))})")


def _required(ctx: _Ctx, table: dict, keys: tuple[str, ...], line: int, where: str) -> None:
    for key in keys:
        if key not in table:
            raise ctx.fail(line, f"{where}missing field '{key}'")


def _check(ctx: _Ctx, raw: object, ti: int, ci: int, task_id: str) -> Check:
    from lessons import probes

    where = f"task '{task_id}': "
    header = ctx.lines.find(ti, "checks", ci)
    if not isinstance(raw, dict):
        raise ctx.fail(header, f"{where}a check must be a table")

    def line_of(key: str) -> int:
        return ctx.lines.find(ti, "checks", ci, key)

    _required(ctx, raw, ("id", "kind"), header, where)
    cid, kind = raw["id"], raw["kind"]
    if not isinstance(cid, str) or not ID_RE.match(cid):
        raise ctx.fail(line_of("id"), f"{where}check id {cid!r} must be lowercase letters, digits and '-'")
    where = f"task '{task_id}': check '{cid}': "
    probe = probes.get(kind) if isinstance(kind, str) else None
    if probe is None:
        near = probes.closest(str(kind))
        hint = f" (did you mean '{near}'?)" if near else ""
        raise ctx.fail(line_of("kind"), f"task '{task_id}': unknown check kind {kind!r}{hint}")
    params = {k: v for k, v in raw.items() if k not in CHECK_FIELDS}
    try:
        probe.validate(params)
    except probes.ParamError as e:
        raise ctx.fail(line_of(e.field) if e.field else header, f"{where}{e}") from None
    points = raw.get("points", 1)
    if not isinstance(points, int) or isinstance(points, bool) or points < 0:
        raise ctx.fail(line_of("points"), f"{where}points must be a whole number >= 0")
    depends = _str_list(ctx, raw.get("depends", []), line_of("depends"), f"{where}depends")
    for key in ("description", "rationale", "help"):
        if key in raw and not isinstance(raw[key], str):
            raise ctx.fail(line_of(key), f"{where}{key} must be a string")
    return Check(id=cid, kind=kind, description=raw.get("description", "") or probe.describe(params),
                 params=params, points=points, depends=depends, rationale=raw.get("rationale", ""),
                 help=raw.get("help", ""), line=header)


def _hint(ctx: _Ctx, raw: object, ti: int, hi: int, task_id: str) -> Hint:
    where = f"task '{task_id}': hint {hi + 1}: "
    header = ctx.lines.find(ti, "hints", hi)
    if isinstance(raw, str):
        return Hint(text=raw)
    if not isinstance(raw, dict):
        raise ctx.fail(header, f"{where}a hint is a string or a table")

    def line_of(key: str) -> int:
        return ctx.lines.find(ti, "hints", hi, key)

    _unknown(ctx, raw, HINT_FIELDS, line_of, where)
    _required(ctx, raw, ("text",), header, where)
    after = raw.get("after_failures")
    if after is not None and (not isinstance(after, int) or isinstance(after, bool) or after < 1):
        raise ctx.fail(line_of("after_failures"), f"{where}after_failures must be a whole number >= 1")
    triggers = {}
    for key in ("on_step", "on_event"):
        v = raw.get(key)
        if v is not None and (not isinstance(v, dict) or not all(isinstance(x, str | int) for x in v.values())):
            raise ctx.fail(line_of(key), f"{where}{key} must be a table of fields to match")
        triggers[key] = {k: str(x) for k, x in v.items()} if v else None
    return Hint(text=str(raw["text"]), after_failures=after, **triggers)


def _task(ctx: _Ctx, folder: Path, raw: object, ti: int) -> Task:
    header = ctx.lines.find(ti)
    if not isinstance(raw, dict):
        raise ctx.fail(header, "a task must be a table ([[tasks]])")

    def line_of(key: str) -> int:
        return ctx.lines.find(ti, key=key)

    tid = raw.get("id")
    where = f"task '{tid}': " if isinstance(tid, str) else f"task {ti + 1}: "
    _unknown(ctx, raw, TASK_FIELDS, line_of, where)
    _required(ctx, raw, ("id", "title", "text", "checks"), header, where)
    if not isinstance(tid, str) or not ID_RE.match(tid):
        raise ctx.fail(line_of("id"), f"task id {tid!r} must be lowercase letters, digits and '-'")
    if not isinstance(raw["checks"], list) or not raw["checks"]:
        raise ctx.fail(line_of("checks") if "checks" in ctx.lines.blocks[0][3] else header,
                       f"{where}a task needs at least one check ([[tasks.checks]])")
    checks = tuple(_check(ctx, c, ti, ci, tid) for ci, c in enumerate(raw["checks"]))
    if not isinstance(raw.get("hints", []), list):  # `hints = 3`: refused, not iterated (found by fuzzing)
        raise ctx.fail(line_of("hints"), f"{where}hints must be tables ([[tasks.hints]])")
    hints = tuple(_hint(ctx, h, ti, hi, tid) for hi, h in enumerate(raw.get("hints", [])))
    panel = raw.get("panel", "")
    if panel and panel not in PANELS:
        raise ctx.fail(line_of("panel"), f"{where}unknown panel {panel!r} (one of: {', '.join(PANELS)})")
    for key in ("setup", "solve", "title"):
        if key in raw and not isinstance(raw[key], str):
            raise ctx.fail(line_of(key), f"{where}{key} must be a string")
    text = _text_field(ctx, folder, raw["text"], line_of("text"), f"{where}text")
    needs = _str_list(ctx, raw.get("needs", []), line_of("needs"), f"{where}needs")
    return Task(id=tid, title=raw["title"], text=text, checks=checks, hints=hints, needs=needs,
                setup=raw.get("setup", ""), solve=raw.get("solve", ""), panel=panel, line=header)


def digest(folder: Path) -> str:
    """SHA-256 over the lesson's files (names and contents, sorted): its exact version."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(f.relative_to(folder)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def load(folder: Path | str) -> Lesson:
    """One lesson folder (with lesson.toml) -> Lesson, or LessonError."""
    folder = Path(folder)
    file = folder / "lesson.toml"
    try:
        text = file.read_text()
    except OSError as e:
        raise LessonError(f"{_display(file)}: cannot read: {e.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column \d+\)", str(e))
        line = m.group(1) if m else str(max(1, len(text.splitlines())))  # "at end of document"
        what = re.sub(r" \(at line.*", "", str(e))
        raise LessonError(f"{_display(file)}:{line}: not valid TOML: {what}") from None
    ctx = _Ctx(file, _Lines(text))
    top = ctx.lines.blocks[0][3]

    def line_of(key: str) -> int:
        return top.get(key, 1)

    _unknown(ctx, raw, LESSON_FIELDS, line_of, "")
    _required(ctx, raw, ("id", "version", "title", "objectives", "intro", "finish", "tasks"), 1, "")
    lid = raw["id"]
    if not isinstance(lid, str) or not ID_RE.match(lid):
        raise ctx.fail(line_of("id"), f"lesson id {lid!r} must be lowercase letters, digits and '-'")
    if lid != folder.name:
        raise ctx.fail(line_of("id"), f"lesson id '{lid}' differs from its folder's name '{folder.name}'")
    if not isinstance(raw["version"], str | int):
        raise ctx.fail(line_of("version"), "version must be a string")
    if not isinstance(raw["tasks"], list) or not raw["tasks"]:
        raise ctx.fail(line_of("tasks"), "a lesson needs at least one task ([[tasks]])")
    requires = _str_list(ctx, raw.get("requires", []), line_of("requires"), "requires")
    for f in requires:
        if f not in FEATURES:
            raise ctx.fail(line_of("requires"), f"unknown feature {f!r} in requires (one of: {', '.join(FEATURES)})")
    tasks = tuple(_task(ctx, folder, t, i) for i, t in enumerate(raw["tasks"]))
    _cross_check(ctx, tasks)
    return Lesson(
        id=lid, version=str(raw["version"]), title=str(raw["title"]),
        objectives=_str_list(ctx, raw["objectives"], line_of("objectives"), "objectives"),
        intro=_text_field(ctx, folder, raw["intro"], line_of("intro"), "intro"),
        finish=_text_field(ctx, folder, raw["finish"], line_of("finish"), "finish"),
        tasks=tasks, requires=requires,
        prerequisites=_str_list(ctx, raw.get("prerequisites", []), line_of("prerequisites"), "prerequisites"),
        containers=_str_list(ctx, raw.get("containers", []), line_of("containers"), "containers"),
        networks=_str_list(ctx, raw.get("networks", []), line_of("networks"), "networks"),
        topic=str(raw.get("topic", "")), path=folder, digest=digest(folder),
    )


def _cross_check(ctx: _Ctx, tasks: tuple[Task, ...]) -> None:
    """Ids unique; needs name earlier tasks; depends name checks of this task or an earlier one."""
    seen_tasks: set[str] = set()
    seen_checks: set[str] = set()
    for t in tasks:
        if t.id in seen_tasks:
            raise ctx.fail(t.line, f"task '{t.id}': a second task with this id")
        for need in t.needs:
            if need not in seen_tasks:
                raise ctx.fail(t.line, f"task '{t.id}': needs '{need}', which is not an earlier task")
        seen_tasks.add(t.id)
        for c in t.checks:
            if c.id in seen_checks:
                raise ctx.fail(c.line, f"task '{t.id}': a second check with id '{c.id}'")
            for d in c.depends:
                if d not in seen_checks:
                    raise ctx.fail(c.line, f"task '{t.id}': check '{c.id}' depends on '{d}', "
                                           "which is not an earlier check")
            seen_checks.add(c.id)


# The order a course walks the topics in: what later lessons build on comes first.
TOPIC_ORDER = ("namespaces", "processes", "cgroups", "filesystems", "security", "networking", "lifecycle",
               "debugging")


def in_teaching_order(lessons: list[Lesson]) -> list[Lesson]:
    """Lessons by topic (TOPIC_ORDER, unknown topics last), the attack lessons last in theirs (they
    use what the others taught), then id; a lesson is moved after its prerequisites wherever they
    stand (a stable topological sort: `lesson list`, the picker)."""
    def rank(lesson: Lesson) -> tuple[int, bool, str]:
        topic = TOPIC_ORDER.index(lesson.topic) if lesson.topic in TOPIC_ORDER else len(TOPIC_ORDER)
        return topic, lesson.id.startswith("attack-"), lesson.id

    pending = sorted(lessons, key=rank)
    known = {lesson.id for lesson in lessons}
    out: list[Lesson] = []
    placed: set[str] = set()
    while pending:
        ready = [n for n, lesson in enumerate(pending)
                 if all(p in placed or p not in known for p in lesson.prerequisites)]
        lesson = pending.pop(ready[0] if ready else 0)  # none ready: a cycle; keep the topic order
        out.append(lesson)
        placed.add(lesson.id)
    return out


def lessons_root() -> Path:
    """Read at each call: a test or a replay may point LABTUI_LESSONS_DIR elsewhere."""
    return Path(os.environ.get("LABTUI_LESSONS_DIR") or LESSONS_DIR)


def lesson_dirs(root: Path | None = None) -> list[Path]:
    root = lessons_root() if root is None else root
    return sorted(p for p in root.iterdir() if (p / "lesson.toml").is_file())


def load_all(root: Path | None = None) -> list[Lesson]:
    return [load(p) for p in lesson_dirs(root)]


def find(lesson_id: str, root: Path | None = None) -> Lesson:
    folder = (lessons_root() if root is None else root) / lesson_id
    if not ID_RE.match(lesson_id) or not (folder / "lesson.toml").is_file():
        known = ", ".join(p.name for p in lesson_dirs(root)) or "none"
        raise LessonError(f"no lesson with id {lesson_id!r} (lessons: {known})")
    return load(folder)
