"""One container, as tabs: Steps, Namespaces, cgroups, IPC, Network, Security, Processes, Logs,
Timeline, strace.

One feed thread per screen: every TICK it reads what was appended to the container's step
stream, log and the event stream (one batched message each), and about once a second the
active tab's snapshot (fetch) and the title line.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Log, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from labtui.tui import adapter
from labtui.tui.messages import ActionDone, LogsArrived, PanelData, StepsArrived, TimelineArrived
from labtui.tui.widgets.background import run_in_background
from labtui.tui.widgets.cgroups_panel import CgroupsPanel
from labtui.tui.widgets.ipc_panel import IpcPanel
from labtui.tui.widgets.namespaces_panel import NamespacesPanel
from labtui.tui.widgets.network_panel import NetworkPanel
from labtui.tui.widgets.panel import Panel
from labtui.tui.widgets.processes_panel import ProcessesPanel
from labtui.tui.widgets.security_panel import SecurityPanel
from labtui.tui.widgets.steps_panel import StepsPanel
from labtui.tui.widgets.stream_panels import LogsPanel, StracePanel, TimelinePanel

PANELS: tuple[type[Panel], ...] = (
    StepsPanel, NamespacesPanel, CgroupsPanel, IpcPanel, NetworkPanel, SecurityPanel, ProcessesPanel,
    LogsPanel, TimelinePanel, StracePanel,
)
FETCHERS = {p.TAB_ID: p.fetch for p in PANELS if p.POLLED}
TICK = 0.04  # new steps are on screen well within 100 ms of being written
SNAPSHOT_EVERY = 1.0


def title_text(info: adapter.ContainerInfo) -> Text:
    t = Text()
    t.append(info.name, style="bold")
    style = "green" if info.status == "running" else "yellow" if info.status in ("paused", "created") else "red"
    t.append(f"  {info.status_text}", style=style)
    if info.pid:
        t.append(f"  PID {info.pid}")
    t.append(f"  {info.image}  {info.id[:12]}", style="dim")
    return t


def _tab_bindings() -> list[Binding]:
    keys = "1234567890"
    return [Binding(keys[i], f"show_tab('{p.TAB_ID}')", p.TITLE, show=False) for i, p in enumerate(PANELS)]


def _panel_bindings() -> list[Binding]:
    """Each panel's KEYS as screen bindings, enabled (and in the footer) only on its own tab, so
    they work wherever the focus is."""
    return [Binding(b.key, f"panel('{p.TAB_ID}', '{b.action}')", b.description, show=b.show)
            for p in PANELS for b in p.KEYS]


class ContainerScreen(Screen):
    """Everything the kernel shows about one container."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("S", "lifecycle('start')", "Start", show=False),
        Binding("s", "lifecycle('stop')", "Stop", show=False),
        Binding("k", "lifecycle('kill')", "Kill", show=False),
        *_tab_bindings(),
        *_panel_bindings(),
    ]

    def __init__(self, cid: str, tab: str = "steps") -> None:
        super().__init__()
        self.cid = cid
        self.sub_title = f"container {cid[:12]}"  # set once: a title changed while closing upsets Header
        self.initial_tab = tab
        self.active_tab = tab
        self._snapshot_now = True

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(self.cid[:12], id="ctr-title")
        with TabbedContent(initial=self.initial_tab, id="tabs"):
            for panel in PANELS:
                with TabPane(panel.TITLE, id=panel.TAB_ID):
                    yield panel(self.cid)
        yield Footer()

    def on_mount(self) -> None:
        self.call_after_refresh(self.focus_panel, self.initial_tab)
        self.feed()

    def focus_panel(self, tab: str) -> None:
        """Focus the tab's table (or log, or first focusable widget): arrows, PgUp/PgDn and
        ctrl+Home/ctrl+End then move through what the tab shows."""
        for panel in self.query(Panel):
            if panel.TAB_ID == tab:
                focusable = [w for w in panel.query("*") if w.focusable]
                target = next((w for w in focusable if isinstance(w, DataTable | Log)), None)
                target = target or (focusable[0] if focusable else None)
                if target is not None:
                    target.focus()

    # -- the feed thread ------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="container-feed")
    def feed(self) -> None:
        worker = get_current_worker()
        cid = self.cid
        tails = ((adapter.steps_tail(cid), StepsArrived), (adapter.logs_tail(cid), LogsArrived),
                 (adapter.container_events_tail(cid), TimelineArrived))
        next_snapshot = 0.0
        while not worker.is_cancelled:
            for tail, message in tails:
                records = tail.read()  # [] while the stream cannot be read: tried again next tick
                if records:
                    self.post_message(message(records))
            now = time.monotonic()
            if now >= next_snapshot or self._snapshot_now:
                self._snapshot_now = False
                self._snapshot()
                next_snapshot = now + SNAPSHOT_EVERY
            worker.cancelled_event.wait(TICK)

    def _snapshot(self) -> None:
        tab = self.active_tab
        for name, fetch in (("info", adapter.container_info), (tab, FETCHERS.get(tab))):
            if fetch is None:
                continue
            try:
                self.post_message(PanelData(name, fetch(self.cid)))
            except adapter.ERRORS as e:  # one bad reading (a container going away) must not end the feed
                self.post_message(PanelData("error", f"{name}: {type(e).__name__}: {e}"))

    # -- messages from the feed -----------------------------------------------------------------

    def on_steps_arrived(self, message: StepsArrived) -> None:
        self.query_one(StepsPanel).add_steps(message.steps)

    def on_logs_arrived(self, message: LogsArrived) -> None:
        self.query_one(LogsPanel).add_records(message.records)

    def on_timeline_arrived(self, message: TimelineArrived) -> None:
        self.query_one(TimelinePanel).add_events(message.events)

    def on_panel_data(self, message: PanelData) -> None:
        if message.tab == "info" and isinstance(message.data, adapter.ContainerInfo):
            self.query_one("#ctr-title", Static).update(title_text(message.data))
        elif message.tab == "error":
            self.notify(str(message.data), title="reading failed", severity="warning")
        else:
            for panel in self.query(Panel):
                if panel.TAB_ID == message.tab:
                    try:
                        panel.show(message.data)
                    except NoMatches:
                        pass  # the panel is still mounting: the next snapshot comes in a second

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.tabbed_content.id == "tabs" and event.pane.id:
            self.active_tab = event.pane.id
            self._snapshot_now = True
            self.refresh_bindings()

    def on_action_done(self, message: ActionDone) -> None:
        if message.ok:
            done = f"{message.action}: done" if message.result in (None, "") else f"{message.action}: {message.result}"
            self.notify(done, timeout=3)
        else:
            self.notify(message.message, title=f"{message.action} failed", severity="error")
        self._snapshot_now = True

    # -- keys -----------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_show_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab
        self.call_after_refresh(self.focus_panel, tab)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "panel":
            return bool(parameters) and parameters[0] == self.active_tab
        return True

    def action_panel(self, tab: str, action: str) -> None:
        for panel in self.query(Panel):
            if panel.TAB_ID == tab:
                getattr(panel, f"action_{action}")()

    def action_lifecycle(self, verb: str) -> None:
        fn = {"start": adapter.start, "stop": adapter.stop, "kill": adapter.kill}[verb]
        self.notify(f"{verb} {self.cid[:12]}…", timeout=2)
        run_in_background(self, verb, self.cid, lambda: fn(self.cid))
