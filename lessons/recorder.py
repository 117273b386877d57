"""What every labtui command does while a lesson is open: append itself to the lesson's transcript.

labtui/cli/main.py calls record_command() after each command when <lib>/lessons/active.json
exists (lessons/session.py writes it at `labtui lesson start`). Kept to the transcript writer and
json on purpose: it runs in every command of a student's session (importing lessons.session, with
the probes and the schema, would cost ~40 ms a command; this costs ~2).
"""

from __future__ import annotations

import json
import os
import sys
import time

from lessons import transcript

QUIET_ENV = "LABTUI_LESSON_QUIET"  # set for setup scripts: their commands are the lesson's, not the student's
NOT_RECORDED = ("lesson", "grade")  # they record their own effects (evaluations, hints)


def active_file() -> str:
    from engine import paths

    return f"{paths.lib_dir()}/lessons/active.json"


def record_command(argv: list[str], exit_code: int, t0: float) -> None:
    """Append a labtui command (argv, working directory, exit code, start and duration) to the
    open lesson's transcript. Never fails the command: a problem is one warning line on stderr."""
    first = next((a for a in argv if not a.startswith("-")), "")
    if first in NOT_RECORDED or os.environ.get(QUIET_ENV):
        return
    try:
        try:
            with open(active_file()) as f:
                act = json.load(f)
        except FileNotFoundError:
            return  # closed meanwhile
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = ""
        key = bytes.fromhex(act["key"]) if act.get("key") else None
        transcript.Writer(act["transcript"], key).append(
            {"type": "command", "argv": list(argv), "cwd": cwd, "exit": exit_code, "ts": round(t0, 3),
             "dur": round(time.time() - t0, 3)})
    except Exception as e:  # noqa: BLE001
        print(f"labtui: warning: the lesson's transcript did not record this command: {e}", file=sys.stderr)
