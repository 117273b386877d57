"""The cgroup driver interface, the shared create/destroy machinery and the null driver.

Every mkdir, rmdir and file write under the cgroup filesystem is a recorded step (mechanism
"cgroup") whose shell field is what a student would type to do the same by hand. Reads are not
steps: they change nothing.

labtui's cgroups live in a parent directory beneath each hierarchy (LABTUI_CGROUP_PARENT,
default "labtui"): <mount>/<parent>/<container-id>. Several supervisors create and remove
containers at once, so the parent is created on demand and removed when it becomes empty, and
both steps tolerate losing a race with another supervisor.
"""

from __future__ import annotations

import errno
import os
import shlex
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

from engine.cgroups.detect import DEFAULT_ROOT, Layout, detect
from engine.cgroups.limits import Limits
from engine.cgroups.stats import read_stats
from engine.errors import EngineError, InvalidArgument, StepError
from engine.steps import Recorder

TYPE_CHECKING = False  # typing itself costs ~3 ms to import; annotations are strings here
if TYPE_CHECKING:
    from typing import ClassVar

PARENT_ENV = "LABTUI_CGROUP_PARENT"
DEFAULT_PARENT = "labtui"
RMDIR_TIMEOUT = 2.0  # seconds to keep retrying rmdir on EBUSY while killed tasks exit
KILL_TIMEOUT = 2.0
FREEZE_TIMEOUT = 5.0


def cgroup_parent() -> str:
    """The directory beneath each hierarchy that holds labtui's cgroups (env LABTUI_CGROUP_PARENT)."""
    return check_parent(os.environ.get(PARENT_ENV) or DEFAULT_PARENT)


def check_parent(parent: str) -> str:
    parent = parent.strip("/")
    if not parent or any(p in ("", ".", "..") for p in parent.split("/")):
        raise InvalidArgument(f"invalid {PARENT_ENV} {parent!r}: expected a relative path like 'labtui'")
    return parent


def check_container_id(cid: str) -> None:
    if not cid or "/" in cid or "\0" in cid or cid in (".", "..") or len(cid) > 255:
        raise InvalidArgument(f"invalid container id {cid!r} for a cgroup directory name")


def shell_write(value: str, path: str) -> str:
    return f"echo {shlex.quote(value)} > {shlex.quote(path)}"


