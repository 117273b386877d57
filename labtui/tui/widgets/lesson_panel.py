"""The live panel beside a lesson's text: one of the container screen's panels (Steps, Namespaces,
cgroups, ...) for the lesson's first running container, the one the current task names.

The lesson screen's feed thread reads the data (the panels' own fetch() and the step, log and
event streams, through the adapter) and hands it here; the panel shown changes when the task or
the container does (a student may remove a container and run it again: a new ID).
"""

from __future__ import annotations

from rich.text import Text
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.widgets import Static

from labtui.tui.widgets.cgroups_panel import CgroupsPanel
from labtui.tui.widgets.ipc_panel import IpcPanel
from labtui.tui.widgets.namespaces_panel import NamespacesPanel
from labtui.tui.widgets.network_panel import NetworkPanel
from labtui.tui.widgets.panel import Panel
from labtui.tui.widgets.processes_panel import ProcessesPanel
from labtui.tui.widgets.security_panel import SecurityPanel
from labtui.tui.widgets.steps_panel import StepsPanel
from labtui.tui.widgets.stream_panels import LogsPanel, StracePanel, TimelinePanel

# The container screen's panels (screens/container.py PANELS; widgets never import screens).
BY_TAB: dict[str, type[Panel]] = {p.TAB_ID: p for p in (
    StepsPanel, NamespacesPanel, CgroupsPanel, IpcPanel, NetworkPanel, SecurityPanel, ProcessesPanel,
    LogsPanel, TimelinePanel, StracePanel)}
FETCHERS = {tab: p.fetch for tab, p in BY_TAB.items() if p.POLLED}
DEFAULT_TAB = "steps"


def tab_of(panel: str) -> str:
    """A task's `panel` (lessons.core.schema.PANELS) as a container-screen tab; the schema uses the tab ids."""
    return panel if panel in BY_TAB else DEFAULT_TAB


class LessonPanel(Vertical):
    """A title line and one panel, swapped when (tab, container) changes."""

    DEFAULT_CSS = """
    LessonPanel { width: 1fr; }
    LessonPanel > #lesson-panel-title { height: 1; padding: 0 1; background: $boost; }
    LessonPanel > .lesson-panel-slot { height: 1fr; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.tab = ""
        self.name_shown = ""
        self.cid: str | None = None
        self.generation = 0

    def compose(self):
        yield Static("", id="lesson-panel-title")
        yield Static(Text("No container of this lesson exists yet: the panel follows the first one that "
                          "runs.", style="dim"), id="lesson-panel-empty", classes="lesson-panel-slot")

    def panel(self) -> Panel | None:
        try:
            return self.query(Panel).first()
        except NoMatches:
            return None

    async def follow(self, tab: str, name: str, cid: str | None) -> bool:
        """Show tab for the container (cid None: none exists); returns whether the panel changed.
        Awaited: the streams' history fed right after must find the new panel mounted."""
        tab = tab_of(tab)
        if (tab, cid) == (self.tab, self.cid):
            return False
        self.tab, self.cid, self.name_shown = tab, cid, name
        self.generation += 1
        await self.query(".lesson-panel-slot").remove()
        title = self.query_one("#lesson-panel-title", Static)
        if cid is None:
            title.update(Text(f"{BY_TAB[tab].TITLE}", style="bold"))
            await self.mount(Static(Text("No container of this lesson exists yet: the panel follows the first "
                                         "one that runs.", style="dim"), classes="lesson-panel-slot"))
            return True
        title.update(Text.assemble((BY_TAB[tab].TITLE, "bold"), f" of {name} ", (cid[:12], "dim")))
        slot = Vertical(BY_TAB[tab](cid), id=f"lesson-panel-slot-{self.generation}", classes="lesson-panel-slot")
        await self.mount(slot)
        return True

    # -- data from the screen's feed (ignored when it is for a panel no longer shown) -------------

    def _ours(self, cid: str, tab: str | None = None) -> Panel | None:
        if cid != self.cid or (tab is not None and tab != self.tab):
            return None
        return self.panel()

    def show(self, cid: str, tab: str, data: object) -> None:
        panel = self._ours(cid, tab)
        if panel is not None:
            try:
                panel.show(data)
            except NoMatches:
                pass  # still composing: the next snapshot comes within a second

    def add_steps(self, cid: str, steps: list[dict]) -> None:
        panel = self._ours(cid)
        if isinstance(panel, StepsPanel):
            panel.add_steps(steps)

    def add_logs(self, cid: str, records: list[dict]) -> None:
        panel = self._ours(cid)
        if isinstance(panel, LogsPanel):
            panel.add_records(records)

    def add_events(self, cid: str, events: list[dict]) -> None:
        panel = self._ours(cid)
        if isinstance(panel, TimelinePanel):
            panel.add_events(events)
