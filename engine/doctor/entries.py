"""Checks of the state directory's own entries: names/ links, run/ directories, attach sockets,
container directories without a record, and the trash of removed containers."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from engine import paths, state
from engine.doctor.base import GRACE, Ctx, Finding


def _old(p: Path) -> bool:
    """Older than GRACE: a create in flight makes its directory before it writes its record."""
    try:
        return os.lstat(p).st_mtime < time.time() - GRACE
    except OSError:
        return False


def _listdir(d: Path) -> list[str]:
    try:
        return sorted(os.listdir(d))
    except OSError:
        return []


def entries(ctx: Ctx) -> list[Finding]:
    out = []
    names = state.names_dir()
    for name in _listdir(names):
        try:
            target = os.readlink(names / name)
        except OSError:
            continue
        if target not in ctx.containers and not (paths.container_dir(target) / "config.json").exists() \
                and _old(names / name):
            out.append(Finding("name", name, f"names/{name} points to container {target[:12]}, which does not exist",
                               _unlink_name(names / name, target)))
    for cid in _listdir(paths.containers_dir()):
        d = paths.container_dir(cid)
        if len(cid) == 64 and cid not in ctx.containers and not (d / "config.json").exists() and _old(d):
            out.append(Finding("entry", f"containers/{cid[:12]}", "container directory without a record",
                               _rmtree(d, f"Removed container directory {cid[:12]}")))
    run = paths.run_dir() / "containers"
    for cid in _listdir(run):
        if cid not in ctx.containers and not paths.container_dir(cid).exists() and _old(run / cid):
            out.append(Finding("entry", f"run/containers/{cid[:12]}", "runtime directory of no container",
                               _rmtree(run / cid, f"Removed runtime directory {cid[:12]}")))
    sock = paths.run_dir() / "sock"
    for name in _listdir(sock):
        prefix = name.removesuffix(".sock")
        if name.endswith(".sock") and not any(cid.startswith(prefix) for cid in ctx.containers) \
                and not any(c.startswith(prefix) for c in _listdir(paths.containers_dir())) and _old(sock / name):
            out.append(Finding("socket", f"sock/{name}", "attach socket of no container",
                               _unlink(sock / name, f"Removed socket {name}")))
    for name in _listdir(paths.trash_dir()):
        if _old(paths.trash_dir() / name):
            out.append(Finding("entry", f".trash/{name[:12]}", "a removed container's directory not yet deleted",
                               _rmtree(paths.trash_dir() / name, f"Removed deleted container's directory {name[:12]}")))
    return out


def _unlink_name(link: Path, target: str) -> Callable[[], str]:
    def fix() -> str:
        if os.readlink(link) == target:  # not re-claimed meanwhile (state.claim_name)
            os.unlink(link)
        return f"Removed name {link.name} (no container)"
    return fix


def _unlink(p: Path, msg: str) -> Callable[[], str]:
    def fix() -> str:
        os.unlink(p)
        return msg
    return fix


def _rmtree(p: Path, msg: str) -> Callable[[], str]:
    def fix() -> str:
        shutil.rmtree(p)
        return msg
    return fix
