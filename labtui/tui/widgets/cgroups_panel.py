"""The cgroups tab: the container's cgroup files with their values, CPU and memory plots,
throttling and OOM counters. Shown only when the container has a cgroup directory."""

from __future__ import annotations

import os
from collections import deque

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from labtui.tui import adapter
from labtui.tui.widgets.panel import Panel
from labtui.tui.widgets.tables import sync_table

HISTORY = 60


def counters_text(stats: dict) -> Text:
    t = Text()
    limit = stats.get("memory_limit")
    pairs = (
        ("memory", f"{adapter.human_bytes(stats.get('memory_usage'))} of "
                   f"{adapter.human_bytes(limit) if limit else 'no limit'}"),
        ("throttled periods", f"{stats.get('nr_throttled') if stats.get('nr_throttled') is not None else '-'}"
                              f" of {stats.get('nr_periods') if stats.get('nr_periods') is not None else '-'}"),
        ("OOM kills", str(stats.get("oom_kill") if stats.get("oom_kill") is not None else "-")),
        ("pids", f"{stats.get('pids_current') or '-'} / {stats.get('pids_limit') or 'max'}"),
    )
    for i, (label, value) in enumerate(pairs):
        t.append(("  " if i else "") + f"{label}: ", style="bold")
        oom = label == "OOM kills" and value not in ("-", "0")
        t.append(value, style="bold red" if oom else "")
    return t


def where(view: adapter.CgroupView) -> str:
    """/sys/fs/cgroup/{cpu,memory,...}/labtui/<id> rather than one long path per controller."""
    dirs = sorted(set(view.dirs.values()))
    path = view.cgroup_path
    if len(dirs) < 2 or not path or not all(d.endswith(path) for d in dirs):
        return "  ".join(dirs)
    mounts = [d[: -len(path)] for d in dirs]
    prefix = os.path.commonpath(mounts)
    names = ",".join(os.path.relpath(m, prefix) for m in mounts)
    return f"{prefix}/{{{names}}}{path}"


class CgroupsPanel(Panel):
    TAB_ID = "cgroups"
    TITLE = "cgroups"

    def __init__(self, cid: str, **kwargs) -> None:
        super().__init__(cid, **kwargs)
        self.cpu: deque[float] = deque(maxlen=HISTORY)
        self.mem: deque[float] = deque(maxlen=HISTORY)
        self._last: tuple[float, int] | None = None  # (monotonic t, cpu_usage_ns)

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("", id="cg-note")
            yield Static("", id="cg-counters")
            with Horizontal(id="cg-plots"):
                yield PlotextPlot(id="cg-cpu")
                yield PlotextPlot(id="cg-mem")
            yield DataTable(id="cg-files", cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one("#cg-files", DataTable)
        table.add_column("FILE", key="file")
        table.add_column("VALUE", key="value")
        self.query_one("#cg-plots").display = False

    @classmethod
    def fetch(cls, cid: str) -> object:
        return adapter.cgroup_view(cid)

    def show(self, data: object) -> None:
        if not isinstance(data, adapter.CgroupView):
            return
        note = self.query_one("#cg-note", Static)
        self.query_one("#cg-plots").display = data.available
        if not data.available:
            note.update(Text(data.reason, style="yellow"))
            self.query_one("#cg-counters", Static).update("")
            self.query_one("#cg-files", DataTable).clear()
            return
        note.update(Text(f"cgroup {data.version}: {where(data)}", style="dim"))
        self.query_one("#cg-counters", Static).update(counters_text(data.stats))
        sync_table(self.query_one("#cg-files", DataTable), [(f, (f, v)) for f, v in data.files])
        self._sample(data.stats)
        self._plot()

    def _sample(self, stats: dict) -> None:
        usage, t = stats.get("cpu_usage_ns"), stats.get("t")
        if usage is not None and t is not None:
            if self._last is not None and t > self._last[0]:
                self.cpu.append(max(usage - self._last[1], 0) / 1e9 / (t - self._last[0]) * 100)
            self._last = (t, usage)
        mem = stats.get("memory_usage")
        if mem is not None:
            self.mem.append(mem / (1 << 20))

    def _plot(self) -> None:
        for wid, series, title in (("#cg-cpu", self.cpu, "CPU %"), ("#cg-mem", self.mem, "memory MiB")):
            plot = self.query_one(wid, PlotextPlot)
            plt = plot.plt
            plt.clear_data()
            plt.title(title)
            if series:
                plt.plot(list(series), marker="braille")
            plot.refresh()
