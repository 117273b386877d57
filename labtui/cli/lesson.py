"""CLI for lessons: `labtui lesson list|start|status|hint|reset|stop|replay` and `labtui grade`.

Thin commands over lessons.session (student mode), lessons.replay and lessons.grade; the lessons
package does the work and never imports this one. Exit codes: 0 done; 1 a check failed (replay),
a transcript was refused (grade) or the lesson state says no (no lesson open, another one open);
77 the lesson is unsupported on this host (with the reason); 125 bad input (an unknown lesson, a
malformed lesson.toml, a bad option).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

USAGE_EXIT = 125


# ---- registration ---------------------------------------------------------------------------------

def add_commands(sub) -> dict:
    p = sub.add_parser("lesson", help="guided lessons: list, start, status, hint, reset, stop, replay")
    lsub = p.add_subparsers(dest="lesson_cmd", metavar="SUBCOMMAND")
    q = lsub.add_parser("list", help="the lessons, with your progress and what this host supports")
    q.add_argument("--format", choices=["table", "json"], default="table")
    q = lsub.add_parser("start", help="open a lesson (resumes your progress); every labtui command is recorded")
    q.add_argument("id")
    q.add_argument("--student", help="your name in the transcript (default: the user behind sudo)")
    q = lsub.add_parser("status", help="check the open lesson's current task against the kernel")
    q.add_argument("--format", choices=["table", "json"], default="table")
    lsub.add_parser("hint", help="the next hint for the current task")
    q = lsub.add_parser("reset", help="remove the lesson's containers and forget its progress")
    q.add_argument("id")
    lsub.add_parser("stop", help="close the open lesson (progress and containers are kept)")
    q = lsub.add_parser("replay", help="run a lesson headless in a private state (authors, CI)")
    q.add_argument("id")
    q.add_argument("--solve", action="store_true", help="run each task's solve script before its checks")
    q.add_argument("--json", metavar="FILE", help="write check50-style results with points and max_score")
    q.add_argument("--junit", metavar="FILE", help="write JUnit XML, one test case per check")
    q.add_argument("--transcript", metavar="FILE", help="record the run as a transcript `labtui grade` accepts")
    q.add_argument("--key", metavar="FILE", help="seal the transcript with this grader key "
                                                 "(default: $LABTUI_GRADER_KEY)")
    p = sub.add_parser("grade", help="verify transcripts, replay them on fresh state, and grade every check")
    p.add_argument("transcripts", nargs="+", metavar="TRANSCRIPT")
    p.add_argument("--json", metavar="FILE", help="write check50-style results per transcript")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML: one test suite per transcript")
    p.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="grade N transcripts at once")
    p.add_argument("--key", metavar="FILE", help="the grader key: transcripts must carry its seal "
                                                 "(default: $LABTUI_GRADER_KEY, else the chain alone)")
    p.add_argument("--lesson", metavar="ID", help="refuse transcripts of any other lesson")
    return {"lesson": cmd_lesson, "grade": cmd_grade}


def _fail(message: str, code: int = 1) -> int:
    print(f"labtui: {message}", file=sys.stderr)
    return code


def cmd_lesson(args: argparse.Namespace) -> int:
    from lessons.core.schema import LessonError
    from lessons.session import SessionError
    from lessons.transcript import TranscriptError

    handlers = {"list": _list, "start": _start, "status": _status, "hint": _hint, "reset": _reset,
                "stop": _stop, "replay": _replay}
    handler = handlers.get(args.lesson_cmd or "")
    if handler is None:
        return _fail("lesson needs a subcommand: list, start, status, hint, reset, stop or replay", USAGE_EXIT)
    try:
        return handler(args)
    except LessonError as e:
        return _fail(str(e), USAGE_EXIT)
    except SessionError as e:
        return _fail(str(e), e.exit_code)
    except OSError as e:  # a state file or transcript removed or unwritable under us
        return _fail(f"{e.filename or 'lesson state'}: {e.strerror}")
    except TranscriptError as e:
        return _fail(f"the lesson's transcript cannot be extended: {e}")


# ---- student mode ---------------------------------------------------------------------------------

def _list(args: argparse.Namespace) -> int:
    from lessons import features, session
    from lessons.core import schema

    rows, broken, lessons = [], [], []
    act = session.active() or {}
    for folder in schema.lesson_dirs():
        try:
            lessons.append(schema.load(folder))
        except schema.LessonError as e:
            broken.append(str(e))
    for lesson in schema.in_teaching_order(lessons):
        prog = session.progress(lesson.id) or {}
        done = [t for t in prog.get("done", []) if any(t == x.id for x in lesson.tasks)]
        rows.append({"id": lesson.id, "title": lesson.title, "topic": lesson.topic, "version": lesson.version,
                     "tasks": len(lesson.tasks), "points": lesson.max_score, "requires": list(lesson.requires),
                     "prerequisites": list(lesson.prerequisites), "unsupported": features.unsupported(lesson),
                     "done": len(done), "finished": bool(prog.get("finished")), "open": act.get("lesson") == lesson.id})
    for message in broken:
        print(f"labtui: {message}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(rows, indent=1))
        return 1 if broken else 0
    from labtui.cli.main import print_table

    table = [["ID", "TOPIC", "TASKS", "PROGRESS", "TITLE"]]
    for r in rows:
        state = ("unsupported: " + r["unsupported"]) if r["unsupported"] else \
            "finished" if r["finished"] else f"{r['done']}/{r['tasks']}" + (" (open)" if r["open"] else "")
        table.append([r["id"], r["topic"], str(r["tasks"]), state if len(state) < 60 else state[:59] + "…", r["title"]])
    print_table(table)
    return 1 if broken else 0


def _start(args: argparse.Namespace) -> int:
    from lessons import session

    st = session.start(args.id, args.student)
    lesson = st.lesson
    if st.changed:
        print(f"The lesson changed since your last session (now version {lesson.version}): it starts over.\n")
    if st.resumed:
        print(f"Resuming {lesson.id}: {lesson.title} ({len(st.done)}/{len(lesson.tasks)} tasks done)")
    else:
        print(f"{lesson.title}\n")
        for o in lesson.objectives:
            print(f"  - {o}")
        print(f"\n{lesson.intro.strip()}\n")
    if st.current is None:
        print(lesson.finish.strip())
    else:
        _print_task(lesson, st.current)
    print(f"\nEvery labtui command is recorded in {st.transcript} until `labtui lesson stop`.")
    print("`labtui lesson status` checks your work; `labtui lesson hint` helps.")
    return 0


def _print_task(lesson, task) -> None:
    n = [t.id for t in lesson.tasks].index(task.id) + 1
    print(f"Task {n}/{len(lesson.tasks)}: {task.title}\n\n{task.text.strip()}")


def _status(args: argparse.Namespace) -> int:
    from lessons import session

    st = session.status(explicit=True)
    if args.format == "json":
        print(json.dumps(st.as_json(), indent=1))
        return 0
    s = st.summary
    print(f"{st.lesson.id}: {st.lesson.title}   score {s['score']}/{s['max_score']}")
    by_task: dict[str, list[dict]] = {}
    for r in s["results"]:
        by_task.setdefault(r["task"], []).append(r)
    for t in st.lesson.tasks:
        mark = "x" if t.id in st.done else ">" if st.current and t.id == st.current.id else " "
        print(f"  [{mark}] {t.title}")
        if t.id not in st.done or t.id in st.passed_now:  # later tasks have no results yet
            for r in by_task.get(t.id, []):
                _print_result(r)
    for text in st.new_hints:
        print(f"\nhint: {text.strip()}")
    if st.finished:
        print(f"\n{st.lesson.finish.strip()}")
    elif st.passed_now and st.current:
        print()
        _print_task(st.lesson, st.current)
    return 0


def _print_result(r: dict) -> None:
    sym = {True: "✓", False: "✗", None: "·"}[r["passed"]]
    print(f"        {sym} {r['description'] or r['name']}")
    cause = r.get("cause") or {}
    if r["passed"] is not True and cause.get("rationale"):
        print(f"          {cause['rationale']}")
    if r["passed"] is False and cause.get("help"):
        print(f"          help: {cause['help']}")


def _hint(args: argparse.Namespace) -> int:
    from lessons import session

    h = session.hint()
    if h.task is None:
        print("Every task is done: no hint needed.")
        return 0
    if h.text is None:
        if not h.shown:
            print(f"Task '{h.task.id}' has no hints.")
            return 0
        print(f"No more hints for '{h.task.title}'. All of them:")
        for i, text in enumerate(h.shown, 1):
            print(f"  {i}. {text.strip()}")
        return 0
    print(f"hint {h.number}/{h.total} for '{h.task.title}': {h.text.strip()}")
    if len(h.shown) < h.total:
        print("(`labtui lesson hint` again for the next one)")
    return 0


def _reset(args: argparse.Namespace) -> int:
    from lessons import session

    was_open = session.reset(args.id)
    print(f"{args.id}: containers removed, progress forgotten.")
    if was_open:  # it starts again, for the same student
        args.student = was_open.get("student")
        return _start(args)
    return 0


def _stop(args: argparse.Namespace) -> int:
    from lessons import session

    act = session.stop()
    if act is None:
        return _fail("no lesson is open")
    sealed = "sealed" if act.get("key") else "not sealed (no grader key)"
    print(f"Closed {act['lesson']}. Transcript ({sealed}): {act['transcript']}")
    print(f"Progress and containers are kept: `labtui lesson start {act['lesson']}` resumes, "
          f"`labtui lesson reset {act['lesson']}` starts over.")
    return 0


# ---- replay and grade -------------------------------------------------------------------------------

def _read_key(path: str | None) -> bytes | None:
    from lessons import transcript

    if path is None:
        return transcript.key_from_env()
    try:
        return transcript.read_key_file(path)
    except (OSError, ValueError) as e:
        raise _Usage(f"cannot use the key file {path}: {getattr(e, 'strerror', None) or e}") from None


class _Usage(Exception):
    pass


def _write_output(path: str, text: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError as e:
        raise _Usage(f"cannot write {path}: {e.strerror}") from None


def _replay(args: argparse.Namespace) -> int:
    from lessons import grade, replay
    from lessons.core import schema

    lesson = schema.find(args.id)
    try:
        key = _read_key(args.key)
        for out in (args.json, args.junit, args.transcript):  # refuse before a long run, not after it
            if out and not Path(out).resolve().parent.is_dir():
                raise _Usage(f"cannot write {out}: no such directory")
        path = Path(args.transcript) if args.transcript else None
        res = replay.replay(lesson, solve=args.solve, transcript_path=path, key=key)
        g = grade.Graded("", "replay", lesson.id, lesson.version, True, summary=res.summary,
                         seconds=round(res.seconds, 2), log=res.log)
        if args.json:
            _write_output(args.json, json.dumps(res.summary, indent=1) + "\n")
        if args.junit:
            _write_output(args.junit, grade.to_junit([g]))
    except _Usage as e:
        return _fail(str(e), USAGE_EXIT)
    if res.unsupported:
        print(f"{lesson.id}: unsupported on this host: {res.unsupported}")
        return res.exit_code
    for r in res.summary["results"]:
        _print_result({**r, "description": f"{r['task']}/{r['name']}: {r['description']}"})
    for line in res.log:
        print(f"  note: {line}")
    s = res.summary
    verdict = "every check passed" if res.passed else "some checks did not pass"
    print(f"{lesson.id} ({'solved' if args.solve else 'starting state'}): score {s['score']}/{s['max_score']}, "
          f"{verdict} ({res.seconds:.1f} s)")
    if args.transcript:
        print(f"transcript: {args.transcript}")
    return res.exit_code


def cmd_grade(args: argparse.Namespace) -> int:
    from lessons import grade

    if args.jobs < 1:
        return _fail(f"-j {args.jobs}: the number of parallel graders must be at least 1", USAGE_EXIT)
    try:
        key = _read_key(args.key)
        for out in (args.json, args.junit):
            if out and not Path(out).resolve().parent.is_dir():
                raise _Usage(f"cannot write {out}: no such directory")
        tty = sys.stderr.isatty()
        total = len(args.transcripts)
        count = [0]

        def on_done(g: grade.Graded) -> None:
            count[0] += 1
            if tty:
                what = f"{g.score}/{g.max_score}" if g.ok else f"refused: {g.error}"
                print(f"[{count[0]}/{total}] {g.student or g.file}: {what}", file=sys.stderr)

        graded = grade.grade(args.transcripts, key=key, jobs=args.jobs, lesson_id=args.lesson, on_done=on_done)
        if args.json:
            _write_output(args.json, json.dumps(grade.to_json(graded), indent=1) + "\n")
        if args.junit:
            _write_output(args.junit, grade.to_junit(graded))
    except _Usage as e:
        return _fail(str(e), USAGE_EXIT)
    print(grade.table(graded))
    for g in graded:
        for d in g.differences:
            print(f"{g.student}: {d}")
    bad = [g for g in graded if not g.ok]
    return 1 if bad else 0
