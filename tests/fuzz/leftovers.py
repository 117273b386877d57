"""What labtui has made on the machine, to compare before and after a batch of fuzzed examples:
every path under the state directories (containers, name links, leases, image staging dirs),
labtui's cgroups, network links and mounts. Logs and streams that only grow are not judged."""

from __future__ import annotations

import os
from pathlib import Path

# Files every command may create or append to: not what a refused example half-made.
_GROWING = {"steps.jsonl", "events.jsonl", "boot_id", "images.lock", "networks.lock", "host.jsonl"}


def _tree(root: Path) -> set[str]:
    out: set[str] = set()
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            if n in _GROWING or n.endswith(".lock"):
                continue
            path = os.path.join(dirpath, n)
            if dirpath == str(root) and n in dirnames and all(x.endswith(".lock") for x in os.listdir(path)):
                continue  # a store's own directory (lib/networks, ...), made empty on first use
            out.add(os.path.relpath(path, root.parent))
    return out


def _cgroups() -> set[str]:
    parent = os.environ.get("LABTUI_CGROUP_PARENT", "labtui")
    out: set[str] = set()
    for base in ("/sys/fs/cgroup", *(f"/sys/fs/cgroup/{h}" for h in _hierarchies())):
        d = Path(base, parent)
        if d.is_dir():
            out |= {f"{d}/{e.name}" for e in os.scandir(d) if e.is_dir()}
    return out


def _hierarchies() -> list[str]:
    try:
        return [e.name for e in os.scandir("/sys/fs/cgroup") if e.is_dir()]
    except OSError:
        return []


def snapshot() -> dict[str, set[str]]:
    from engine import paths

    root = os.environ["LABTUI_ROOT"]
    with open("/proc/self/mountinfo") as f:
        mounts = {line.split()[4] for line in f if root in line}
    # Bridges of networks (ltbr-<id>) and the default one: a container's veths need a started
    # container, which no fuzzed command makes. Other links on a shared machine are not ours.
    bridge = os.environ.get("LABTUI_DEFAULT_BRIDGE", "labtui0")
    links = {n for n in os.listdir("/sys/class/net") if n.startswith("ltbr-") or n == bridge}
    return {"state": _tree(paths.lib_dir()) | _tree(paths.run_dir()), "cgroups": _cgroups(), "links": links,
            "mounts": mounts}


def _ours(links: set[str]) -> set[str]:
    """The links this state's own steps made: a machine shared with other labtui runs sees
    their bridges come and go too. Every bridge labtui makes is a recorded step, with its name
    (engine/network/bridge.py), in this state's step stream, a rolled-back one included."""
    from engine import paths

    try:
        text = paths.steps_stream().read_text(errors="replace")
    except OSError:
        text = ""
    bridge = os.environ.get("LABTUI_DEFAULT_BRIDGE", "labtui0")
    return {n for n in links if n == bridge or f'"{n}"' in text}


def new_since(before: dict[str, set[str]]) -> dict[str, list[str]]:
    """What appeared since `before` (empty when nothing did)."""
    now = snapshot()
    now["links"] = before["links"] | _ours(now["links"] - before["links"])
    return {k: sorted(now[k] - before[k]) for k in now if now[k] - before[k]}
