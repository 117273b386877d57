"""The attacks in teaching order, and finding one by name (the runner and the CLI both ask here)."""

from __future__ import annotations

from engine.attacks.base import Attack
from engine.attacks.chroot_breakout import ChrootBreakout
from engine.attacks.host_disk import HostDisk
from engine.attacks.leaked_fd import LeakedFd
from engine.attacks.proc_exe import ProcExe
from engine.attacks.proc_write import ProcWrite
from engine.attacks.ptrace_host import PtraceHost
from engine.attacks.release_agent import ReleaseAgent
from engine.attacks.resource_bombs import ForkBomb, MemoryBomb
from engine.attacks.shocker import Shocker
from engine.attacks.state_dir import StateDir
from engine.errors import NotFound

_CATALOGUE: list[type[Attack]] = [
    ChrootBreakout, ReleaseAgent, HostDisk, ProcWrite, PtraceHost, Shocker, ProcExe, LeakedFd, StateDir,
    ForkBomb, MemoryBomb,
]


def catalogue() -> list[Attack]:
    return [cls() for cls in _CATALOGUE]


def names() -> list[str]:
    return [cls.name for cls in _CATALOGUE]


def get(name: str) -> Attack:
    for cls in _CATALOGUE:
        if cls.name == name:
            return cls()
    raise NotFound(f"no attack named {name!r}: try one of {', '.join(names())}")
