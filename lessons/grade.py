"""`labtui grade TRANSCRIPT...`: verify each transcript, replay it on fresh state, re-run every check.

Students are root on their VM, so whatever a transcript says it saw may be forged, and the key that
seals it can be read (docs/lessons-grading.md). The grade therefore trusts nothing recorded:

1. verify: the hash chain (and the seal, with the grader's key), naming the first bad line; the
   lesson named in the header must be on this machine in the same version (its digest);
2. replay in a PrivateState (lessons/sandbox.py): the "setup" entries run the lesson file's own
   setup scripts, the "command" entries run again as `labtui ARGV` (read-only commands skipped),
   at the recorded pace with each gap capped at GAP_CAP seconds; after each command and at each
   recorded evaluation the checks of the tasks not yet passed run (a passed task stays passed);
3. report the replay's results (check50 JSON with points and max_score, JUnit, a table), and
   where they differ from the transcript's last recorded evaluation.

A forged transcript can only pass by containing labtui commands that really solve the lesson.
-j N grades N transcripts at once, each in its own process and private state.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

from lessons import transcript
from lessons.core import evaluate as ev
from lessons.core import schema
from lessons.core.model import Lesson
from lessons.probes import Context
from lessons.sandbox import TREE, PrivateState, labtui_env, run_labtui, sandbox_dir
from lessons.session import run_setup

GAP_CAP = 5.0  # seconds: a student's pause of ten minutes is replayed as this
SETTLE = 5.0  # seconds a check the student saw pass is retried before it counts as failed here
READ_ONLY = {"ps", "inspect", "logs", "top", "steps", "events", "images", "stats", "info", "serve"}
READ_ONLY_SUB = {("image", "ls"), ("network", "ls"), ("network", "inspect"), ("seccomp", "show"),
                 ("attack", "list"), ("gate", "show")}
WORKER_WAIT = 60.0  # seconds a worker gets to clean up after ^C before it is killed


@dataclass
class Graded:
    """One transcript's grade; as_json() is its entry in --json's output."""

    file: str
    student: str = ""
    lesson: str = ""
    version: str = ""
    verified: bool = False
    error: str | None = None  # why the transcript was refused, or why its replay could not run
    sealed: bool = False
    seal_checked: bool = False
    summary: dict | None = None  # check50's shape, from the replay
    differences: list[str] = field(default_factory=list)
    commands: int = 0  # commands replayed
    skipped: int = 0  # read-only commands not replayed
    log: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.verified and self.error is None and self.summary is not None

    @property
    def score(self) -> int | None:
        return self.summary["score"] if self.summary else None

    @property
    def max_score(self) -> int | None:
        return self.summary["max_score"] if self.summary else None

    def as_json(self) -> dict:
        d = asdict(self)
        s = d.pop("summary") or {}
        d.update(score=self.score, max_score=self.max_score, passed=s.get("passed"), results=s.get("results", []),
                 slug=s.get("slug", self.lesson))
        return d

    @classmethod
    def from_json(cls, d: dict) -> Graded:
        keys = set(cls.__dataclass_fields__)
        g = cls(**{k: v for k, v in d.items() if k in keys and k != "summary"})
        if d.get("results") is not None and d.get("max_score") is not None:
            g.summary = {"slug": d.get("slug"), "results": d["results"], "score": d["score"],
                         "max_score": d["max_score"], "passed": d.get("passed")}
        return g


# ---- 1. verify --------------------------------------------------------------------------------------

def check(path: Path | str, key: bytes | None = None,
          lesson_id: str | None = None) -> tuple[transcript.Transcript, Lesson]:
    """The transcript, verified, and the lesson it is of; TranscriptError names the bad line."""
    t = transcript.verify(path, key)
    h = t.header
    if lesson_id and t.lesson != lesson_id:
        raise transcript.TranscriptError(path, 1, f"a transcript of lesson {t.lesson!r}, not {lesson_id!r}")
    try:
        lesson = schema.find(t.lesson)
    except schema.LessonError as e:
        raise transcript.TranscriptError(path, 1, f"of a lesson this machine cannot use: {e}") from None
    if h.get("digest") != lesson.digest:
        raise transcript.TranscriptError(
            path, 1, f"from another version of lesson {lesson.id}: the transcript's is version "
                     f"{h.get('version')} ({str(h.get('digest'))[:12]}), this machine's is version "
                     f"{lesson.version} ({lesson.digest[:12]})")
    return t, lesson


# ---- 2. replay ------------------------------------------------------------------------------------

def read_only(argv: list[str]) -> bool:
    """Commands that change nothing a check reads (and some never end, as `logs -f`)."""
    words = [a for a in argv if not a.startswith("-")]
    if not words or "-h" in argv or "--help" in argv:
        return True
    return words[0] in READ_ONLY or tuple(words[:2]) in READ_ONLY_SUB or (words[0] == "trace" and "--summary" in argv)


def _cwd(recorded: object, header: dict, lesson: Lesson, fallback: Path) -> Path:
    """Where to run a recorded command: the lesson's folder stands for the student's copy of it
    (setup and solve scripts run there), else the recorded directory if this machine has it."""
    if not isinstance(recorded, str) or not recorded:
        return fallback
    there = header.get("lesson_dir")
    if there and (recorded == there or recorded.startswith(there + "/")):
        p = lesson.path / os.path.relpath(recorded, there)
        return p if p.is_dir() else lesson.path
    return Path(recorded) if os.path.isdir(recorded) else fallback


def _tasks_passed(summary: dict | None) -> set[str]:
    by_task: dict[str, list] = {}
    for r in (summary or {}).get("results", []):
        by_task.setdefault(r.get("task"), []).append(r.get("passed"))
    return {t for t, ps in by_task.items() if ps and all(p is True for p in ps)}


def regrade(t: transcript.Transcript, lesson: Lesson) -> Graded:
    """Replay a verified transcript in a private state (this process) and grade the result."""
    g = Graded(str(t.path), t.student, lesson.id, lesson.version, True, None, t.sealed, t.seal_checked)
    t0 = time.monotonic()
    with PrivateState() as ps:
        results = _replay_entries(t, lesson, ps.root, g)
    g.log += [f"cleanup: {p}" for p in ps.problems]
    g.summary = ev.summary(lesson, results)
    g.differences = differences(t.last_evaluation(), results)
    g.seconds = round(time.monotonic() - t0, 2)
    return g


def _replay_entries(t: transcript.Transcript, lesson: Lesson, root: Path, g: Graded) -> list[ev.Result]:
    env = labtui_env()
    ctx = Context(lesson_id=lesson.id, since=time.time() - 1)
    done: set[str] = set()
    results: list[ev.Result] = []
    prev_end: float | None = None
    real_end = time.monotonic()
    for e in t.entries:
        if e["type"] not in ("setup", "command", "evaluation"):
            continue  # steps, events, hints: what happened, which the replay makes happen again
        ts = e.get("ts") if isinstance(e.get("ts"), int | float) else None
        if ts is not None and prev_end is not None:
            time.sleep(max(0.0, min(ts - prev_end, GAP_CAP) - (time.monotonic() - real_end)))
        want: set[str] = set()
        if e["type"] == "setup":
            _setup(lesson, e, g)
        elif e["type"] == "command":
            if not _command(e, env, t.header, lesson, root, g):
                continue
        else:
            want = _tasks_passed(e.get("results")) - done
        results = _evaluate(lesson, ctx, done, want)
        done |= ev.tasks_done(lesson, results)
        if ts is not None:
            prev_end = ts + (e.get("dur") if isinstance(e.get("dur"), int | float) else 0)
        real_end = time.monotonic()
    return ev.evaluate(lesson, ctx, done=done)


def _setup(lesson: Lesson, e: dict, g: Graded) -> None:
    try:
        task = lesson.task(str(e.get("task")))
    except KeyError:
        g.log.append(f"line {e['n']}: setup of an unknown task {e.get('task')!r}: skipped")
        return
    res = run_setup(lesson, task, None)  # the lesson file's setup: never the transcript's idea of it
    if res is not None and res.exit_code != 0:
        g.log.append(f"line {e['n']}: setup of task {task.id} exited {res.exit_code}: {res.output.strip()[-300:]}")


def _command(e: dict, env: dict, header: dict, lesson: Lesson, root: Path, g: Graded) -> bool:
    """Run one recorded command again; False when it was not run (read-only, or malformed)."""
    argv = e.get("argv")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv) or not argv:
        g.log.append(f"line {e['n']}: not a command line: skipped")
        return False
    if read_only(argv):
        g.skipped += 1
        return False
    dur = e.get("dur") if isinstance(e.get("dur"), int | float) else 0
    timeout = min(max(20, dur * 2 + 10), 120)  # a `trace -f` the student ended with ^C ends here too
    res = run_labtui(argv, env=env, cwd=_cwd(e.get("cwd"), header, lesson, root), timeout=timeout)
    g.commands += 1
    if res.exit_code != e.get("exit"):
        g.log.append(f"line {e['n']}: `labtui {' '.join(argv)}` exited {res.exit_code} here, {e.get('exit')} "
                     f"for the student: {res.output.strip()[-300:]}")
    return True


def _evaluate(lesson: Lesson, ctx: Context, done: set[str], want: set[str]) -> list[ev.Result]:
    """Every task not passed yet; tasks the student saw pass (want) get SETTLE seconds to pass here
    too (a died event, a health change come a moment after the command). Recorded results decide
    only how long to wait, never a result."""
    deadline = time.monotonic() + (SETTLE if want else 0)
    while True:
        results = ev.evaluate(lesson, ctx, done=done)
        if not (want - ev.tasks_done(lesson, results) - done) or time.monotonic() >= deadline:
            return results
        time.sleep(0.25)


def differences(recorded: dict | None, results: list[ev.Result]) -> list[str]:
    """Checks whose replayed result differs from the transcript's last recorded evaluation."""
    if recorded is None:
        return ["the transcript records no evaluation (the student never ran `labtui lesson status`)"]
    mine = {r.check: r for r in results}
    out = []
    for r in recorded.get("results", []):
        rep = mine.get(r.get("name"))
        if r.get("passed") is None or rep is None or rep.passed == r.get("passed"):
            continue
        out.append(f"check '{r.get('name')}' (task '{r.get('task')}'): recorded {_word(r.get('passed'))}, "
                   f"replayed {_word(rep.passed)}")
    return out


