"""The dashboard's container list: a DataTable updated cell by cell, never rebuilt."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

from labtui.tui.adapter import ContainerRow, human_bytes

COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", "NAME"), ("status", "STATUS"), ("pid", "PID"), ("cpu", "CPU%"), ("mem", "MEM"),
    ("uptime", "UP"), ("image", "IMAGE"), ("restarts", "RST"), ("health", "HEALTH"), ("id", "ID"),
)

STATUS_STYLE = {"running": "green", "paused": "yellow", "restarting": "yellow", "exited": "dim", "created": "cyan",
                "dead": "red", "removing": "red"}


def cells(row: ContainerRow) -> dict[str, str | Text]:
    """The displayed value of each column for one container."""
    return {
        "name": row.name,
        "status": Text(row.status, style=STATUS_STYLE.get(row.status, "")),
        "pid": str(row.pid) if row.pid else "-",
        "cpu": f"{row.cpu_percent:5.1f}" if row.cpu_percent is not None else "-",
        "mem": human_bytes(row.mem_bytes) if row.mem_bytes is not None else "-",
        "uptime": row.uptime,
        "image": row.image,
        "restarts": str(row.restarts),
        "health": row.health,
        "id": row.id[:12],
    }


class ContainersTable(DataTable):
    """One row per container, keyed by container ID."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._shown: dict[str, dict[str, str | Text]] = {}
        self._uptime_flushed = 0.0
        self._flush_uptime = True
        self.rows_by_id: dict[str, ContainerRow] = {}

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def sync(self, rows: list[ContainerRow]) -> None:
        """Add new containers, update changed cells in place, drop removed ones.

        Any cell update makes DataTable redraw every visible cell, so the uptime column (which
        ticks every second for every young container) is brought up to date once a second, in
        one go, rather than on each poll: idle containers then cost no redraw at all."""
        now = time.monotonic()
        flush_uptime = now - self._uptime_flushed >= 1.0
        if flush_uptime:
            self._uptime_flushed = now
        self._flush_uptime = flush_uptime
        self.rows_by_id = {r.id: r for r in rows}
        for cid in [c for c in self._shown if c not in self.rows_by_id]:
            self.remove_row(cid)
            del self._shown[cid]
        for row in rows:
            new = cells(row)
            old = self._shown.get(row.id)
            if old is None:
                self.add_row(*(new[k] for k, _ in COLUMNS), key=row.id)
            else:
                if not flush_uptime:
                    new["uptime"] = old["uptime"]  # shown as it was until the next flush
                self._update_changed(row.id, old, new)
            self._shown[row.id] = new

    def _update_changed(self, cid: str, old: dict, new: dict) -> None:
        for key, value in new.items():
            if str(old.get(key)) != str(value):
                # Recomputing column widths re-lays-out the whole table: only when the new text
                # does not fit (otherwise just this row is redrawn).
                col = self.columns.get(key)  # type: ignore[call-overload]
                grow = col is None or len(str(value)) > getattr(col, "content_width", 0)
                self.update_cell(cid, key, value, update_width=grow)

    def selected_id(self) -> str | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except CellDoesNotExist:  # cursor outside the table while rows change
            return None
        return str(key.value) if key.value is not None else None

    def select_id(self, cid: str) -> None:
        if cid in self._shown:
            self.move_cursor(row=self.get_row_index(cid))
