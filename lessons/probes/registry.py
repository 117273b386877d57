"""The probe registry: what a lesson's checks ask of the kernel, one small function each.

A probe reads the kernel (through the engine's public API: engine.api, engine.procfs, the step and
event streams, netlink) and returns an Observation: what it saw, and whether that is what the
check expects. It never looks at what the student typed. Each probe declares its parameters, so
the schema rejects a misspelt field with the file and line (lessons/core/schema.py).

    @probe("status_field", "a field of /proc/PID/status of a container's process",
           required={"container": str, "field": str}, optional={"process": str, **EXPECT})
    def status_field(ctx, p): ...

EXPECT is the shared vocabulary of expectations (equals, contains, matches, min, max, ...), applied
to the observed value by expect(); a probe with its own notion of success returns passed itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

EXPECT: dict[str, type | tuple[type, ...]] = {
    "equals": (str, int), "not_equals": (str, int), "contains": str, "not_contains": str,
    "matches": str, "min": (int, float), "max": (int, float), "exists": bool,
}


class ParamError(Exception):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ProbeError(Exception):
    """The probe could not look (the container is gone, a file is missing): the check fails with
    this as its log line, never with a traceback."""


@dataclass
class Observation:
    passed: bool
    observed: str = ""  # what was seen, shown to the student ("CapEff 00000000a80425fb")
    log: list[str] = field(default_factory=list)


@dataclass
class Context:
    """What every probe may use: the evaluation's clock and the lesson's own names. The engine's
    state directory is the process's (LABTUI_ROOT): a replay or a grade runs in a private one."""

    lesson_id: str = ""
    since: float = 0.0  # only steps and events after this time count (the lesson's start)
    cache: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Probe:
    name: str
    summary: str
    fn: Callable[[Context, dict], Observation]
    required: dict[str, type | tuple[type, ...]]
    optional: dict[str, type | tuple[type, ...]]
    describe_fn: Callable[[dict], str] | None = None

    def validate(self, params: dict) -> None:
        for key in self.required:
            if key not in params:
                raise ParamError(f"{self.name} needs the field '{key}'")
        for key, value in params.items():
            want = self.required.get(key) or self.optional.get(key)
            if want is None:
                allowed = ", ".join(sorted({*self.required, *self.optional}))
                raise ParamError(f"unknown field '{key}' for a {self.name} check (its fields: {allowed})", key)
            if isinstance(value, bool) and want is not bool and (not isinstance(want, tuple) or bool not in want):
                raise ParamError(f"field '{key}' must be {_type_name(want)}", key)
            if not isinstance(value, want):
                raise ParamError(f"field '{key}' must be {_type_name(want)}", key)
            if key == "matches":
                try:
                    re.compile(value)
                except re.error as e:
                    raise ParamError(f"field 'matches' is not a regular expression: {e}", key) from None

    def describe(self, params: dict) -> str:
        if self.describe_fn:
            return self.describe_fn(params)
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        return f"{self.name}: {shown}"

    def run(self, ctx: Context, params: dict) -> Observation:
        try:
            return self.fn(ctx, params)
        except ProbeError as e:
            return Observation(False, "", [str(e)])
        except OSError as e:
            return Observation(False, "", [f"{e.filename or ''}: {e.strerror}".strip(": ")])
        except Exception as e:  # a probe's own bug fails its check, named, instead of the checklist
            return Observation(False, "", [f"the {self.name} probe failed: {type(e).__name__}: {e}"])


def _type_name(t: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "a whole number", float: "a number", bool: "true or false",
             list: "a list", dict: "a table"}
    ts = t if isinstance(t, tuple) else (t,)
    return " or ".join(names.get(x, x.__name__) for x in ts)


_REGISTRY: dict[str, Probe] = {}


def probe(name: str, summary: str, *, required: dict | None = None, optional: dict | None = None,
          describe: Callable[[dict], str] | None = None):
    def wrap(fn: Callable[[Context, dict], Observation]) -> Callable[[Context, dict], Observation]:
        _REGISTRY[name] = Probe(name, summary, fn, dict(required or {}), dict(optional or {}), describe)
        return fn

    return wrap


def expect(observed: object, params: dict) -> tuple[bool, list[str]]:
    """Apply the EXPECT fields of params to an observed value; (passed, why-not lines)."""
    text = "" if observed is None else str(observed).strip()
    why: list[str] = []
    if "exists" in params and (observed is not None) != params["exists"]:
        why.append("expected it to exist" if params["exists"] else "expected it to be absent")
    if "equals" in params and text != str(params["equals"]).strip():
        why.append(f"expected {params['equals']!r}, saw {text!r}")
    if "not_equals" in params and text == str(params["not_equals"]).strip():
        why.append(f"expected anything but {text!r}")
    if "contains" in params and str(params["contains"]) not in text:
        why.append(f"expected it to contain {params['contains']!r}, saw {text!r}")
    if "not_contains" in params and str(params["not_contains"]) in text:
        why.append(f"expected it not to contain {params['not_contains']!r}")
    if "matches" in params and not re.search(params["matches"], text, re.M):
        why.append(f"expected it to match /{params['matches']}/, saw {text!r}")
    for key, ok in (("min", lambda a, b: a >= b), ("max", lambda a, b: a <= b)):
        if key in params:
            try:
                num = float(text)
            except ValueError:
                why.append(f"expected a number, saw {text!r}")
                continue
            if not ok(num, params[key]):
                why.append(f"expected {'at least' if key == 'min' else 'at most'} {params[key]}, saw {text}")
    return (not why, why)
