"""Student mode: the open lesson, its progress, hints, and what goes into its transcript.

State lives under the engine's lib dir (<lib>/lessons/, /var/lib/labtui/lessons by default), not
/run: a student's progress survives the app's restarts and a reboot of the lab VM.

    progress.json             per lesson: tasks done, the current task, failed evaluations and hints
                              shown per task, setups run, the transcript, the student
    active.json               the open session (one at a time): lesson, transcript, the grader key,
                              how far the step and event streams were read
    transcripts/<id>-<utc>.jsonl   one per session (lessons/transcript.py)

Who calls what: `labtui lesson ...` (labtui/cli/lesson.py) and the app's lesson screen call
start/stop/reset/status/hint; labtui/cli/main.py calls lessons.recorder.record_command() after
every command when active.json exists (one stat otherwise). Evaluation reads the kernel through the probes; the
transcript records it, but a grade re-runs everything (lessons/grade.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lessons import features, transcript
from lessons.core import evaluate as ev
from lessons.core import schema
from lessons.core.model import Hint, Lesson, Task
from lessons.probes import Context
from lessons.recorder import QUIET_ENV, record_command  # noqa: F401 - re-exported
from lessons.sandbox import (  # noqa: F401 - re-exported: callers know them as lessons.session.*
    PrivateState,
    ScriptResult,
    labtui_env,
    run_labtui,
    run_script,
)


class SessionError(Exception):
    """A lesson command that cannot go on; str() is the message for the student."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ---- where things are ---------------------------------------------------------------------------

def state_dir() -> Path:
    from engine import paths

    return paths.lib_dir() / "lessons"


def active_file() -> Path:
    """labtui/cli/main.py stats this path (spelt out there, to import nothing of lessons), and
    lessons.recorder reads it (its own copy of the name)."""
    return state_dir() / "active.json"


def progress_file() -> Path:
    return state_dir() / "progress.json"


def transcripts_dir() -> Path:
    return state_dir() / "transcripts"


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Read-modify-write of progress.json and active.json: the CLI and the app both do it."""
    state_dir().mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir() / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read(path: Path) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except ValueError:
        raise SessionError(f"{path} is not valid JSON; remove it to start over") from None
    return data if isinstance(data, dict) else {}


def _write(path: Path, obj: dict) -> None:
    from engine import jsonl

    jsonl.write_json_atomic(path, obj, durable=True)  # fsync: progress must outlive a power cut
    os.chmod(path, 0o600)  # active.json holds the grader key


# ---- reading the state ------------------------------------------------------------------------------

def active() -> dict | None:
    """The open session (active.json), or None."""
    return _read(active_file()) or None


def all_progress() -> dict[str, dict]:
    return _read(progress_file()).get("lessons", {})


def progress(lesson_id: str) -> dict | None:
    return all_progress().get(lesson_id)


def open_lesson() -> tuple[dict, Lesson] | None:
    act = active()
    if not act:
        return None
    return act, schema.find(act["lesson"])


def student_name() -> str:
    """Who runs the lesson: the user behind sudo, else the login name."""
    if os.environ.get("SUDO_USER"):
        return os.environ["SUDO_USER"]
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _save_progress(lesson_id: str, prog: dict | None) -> None:
    data = _read(progress_file())
    lessons = data.setdefault("lessons", {})
    if prog is None:
        lessons.pop(lesson_id, None)
    else:
        lessons[lesson_id] = prog
    _write(progress_file(), data)


def current_task(lesson: Lesson, done: set[str]) -> Task | None:
    """The first task not done whose needs are done (tasks are ordered)."""
    for t in lesson.tasks:
        if t.id not in done and all(n in done for n in t.needs):
            return t
    return None


# ---- opening and closing --------------------------------------------------------------------------

@dataclass
class Started:
    lesson: Lesson
    resumed: bool
    transcript: Path
    current: Task | None
    done: list[str]
    setup: ScriptResult | None  # the current task's setup, when it ran now
    changed: bool = False  # progress was kept, but the lesson's files changed since: it starts over


def start(lesson_id: str, student: str | None = None) -> Started:
    """Open a lesson (LessonError for an unknown id; SessionError: unsupported here, another lesson
    open, a setup that failed). Progress kept from earlier sessions is resumed, in the same
    transcript, unless the lesson's files changed since."""
    lesson = schema.find(lesson_id)
    reason = features.unsupported(lesson)
    if reason:
        raise SessionError(f"lesson {lesson.id} is unsupported on this host: {reason}", features.UNSUPPORTED_EXIT)
    with _locked():
        act = active()
        if act and act["lesson"] != lesson.id:
            raise SessionError(f"lesson {act['lesson']} is open; `labtui lesson stop` closes it first")
        prog = progress(lesson.id)
        resumed = bool(prog and prog.get("digest") == lesson.digest and prog.get("transcript")
                       and Path(prog["transcript"]).is_file())
        changed = bool(prog and prog.get("digest") != lesson.digest)
        if not resumed:
            prog = _new_session(lesson, student or student_name())
        assert prog is not None
        if not act:
            act = activate(lesson, prog["transcript"], prog["student"], prog["started"], transcript.key_from_env())
        _save_progress(lesson.id, prog)
    task = current_task(lesson, set(prog["done"]))
    result = _ensure_setup(lesson, task, act) if task else None
    return Started(lesson, resumed, Path(prog["transcript"]), task, list(prog["done"]), result, changed)