def _word(passed: bool | None) -> str:
    return {True: "passed", False: "failed", None: "not run"}[passed]


# ---- many transcripts, -j N ------------------------------------------------------------------------------

def grade(paths: list[Path | str], key: bytes | None = None, jobs: int = 1, lesson_id: str | None = None,
          on_done=None) -> list[Graded]:
    """Verify every transcript here, then replay the verified ones, `jobs` at a time, each in a
    worker process of its own. on_done(graded) is called as each finishes. Results in input order."""
    out: list[Graded | None] = [None] * len(paths)
    queue: list[int] = []
    seal_checked: dict[int, bool] = {}
    for i, p in enumerate(paths):
        try:
            seal_checked[i] = check(p, key, lesson_id)[0].seal_checked
            queue.append(i)
        except transcript.TranscriptError as e:
            h = _peek_header(p)
            out[i] = Graded(str(p), str(h.get("student", "")), str(h.get("lesson", "")), str(h.get("version", "")),
                            error=e.short)
            if on_done:
                on_done(out[i])
    running: dict[int, _Worker] = {}
    main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _interrupt) if main else None  # SIGTERM stops workers as ^C does
    try:
        while queue or running:
            while queue and len(running) < max(1, jobs):
                i = queue.pop(0)
                running[i] = _Worker(Path(paths[i]))
            for i, w in list(running.items()):
                if w.proc.poll() is not None:
                    del running[i]
                    out[i] = w.collect(Path(paths[i]))
                    out[i].seal_checked = seal_checked[i]  # the worker has no key: the check was here
                    if on_done:
                        on_done(out[i])
            time.sleep(0.05)
    except BaseException:
        _stop_workers([w.proc for w in running.values()])
        raise
    finally:
        for w in running.values():
            w.discard()
        if main:
            signal.signal(signal.SIGTERM, old_term)
    return [g for g in out if g is not None]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _peek_header(path: Path | str) -> dict:
    try:
        with open(path, "rb") as f:
            h = json.loads(f.readline())
        return h if isinstance(h, dict) else {}
    except (OSError, ValueError):
        return {}


