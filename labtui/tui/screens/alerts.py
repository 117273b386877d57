"""Alerts: which events deserve a notification, how they read, and the alert list screen."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from labtui.tui.messages import AlertsChanged

ALWAYS = {"alert", "oom", "crash", "restarted", "health_status", "seccomp_denied"}


def is_alert(ev: dict) -> bool:
    """OOM kills, limit alerts, crashes, restarts and health changes; a death only when a signal
    nobody asked for ended it (engines that emit "crash" events say so themselves)."""
    kind = ev.get("type")
    if kind in ALWAYS:
        return True
    if kind == "died" and "crash" not in ev:
        reason = str(ev.get("reason", ""))
        return bool(ev.get("signal")) and not reason.startswith(("stopped", "killed"))
    return False


def severity(ev: dict) -> str:
    kind = ev.get("type")
    if kind in ("oom", "crash", "died"):
        return "error"
    if kind == "health_status" and ev.get("status") != "unhealthy":
        return "information"
    return "warning"


def describe(ev: dict) -> str:
    """One line: who, what, and the kernel's numbers."""
    who = ev.get("name") or str(ev.get("container") or "")[:12] or "host"
    kind = ev.get("type")
    if ev.get("message"):
        return f"{who}: {ev['message']}"
    if kind == "oom":
        return f"{who}: killed by the OOM killer (exit {ev.get('exit_code', '?')})"
    if kind in ("crash", "died"):
        sig = f" by {ev['signal']}" if ev.get("signal") else ""
        return f"{who}: died{sig}, exit code {ev.get('exit_code', '?')} ({ev.get('reason', 'unexpected')})"
    if kind == "restarted":
        return f"{who}: restarted (restart #{ev.get('restart_count', '?')})"
    if kind == "seccomp_denied":
        return f"{who}: seccomp refused {ev.get('syscall', '?')} to pid {ev.get('pid', '?')} ({ev.get('comm', '?')})"
    if kind == "health_status":
        return f"{who}: health is now {ev.get('status', '?')}"
    return f"{who}: {ev.get('alert') or kind}"


def title(ev: dict) -> str:
    kind = str(ev.get("type"))
    return str(ev.get("alert") or kind).replace("_", " ")


class AlertsScreen(Screen):
    """Every alert seen since the app started, plus those already in the event stream."""

    SUB_TITLE = "alerts"
    BINDINGS = [Binding("escape", "back", "Back")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="alerts-note")
        yield DataTable(id="alerts", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#alerts", DataTable)
        for key, label in (("time", "TIME"), ("kind", "ALERT"), ("what", "WHAT")):
            table.add_column(label, key=key)
        self.refresh_alerts()

    def refresh_alerts(self) -> None:
        alerts: list[dict] = list(getattr(self.app, "alerts", []))
        table = self.query_one("#alerts", DataTable)
        for ev in alerts[table.row_count:]:
            ts = time.strftime("%m-%d %H:%M:%S", time.localtime(float(ev.get("ts", 0))))
            style = {"error": "bold red", "warning": "yellow"}.get(severity(ev), "")
            table.add_row(ts, Text(title(ev), style=style), describe(ev))
        self.query_one("#alerts-note", Static).update(
            f"{len(alerts)} alerts: OOM kills, crashes, restarts, health changes and cgroup limit alerts "
            "from the event stream." if alerts else "No alerts yet. They also pop up as notifications.")

    def on_alerts_changed(self, message: AlertsChanged) -> None:
        self.refresh_alerts()

    def action_back(self) -> None:
        self.app.pop_screen()
