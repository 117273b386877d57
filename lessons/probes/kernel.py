"""Probes of the kernel's objects: processes, namespaces, cgroups, links, addresses, files."""

from __future__ import annotations

from lessons.probes import EXPECT, Context, Observation, ProbeError, expect, probe


def _container(name: str):
    from engine import state
    from engine.errors import NotFound

    try:
        return state.resolve(name)
    except NotFound:
        raise ProbeError(f"there is no container named {name!r}") from None


@probe("container", "a container's status, exit code and restarts, as the runtime reports them",
       required={"container": str},
       optional={"status": str, "exit_code": int, "restarts_min": int, **EXPECT},
       describe=lambda p: f"container {p['container']} is {p.get('status', 'there')}")
def container(ctx: Context, p: dict) -> Observation:
    c = _container(p["container"])
    status = c.status
    why: list[str] = []
    if "status" in p and status != p["status"]:
        why.append(f"it is {status}, not {p['status']}")
    if "exit_code" in p and c.state.get("exit_code") != p["exit_code"]:
        why.append(f"its exit code is {c.state.get('exit_code')}, not {p['exit_code']}")
    if "restarts_min" in p and int(c.state.get("restart_count", 0) or 0) < p["restarts_min"]:
        why.append(f"it restarted {c.state.get('restart_count', 0)} times, fewer than {p['restarts_min']}")
    ok, more = expect(status, {k: v for k, v in p.items() if k in EXPECT})
    return Observation(not why and ok, status, why + more)
