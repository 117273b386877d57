"""The base of every tab on the container screen.

The screen's feed thread calls the active panel's fetch(cid) about once a second (it reads the
kernel through the adapter, off the UI thread) and the panel's show(data) runs on the UI thread
with the result. Stream panels (steps, logs, timeline) are fed by the screen instead.
"""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding
from textual.containers import Vertical


class Panel(Vertical):
    """One tab of the container screen."""

    TAB_ID: ClassVar[str] = ""
    TITLE: ClassVar[str] = ""
    POLLED: ClassVar[bool] = True
    KEYS: ClassVar[list[Binding]] = []
    """Keys of this tab; the container screen binds them, active only while the tab is shown."""

    def __init__(self, cid: str, **kwargs) -> None:
        super().__init__(id=f"panel-{self.TAB_ID}", classes="panel", **kwargs)
        self.cid = cid

    @classmethod
    def fetch(cls, cid: str) -> object:
        """Read what the panel shows (runs in a worker thread)."""
        return None

    def show(self, data: object) -> None:
        """Display what fetch() read (runs on the UI thread)."""


def not_running_text(what: str) -> str:
    return f"The container is not running: no {what} to show. Start it (S on the dashboard) and come back."
