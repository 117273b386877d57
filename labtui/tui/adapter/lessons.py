"""Lessons, for the app's lesson picker, lesson screen and walkthrough: plain data, no Textual.

What it reads and drives (the `lessons` package, and the engine's streams and step gate):

    the lessons        lessons.core.schema (LABTUI_LESSONS_DIR moves their root), lessons.features
    student mode       lessons.session: the same session, progress.json and transcript as `labtui
                       lesson start/status/hint`; status() evaluates, records and advances
    a lesson's ctrs    the step and event streams of the containers the lesson names, followed by name
    the walkthrough    a task's scripts with `labtui run/create` gated, api.gate_waiting (what is about to
                       happen), gate_release, and lessons.core.evaluate without a session

Every call may block (probes exec into containers, scripts run for seconds): call them from a
worker or a background thread, never from a handler on the UI thread.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine import api, paths, state
from engine.errors import EngineError
from labtui.tui.adapter.streams import Tail
from lessons import features, sandbox, session
from lessons.core import evaluate as evaluation
from lessons.core import schema
from lessons.core.model import Lesson, Task
from lessons.probes import Context

LessonError = schema.LessonError
UNSUPPORTED_EXIT = features.UNSUPPORTED_EXIT
SessionError = session.SessionError
ERRORS: tuple[type[BaseException], ...] = (EngineError, OSError, ValueError, schema.LessonError, session.SessionError)
"""What a lesson action may fail with for expected reasons; screens show the message."""

__all__ = ["Lesson", "Task"]  # the model's frozen dataclasses: plain data the screens display


# ---- the picker --------------------------------------------------------------------------------

@dataclass
class LessonRow:
    """One line of the lesson picker."""

    id: str
    title: str = ""
    topic: str = ""
    tasks: int = 0
    done: int = 0
    objectives: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    unsupported: str = ""  # why this host cannot run it ("cgroup-v2: ..."), "" when it can
    error: str = ""  # the schema's message for a lesson file that does not load
    is_open: bool = False  # the open session's lesson

    @property
    def progress(self) -> str:
        if self.error:
            return "error"
        if self.unsupported:
            return "unsupported"
        if self.tasks and self.done >= self.tasks:
            return "done"
        return f"{self.done}/{self.tasks}"


def lesson_rows() -> list[LessonRow]:
    """Every lesson folder under the lessons root, a broken one listed with its error (an author
    sees it here as in `labtui lesson list`). Slow the first time: features run `criu check`."""
    try:
        dirs = schema.lesson_dirs()
        progress = session.all_progress()
        act = session.active() or {}
    except (OSError, session.SessionError):
        return []
    rows, lessons = [], []
    for folder in dirs:
        try:
            lessons.append(schema.load(folder))
        except schema.LessonError as e:
            rows.append(LessonRow(folder.name, title="(does not load)", error=str(e)))
    for lesson in schema.in_teaching_order(lessons):
        done = set((progress.get(lesson.id) or {}).get("done", [])) & {t.id for t in lesson.tasks}
        rows.append(LessonRow(lesson.id, lesson.title, lesson.topic, len(lesson.tasks), len(done),
                              lesson.objectives, lesson.requires, features.unsupported(lesson) or "",
                              is_open=act.get("lesson") == lesson.id))
    return rows


def lessons_root() -> str:
    return str(schema.lessons_root())


def load(lesson_id: str) -> Lesson:
    return schema.find(lesson_id)


def unsupported(lesson: Lesson) -> str:
    return features.unsupported(lesson) or ""


# ---- student mode: lessons.session ---------------------------------------------------------------

def open_lesson() -> str | None:
    """The id of the lesson whose session is open (active.json), None when none is."""
    try:
        act = session.active()
    except session.SessionError:
        return None
    return act.get("lesson") if act else None


@dataclass
class Opened:
    lesson: Lesson
    resumed: bool
    current: str | None
    done: list[str]
    since: float  # the session's start: steps and events before it belong to no attempt of this lesson
    setup_output: str = ""


def start(lesson_id: str, close_other: bool = False) -> Opened:
    """Open (or resume) the lesson's session, as `labtui lesson start ID`: the transcript, and the
    current task's set-up when it has not run. close_other: close another open lesson first."""
    if close_other:
        other = open_lesson()
        if other and other != lesson_id:
            session.stop()
    st = session.start(lesson_id)
    act = session.active() or {}
    return Opened(st.lesson, st.resumed, st.current.id if st.current else None, list(st.done),
                  float(act.get("started") or 0.0), st.setup.output if st.setup else "")


