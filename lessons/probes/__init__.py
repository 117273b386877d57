"""Typed probes: what a lesson's checks ask of the kernel, one small function each.

registry.py holds the registry and the shared vocabulary (@probe, Context, Observation,
ProbeError, expect); the probe modules register on import: kernel.py (processes, namespaces,
cgroups, files, exec), net.py (links, addresses, routes, bridge ports, TCP), streams.py (the
step and event streams). docs/lessons.md lists every kind with its fields.
"""

from __future__ import annotations

import difflib

from lessons.probes.registry import (
    _REGISTRY,
    EXPECT,
    Context,
    Observation,
    ParamError,
    Probe,
    ProbeError,
    expect,
    probe,
)

__all__ = ["EXPECT", "Context", "Observation", "ParamError", "Probe", "ProbeError", "closest", "expect", "get",
           "names", "probe"]


def _load() -> None:
    # The modules register their probes on import; one import per kind of kernel object.
    from lessons.probes import kernel, net, streams  # noqa: F401


def get(name: str) -> Probe | None:
    _load()
    return _REGISTRY.get(name)


def names() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def closest(name: str) -> str | None:
    m = difflib.get_close_matches(name, names(), n=1)
    return m[0] if m else None


