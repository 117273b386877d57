"""The shared part of the checks: a finding, and one snapshot of the state directory."""

from __future__ import annotations

import json
from collections.abc import Callable

from engine import paths, state
from engine.state import Container
from engine.steps import FileSink, Recorder

GRACE = 3.0  # seconds: a creation in flight has no record yet


class Finding:
    """One leaked or inconsistent thing: kind, object, why, and whether prune can fix it."""

    __slots__ = ("kind", "object", "why", "fix")

    def __init__(self, kind: str, obj: str, why: str, fix: Callable[[], str] | None = None) -> None:
        self.kind, self.object, self.why, self.fix = kind, obj, why, fix

    @property
    def fixable(self) -> bool:
        return self.fix is not None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "object": self.object, "why": self.why, "fixable": self.fixable}


class Ctx:
    """One snapshot of the state directory, shared by every check."""

    def __init__(self) -> None:
        self.containers: dict[str, Container] = {c.id: c for c in state.all_containers()}
        self.busy = {cid for cid, c in self.containers.items() if c.supervisor_alive() or c.init_alive()}
        self.lib, self.run = paths.lib_dir(), paths.run_dir()
        self._created: dict[str, set[str]] | None = None

    def created(self) -> dict[str, set[str]]:
        """What this state's step stream (lib/steps.jsonl: every step of every container and of
        the host) records creating: {"link_add": link names, "mkdir": cgroup directories}. This
        is how a link or cgroup left by a removed container is known to be ours and not another
        state directory's (a real install's, another test run's)."""
        if self._created is None:
            self._created = _scan_steps()
        return self._created

    def label(self, cid: str) -> str:
        c = self.containers.get(cid)
        return f"{c.name} ({cid[:12]})" if c else cid[:12]


def host_recorder() -> Recorder:
    """Repairs are steps of the host stream, as engine.api.host_recorder's (a module below the
    facade does not import it)."""
    return Recorder(None, FileSink(None))


def _scan_steps() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"link_add": set(), "mkdir": set()}
    try:
        f = open(paths.steps_stream(), "rb")
    except FileNotFoundError:
        return out
    with f:
        for line in f:
            if b'"link_add"' not in line and b'"mkdir"' not in line:
                continue  # a cheap filter before parsing: few steps create anything
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a half-written last line
            op, target = rec.get("op"), rec.get("target")
            if op in out and target and not rec.get("errno"):
                out[op].add(target)
    return out