class CgroupFS:
    """The seam between drivers and the kernel: cgroupfs file operations and kill(2).

    Unit tests substitute a fake that emulates the kernel's side effects on a tmp tree.
    """

    def mkdir(self, path: str) -> None:
        os.mkdir(path, 0o755)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def write(self, path: str, data: str) -> None:
        # One write(2) per value: cgroupfs parses each write as a whole and does not append.
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)

    def read(self, path: str) -> str:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks).decode()
        finally:
            os.close(fd)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def subdirs(self, path: str) -> list[str]:
        """Child cgroups of a cgroup directory (its subdirectories)."""
        try:
            return [e.name for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return []

    def kill(self, pid: int, sig: int) -> None:
        os.kill(pid, sig)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _resolve_layout(layout: Layout | None, root: str) -> Layout:
    if layout is None:
        return detect(root=None if os.path.normpath(root) == DEFAULT_ROOT else root)
    return layout.rebased(root)


def poll_until(
    fs: CgroupFS, done: Callable[[], bool], timeout: float, nudge: Callable[[int], None] | None = None
) -> tuple[bool, int]:
    """Poll ``done`` with short growing sleeps; returns (reached, polls). ``nudge(polls)`` may retry."""
    deadline = time.monotonic() + timeout
    polls, delay = 0, 0.0005
    while not done():
        if time.monotonic() >= deadline:
            return False, polls
        fs.sleep(delay)
        delay = min(delay * 2, 0.02)
        polls += 1
        if nudge is not None:
            nudge(polls)
    return True, polls


class CgroupDriver(ABC):
    """One container's cgroup(s). Subclasses: V1Driver (one dir per controller), V2Driver, NullDriver."""

    version: ClassVar[str] = ""

    def __init__(
        self,
        container_id: str,
        rec: Recorder,
        layout: Layout | None = None,
        root: str = DEFAULT_ROOT,
        *,
        fs: CgroupFS | None = None,
        parent: str | None = None,
    ) -> None:
        check_container_id(container_id)
        self.container_id = container_id
        self.rec = rec
        self.root = root
        self.layout = _resolve_layout(layout, root)
        self.fs = fs or CgroupFS()
        self.parent = check_parent(parent) if parent is not None else cgroup_parent()
        self.limits = Limits()

    # -- the interface ----------------------------------------------------------------------

    @abstractmethod
    def paths(self) -> dict[str, str]:
        """controller -> the container's cgroup directory for it."""

    @abstractmethod
    def create(self) -> None:
        """Make the parent (on demand) and the container's cgroup directories."""

    @abstractmethod
    def add_pid(self, pid: int) -> None:
        """Move a process (all its threads) into the container's cgroup(s)."""

    def apply(self, limits: Limits) -> list[str]:
        """Write the set limits; returns warnings for limits this kernel cannot enforce. Memory
        first (with its swap rule, which differs between v1 and v2), then the others."""
        warnings = self._apply_memory(limits.memory, limits.swap_total(), limits.memory_swap is not None)
        warnings += self._apply_rest(limits)
        self.limits = self.limits.merged(limits)
        return warnings

    def _apply_memory(self, memory: int | None, swap_total: int | None, swap_asked: bool) -> list[str]:
        raise NotImplementedError

    def _apply_rest(self, limits: Limits) -> list[str]:
        raise NotImplementedError

    @abstractmethod
    def freeze(self) -> None:
        """Freeze every task; returns once the kernel reports the cgroup frozen."""

    @abstractmethod
    def thaw(self) -> None:
        """Thaw; returns once the kernel reports the cgroup thawed."""

    @abstractmethod
    def is_frozen(self) -> bool: ...

    def self_join_plan(self) -> list[tuple[str, str]]:
        """Where the container's own process can join its cgroups; [] when it cannot (v2)."""
        return []

    @abstractmethod
    def procs_paths(self) -> list[str]:
        """Every cgroup.procs file a process must be written to in order to join."""

    def procs_path(self) -> str:
        """The (first) cgroup.procs file; on v1 joining needs all of procs_paths()."""
        paths = self.procs_paths()
        if not paths:
            raise EngineError("no cgroup to join: cgroups are unavailable")
        return paths[0]

    def update(self, limits: Limits) -> list[str]:
        """Change the limits of a running container (docker update): writes only the set fields."""
        return self.apply(limits)

    def stats(self) -> dict:
        return read_stats(self)

    def pids(self) -> list[int]:
        found: set[int] = set()
        for path in self.procs_paths():
            try:
                found.update(int(x) for x in self.fs.read(path).split())
            except FileNotFoundError:
                continue
        return sorted(found)

    def namespace_path(self) -> str:
        """The cgroup path that a cgroup namespace created inside this cgroup shows as "/".

        /proc/<pid>/cgroup from the host shows this path; from inside a new cgroup namespace
        the same process sees "/" (Documentation/admin-guide/cgroup-v2.rst, "Namespace").
        """
        return "/" + "/".join([self.parent, self.container_id])

    def describe(self) -> dict:
        """What inspect shows: driver, directories, and the path a cgroup namespace hides."""
        return {"driver": self.version, "layout": self.layout.kind, "paths": self.paths(),
                "cgroup_path": self.namespace_path() if self.version != "none" else None,
                "limits": self.limits.to_dict()}

    def exists(self) -> bool:
        return any(self.fs.isdir(d) for d in self._leaf_dirs())

    def destroy(self) -> None:
        """Kill what is left (thawing first), remove the cgroup(s). The parent (labtui/) stays
        for the next container, as docker's /sys/fs/cgroup/*/docker does: making and removing it
        around every container cost 16 mkdir/rmdir (and the cpuset copies) per `run --rm`, and
        let a removal race another container's creation. remove_empty_parents() takes it away."""
        if self.exists():
            if self._needs_thaw():
                self.thaw()
            self._kill_all()
            for d in self._leaf_dirs():
                if self.fs.isdir(d):
                    self._rmdir_retry(d)

    # -- shared machinery -------------------------------------------------------------------

    @abstractmethod
    def _bases(self) -> list[str]:
        """Hierarchy mountpoints the container has a directory in (deduplicated)."""

    def _leaf_dirs(self) -> list[str]:
        return [self._leaf(b) for b in self._bases()]

    def _leaf(self, base: str) -> str:
        return os.path.join(base, self.parent, self.container_id)

    def _parent_levels(self, base: str) -> list[str]:
        """The directories from ``base`` down to our parent, e.g. [<mount>, <mount>/labtui]."""
        levels, cur = [base], base
        for part in self.parent.split("/"):
            cur = os.path.join(cur, part)
            levels.append(cur)
        return levels

    def _needs_thaw(self) -> bool:
        return self.is_frozen()

    def _write(self, path: str, value: str, *, shown: str | None = None, **extra: object) -> None:
        """Write ``value`` to a cgroup file as a recorded step (``shown`` overrides the step value)."""
        with self.rec.step(
            "cgroup", "write", target=path, value=shown if shown is not None else value,
            shell=shell_write(value, path), **extra,
        ):
            self.fs.write(path, value)

    def _note(self, target: str, message: str, value: str = "") -> str:
        """Record a limit we skip (docker discards such limits with a warning too)."""
        with self.rec.step("cgroup", "skip", target=target, value=value, shell=f"# {message}", note=message):
            pass
        return message

    def _read(self, path: str) -> str:
        return self.fs.read(path).strip()

    def _mkdir(self, path: str, **extra: object) -> None:
        with self.rec.step("cgroup", "mkdir", target=path, shell=f"mkdir {shlex.quote(path)}", **extra):
            self.fs.mkdir(path)

    def _make_tree(self, base: str, on_level: Callable[[str, str, bool], None]) -> None:
        """mkdir -p <base>/<parent>/<id>, calling ``on_level(dir, parent_dir, created)`` per level.

        Another supervisor may remove an empty parent between our check and our mkdir (ENOENT),
        or create it first (EEXIST); both are retried or accepted rather than failing the run.
        """
        levels = self._parent_levels(base) + [self._leaf(base)]
        for attempt in range(5):
            try:
                for parent_dir, d in zip(levels, levels[1:], strict=False):
                    created = False
                    if not self.fs.isdir(d):
                        self._mkdir_tolerant(d)
                        created = True
                    on_level(d, parent_dir, created)
                return
            except StepError as e:
                if e.step.get("errno") != errno.ENOENT or attempt == 4:
                    raise

    def _mkdir_tolerant(self, path: str) -> None:
        try:
            self._mkdir(path)
        except StepError as e:
            if e.step.get("errno") != errno.EEXIST:
                raise

    def _kill_all(self) -> None:
        """SIGKILL every task until the cgroup is empty (new forks are caught by the next pass)."""
        deadline = time.monotonic() + KILL_TIMEOUT
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                self._kill(pid)
            poll_until(self.fs, lambda: not self.pids(), 0.2)

    def _kill(self, pid: int) -> None:
        with self.rec.step("signal", "kill", target=f"pid {pid}", value="SIGKILL",
                           shell=f"kill -KILL {pid}") as s:
            try:
                self.fs.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                s["note"] = "already exited"

    def _rmdir_retry(self, path: str) -> None:
        """rmdir, retrying EBUSY for ~2 s: a killed task leaves its cgroup only once it exits."""
        deadline = time.monotonic() + RMDIR_TIMEOUT
        with self.rec.step("cgroup", "rmdir", target=path, shell=f"rmdir {shlex.quote(path)}") as s:
            attempts = 0
            while True:
                attempts += 1
                try:
                    self.fs.rmdir(path)
                    break
                except FileNotFoundError:
                    s["note"] = "already removed"
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() >= deadline:
                        s["attempts"] = attempts
                        raise
                    self.fs.sleep(0.01)
            s["attempts"] = attempts

    def remove_empty_parents(self) -> None:
        """rmdir our parent in every hierarchy where no container's cgroup is left in it
        (`labtui system prune`, and the tests' cleanup)."""
        for base in self._bases():
            for d in reversed(self._parent_levels(base)[1:]):
                if not self.fs.isdir(d) or self.fs.subdirs(d):
                    break
                if not self._rmdir_parent(d):
                    break

    def _rmdir_parent(self, path: str) -> bool:
        """Remove an empty parent; losing a race to a concurrent creator is fine (EBUSY/ENOTEMPTY)."""
        with self.rec.step("cgroup", "rmdir", target=path, shell=f"rmdir {shlex.quote(path)}") as s:
            try:
                self.fs.rmdir(path)
                return True
            except OSError as e:
                if e.errno not in (errno.EBUSY, errno.ENOTEMPTY, errno.ENOENT):
                    raise
                s["note"] = f"kept: {errno.errorcode[e.errno]} (another container's cgroup appeared)"
                return False


class NullDriver(CgroupDriver):
    """Used when cgroups are unavailable: nothing is limited, and every limit becomes a warning."""

    version = "none"

    def __init__(self, container_id: str, rec: Recorder, reason: str = "cgroups are unavailable",
                 **kwargs: object) -> None:
        check_container_id(container_id)
        self.container_id = container_id
        self.rec = rec
        self.reason = reason
        self.root = str(kwargs.get("root") or DEFAULT_ROOT)
        self.layout = Layout(kind="none", kernel=os.uname().release)
        self.fs = CgroupFS()
        self.parent = DEFAULT_PARENT
        self.limits = Limits()

    def paths(self) -> dict[str, str]:
        return {}

    def _bases(self) -> list[str]:
        return []

    def procs_paths(self) -> list[str]:
        return []

    def create(self) -> None:
        return None

    def add_pid(self, pid: int) -> None:
        return None

    def apply(self, limits: Limits) -> list[str]:
        if limits.is_empty():
            return []
        return [self._note("", f"{self.reason}: resource limits not applied", str(limits.to_dict()))]

    def freeze(self) -> None:
        raise EngineError(f"cannot freeze: {self.reason} (pause needs the freezer)")

    def thaw(self) -> None:
        raise EngineError(f"cannot thaw: {self.reason}")

    def is_frozen(self) -> bool:
        return False

    def stats(self) -> dict:
        return {"version": "none"}

    def destroy(self) -> None:
        return None
