"""cgroup v2: one directory in the unified hierarchy (runc's libcontainer/cgroups/fs2).

Controllers are not mounted separately. A parent enables them for its children by writing
"+memory" etc. to its cgroup.subtree_control, and only those listed in its own cgroup.controllers
can be enabled (Documentation/admin-guide/cgroup-v2.rst, "Enabling and Disabling"). So labtui
enables them top-down: in the mount's root, then in its parent directory, before the container's
directory exists, which then gets memory.max, cpu.max, pids.max, ...
"""

from __future__ import annotations

import os

from engine.cgroups.base import FREEZE_TIMEOUT, KILL_TIMEOUT, CgroupDriver, poll_until
from engine.cgroups.limits import (
    Limits,
    blkio_to_io_weight,
    cpu_quota,
    shares_to_weight,
    shares_to_weight_formula,
)
from engine.errors import EngineError

# What labtui enables for its containers, in the order runc lists them.
WANTED_CONTROLLERS = ("cpu", "memory", "pids", "cpuset", "io")


def parse_flat_keyed(text: str) -> dict[str, int]:
    """Flat keyed files ("key value" lines): cgroup.events, memory.events, cpu.stat, pids.events."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


class V2Driver(CgroupDriver):
    version = "v2"

    # -- layout -----------------------------------------------------------------------------

    def _mount(self) -> str:
        if not self.layout.v2_mount:
            raise EngineError("no cgroup2 filesystem is mounted")
        return self.layout.v2_mount

    def _bases(self) -> list[str]:
        return [self._mount()]

    def dir(self) -> str:
        return self._leaf(self._mount())

    def _file(self, name: str) -> str:
        return os.path.join(self.dir(), name)

    def paths(self) -> dict[str, str]:
        d = self.dir()
        out = {"unified": d}
        out.update({c: d for c in WANTED_CONTROLLERS if c in self.layout.v2_controllers})
        return out

    def procs_paths(self) -> list[str]:
        return [self._file("cgroup.procs")]

    # -- create / join ----------------------------------------------------------------------

    def create(self) -> None:
        base = self._mount()
        self._enable_controllers(base)
        self._make_tree(base, self._init_level)

    def _init_level(self, d: str, parent_dir: str, created: bool) -> None:
        if d != self.dir():
            self._enable_controllers(d)

    def _enable_controllers(self, d: str) -> None:
        available = self._read(os.path.join(d, "cgroup.controllers")).split()
        enabled = self._read(os.path.join(d, "cgroup.subtree_control")).split()
        want = [c for c in WANTED_CONTROLLERS if c in available and c not in enabled]
        if want:
            self._write(os.path.join(d, "cgroup.subtree_control"), " ".join("+" + c for c in want),
                        why="enable these controllers for the child cgroups (their files appear there)")

    def add_pid(self, pid: int) -> None:
        self._write(self._file("cgroup.procs"), str(pid),
                    why="move the process into the container's cgroup")

    # -- limits -----------------------------------------------------------------------------

    def update(self, limits: Limits) -> list[str]:
        warnings = self._apply_memory(limits.memory, limits.memory_swap, limits.memory_swap is not None)
        warnings += self._apply_rest(limits)
        self.limits = self.limits.merged(limits)
        return warnings

    def _apply_memory(self, memory: int | None, swap_total: int | None, swap_asked: bool) -> list[str]:
        warnings = []
        if memory is not None:
            warnings += self._set("memory.max", str(memory), "--memory",
                                  why="hard limit; above it the kernel reclaims, then OOM-kills")
        if swap_total is None:
            return warnings
        if not self.fs.exists(self._file("memory.swap.max")):
            if swap_asked:
                warnings.append(self._note(self._file("memory.swap.max"),
                                           "memory.swap.max is missing (no swap accounting): "
                                           "--memory-swap not applied", str(swap_total)))
            return warnings
        # docker's --memory-swap is memory PLUS swap; v2 limits swap alone.
        if swap_total == -1:
            value, shown = "max", "max (--memory-swap -1: unlimited swap)"
        else:
            mem = memory if memory is not None else self.limits.memory
            if mem is None:
                # `update --memory-swap` alone: a driver made for the update does not know the
                # limit it was started with, but the kernel does.
                current = self._read(self._file("memory.max")) if self.fs.exists(self._file("memory.max")) else ""
                mem = int(current) if current.isdigit() else None
            if mem is None:
                return warnings + [self._note(self._file("memory.swap.max"),
                                              "--memory-swap needs --memory: not applied")]
            value = str(swap_total - mem)
            shown = f"{value} (--memory-swap {swap_total} - --memory {mem})"
        warnings += self._set("memory.swap.max", value, "--memory-swap", shown=shown,
                              why="swap limit alone (v1's memsw counted memory plus swap)")
        return warnings

    def _apply_rest(self, limits: Limits) -> list[str]:
        warnings: list[str] = []
        if limits.cpus is not None:
            quota, period = cpu_quota(limits.cpus)
            warnings += self._set("cpu.max", f"{quota} {period}", "--cpus",
                                  why=f"--cpus {limits.cpus}: {quota} us of CPU time per {period} us period")
        if limits.cpu_shares is not None:
            weight = shares_to_weight(limits.cpu_shares)
            warnings += self._set(
                "cpu.weight", str(weight), "--cpu-shares",
                shown=f"{weight} (--cpu-shares {limits.cpu_shares}: {shares_to_weight_formula(limits.cpu_shares)})",
                conversion=shares_to_weight_formula(limits.cpu_shares),
                why="v2 weight 1..10000 (default 100) converted from v1 shares 2..262144 as runc does")
        if limits.cpuset_cpus is not None:
            warnings += self._set("cpuset.cpus", limits.cpuset_cpus, "--cpuset-cpus",
                                  why="CPUs the tasks may run on")
        if limits.pids_limit is not None:
            value = "max" if limits.pids_limit == -1 else str(limits.pids_limit)
            warnings += self._set("pids.max", value, "--pids-limit",
                                  why="fork/clone fails with EAGAIN once this many tasks exist")
        if limits.blkio_weight is not None:
            warnings += self._set_io_weight(limits.blkio_weight)
        return warnings

    def _set(self, name: str, value: str, option: str, *, shown: str | None = None,
             **extra: object) -> list[str]:
        path = self._file(name)
        if not self.fs.exists(path):
            controller = name.split(".")[0]
            return [self._note(path, f"{name} is missing: the {controller} controller is not enabled "
                               f"here (not in cgroup.controllers): {option} not applied", value)]
        self._write(path, value, shown=shown, **extra)
        return []

    def _set_io_weight(self, weight: int) -> list[str]:
        # With the BFQ scheduler the weight lives in io.bfq.weight (same 1..1000 range as
        # blkio.weight); otherwise io.weight (1..10000, blk-iocost) takes the converted value.
        if self.fs.exists(self._file("io.bfq.weight")):
            return self._set("io.bfq.weight", str(weight), "--blkio-weight",
                             why="BFQ proportional I/O weight")
        converted = blkio_to_io_weight(weight)
        formula = f"1 + ({weight} - 10) * 9999 / 990 = {converted}"
        return self._set("io.weight", f"default {converted}", "--blkio-weight",
                         shown=f"default {converted} (--blkio-weight {weight}: {formula})",
                         conversion=formula, why="proportional I/O weight for every device")

    # -- freezer ----------------------------------------------------------------------------

    def events(self) -> dict[str, int]:
        """cgroup.events: populated (any task in the subtree) and frozen (cgroup-v2.rst)."""
        try:
            return parse_flat_keyed(self.fs.read(self._file("cgroup.events")))
        except FileNotFoundError:
            return {}

    def is_frozen(self) -> bool:
        return self.events().get("frozen") == 1

    def _needs_thaw(self) -> bool:
        path = self._file("cgroup.freeze")
        return self.fs.exists(path) and self._read(path) == "1"

    def freeze(self) -> None:
        self._set_frozen(True)

    def thaw(self) -> None:
        self._set_frozen(False)

    def _set_frozen(self, frozen: bool) -> None:
        # Writing 1 to cgroup.freeze only requests freezing; the cgroup is frozen once
        # cgroup.events says "frozen 1" (cgroup-v2.rst, "Core Interface Files").
        path = self._file("cgroup.freeze")
        if not self.fs.exists(path):
            raise EngineError(f"{path} is missing: the v2 freezer needs Linux 5.2 or later")
        value = "1" if frozen else "0"
        try:
            with self.rec.step("cgroup", "write", target=path, value=value, shell=f"echo {value} > {path}",
                               why="freeze every task" if frozen else "thaw every task") as s:
                self.fs.write(path, value)
                ok, polls = poll_until(self.fs, lambda: self.is_frozen() == frozen, FREEZE_TIMEOUT)
                s["polls"] = polls
                s["events"] = self.events()
                if not ok:
                    raise EngineError(f"cgroup.events did not report frozen {int(frozen)} "
                                      f"within {FREEZE_TIMEOUT:.0f}s")
        except EngineError:
            if frozen:
                self.fs.write(path, "0")
            raise

    # -- destroy ----------------------------------------------------------------------------

    def _kill_all(self) -> None:
        # cgroup.kill (Linux 5.14) SIGKILLs the whole subtree in the kernel, racing no forks.
        path = self._file("cgroup.kill")
        if self.pids() and self.fs.exists(path):
            self._write(path, "1", why="SIGKILL every task in the cgroup and its descendants")
            if poll_until(self.fs, lambda: not self.pids(), KILL_TIMEOUT)[0]:
                return
        super()._kill_all()