def stop() -> None:
    """Close the open session (progress and containers stay: `labtui lesson start` resumes)."""
    session.stop()


@dataclass
class CheckRow:
    """One check's latest result: passed True (green), False (red) or None (grey: not run)."""

    task: str
    check: str
    description: str
    passed: bool | None
    points: int
    max_points: int
    cause: str = ""  # why not, and what to try (the lesson's rationale and help, or the probe's log)
    observed: str = ""


@dataclass
class Status:
    """One evaluation of the open lesson (session.status), as the lesson screen shows it."""

    lesson_id: str
    rows: list[CheckRow]
    current: str | None  # the task to work on now; None once all are done
    done: list[str]
    passed_now: list[str] = field(default_factory=list)
    new_hints: list[str] = field(default_factory=list)  # hints this evaluation brought up
    failures: int = 0
    finished: bool = False
    score: int = 0
    max_score: int = 0
    setup_output: str = ""  # the next task's set-up, when this evaluation passed a task
    seconds: float = 0.0


def _cause_text(cause: dict | None, log: list[str]) -> str:
    if not cause:
        return ""
    parts = [str(cause.get("rationale") or "")]
    if cause.get("help"):
        parts.append(str(cause["help"]))
    if log and not any(line and line in parts[0] for line in log):
        parts.append("(" + "; ".join(log) + ")")
    return " ".join(p for p in parts if p)


def _rows(results: list[evaluation.Result]) -> list[CheckRow]:
    return [CheckRow(r.task, r.check, r.description, r.passed, r.points, r.max_points,
                     _cause_text(r.cause, r.log), r.observed) for r in results]


def status(explicit: bool = False) -> Status:
    """Evaluate the open lesson's current task: session.status records the evaluation and the
    lesson containers' new steps and events in the transcript, counts a failure when something
    happened since the previous one, brings up hints, and on a pass runs the next task's set-up.
    Raises SessionError when no lesson is open (closed from another terminal)."""
    t0 = time.monotonic()
    st = session.status(explicit=explicit)
    return Status(st.lesson.id, _rows(st.results), st.current.id if st.current else None, list(st.done),
                  list(st.passed_now), list(st.new_hints), st.failures, st.finished,
                  int(st.summary.get("score", 0)), int(st.summary.get("max_score", 0)),
                  st.setup.output if st.setup else "", time.monotonic() - t0)


@dataclass
class HintShown:
    text: str | None  # None: every hint of the ladder is shown already
    shown: list[str]
    left: int


def next_hint() -> HintShown:
    """The next hint of the current task's ladder (recorded in progress and the transcript)."""
    h = session.hint()
    return HintShown(h.text, list(h.shown), h.left)


def hints_shown(lesson: Lesson, task_id: str) -> list[str]:
    """Hints of a task already shown in this lesson (by h, failures or a trigger): the app shows them again."""
    prog = session.progress(lesson.id) or {}
    try:
        task = lesson.task(task_id)
    except KeyError:
        return []
    return [task.hints[i].text for i in (prog.get("hints") or {}).get(task_id, []) if 0 <= i < len(task.hints)]


# ---- the lesson's containers, followed by name -------------------------------------------------

@dataclass
class Seen:
    """What the lesson's containers did since the previous read."""

    containers: dict[str, tuple[str, str]]  # name -> (id, status), for those that exist
    steps: list[dict]
    events: list[dict]
    changed: bool  # a container appeared, went or changed status


