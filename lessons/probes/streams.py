"""Probes of what the runtime recorded: the step stream and the event stream.

Steps are written by the code that did the kernel operation, at that moment, with its real
result (docs/steps-and-events.md); events by the supervisor (died, oom, restarted,
health_status, seccomp_denied, ...). A check reads them, never what the student typed.

match_step() and match_event() are public: the lesson session uses the same matching for hints
triggered by a step or an event (a hint's on_step / on_event table).
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from lessons.probes import target
from lessons.probes.registry import Context, Observation, ProbeError, probe

STEP_FIELDS = ("mechanism", "op", "result", "target", "value", "target_matches", "value_matches")


def read_jsonl(path: Path | str) -> list[dict]:
    """Every complete record of a JSON-lines stream (engine.jsonl.read_all: a line still being
    appended, or damaged, is passed over rather than failing the check)."""
    from engine import jsonl

    return [r for r in jsonl.read_all(path) if isinstance(r, dict)]


def _regex(pattern: object, field: str) -> re.Pattern:
    try:
        return re.compile(str(pattern))
    except re.error as e:
        raise ProbeError(f"{field} is not a regular expression: {e}") from None


def check_step_table(want: dict, where: str = "the check") -> None:
    """A table of step fields (a check's, its `before`, a hint's on_step) names known fields and
    valid regular expressions; else ProbeError naming the field."""
    for key, value in want.items():
        if key not in STEP_FIELDS:
            raise ProbeError(f"{where}: unknown step field {key!r} (step fields: {', '.join(STEP_FIELDS)})")
        if key.endswith("_matches"):
            _regex(value, key)


def match_step(step: dict, want: dict) -> bool:
    """Whether a step has every field of `want`: mechanism, op, target, value equal; result "ok"
    or an errno name (any case); target_matches / value_matches regular expressions searched."""
    for key, value in want.items():
        if key == "result":
            if str(step.get("result", "")).lower() != str(value).lower():
                return False
        elif key.endswith("_matches"):
            if not re.search(str(value), str(step.get(key[: -len("_matches")], ""))):
                return False
        elif str(step.get(key, "")) != str(value):
            return False
    return True


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()  # exitCode (docker's spelling) -> exit_code


def match_event(ev: dict, want: dict) -> bool:
    """Whether an event has every field of `want` (type and attributes; docker's camelCase names
    such as exitCode find labtui's exit_code)."""
    for key, value in want.items():
        k = key if key in ev else _snake(key)
        if k not in ev:
            return False
        seen = ev[k]
        if seen != value and str(seen).lower() != str(value).lower():
            return False
    return True


def _ids_by_name(name: str) -> set[str]:
    """Container IDs that carried this name (from the event stream's records): a removed
    container's steps are still in the host-wide stream."""
    from engine import events

    return {e["container"] for e in events.read_events() if _name_matches(e.get("name"), name) and e.get("container")}


def _name_matches(recorded: str | None, name: str) -> bool:
    """A name, or a glob (`lab-release_agent-weak-*`): the attack lab names its containers with a
    random suffix and removes them, so a lesson finds their recorded steps and events by pattern."""
    if any(ch in name for ch in "*?["):
        return fnmatch.fnmatchcase(recorded or "", name)
    return recorded == name


def container_steps(name: str, since: float = 0.0) -> list[dict]:
    """The container's steps since `since`, in the order they happened (ts, then seq: steps of
    the container's child and of its supervisor can be numbered in a different order from the one
    they ran in: docs/steps-and-events.md). A removed container's come from the host-wide stream."""
    from engine import paths

    try:
        c = target.container(name)
        recs = read_jsonl(c.dir / "steps.jsonl")
    except ProbeError:
        ids = _ids_by_name(name)
        if not ids:
            raise ProbeError(f"there is no container named {name!r}, and none was recorded") from None
        recs = [r for r in read_jsonl(paths.steps_stream()) if r.get("container") in ids]
    recs = [r for r in recs if float(r.get("ts") or 0) >= since]
    recs.sort(key=lambda r: (float(r.get("ts") or 0), int(r.get("seq") or 0)))
    return recs


def container_events(name: str | None, since: float = 0.0) -> list[dict]:
    """Events since `since` of the container named (matched by its ID or its name: a removed
    container's count too), or of every container for None."""
    from engine import events

    ids: set[str] = set()
    if name is not None:
        try:
            ids = {target.container(name).id}
        except ProbeError:
            pass
    return [e for e in events.read_events()
            if float(e.get("ts") or 0) >= since
            and (name is None or _name_matches(e.get("name"), name) or e.get("container") in ids)]


def _bounds(p: dict) -> tuple[int, int | None]:
    """(count_min, count_max): at least one by default, none when count_max = 0 (never happened)."""
    hi = p.get("count_max")
    return p.get("count_min", 1 if hi is None else min(1, hi)), hi


def _step_text(s: dict) -> str:
    shown = f"#{s.get('seq')} {s.get('mechanism')} {s.get('op')}"
    if s.get("target"):
        shown += f" {s['target']}"
    return shown + f" -> {s.get('result')}"


@probe("step", "a kernel step the runtime took for a container (mechanism, op, result), optionally in order",
       required={"container": str},
       optional={"mechanism": str, "op": str, "result": str, "target": str, "value": str, "target_matches": str,
                 "value_matches": str, "before": dict, "count_min": int, "count_max": int},
       describe=lambda p: f"{p['container']}: step {p.get('mechanism', '*')} {p.get('op', '*')}"
                          + (f" -> {p['result']}" if "result" in p else ""))
def step(ctx: Context, p: dict) -> Observation:
    """count_min (default 1) and count_max bound the matching steps (count_max = 0: it never
    happened); `before` (a table of step fields) requires the first matching step to have run
    before the first step matching that table: "the uid_map write succeeded before execve"."""
    want = {k: v for k, v in p.items() if k in STEP_FIELDS}
    check_step_table(want)
    later = p.get("before")
    if later is not None:
        check_step_table(later, "before")
    steps = container_steps(p["container"], ctx.since)
    found = [s for s in steps if match_step(s, want)]
    why: list[str] = []
    lo, hi = _bounds(p)
    if len(found) < lo:
        why.append(f"{len(found)} matching step{'s' if len(found) != 1 else ''}, expected at least {lo}")
        near = [s for s in steps if all(s.get(k) == want[k] for k in ("mechanism", "op") if k in want)]
        if near and len(near) < len(steps):
            why.append("steps of that kind: " + "; ".join(_step_text(s) for s in near[-3:]))
    if hi is not None and len(found) > hi:
        why.append(f"{len(found)} matching steps, expected at most {hi}: " + _step_text(found[0]))
    if later is not None and found:
        then = next((s for s in steps if match_step(s, later)), None)
        if then is None:
            why.append(f"no step matching {later} happened")
        elif steps.index(found[0]) > steps.index(then):
            why.append(f"{_step_text(then)} came first, before {_step_text(found[0])}")
    shown = f"{len(found)} matching" + (f", first {_step_text(found[0])}" if found else "")
    return Observation(not why, shown, why)


@probe("event", "an event of a container's timeline (died with a code, oom, seccomp_denied, restarted, ...)",
       required={"type": str},
       optional={"container": str, "fields": dict, "count_min": int, "count_max": int},
       describe=lambda p: f"{p.get('container', 'a container')}: event {p['type']}"
                          + (f" {p['fields']}" if p.get("fields") else ""))
def event(ctx: Context, p: dict) -> Observation:
    """fields is a table of attributes the event must carry ({exit_code = 137}, {syscall = "mount"},
    {status = "healthy"}); count_min defaults to 1, count_max = 0 means it must not happen."""
    want = {"type": p["type"], **p.get("fields", {})}
    evs = container_events(p.get("container"), ctx.since)
    found = [e for e in evs if match_event(e, want)]
    why: list[str] = []
    lo, hi = _bounds(p)
    if len(found) < lo:
        why.append(f"{len(found)} matching event{'s' if len(found) != 1 else ''}, expected at least {lo}")
        same = [e for e in evs if e.get("type") == p["type"]]
        if same:
            attrs = {k: v for k, v in same[-1].items() if k not in ("ts", "container", "name", "type")}
            why.append(f"the last {p['type']} event: {attrs}")
    if hi is not None and len(found) > hi:
        why.append(f"{len(found)} matching events, expected at most {hi}")
    return Observation(not why, f"{len(found)} {p['type']} event{'s' if len(found) != 1 else ''}", why)
