"""`labtui system df`: what images, containers, logs and lesson data take on disk, as docker's
`system df` shows it (TYPE, TOTAL, ACTIVE, SIZE, RECLAIMABLE), with per-item detail for -v.

Sizes are apparent sizes (st_size) of regular files, a hard-linked file counted once, as `du
--apparent-size` would; images use the size counted at import (engine/images/store.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from engine import paths, state


def tree_size(top: Path | str, seen: set[tuple[int, int]] | None = None) -> int:
    seen = set() if seen is None else seen
    total = 0
    for dirpath, _dirs, files in os.walk(top):
        for fn in files:
            try:
                st = os.lstat(os.path.join(dirpath, fn))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def _file_size(p: Path) -> int:
    try:
        return os.lstat(p).st_size
    except OSError:
        return 0


def usage() -> dict:
    """{"rows": [{type, total, active, size, reclaimable}], "items": {type: [{name, size, active}]}}."""
    from engine.images import store

    containers = state.all_containers()
    running = {c.id for c in containers if c.status in (state.RUNNING, state.PAUSED, state.RESTARTING)}
    used_images = {c.config.get("image_id") for c in containers}
    items: dict[str, list[dict]] = {"Images": [], "Containers": [], "Logs": [], "Lesson data": []}
    for img in store.list_images():
        items["Images"].append({"name": img.ref, "size": store.image_size(img), "active": img.id in used_images})
    for c in containers:
        active = c.id in running
        items["Containers"].append({"name": c.name, "size": tree_size(c.dir / "upper"), "active": active})
        log = sum(_file_size(c.dir / f) for f in ("container.log", "steps.jsonl"))
        items["Logs"].append({"name": c.name, "size": log, "active": active})
    for stream in (paths.steps_stream(), paths.events_stream()):
        items["Logs"].append({"name": stream.name, "size": _file_size(stream), "active": True})
    lessons = paths.lib_dir() / "lessons"
    for d in sorted(lessons.iterdir()) if lessons.is_dir() else []:
        items["Lesson data"].append({"name": d.name, "size": tree_size(d) if d.is_dir() else _file_size(d),
                                     "active": True})
    rows = []
    for kind, its in items.items():
        rows.append({"type": kind, "total": len(its), "active": sum(1 for i in its if i["active"]),
                     "size": sum(i["size"] for i in its),
                     "reclaimable": sum(i["size"] for i in its if not i["active"])})
    return {"rows": rows, "items": items}


def human(n: int) -> str:
    """docker's units: 1000-based, as `docker system df` prints them (B, kB, MB, GB)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.3g}{unit}"
        size /= 1000
    return f"{size:.3g}TB"