class LessonWatch:
    """The step and event streams of a lesson's containers, followed by name: a student may remove
    a container and run another under the same name, a new ID with a new step stream."""

    def __init__(self, names: tuple[str, ...] | list[str], since: float = 0.0) -> None:
        self.names = tuple(names)
        self.since = since
        self.ids: dict[str, tuple[str, str]] = {}
        self.step_tails: dict[str, Tail] = {}
        self.events = Tail(paths.events_stream(), self._ours)
        self.events.read()  # the history: what follows is what happens from now on

    def _ours(self, ev: dict) -> bool:
        return ev.get("name") in self.names or any(ev.get("container") == cid for cid, _ in self.ids.values())

    def read(self) -> Seen:
        now = {}
        for name in self.names:
            c = _resolve(name)
            if c is not None:
                now[name] = (c.id, c.status)
        changed = now != self.ids
        self.ids = now
        steps = []
        ids = {cid for cid, _ in now.values()}
        for cid in ids:
            tail = self.step_tails.get(cid)
            if tail is None:
                tail = self.step_tails[cid] = Tail(paths.container_dir(cid) / "steps.jsonl")
            steps += [s for s in tail.read() if float(s.get("ts") or 0) >= self.since]
        for cid in [c for c in self.step_tails if c not in ids]:
            del self.step_tails[cid]  # removed: its stream went with it
        return Seen(now, steps, self.events.read(), changed)


def _resolve(name: str) -> state.Container | None:
    try:
        return state.resolve(name)
    except (EngineError, OSError, ValueError):
        return None


def panel_container(lesson: Lesson, containers: dict[str, tuple[str, str]]) -> tuple[str, str] | None:
    """(name, id) of the lesson's first running container (in the lesson's order), else of the
    first that exists: the container whose panel the lesson screen shows."""
    present = [(n, containers[n]) for n in lesson.containers if n in containers]
    running = [(n, cid) for n, (cid, st) in present if st in (state.RUNNING, state.PAUSED)]
    if running:
        return running[0]
    return (present[0][0], present[0][1][0]) if present else None


# ---- the student's shell -----------------------------------------------------------------------

SHELL_VARS = ("PATH", "PYTHONPATH", "LABTUI_ROOT", "LABTUI_CGROUP_PARENT", "LABTUI_DEFAULT_BRIDGE",
              "LABTUI_LESSONS_DIR", "LABTUI_HELPER", "LABTUI_GRADER_KEY", "HOME", "TERM")


def shell_env() -> dict[str, str]:
    """The student's shell: `labtui` on PATH is this labtui, in the app's state; its commands go
    into the open lesson's transcript like any other terminal's."""
    return session.labtui_env()


def shell_argv() -> list[str]:
    return [os.environ.get("SHELL") or "/bin/sh"]


def in_tmux() -> bool:
    return bool(os.environ.get("TMUX")) and shutil.which("tmux") is not None