def _new_session(lesson: Lesson, student: str) -> dict:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = transcripts_dir() / f"{lesson.id}-{stamp}-{os.urandom(2).hex()}.jsonl"
    open_session(lesson, student, path, transcript.key_from_env())
    return {"lesson": lesson.id, "version": lesson.version, "digest": lesson.digest, "student": student,
            "transcript": str(path), "started": time.time(), "finished": None, "done": [],
            "failures": {}, "hints": {}, "setup_done": []}


def header(lesson: Lesson, student: str) -> dict:
    """A transcript's first line (without type/format, which the writer adds)."""
    return {"lesson": lesson.id, "version": lesson.version, "digest": lesson.digest, "labtui": labtui_version(),
            "host": features.host_facts(), "student": student, "started": time.time(),
            "lesson_dir": str(lesson.path.resolve())}


def labtui_version() -> str:
    """The version in this tree's pyproject.toml (what runs is the tree), else the installed one's."""
    import tomllib

    try:
        with open(schema.LESSONS_DIR.parent / "pyproject.toml", "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        pass
    try:
        from importlib.metadata import version

        return version("labtui")
    except Exception:  # noqa: BLE001 - neither: say so rather than fail a lesson
        return "unknown"


def open_session(lesson: Lesson, student: str, path: Path, key: bytes | None) -> None:
    """Create the transcript (header line) at path. Used by start() and by replay --transcript."""
    transcript.Writer.create(path, header(lesson, student), key)


def activate(lesson: Lesson, transcript_path: Path | str, student: str, started: float,
             key: bytes | None) -> dict:
    """Write active.json: from now on every labtui command of this state goes into the transcript
    (sealed with key). Used by start() and by replay --transcript."""
    from engine import paths

    act = {"lesson": lesson.id, "transcript": str(transcript_path), "student": student,
           "opened": time.time(), "started": started, "key": key.hex() if key else None,
           "steps_pos": _size(paths.steps_stream()), "events_pos": _size(paths.events_stream()),
           # What the transcript held when last evaluated: growth since means the student did
           # something. Opening the lesson is not a failed attempt.
           "names": {}, "eval_mark": _size(Path(transcript_path)), "last_eval": None}
    _write(active_file(), act)
    return act


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _writer(act: dict) -> transcript.Writer:
    return transcript.Writer(act["transcript"], bytes.fromhex(act["key"]) if act.get("key") else None)


def stop() -> dict | None:
    """Close the open session (its transcript stays, sealed if there is a key); progress is kept,
    and so are the lesson's containers. Returns what was open."""
    with _locked():
        act = active()
        if not act:
            return None
        with contextlib.suppress(SessionError, schema.LessonError, OSError):
            lesson = schema.find(act["lesson"])
            _record_streams(lesson, act)
        active_file().unlink(missing_ok=True)
    return act


def reset(lesson_id: str) -> dict | None:
    """Back to the lesson's start: its containers and networks removed, its progress forgotten,
    the session closed if it was open (returned then: the caller may start it again)."""
    lesson = schema.find(lesson_id)
    act = active()
    was_open = act if act and act["lesson"] == lesson.id else None
    if was_open:
        stop()
    problems = remove_lesson_objects(lesson)
    with _locked():
        _save_progress(lesson.id, None)
    if problems:
        raise SessionError(f"reset of {lesson.id}: could not remove " + "; ".join(problems))
    return was_open


def remove_lesson_objects(lesson: Lesson) -> list[str]:
    """Remove the containers and networks the lesson declares; returns what could not be removed."""
    from engine import api, network
    from engine.errors import EngineError, NotFound

    problems = []
    for name in lesson.containers:
        try:
            api.remove(name, force=True)
        except NotFound:
            pass
        except EngineError as e:
            problems.append(f"container {name}: {e}")
    for name in lesson.networks:
        try:
            network.remove_network(name, api.network_users)
        except NotFound:
            pass
        except EngineError as e:
            problems.append(f"network {name}: {e}")
    return problems


# ---- setup ----------------------------------------------------------------------------------------

def run_setup(lesson: Lesson, task: Task, writer: transcript.Writer | None) -> ScriptResult | None:
    """The task's setup script, recorded as a "setup" entry (a grade runs the lesson's own setup
    at that point); its labtui commands are not recorded one by one (quiet)."""
    if not task.setup.strip():
        return None
    t0 = time.time()
    res = run_script(task.setup, env=labtui_env(quiet=True), cwd=lesson.path)
    if writer is not None:
        writer.append({"type": "setup", "task": task.id, "exit": res.exit_code, "ts": round(t0, 3)})
    return res


def _ensure_setup(lesson: Lesson, task: Task, act: dict) -> ScriptResult | None:
    prog = progress(lesson.id) or {}
    if task.id in prog.get("setup_done", []):
        return None
    res = run_setup(lesson, task, _writer(act))
    with _locked():
        prog = progress(lesson.id) or prog
        prog.setdefault("setup_done", []).append(task.id)
        _save_progress(lesson.id, prog)
        now = active()
        if now is not None:  # the set-up's own commands are not the student's attempts
            now["eval_mark"] = _size(Path(now["transcript"]))
            _write(active_file(), now)
    if res is not None and res.exit_code != 0:
        raise SessionError(f"the set-up of task '{task.id}' failed (exit {res.exit_code}):\n{res.output.rstrip()}\n"
                           f"`labtui lesson reset {lesson.id}` starts the lesson over")
    return res


# ---- the step and event streams ----------------------------------------------------------------------

def _read_new(path: Path, pos: int) -> tuple[list[dict], int]:
    """Complete lines appended since pos (a line being written is left for next time)."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size < pos:
                pos = 0  # the stream was reset (a fresh state dir)
            f.seek(pos)
            data = f.read()
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n") + 1
    out = []
    for line in data[:end].splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out, pos + end


def _container_name(cid: str, lesson: Lesson, names: dict[str, str]) -> str:
    """The lesson container an id belongs to ("" for any other), remembered in names."""
    if cid not in names:
        from engine import state
        from engine.errors import EngineError

        try:
            name = state.load(cid).name
        except (EngineError, OSError, ValueError, KeyError):
            name = ""
        names[cid] = name if name in lesson.containers else ""
    return names[cid]


def _record_streams(lesson: Lesson, act: dict) -> tuple[list[dict], list[dict]]:
    """The lesson containers' steps and events since the last call, into the transcript; act's
    stream positions move on (the caller writes act back)."""
    from engine import paths

    names: dict[str, str] = act.setdefault("names", {})
    events, act["events_pos"] = _read_new(paths.events_stream(), act.get("events_pos", 0))
    kept_events = []
    for e in events:
        cid = e.get("container") or ""
        if e.get("name") in lesson.containers and cid:
            names[cid] = e["name"]
        if cid and _container_name(cid, lesson, names):
            kept_events.append(e)
    steps, act["steps_pos"] = _read_new(paths.steps_stream(), act.get("steps_pos", 0))
    kept_steps = []
    for s in steps:
        name = _container_name(s.get("container") or "", lesson, names) if s.get("container") else ""
        if name:
            kept_steps.append({**s, "container_name": name})
    entries = [{"type": "step", "container": s["container_name"],
                "step": {k: v for k, v in s.items() if k != "container_name"}} for s in kept_steps]
    entries += [{"type": "event", "event": e} for e in kept_events]
    _writer(act).append(*entries)
    return kept_steps, kept_events


def record_streams(lesson: Lesson) -> tuple[list[dict], list[dict]]:
    """The open session's new lesson-container steps and events, into its transcript."""
    with _locked():
        act = active()
        if not act:
            return [], []
        found = _record_streams(lesson, act)
        _write(active_file(), act)
    return found


def _matches(fields: dict[str, str], rec: dict) -> bool:
    return all(str(rec.get(k)) == v for k, v in fields.items())


def _triggered(hint: Hint, steps: list[dict], events: list[dict]) -> bool:
    if hint.on_step:
        want = dict(hint.on_step)
        if "container" in want:  # a lesson names containers by name; steps carry the id
            want["container_name"] = want.pop("container")
        if any(_matches(want, s) for s in steps):
            return True
    if hint.on_event:
        want = dict(hint.on_event)
        if "container" in want:
            want["name"] = want.pop("container")
        if any(_matches(want, e) for e in events):
            return True
    return False


# ---- evaluation ----------------------------------------------------------------------------------

@dataclass
class Status:
    lesson: Lesson
    results: list[ev.Result]
    summary: dict  # check50's shape (lessons.core.evaluate.summary)
    current: Task | None  # the task to work on now (None: all done)
    done: list[str]
    passed_now: list[str] = field(default_factory=list)  # tasks this evaluation passed
    new_hints: list[str] = field(default_factory=list)  # hints this evaluation brought up
    failures: int = 0  # failed evaluations of the current task so far
    finished: bool = False
    setup: ScriptResult | None = None

    def as_json(self) -> dict:
        return {"lesson": self.lesson.id, "title": self.lesson.title,
                "current": self.current.id if self.current else None,
                "done": self.done, "passed_now": self.passed_now, "new_hints": self.new_hints,
                "failures": self.failures, "finished": self.finished, "summary": self.summary}


def context(lesson: Lesson, act: dict) -> Context:
    return Context(lesson_id=lesson.id, since=float(act.get("started") or 0.0))


def status(explicit: bool = True) -> Status:
    """Evaluate the open lesson's current task, advance past it when it passes (running the next
    task's setup), and record the evaluation with the lesson containers' new steps and events.

    explicit: a student asked (`lesson status`): the evaluation is recorded and, when the task
    fails, counts toward its hints' after_failures. The app's periodic re-evaluation passes False:
    it is recorded only when a result changed, and counts as a failure only after something
    happened (a command, a step, an event) since the previous one.
    """
    opened = open_lesson()
    if not opened:
        raise SessionError("no lesson is open: `labtui lesson start ID` opens one (`labtui lesson list`)")
    act, lesson = opened
    with _locked():
        act = active() or act
        prog = progress(lesson.id) or {}
        done = set(prog.get("done", []))
        task = current_task(lesson, done)
        activity = os.path.getsize(act["transcript"]) != act.get("eval_mark")
        steps, events = _record_streams(lesson, act)
        results = ev.evaluate(lesson, context(lesson, act), only={task.id} if task else set(), done=done)
        passed_now = sorted(ev.tasks_done(lesson, results) - done, key=[t.id for t in lesson.tasks].index)
        st = Status(lesson, results, ev.summary(lesson, results), task, sorted(done), passed_now)
        _record_evaluation(act, st, always=explicit)
        _advance(lesson, prog, st, counted=explicit or activity or bool(steps or events), steps=steps, events=events)
        act["eval_mark"] = os.path.getsize(act["transcript"])
        _write(active_file(), act)
        _save_progress(lesson.id, prog)
    if st.current is not None and st.passed_now:
        st.setup = _ensure_setup(lesson, st.current, act)
    return st


def _record_evaluation(act: dict, st: Status, always: bool) -> None:
    mark = hashlib.sha256(json.dumps([(r["name"], r["passed"]) for r in st.summary["results"]]).encode()).hexdigest()
    if always or mark != act.get("last_eval"):
        _writer(act).append({"type": "evaluation", "ts": round(time.time(), 3), "results": st.summary})
        act["last_eval"] = mark


def _advance(lesson: Lesson, prog: dict, st: Status, *, counted: bool, steps: list[dict], events: list[dict]) -> None:
    """Update progress after an evaluation: tasks done, the current task, failures and hints."""
    task = st.current
    done = set(prog.setdefault("done", []))
    if st.passed_now:
        done.update(st.passed_now)
        prog["done"] = [t.id for t in lesson.tasks if t.id in done]
    st.done = list(prog["done"])
    st.current = current_task(lesson, done)
    if st.current is None:
        st.finished = True
        prog["finished"] = prog.get("finished") or time.time()
    if task is None or task.id in done:
        return
    fails = prog.setdefault("failures", {})
    if counted:
        fails[task.id] = fails.get(task.id, 0) + 1
    st.failures = fails.get(task.id, 0)
    shown = prog.setdefault("hints", {}).setdefault(task.id, [])
    for i, h in enumerate(task.hints):
        due = (h.after_failures is not None and st.failures >= h.after_failures) or _triggered(h, steps, events)
        if due and i not in shown:
            shown.append(i)
            st.new_hints.append(h.text)


# ---- hints ----------------------------------------------------------------------------------------------

@dataclass
class HintReply:
    task: Task | None
    text: str | None  # the new hint; None when the ladder is used up
    number: int  # its place on the ladder (1-based; 0 when there is none)
    total: int  # hints on the ladder
    shown: list[str]  # the ladder's hints shown so far, in ladder order

    @property
    def left(self) -> int:
        """Ladder hints not shown yet."""
        return self.total - len(self.shown)


def hint() -> HintReply:
    """The next hint of the current task's ladder (its hints without an on_step/on_event trigger,
    in order), recorded in progress and in the transcript."""
    opened = open_lesson()
    if not opened:
        raise SessionError("no lesson is open: `labtui lesson start ID` opens one")
    act, lesson = opened
    with _locked():
        prog = progress(lesson.id) or {}
        task = current_task(lesson, set(prog.get("done", [])))
        if task is None:
            return HintReply(None, None, 0, 0, [])
        shown = prog.setdefault("hints", {}).setdefault(task.id, [])
        ladder = [i for i, h in enumerate(task.hints) if not (h.on_step or h.on_event)]
        nxt = next((i for i in ladder if i not in shown), None)
        if nxt is not None:
            shown.append(nxt)
            _save_progress(lesson.id, prog)
            _writer(act).append({"type": "hint", "task": task.id, "hint": nxt, "ts": round(time.time(), 3)})
        return HintReply(task, task.hints[nxt].text if nxt is not None else None,
                         ladder.index(nxt) + 1 if nxt is not None else 0, len(ladder),
                         [task.hints[i].text for i in ladder if i in shown])
