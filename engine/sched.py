"""Scheduling: nice value and scheduling policy of the container's command (sched(7)).

Applied in the command's process right before execve, before capabilities are dropped (raising
priority or choosing a real-time policy needs CAP_SYS_NICE, which containers do not keep).
"""

from __future__ import annotations

import os

from engine.errors import EngineError, InvalidArgument
from engine.steps import Recorder

POLICIES = {
    "other": os.SCHED_OTHER, "batch": os.SCHED_BATCH, "idle": os.SCHED_IDLE,
    "fifo": os.SCHED_FIFO, "rr": os.SCHED_RR,
}
CHRT_FLAG = {"other": "-o", "batch": "-b", "idle": "-i", "fifo": "-f", "rr": "-r"}
RT_RUNTIME_US = 10000  # per container, out of cpu.rt_period_us (1 s): 1 % of a CPU for real-time


def validate(extra: dict) -> None:
    nice = extra.get("nice")
    if nice is not None:
        try:
            nice = int(nice)
        except (TypeError, ValueError):
            raise InvalidArgument(f"invalid --nice '{nice}': expected an integer from -20 to 19") from None
        if not -20 <= nice <= 19:
            raise InvalidArgument(f"invalid --nice {nice}: the range is -20 (most favourable) to 19")
        extra["nice"] = nice
    policy = extra.get("sched_policy")
    prio = extra.get("sched_priority")
    if policy is None:
        if prio is not None:
            raise InvalidArgument("--sched-priority needs --sched-policy fifo or rr")
        return
    if policy not in POLICIES:
        raise InvalidArgument(f"invalid --sched-policy '{policy}': one of {', '.join(POLICIES)}")
    rt = policy in ("fifo", "rr")
    if prio is None:
        prio = 1 if rt else 0
    try:
        prio = int(prio)
    except (TypeError, ValueError):
        raise InvalidArgument(f"invalid --sched-priority '{prio}'") from None
    lo, hi = (1, 99) if rt else (0, 0)
    if not lo <= prio <= hi:
        raise InvalidArgument(f"invalid --sched-priority {prio} for {policy}: the range is {lo}-{hi}")
    extra["sched_priority"] = prio


def prepare_cgroup(rec: Recorder, cfg: dict, cgroup: object) -> None:
    """Real-time tasks in a v1 cpu cgroup need real-time runtime granted to that cgroup and its
    parents (Documentation/scheduler/sched-rt-group.rst): a new cgroup has cpu.rt_runtime_us 0,
    and sched_setscheduler(SCHED_FIFO) in it fails with EPERM."""
    if cfg.get("sched_policy") not in ("fifo", "rr"):
        return
    cpu = getattr(cgroup, "paths", dict)().get("cpu")
    if not cpu or not os.path.exists(os.path.join(cpu, "cpu.rt_runtime_us")):
        return  # v2, or a kernel without RT group scheduling: no per-cgroup budget to grant
    parent = os.path.dirname(cpu)
    for d, value in ((parent, RT_RUNTIME_US * 10), (cpu, RT_RUNTIME_US)):
        path = os.path.join(d, "cpu.rt_runtime_us")
        with open(path) as f:
            if int(f.read()) >= value:
                continue
        try:
            with rec.step("cgroup", "write", target=path, value=str(value), shell=f"echo {value} > {path}"):
                with open(path, "w") as f:
                    f.write(str(value))
        except EngineError as e:
            raise EngineError(f"cannot grant real-time runtime for --sched-policy {cfg['sched_policy']}: {e}. "
                              "The kernel refuses when the parent cgroups have no real-time budget left "
                              "(cpu.rt_runtime_us)") from None


def apply(rec: Recorder, cfg: dict) -> None:
    nice = cfg.get("nice")
    if nice is not None:
        with rec.step("process", "setpriority", target="PRIO_PROCESS 0", value=str(nice),
                      shell=f"renice -n {nice} -p $$"):
            os.setpriority(os.PRIO_PROCESS, 0, nice)
    policy = cfg.get("sched_policy")
    if policy is None:
        return
    prio = int(cfg.get("sched_priority") or 0)
    try:
        with rec.step("process", "sched_setscheduler", target="0", value=f"SCHED_{policy.upper()} {prio}",
                      shell=f"chrt {CHRT_FLAG[policy]} -p {prio} $$"):
            os.sched_setscheduler(0, POLICIES[policy], os.sched_param(prio))
    except EngineError as e:
        why = ""
        if policy in ("fifo", "rr"):
            why = (" (real-time scheduling needs CAP_SYS_NICE and, on cgroup v1, real-time runtime in the "
                   "container's cpu cgroup: cpu.rt_runtime_us)")
        raise EngineError(f"{e}{why}") from None