def tmux_pane(lesson_id: str) -> str:
    """Open a shell in a tmux pane beside the app (tmux split-window -h) and return its id. tmux
    starts the pane's command from its server, through a login shell that resets PATH
    (/etc/profile): the variables that matter are exported by the command itself."""
    env = shell_env()
    exports = " ".join(f"{var}={shlex.quote(env[var])}" for var in SHELL_VARS if env.get(var))
    banner = f"lesson {lesson_id}: labtui is on PATH; the app beside follows what you do (exit closes this pane)"
    command = f"export {exports}; echo {shlex.quote(banner)}; exec {shlex.quote(shell_argv()[0])}"
    args = ["tmux", "split-window", "-h", "-P", "-F", "#{pane_id}", "-c", os.getcwd(), command]
    p = subprocess.run(args, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise OSError(p.stderr.strip() or f"tmux split-window exited {p.returncode}")
    return p.stdout.strip()


# ---- the walkthrough: scripts with the step gate --------------------------------------------------

GATE_WRAPPER = """#!/bin/sh
# `labtui` for the walkthrough (labtui/tui/adapter/lessons.py): run and create add --gate, so every
# kernel step of the containers a task's solve script starts waits for the presenter's key.
export PYTHONPATH={tree}${{PYTHONPATH:+:$PYTHONPATH}}
case "$1" in run|create) cmd=$1; shift; set -- "$cmd" --gate "$@";; esac
exec {python} -m labtui.cli "$@"
"""


def _gate_bin() -> Path:
    """A directory with the gating `labtui` wrapper, beside lessons.session's own (written again
    when it differs, atomically: a script may be running it)."""
    d = session.state_dir() / "gate-bin"
    tree = Path(__file__).resolve().parents[3]
    text = GATE_WRAPPER.format(tree=shlex.quote(str(tree)), python=shlex.quote(sys.executable))
    path = d / "labtui"
    try:
        if path.read_text() == text:
            return d
    except OSError:
        pass
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".labtui.{os.getpid()}.tmp"
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.rename(tmp, path)
    return d


def script_env(gate: bool = False) -> dict[str, str]:
    """A walkthrough script's environment: quiet (an open lesson's transcript does not record the
    presenter's commands); with gate, `labtui run`/`create` hold every kernel step."""
    env = session.labtui_env(quiet=True)
    if gate:
        env["PATH"] = f"{_gate_bin()}:{env['PATH']}"
        env["LABTUI_GATE"] = "1"
    return env


@dataclass
class ScriptResult:
    code: int
    output: str

    @property
    def ok(self) -> bool:
        return self.code == 0


class Script:
    """A task's script in its own process group, output to a file: started now, waited on by a
    background thread, stopped (the whole group) when the walkthrough moves on or quits."""

    def __init__(self, text: str, cwd: Path, gate: bool = False) -> None:
        self.out = tempfile.TemporaryFile(prefix="labtui-walk-", dir="/var/tmp")
        self.proc = subprocess.Popen(["sh", "-e", "-c", text], env=script_env(gate), cwd=cwd,
                                     stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float | None = None) -> ScriptResult:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = 124
        self.stop()  # background jobs it left die with it; containers do not (own sessions)
        self.out.seek(0)
        text = self.out.read().decode(errors="replace")
        self.out.close()
        return ScriptResult(rc, text)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, 9)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def run_script(lesson: Lesson, text: str, timeout: float = sandbox.SCRIPT_TIMEOUT) -> ScriptResult:
    """An ungated script (a set-up, or an earlier task's solve while rebuilding)."""
    if not text.strip():
        return ScriptResult(0, "")
    return Script(text, lesson.path).wait(timeout)


def reset(lesson: Lesson) -> list[str]:
    """Remove the lesson's containers and networks (as `labtui lesson reset`, progress untouched);
    returns what could not be removed."""
    return session.remove_lesson_objects(lesson)


def evaluate_task(lesson: Lesson, task: Task, done: set[str], since: float = 0.0,
                  settle: float = 0.0) -> list[CheckRow]:
    """One task's checks, the tasks before it counted done (the walkthrough has no session);
    failing ones are tried again for up to `settle` seconds (a container just started)."""
    deadline = time.monotonic() + settle
    while True:
        results = [r for r in evaluation.evaluate(lesson, Context(lesson_id=lesson.id, since=since), {task.id}, done)
                   if r.task == task.id]
        if all(r.passed for r in results) or time.monotonic() >= deadline:
            return _rows(results)
        time.sleep(0.2)


@dataclass
class Held:
    """The kernel step a container's start waits on, before it happens."""

    container: str  # its name
    cid: str
    step: dict
    since: float  # when the gate took it: two held steps are told apart by it, not by their content

    @property
    def key(self) -> tuple[str, float]:
        return (self.cid, self.since)


def held_step(name: str) -> Held | None:
    """The step the gate holds for this container (engine.api.gate_waiting), None when none waits."""
    c = _resolve(name)
    if c is None:
        return None
    try:
        held = api.gate_waiting(c.id)
    except (OSError, EngineError):
        return None
    return Held(name, c.id, held[0], held[1]) if held else None


def held_steps(lesson: Lesson) -> list[Held]:
    return [h for h in (held_step(n) for n in lesson.containers) if h is not None]


def release(held: Held, count: int = 1) -> None:
    """Let `count` steps of the held container go (engine.api.gate_release: bytes into its FIFO)."""
    api.gate_release(held.cid, count)


def shorten(text: str, cid: str) -> str:
    if not text:
        return ""
    return text.replace(str(paths.container_dir(cid)), "<ctr>").replace(str(paths.lib_dir()), "<lib>")


def gated_steps(name: str) -> int:
    """How many gated steps the container named performed (its step stream)."""
    c = _resolve(name)
    if c is None:
        return 0
    return sum(1 for s in Tail(paths.container_dir(c.id) / "steps.jsonl").read() if s.get("gated"))
