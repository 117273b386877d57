"""The IPC tab: SysV IPC objects on the host and in the container (engine.ipc), and the keys that
create a shared-memory segment on one side to show the other cannot see it."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine import ipc, procfs
from engine.errors import InvalidArgument
from engine.ipc import IpcObject
from labtui.tui.adapter.base import init_pid, load

__all__ = ["IpcObject", "IpcView", "create_container_shm", "create_host_shm", "ipc_view", "remove_host_shm"]


@dataclass
class IpcView:
    running: bool
    host: list[IpcObject] = field(default_factory=list)
    container: list[IpcObject] = field(default_factory=list)
    same_namespace: bool = False
    error: str = ""


def ipc_view(cid: str) -> IpcView:
    pid = init_pid(load(cid))
    view = IpcView(running=bool(pid), host=ipc.objects())  # the app's namespace: the host's
    if not pid:
        return view
    view.same_namespace = procfs.ns_inode(pid, "ipc") == procfs.ns_inode("self", "ipc")
    try:
        view.container = ipc.namespace_objects(pid)
    except OSError as e:
        view.error = str(e)
    return view


_demo_segments: dict[int, int] = {}  # shmid -> address where this process attached it


def create_host_shm(size: int = 4096) -> int:
    """A segment on the host that this app holds: listed while the app runs, freed by the kernel
    when the app exits, crash or not (engine.ipc.shm_hold)."""
    shmid, addr = ipc.shm_hold(size)
    _demo_segments[shmid] = addr
    return shmid


def remove_host_shm() -> int:
    """Detach every demo segment (they were marked IPC_RMID, so the kernel frees them)."""
    n = 0
    for shmid, addr in list(_demo_segments.items()):
        ipc.shm_detach(addr)
        del _demo_segments[shmid]
        n += 1
    return n


def create_container_shm(cid: str, size: int = 4096) -> int:
    """A segment in the container's IPC namespace only (joined from a thread of the app, as
    `labtui exec` joins it): it lives until that namespace dies."""
    pid = init_pid(load(cid))
    if not pid:
        raise InvalidArgument("the container is not running")
    return ipc.shm_create_in(pid, size)