class _Worker:
    """A process grading one transcript: its result comes back in a file, its stderr in an
    unlinked one (a pipe nobody reads while it runs could fill up and stop it)."""

    def __init__(self, path: Path) -> None:
        fd, result = tempfile.mkstemp(prefix="labtui-result-", suffix=".json", dir=sandbox_dir())
        os.close(fd)
        self.result = Path(result)
        self.err = tempfile.TemporaryFile(dir=sandbox_dir())
        env = dict(os.environ)
        env["PYTHONPATH"] = f"{TREE}:{env['PYTHONPATH']}" if env.get("PYTHONPATH") else str(TREE)
        self.proc = subprocess.Popen([sys.executable, "-m", "lessons.grade", "--worker", str(path), "--out", result],
                                     env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.err)

    def collect(self, path: Path) -> Graded:
        self.err.seek(0)
        err = self.err.read().decode(errors="replace")
        try:
            return Graded.from_json(json.loads(self.result.read_text()))
        except (OSError, ValueError):
            h = _peek_header(path)
            return Graded(str(path), str(h.get("student", "")), str(h.get("lesson", "")), str(h.get("version", "")),
                          verified=True, error=f"the replay failed (exit {self.proc.returncode}): {err.strip()[-500:]}")
        finally:
            self.discard()

    def discard(self) -> None:
        self.result.unlink(missing_ok=True)
        self.err.close()


