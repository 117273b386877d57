"""The steps tab: a container's kernel steps as they are recorded, and the step gate."""

from __future__ import annotations

from engine import api, paths, steps
from labtui.tui.adapter.base import ERRORS
from labtui.tui.adapter.streams import Tail


def steps_tail(cid: str) -> Tail:
    return Tail(paths.container_dir(cid) / "steps.jsonl")


def mechanisms() -> tuple[str, ...]:
    """The step mechanisms the engine knows (engine.steps.MECHANISMS)."""
    return tuple(steps.MECHANISMS)


def shorten(text: str, cid: str) -> str:
    """Paths in steps are long: the container's directory becomes <ctr>, the state dir <lib>."""
    if not text:
        return ""
    return text.replace(str(paths.container_dir(cid)), "<ctr>").replace(str(paths.lib_dir()), "<lib>")


def container_dir(cid: str) -> str:
    return str(paths.container_dir(cid))


def gate_pending(cid: str) -> dict | None:
    """The step the gate holds, None when none is (or the container is gone)."""
    try:
        return api.gate_pending(cid)
    except ERRORS:
        return None


def gate_release(cid: str, count: int = 1) -> None:
    api.gate_release(cid, count)
