"""The Security tab: capability sets decoded from /proc/PID/status, NoNewPrivs and seccomp."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from labtui import adapter
from labtui.widgets.panel import Panel, not_running_text

CAP_FIELDS = {
    "CapEff": "effective: what the kernel checks now",
    "CapPrm": "permitted: what it may make effective",
    "CapBnd": "bounding: the most it can ever have",
    "CapInh": "inheritable across execve",
    "CapAmb": "ambient: kept across execve of non-setuid programs",
}


def security_text(view: adapter.SecurityView) -> Text:
    t = Text()
    t.append(f"Process {view.pid} ({view.which}), /proc/{view.pid}/status   Uid: {view.uids}\n", style="bold")
    shown: dict[str, str] = {}
    for cs in view.caps:
        t.append(f"{cs.field} {cs.hex}", style="bold")
        t.append(f"  {len(cs.names)} caps, {CAP_FIELDS.get(cs.field, '')}\n", style="dim")
        if cs.hex in shown:
            t.append(f"  same as {shown[cs.hex]}\n", style="dim")
        elif cs.names:
            t.append("  " + " ".join(n.removeprefix("cap_") for n in cs.names) + "\n")
        shown.setdefault(cs.hex, cs.field)
    t.append("dropped from the bounding set: ", style="bold")
    t.append((" ".join(n.removeprefix("cap_") for n in view.dropped) or "none (full root power)") + "\n",
             style="" if view.dropped else "yellow")
    if view.init_cap_eff and view.init_cap_eff != view.caps[0].hex:
        t.append("the container's init (PID 1 inside): ", style="bold")
        t.append(f"CapEff {view.init_cap_eff}, {len(adapter.decode_caps(view.init_cap_eff))} caps\n")
    t.append("NoNewPrivs: ", style="bold")
    t.append(f"{view.no_new_privs}  ")
    t.append("Seccomp: ", style="bold")
    t.append(f"{view.seccomp} ({view.seccomp_filters} filters)\n",
             style="" if view.seccomp == "filter" else "yellow")
    if view.config:
        t.append("configured: ", style="bold")
        t.append(", ".join(f"{k}={v}" for k, v in view.config.items()))
    else:
        t.append("No security options in the container's config (not available yet or defaults).", style="dim")
    return t


class SecurityPanel(Panel):
    TAB_ID = "sec"
    TITLE = "Security"

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("", id="sec-body")

    @classmethod
    def fetch(cls, cid: str) -> object:
        return adapter.security_view(cid)

    def show(self, data: object) -> None:
        if not isinstance(data, adapter.SecurityView):
            return
        body = self.query_one("#sec-body", Static)
        body.update(security_text(data) if data.running else not_running_text("process to inspect"))