def _stop_workers(procs: list[subprocess.Popen]) -> None:
    """^C: each worker removes its private state on SIGINT; wait for that, then make sure."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + WORKER_WAIT
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def worker_main(argv: list[str]) -> int:
    """python -m lessons.grade --worker TRANSCRIPT --out RESULT.json (run by grade())."""
    path, out = argv[argv.index("--worker") + 1], argv[argv.index("--out") + 1]
    try:
        t, lesson = check(path)  # the parent checked the seal; the chain again, to read it
        g = regrade(t, lesson)
    except transcript.TranscriptError as e:
        g = Graded(path, error=e.short)
    except KeyboardInterrupt:
        return 130
    Path(out).write_text(json.dumps(g.as_json()))
    return 0


# ---- 3. outputs -------------------------------------------------------------------------------------

def to_json(graded: list[Graded]) -> dict:
    return {"format": "labtui-grade/1", "transcripts": [g.as_json() for g in graded],
            "graded": sum(g.ok for g in graded), "refused": sum(not g.verified for g in graded)}


def to_junit(graded: list[Graded]) -> str:
    """One <testsuite> per transcript (student), one <testcase> per check: <failure> when it
    failed, <skipped> when it was not run; a refused transcript is one <error>."""
    suites = ET.Element("testsuites", name="labtui grade")
    totals = dict(tests=0, failures=0, errors=0, skipped=0)
    for g in graded:
        suite = ET.SubElement(suites, "testsuite", name=f"{g.student or '?'}: {g.lesson or '?'}",
                              time=f"{g.seconds:.2f}")
        props = ET.SubElement(suite, "properties")
        for k, v in (("student", g.student), ("lesson", g.lesson), ("version", g.version), ("file", g.file),
                     ("score", g.score), ("max_score", g.max_score)):
            ET.SubElement(props, "property", name=k, value="" if v is None else str(v))
        counts = _junit_cases(suite, g)
        for k, v in counts.items():
            suite.set(k, str(v))
            totals[k] += v
    for k, v in totals.items():
        suites.set(k, str(v))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _junit_cases(suite: ET.Element, g: Graded) -> dict[str, int]:
    counts = dict(tests=0, failures=0, errors=0, skipped=0)
    if g.summary and g.summary.get("unsupported"):
        case = ET.SubElement(suite, "testcase", classname=g.lesson, name="host")
        ET.SubElement(case, "skipped", message=f"unsupported: {g.summary['unsupported']}")
        counts.update(tests=1, skipped=1)
        return counts
    if not g.ok:
        case = ET.SubElement(suite, "testcase", classname=g.lesson or "transcript", name="transcript")
        ET.SubElement(case, "error", message=g.error or "not graded").text = g.error
        counts.update(tests=1, errors=1)
        return counts
    assert g.summary is not None
    for r in g.summary["results"]:
        case = ET.SubElement(suite, "testcase", classname=f"{g.lesson}.{r.get('task')}", name=r["name"])
        counts["tests"] += 1
        cause = r.get("cause") or {}
        if r["passed"] is False:
            f = ET.SubElement(case, "failure", message=cause.get("rationale") or r.get("description", ""))
            f.text = "\n".join([*(r.get("log") or []), *([cause["help"]] if cause.get("help") else [])])
            counts["failures"] += 1
        elif r["passed"] is None:
            ET.SubElement(case, "skipped", message=cause.get("rationale") or "not run")
            counts["skipped"] += 1
    return counts


def table(graded: list[Graded]) -> str:
    """The summary per student, for the terminal."""
    rows = [["STUDENT", "LESSON", "SCORE", "PASSED", "FAILED", "NOT RUN", "TRANSCRIPT", "NOTES"]]
    for g in sorted(graded, key=lambda g: (g.student, g.lesson, g.file)):
        if not g.ok:
            rows.append([g.student or "?", g.lesson or "?", "-", "-", "-", "-",
                         "REFUSED" if not g.verified else "verified", g.error or ""])
            continue
        assert g.summary is not None
        res = g.summary["results"]
        seal = "sealed, key ok" if g.seal_checked else ("sealed" if g.sealed else "chain ok")
        notes = f"{len(g.differences)} difference(s) from the recorded results" if g.differences else ""
        counts = [str(sum(r["passed"] is v for r in res)) for v in (True, False, None)]
        rows.append([g.student, g.lesson, f"{g.score}/{g.max_score}", *counts, seal, notes])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows)


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
