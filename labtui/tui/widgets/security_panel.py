"""The Security tab: capability sets decoded from /proc/PID/status, NoNewPrivs, the seccomp profile's
summary and the live feed of its denials (seccomp_denied events), and the masked and read-only paths
(checked against the container's /proc/PID/mountinfo)."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from labtui.tui import adapter
from labtui.tui.widgets.panel import Panel, not_running_text

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
    seccomp_text(t, view)
    masked_text(t, view)
    userns = view.profile.get("userns")
    if userns:
        t.append("user namespace: ", style="bold")
        t.append(f"uid_map {' '.join(userns.get('uid_map', []))}  gid_map {' '.join(userns.get('gid_map', []))}\n")
    if view.config:
        t.append("configured: ", style="bold")
        t.append(", ".join(f"{k}={v}" for k, v in view.config.items()))
    else:
        t.append("No security options in the container's config (the defaults).", style="dim")
    return t


def seccomp_text(t: Text, view: adapter.SecurityView) -> None:
    prof = view.profile
    t.append("\nseccomp profile: ", style="bold")
    if prof and not prof.get("seccomp_profile") and prof.get("seccomp") == "unconfined":
        t.append("unconfined (no filter: every syscall reaches the kernel)\n", style="yellow")
    else:
        t.append(f"{prof.get('seccomp_profile') or prof.get('seccomp') or '?'}")
        plan = view.plan
        if plan:
            arches = ",".join(a.replace("SCMP_ARCH_", "").lower() for a in plan.get("arches", []))
            t.append(f"  default {plan.get('default_action')}, {plan.get('rules')} rules, "
                     f"{plan.get('allowed_syscalls')} syscalls allowed, arches {arches}")
            if plan.get("skipped"):
                t.append(f", {plan['skipped']} entries not applicable", style="dim")
        t.append("\n")
    stats = prof.get("seccomp_denials") or {}
    count = max(int(stats.get("count") or 0), view.denial_events)
    t.append(f"denials: {count}", style="bold" if count else "")
    by = stats.get("by_syscall") or {}
    if by:
        t.append("  (" + ", ".join(f"{k} x{v}" for k, v in sorted(by.items(), key=lambda kv: -kv[1])) + ")")
    t.append("\n")
    if view.denials:
        t.append(f"  last {len(view.denials)}, newest first:\n", style="dim")
        for ev in view.denials:
            when = time.strftime("%H:%M:%S", time.localtime(float(ev.get("ts") or 0)))
            t.append(f"  {when} ")
            t.append(f"denied {ev.get('syscall')}", style="bold red")
            t.append(f" (nr {ev.get('nr')}) pid {ev.get('pid')} {ev.get('comm') or ''} -> {ev.get('action')}\n")
    else:
        t.append("  no seccomp_denied event yet (a denied syscall shows up here live)\n", style="dim")


def masked_text(t: Text, view: adapter.SecurityView) -> None:
    if not view.masked:
        return
    configured = set(view.profile.get("masked_paths") or []) | set(view.profile.get("readonly_paths") or [])
    if view.profile and not configured:
        t.append("masked paths: none (systempaths=unconfined)\n", style="yellow")
    for kind in ("masked", "read-only"):
        paths = [m for m in view.masked if m.kind == kind]
        on = [m.path for m in paths if m.mounted]
        off = [m.path for m in paths if not m.mounted]
        t.append(f"{kind} paths mounted in the container ({len(on)}/{len(paths)}): ", style="bold")
        t.append((" ".join(on) or "none") + "\n")
        if off:
            t.append(f"  not mounted (absent on this kernel or not applied): {' '.join(off)}\n", style="dim")


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
