"""Domain errors. Each carries a message a student can act on and the exit code docker uses."""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable


class EngineError(Exception):
    """An error of the runtime itself (docker's exit code 125)."""

    exit_code = 125

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class NotFound(EngineError):
    """A container, image or network that does not exist."""


class Conflict(EngineError):
    """The request clashes with current state (name in use, container running, ...)."""


class InvalidArgument(EngineError):
    """Bad user input, refused before anything is created."""


class ExecError(EngineError):
    """A process could not be started inside the container (126/127, docker's codes)."""


class StepError(EngineError):
    """A kernel operation failed; the message names the step, its target, value and errno."""

    def __init__(self, step: dict, message: str | None = None) -> None:
        self.step = step
        if message is None:
            message = describe_failed_step(step)
        super().__init__(message)


def describe_failed_step(step: dict) -> str:
    what = f"{step.get('mechanism')}: {step.get('op')}"
    if step.get("target"):
        what += f" {step['target']}"
    if step.get("value"):
        what += f" (value {step['value']!r})"
    err = step.get("result", "error")
    if step.get("strerror"):
        err += f" ({step['strerror']})"
    return f"{what} failed: {err}"


def command_exit(body: Callable[[], int | None], prog: str = "labtui") -> int:
    """Run a command's body and end it the way docker's commands end: an EngineError is one line
    on stderr and its exit code (125, or 126/127 for exec), ^C is 130 (128 + SIGINT), and a
    reader that went away (`labtui ps | head`) is not an error. Both entry points use it: the
    command line (labtui.cli.main) and exec's own (engine.exec_main)."""
    try:
        return body() or 0
    except EngineError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:  # a full disk is the machine's state, not a bug: one line naming where
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        from engine import paths

        print(f"{prog}: no space left for {e.filename or paths.lib_dir()}: {e.strerror}; free some "
              "(labtui rm stopped containers, labtui image rm unused images) and try again", file=sys.stderr)
        return 125
