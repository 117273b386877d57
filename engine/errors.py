"""Domain errors. Each carries a message a student can act on and the exit code docker uses."""

from __future__ import annotations


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
