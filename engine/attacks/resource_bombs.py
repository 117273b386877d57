"""Fork bomb and memory bomb: limits that only the cgroup enforces."""

from __future__ import annotations

from engine.attacks.base import Attack, Lab, Outcome, step_text

FORKS = 300
PIDS_LIMIT = 64
MEGS = 256
MEMORY_LIMIT = 64 * 1024 * 1024


def _cgroup_missing(controller: str) -> str | None:
    from engine.steps import null_recorder

    try:
        from engine import cgroups

        drv = cgroups.get_driver("0" * 64, null_recorder())
        if getattr(drv, "version", "none") == "none":
            return "needs cgroups (none available)"
        if getattr(drv, "version", "") == "v1" and controller not in drv.paths():
            return f"needs the {controller} controller"
    except Exception as e:  # a missing or different driver API
        return f"needs the cgroup driver ({e})"
    return None


class ForkBomb(Attack):
    name = "fork_bomb"
    title = "fork bomb"
    technique = (f"fork {FORKS} processes that wait (bounded, then all killed): without a limit a real fork bomb "
                 "exhausts the host's PIDs and every other workload with them")
    weak = "no --pids-limit (docker's default)"
    stops_it = (f"--pids-limit {PIDS_LIMIT}: the pids controller makes fork(2) fail with EAGAIN once the "
                "container's cgroup holds that many tasks (pids.max)")
    requires = ("pids_limit",)

    def skip_reason(self, lab: Lab) -> str | None:
        why = _cgroup_missing("pids")
        return f"needs pids limit: {why}" if why else None

    def config(self, lab: Lab, profile: str) -> dict:
        return {"limits": {"pids_limit": PIDS_LIMIT}} if profile == "default" else {}

    def execute(self, lab: Lab, profile: str) -> Outcome:
        helper = lab.helper("forkbomb")
        run = lab.run([helper, str(FORKS)], extra=self.config(lab, profile))
        forked = run.first("FORKED:") or ""
        n = int(forked.split()[0]) if forked else 0
        if n >= FORKS:
            return Outcome(True, f"the container created {n} processes; nothing bounded it",
                           details={"output": run.output})
        limit = run.step("cgroup", contains="pids.max")
        mit = step_text(limit) or "pids.max"
        alerts = [e for e in run.events if e.get("alert") == "pids_limit"]
        if alerts:
            mit += f"; event alert: {alerts[0].get('message')}"
        return Outcome(False, f"fork stopped after {n} processes: {run.first('INFO:') or ''}".strip(), mit,
                       {"output": run.output})


class MemoryBomb(Attack):
    name = "memory_bomb"
    title = "memory bomb"
    technique = (f"allocate and touch {MEGS} MiB (bounded): without a limit a real one pushes the host into "
                 "its global OOM killer, which may pick any process")
    weak = "no -m/--memory (docker's default)"
    stops_it = ("-m 64m: the memory controller charges every page to the container's cgroup and its OOM "
                "killer kills inside that cgroup only (memory.limit_in_bytes / memory.max)")
    requires = ("memory_limit",)

    def skip_reason(self, lab: Lab) -> str | None:
        why = _cgroup_missing("memory")
        return f"needs memory limit: {why}" if why else None

    def config(self, lab: Lab, profile: str) -> dict:
        if profile == "default":
            return {"limits": {"memory": MEMORY_LIMIT, "memory_swap": MEMORY_LIMIT}}
        return {}

    def execute(self, lab: Lab, profile: str) -> Outcome:
        helper = lab.helper("membomb")
        run = lab.run([helper, str(MEGS)], extra=self.config(lab, profile))
        if run.first("DONE:"):
            return Outcome(True, f"the container allocated {MEGS} MiB; nothing bounded it",
                           details={"output": run.output})
        got = run.lines("ALLOCATED:")
        oom = [e for e in run.events if e.get("alert") == "oom" or e.get("type") == "oom"]
        limit = run.step("cgroup", contains="memory.limit_in_bytes") or run.step("cgroup", contains="memory.max")
        mit = step_text(limit) or "memory limit"
        if oom:
            mit += f"; event {oom[0].get('type')}: {oom[0].get('message', '')}".rstrip(": ")
        return Outcome(False, f"killed (exit {run.exit_code}) after {got[-1] if got else '< 16 MiB'}", mit,
                       {"output": run.output})
