"""Messages that worker threads post to the UI (Textual's post_message is thread-safe).

Workers never touch widgets: they read the engine through labtui.tui.adapter and post one of these;
the screen's handler updates its widgets on the UI thread. Streams arrive in batches (one
message per follower tick, not per record), so a burst of steps costs one refresh.
"""

from __future__ import annotations

from textual.message import Message

from labtui.tui.adapter import ContainerRow


class ContainersPolled(Message):
    """A fresh reading of every container (dashboard poll)."""

    def __init__(self, rows: list[ContainerRow], error: str = "") -> None:
        super().__init__()
        self.rows = rows
        self.error = error


class HostFacts(Message):
    def __init__(self, facts: dict[str, str]) -> None:
        super().__init__()
        self.facts = facts


class StepsArrived(Message):
    """New kernel steps of one container, in stream order."""

    def __init__(self, steps: list[dict]) -> None:
        super().__init__()
        self.steps = steps


class LogsArrived(Message):
    def __init__(self, records: list[dict]) -> None:
        super().__init__()
        self.records = records


class TimelineArrived(Message):
    """Lifecycle events of one container."""

    def __init__(self, events: list[dict]) -> None:
        super().__init__()
        self.events = events


class EventsArrived(Message):
    """New host-wide events (the app turns alerts among them into notifications)."""

    def __init__(self, events: list[dict], historic: bool = False) -> None:
        super().__init__()
        self.events = events
        self.historic = historic


class PanelData(Message):
    """A snapshot read for one tab of a container screen ("info" is the screen's title)."""

    def __init__(self, tab: str, data: object) -> None:
        super().__init__()
        self.tab = tab
        self.data = data


class ActionDone(Message):
    """A lifecycle action finished (in a background thread)."""

    def __init__(self, action: str, container: str, ok: bool, message: str = "", result: object = None) -> None:
        super().__init__()
        self.action = action
        self.container = container
        self.ok = ok
        self.message = message
        self.result = result


class AlertsChanged(Message):
    """The app's alert list grew (the alerts screen refreshes)."""
