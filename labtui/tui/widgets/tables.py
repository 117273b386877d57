"""Refreshing a DataTable from a snapshot without losing the reader's place."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import DataTable

Row = tuple[str, Sequence[object]]  # (row key, cells in column order)


def sync_table(table: DataTable, rows: list[Row]) -> None:
    """Same keys in the same order: update changed cells in place. Otherwise rebuild, keeping the
    cursor on the same row index."""
    keys = [k for k, _ in rows]
    current = [str(rk.value) for rk in table.rows]
    columns = list(table.columns)
    if keys == current:
        for key, cells in rows:
            for col, value in zip(columns, cells, strict=False):
                if str(table.get_cell(key, col)) != str(value):
                    table.update_cell(key, col, value, update_width=True)
        return
    cursor = table.cursor_row
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    if table.row_count:
        table.move_cursor(row=min(cursor, table.row_count - 1), scroll=False)
