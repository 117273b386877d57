"""cgroup v1: one directory per controller hierarchy (runc's libcontainer/cgroups/fs).

A v1 container is a set of same-named directories, one under each controller's mount:
/sys/fs/cgroup/memory/labtui/<id>, /sys/fs/cgroup/cpu/labtui/<id>, ... A process joins by
having its pid written to cgroup.procs in every one of them.
"""

from __future__ import annotations

import os

from engine.cgroups.base import FREEZE_TIMEOUT, CgroupDriver, poll_until
from engine.cgroups.limits import Limits, cpu_quota
from engine.errors import EngineError, InvalidArgument

# The controllers labtui places a container in, in creation order. "devices" holds the device
# allow-list the device setup writes; "freezer" implements pause.
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids")

# A v1 memory limit of "unlimited" reads back as PAGE_COUNTER_MAX pages; anything this large is no limit.
V1_UNLIMITED = 1 << 62


class V1Driver(CgroupDriver):
    version = "v1"

    # -- layout -----------------------------------------------------------------------------

    def controllers(self) -> list[str]:
        return [c for c in V1_CONTROLLERS if c in self.layout.v1]

    def paths(self) -> dict[str, str]:
        return {c: self._leaf(self.layout.v1[c]) for c in self.controllers()}

    def _bases(self) -> list[str]:
        # Co-mounted controllers (e.g. "cpu,cpuacct" on one mount) share a directory.
        return list(dict.fromkeys(self.layout.v1[c] for c in self.controllers()))

    def _dir(self, controller: str) -> str | None:
        return self.paths().get(controller)

    def _file(self, controller: str, name: str) -> str | None:
        d = self._dir(controller)
        return os.path.join(d, name) if d else None

    def procs_paths(self) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in self._leaf_dirs()]

    # -- create / join ----------------------------------------------------------------------

    def create(self) -> None:
        for base in self._bases():
            self._make_tree(base, self._init_level)

    def _init_level(self, d: str, parent_dir: str, created: bool) -> None:
        if not created:
            return
        if self.fs.exists(os.path.join(d, "cpuset.cpus")):
            self._copy_cpuset(d, parent_dir)
        # use_hierarchy only matters for a directory that will hold children: our parent.
        if d not in self._leaf_dirs() and self.fs.exists(os.path.join(d, "memory.use_hierarchy")):
            self._check_use_hierarchy(d)

    def _copy_cpuset(self, d: str, parent_dir: str) -> None:
        # A new v1 cpuset starts with empty cpuset.cpus and cpuset.mems, and the kernel refuses to
        # attach tasks (ENOSPC) until both are set (cgroup-v1/cpusets.rst 2.1). Copy the parent's,
        # as runc does, unless clone_children already did.
        for name in ("cpuset.cpus", "cpuset.mems"):
            if self._read(os.path.join(d, name)):
                continue
            value = self._read(os.path.join(parent_dir, name))
            if not value:
                # Our parent was just made again by another supervisor (the last container's
                # removal took it) that has not filled it yet; a child's set must lie within its
                # parent's, so fill the parent first, as that one will (the same value).
                self._copy_cpuset(parent_dir, os.path.dirname(parent_dir))
                value = self._read(os.path.join(parent_dir, name))
            self._write(os.path.join(d, name), value,
                        why=f"a new v1 cpuset is empty; copy {name} from the parent so tasks can join")

    def _check_use_hierarchy(self, d: str) -> None:
        # With use_hierarchy 0 a child's usage is not charged to its parent, so our parent's
        # totals and limits would not cover the containers (cgroup-v1/memory.rst 6). Recent kernels
        # (5.x) fix it at 1 (writing 0 is EINVAL); older ones need it set before children exist.
        if self._read(os.path.join(d, "memory.use_hierarchy")) == "0":
            self._write(os.path.join(d, "memory.use_hierarchy"), "1",
                        why="charge containers' memory to the labtui parent (hierarchical accounting)")

    def add_pid(self, pid: int) -> None:
        for path in self.procs_paths():
            self._write(path, str(pid), why="move the process into this controller's cgroup")

    def self_join_plan(self) -> list[tuple[str, str]]:
        """(mount point, directory relative to it) of each cgroup, for the process itself to join.

        Why: writing a PID to cgroup.procs takes the kernel's global threadgroup lock, a
        percpu rwsem whose write side waits for an RCU grace period (~10 ms, every container
        start). A thread writing "0" to a v1 `tasks` file moves only itself and skips that lock
        (kernel/cgroup/cgroup.c, cgroup_procs_write_start). The container's child does that,
        through directory fds it opened before pivot_root.
        """
        out = []
        for base in self._bases():
            d = self._leaf(base)
            out.append((base, os.path.relpath(d, base)))
        return out

    # -- limits -----------------------------------------------------------------------------

    def update(self, limits: Limits) -> list[str]:
        # docker update --memory alone keeps the current memory+swap, which must stay >= memory.
        memsw = self._file("memory", "memory.memsw.limit_in_bytes")
        if limits.memory is not None and limits.memory_swap is None and memsw and self.fs.exists(memsw):
            current = int(self._read(memsw))
            if current < V1_UNLIMITED and limits.memory > current:
                raise InvalidArgument(
                    f"--memory {limits.memory} is above the current memory+swap limit {current}: "
                    "update --memory-swap at the same time")
        warnings = self._apply_memory(limits.memory, limits.memory_swap, limits.memory_swap is not None)
        warnings += self._apply_rest(limits)
        self.limits = self.limits.merged(limits)
        return warnings

    def _apply_memory(self, memory: int | None, swap_total: int | None, swap_asked: bool) -> list[str]:
        limit_f = self._file("memory", "memory.limit_in_bytes")
        memsw_f = self._file("memory", "memory.memsw.limit_in_bytes")
        if memory is None and swap_total is None:
            return []
        if limit_f is None:
            return [self._note("memory", "memory controller not mounted: --memory not applied")]
        warnings = []
        if swap_total is not None and not (memsw_f and self.fs.exists(memsw_f)):
            if swap_asked:
                warnings.append(self._note(
                    str(memsw_f), "memory.memsw.limit_in_bytes is missing (swap accounting is off; "
                    "boot with swapaccount=1): --memory-swap not applied", str(swap_total)))
            swap_total = None
        writes: list[tuple[str, int]] = [] if memory is None else [(limit_f, memory)]
        if swap_total is not None and memsw_f:
            # The kernel keeps limit_in_bytes <= memsw.limit_in_bytes at every write
            # (cgroup-v1/memory.rst 2.5), so raise memsw first when growing, last when shrinking
            # (the order runc uses).
            current = int(self._read(limit_f))
            if swap_total == -1 or current < swap_total:
                writes.insert(0, (memsw_f, swap_total))
            else:
                writes.append((memsw_f, swap_total))
        for path, value in writes:
            self._write(path, str(value), why=_MEMORY_WHY[os.path.basename(path)])
        return warnings

    def _apply_rest(self, limits: Limits) -> list[str]:
        warnings: list[str] = []
        if limits.cpus is not None:
            quota, period = cpu_quota(limits.cpus)
            # Period first: the kernel checks quota against the period in force.
            warnings += self._set("cpu", "cpu.cfs_period_us", str(period), "--cpus",
                                  why="CFS bandwidth period (100 ms, docker's default)")
            warnings += self._set("cpu", "cpu.cfs_quota_us", str(quota), "--cpus",
                                  why=f"--cpus {limits.cpus}: {quota} us of CPU time per {period} us period")
        if limits.cpu_shares is not None:
            warnings += self._set("cpu", "cpu.shares", str(limits.cpu_shares), "--cpu-shares",
                                  why="relative CPU weight against sibling cgroups (default 1024)")
        if limits.cpuset_cpus is not None:
            warnings += self._set("cpuset", "cpuset.cpus", limits.cpuset_cpus, "--cpuset-cpus",
                                  why="CPUs the tasks may run on")
        if limits.pids_limit is not None:
            value = "max" if limits.pids_limit == -1 else str(limits.pids_limit)
            warnings += self._set("pids", "pids.max", value, "--pids-limit",
                                  why="fork/clone fails with EAGAIN once this many tasks exist")
        if limits.blkio_weight is not None:
            warnings += self._set_blkio_weight(limits.blkio_weight)
        return warnings

    def _set(self, controller: str, name: str, value: str, option: str, why: str) -> list[str]:
        path = self._file(controller, name)
        if path is None:
            return [self._note(controller, f"{controller} controller not mounted: {option} not applied", value)]
        if not self.fs.exists(path):
            return [self._note(path, f"{name} not supported by this kernel: {option} not applied", value)]
        self._write(path, value, why=why)
        return []

    def _set_blkio_weight(self, weight: int) -> list[str]:
        # blkio.weight belonged to CFQ, removed in 5.0; with BFQ the knob is blkio.bfq.weight
        # (runc tries both). Neither exists unless a weight-aware scheduler is built in.
        d = self._dir("blkio")
        if d is None:
            return [self._note("blkio", "blkio controller not mounted: --blkio-weight not applied")]
        for name in ("blkio.weight", "blkio.bfq.weight"):
            if self.fs.exists(os.path.join(d, name)):
                self._write(os.path.join(d, name), str(weight),
                            why="proportional block I/O weight (10..1000, default 100)")
                return []
        return [self._note(os.path.join(d, "blkio.weight"),
                           "--blkio-weight not supported by this kernel (no blkio.weight or "
                           "blkio.bfq.weight): not applied", str(weight))]

    # -- freezer ----------------------------------------------------------------------------

    def _state_file(self) -> str:
        path = self._file("freezer", "freezer.state")
        if path is None:
            raise EngineError("cannot freeze: the v1 freezer controller is not mounted")
        return path

    def freezer_state(self) -> str:
        return self._read(self._state_file())

    def is_frozen(self) -> bool:
        path = self._file("freezer", "freezer.state")
        return bool(path and self.fs.exists(path) and self._read(path) == "FROZEN")

    def _needs_thaw(self) -> bool:
        path = self._file("freezer", "freezer.state")
        return bool(path and self.fs.exists(path) and self._read(path) != "THAWED")

    def freeze(self) -> None:
        self._set_state("FROZEN", "stop every task; FREEZING until all have stopped")

    def thaw(self) -> None:
        self._set_state("THAWED", "let every task run again")

    def _set_state(self, want: str, why: str) -> None:
        # Writing FROZEN starts freezing; the state reads FREEZING until every task is stopped
        # (cgroup-v1/freezer-subsystem.rst). A task forked meanwhile can leave it stuck in
        # FREEZING, so like runc we write the state again while we wait.
        path = self._state_file()
        try:
            with self.rec.step("cgroup", "write", target=path, value=want,
                               shell=f"echo {want} > {path}", why=why) as s:
                self.fs.write(path, want)

                def again(polls: int) -> None:
                    if polls % 20 == 0:
                        self.fs.write(path, want)

                ok, polls = poll_until(self.fs, lambda: self._read(path) == want, FREEZE_TIMEOUT, again)
                s["polls"] = polls
                s["state"] = self._read(path)
                if not ok:
                    raise EngineError(f"freezer.state stayed {s['state']} for {FREEZE_TIMEOUT:.0f}s")
        except EngineError:
            if want == "FROZEN":
                self.fs.write(path, "THAWED")
            raise


_MEMORY_WHY = {
    "memory.limit_in_bytes": "hard memory limit; above it the kernel reclaims, then OOM-kills",
    "memory.memsw.limit_in_bytes": "limit on memory plus swap (docker's --memory-swap)",
}
