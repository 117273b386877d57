"""The host: what the dashboard's header says about it, and the sweep every labtui start runs."""

from __future__ import annotations

import os

from engine import api, cgroups, paths


def on_startup() -> None:
    """What every labtui command does first (after a reboot: bring back `--restart always`).
    In-process: engine.api fork+execs a supervisor when the caller has threads (this app)."""
    api.on_startup()


def host_facts() -> dict[str, str]:
    """Kernel, cgroup layout and the runtime's directories, for the dashboard's header."""
    u = os.uname()
    return {"kernel": f"{u.sysname} {u.release} ({u.machine})", "cgroups": cgroup_layout(),
            "state": str(paths.lib_dir()), "runtime": str(paths.run_dir())}


def cgroup_layout() -> str:
    try:
        layout = cgroups.detect()
    except OSError as e:  # /proc/self/mountinfo unreadable: the dashboard still opens
        return f"unknown ({e})"
    if layout.kind == "unified":
        return f"unified v2 at {layout.v2_mount} ({' '.join(layout.v2_controllers) or 'no controllers'})"
    if layout.kind in ("legacy", "hybrid"):
        ctrls = sorted(k for k in layout.v1 if not k.startswith("name="))
        return f"{layout.kind} v1 ({','.join(ctrls)})" + (f" + v2 at {layout.v2_mount}" if layout.v2_mount else "")
    return layout.kind
