"""Control groups: limits, stats, freezing and alerts for containers (docs/cgroups.md).

    layout = detect()                       # unified / legacy / hybrid, from /proc/self/mountinfo
    cg = get_driver(cid, rec)               # V2Driver on unified, V1Driver on legacy/hybrid
    cg = for_container(c, rec)              # the driver a container was created with (everyone's)
    cg.create(); cg.add_pid(pid); cg.apply(validate(limits_from_options(memory="64m")))
    cg.stats(); cg.freeze(); cg.thaw(); cg.destroy()
"""

from __future__ import annotations

import os
import time

from engine import prefork
from engine.cgroups.alerts import AlertWatcher
from engine.cgroups.base import (
    DEFAULT_PARENT,
    PARENT_ENV,
    CgroupDriver,
    CgroupFS,
    NullDriver,
    cgroup_parent,
)
from engine.cgroups.detect import DEFAULT_ROOT, Layout, detect
from engine.cgroups.limits import (
    Limits,
    limits_from_options,
    parse_size,
    shares_to_weight,
    validate,
)
from engine.cgroups.stats import cpu_percent, memory_percent, read_stats
from engine.cgroups.v1 import V1Driver
from engine.cgroups.v2 import V2Driver
from engine.errors import EngineError
from engine.steps import Recorder, null_recorder

TYPE_CHECKING = False  # typing itself costs ~3 ms to import; annotations are strings here
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "DEFAULT_PARENT", "DEFAULT_ROOT", "PARENT_ENV", "AlertWatcher", "CgroupDriver", "CgroupFS",
    "Layout", "Limits", "NullDriver", "V1Driver", "V2Driver", "cgroup_parent", "cpu_percent",
    "detect", "for_container", "get_driver", "host_layout", "is_frozen_for", "limits_from_options",
    "memory_percent", "parse_size", "read_stats", "shares_to_weight", "validate",
]


def get_driver(
    container_id: str,
    rec: Recorder,
    force: str | None = None,
    layout: Layout | None = None,
    root: str = DEFAULT_ROOT,
    *,
    fs: CgroupFS | None = None,
    parent: str | None = None,
) -> CgroupDriver:
    """The driver for this host: v2 on a unified layout, v1 on legacy and hybrid ones.

    On a hybrid host the cgroup2 side holds no (or hardly any) controllers, so limits must go
    through v1. ``force`` ("v1"/"v2") overrides the choice, e.g. to use the hybrid host's
    cgroup2 mount for freezing. Without usable cgroups the NullDriver is returned. ``parent``
    overrides LABTUI_CGROUP_PARENT (e.g. the parent recorded when the container was created).
    """
    if layout is None:
        layout = host_layout() if os.path.normpath(root) == DEFAULT_ROOT else detect(root=root)
    else:
        layout = layout.rebased(root)
    kind = force or {"unified": "v2", "legacy": "v1", "hybrid": "v1"}.get(layout.kind)
    if fs is None and kind in ("v1", "v2") and not _writable(layout, kind):
        return NullDriver(container_id, rec, reason="no permission to create cgroups (run as root)")
    if kind == "v2":
        if not layout.v2_mount:
            raise EngineError("cgroup v2 was asked for, but no cgroup2 filesystem is mounted")
        return V2Driver(container_id, rec, layout, root, fs=fs, parent=parent)
    if kind == "v1":
        if not any(not c.startswith("name=") for c in layout.v1):
            raise EngineError("cgroup v1 was asked for, but no v1 controller is mounted")
        return V1Driver(container_id, rec, layout, root, fs=fs, parent=parent)
    if kind is not None:
        raise EngineError(f"unknown cgroup driver {force!r}: expected 'v1' or 'v2'")
    return NullDriver(container_id, rec, reason="no cgroup filesystem is mounted")


def for_container(c: Any, rec: Recorder) -> CgroupDriver:
    """The driver of container ``c`` (anything with ``.id`` and ``.config``): the driver and
    parent it was created with, its limits set so inspect reports them. The one factory the
    supervisor, exec, the facade and the app use for a container's cgroups."""
    cfg = c.config
    # cgroup_name: a container whose cgroup its creator named (labtui-oci: linux.cgroupsPath)
    drv = get_driver(cfg.get("cgroup_name") or c.id, rec, force=cfg.get("cgroup_driver"),
                     parent=cfg.get("cgroup_parent"))
    drv.limits = Limits.from_dict(cfg.get("limits") or {})
    return drv


def remove_empty_parents(rec: Recorder) -> None:
    """Remove labtui's parent cgroup (LABTUI_CGROUP_PARENT, default labtui/) from every hierarchy
    where it is empty: the containers' cgroups leave it in place (CgroupDriver.destroy)."""
    drivers = [get_driver("prune", rec)]
    layout = host_layout()
    if layout.kind == "hybrid" and layout.v2_mount:  # the cgroup2 side, where force="v2" puts them
        drivers.append(get_driver("prune", rec, force="v2"))
    for d in drivers:
        d.remove_empty_parents()


LAYOUT_TTL = 2.0  # seconds a detected host layout is reused (unless engine.prefork.set_layout_ttl)
_host_layout: tuple[float, Layout] | None = None


def host_layout(refresh: bool = False) -> Layout:
    """detect() of this host, reused for LAYOUT_TTL seconds.

    A stats tick makes a driver per container; parsing /proc/self/mountinfo for each one was a
    quarter of the tick. Cgroup mounts do not change under a running runtime (runc reads them
    once per process); the short TTL still lets a long-running app notice if they ever do.
    """
    global _host_layout
    now = time.monotonic()
    if refresh or _host_layout is None or now - _host_layout[0] > prefork.layout_ttl(LAYOUT_TTL):
        _host_layout = (now, detect())
    return _host_layout[1]


def layout_age() -> float | None:
    """Seconds since host_layout() last detected the layout (None: never)."""
    return None if _host_layout is None else time.monotonic() - _host_layout[0]


def _writable(layout: Layout, kind: str) -> bool:
    mount = layout.v2_mount if kind == "v2" else layout.v1.get("memory") or next(iter(layout.v1.values()), None)
    return mount is None or not os.path.isdir(mount) or os.access(mount, os.W_OK)


def is_frozen_for(c: Any, layout: Layout | None = None, root: str = DEFAULT_ROOT) -> bool:
    """Whether the kernel's freezer reports container ``c`` (anything with ``.id``) frozen.

    Uses ``c.state["cgroup_parent"]`` when the container recorded one. Raises EngineError when
    cgroups are unavailable, so callers can fall back to their own record.
    """
    state = getattr(c, "state", None) or {}
    cg = get_driver(c.id, null_recorder(), layout=layout, root=root, parent=state.get("cgroup_parent"))
    if isinstance(cg, NullDriver):
        raise EngineError(cg.reason)
    return cg.is_frozen()
