"""Host features a lesson may require (`requires` in lesson.toml), each checked against this host.

check(name) -> (ok, reason): the reason says what is missing in words a student can act on
("cgroup v2 here holds only hugetlb: ...") and becomes the lesson's "unsupported" verdict. A lesson
this host cannot run is never a failure: `lesson list` shows why, `lesson start` refuses with the
reason, `lesson replay` exits 77 (the "skipped" code of automake's test harness).

Each check reads the kernel (mount table, /proc) or asks the engine (criu check); none changes
anything. Results are kept for the process: `criu check` takes a while and the host does not
change under one command.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable

from lessons.core.model import Lesson
from lessons.core.schema import FEATURES

V2_CONTROLLERS = ("memory", "pids", "cpu")  # what the cgroup-v2 lessons write to
UNSUPPORTED_EXIT = 77

_CACHE: dict[str, tuple[bool, str]] = {}


def _layout():
    from engine import cgroups

    return cgroups.host_layout()


def _cgroup_v1() -> tuple[bool, str]:
    layout = _layout()
    controllers = sorted(c for c in layout.v1 if not c.startswith("name="))
    if controllers:
        return True, f"cgroup v1 controllers: {', '.join(controllers)}"
    return False, "no cgroup v1 controller is mounted (this host has cgroup v2 only)"


def _cgroup_v2() -> tuple[bool, str]:
    layout = _layout()
    if not layout.v2_mount:
        return False, "no cgroup2 filesystem is mounted (cgroup v1 only)"
    have = set(layout.v2_controllers)
    missing = [c for c in V2_CONTROLLERS if c not in have]
    if not missing:
        return True, f"cgroup v2 at {layout.v2_mount} with {', '.join(sorted(have))}"
    held = ", ".join(sorted(have)) or "no controller"
    return False, (f"cgroup v2 at {layout.v2_mount} holds only {held} (missing {', '.join(missing)}): "
                   f"a {layout.kind} host, where the controllers are bound to v1")


def _userns() -> tuple[bool, str]:
    if not os.path.exists("/proc/self/ns/user"):
        return False, "the kernel has no user namespaces (CONFIG_USER_NS)"
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            limit = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return True, "user namespaces"
    if limit <= 0:
        return False, "user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0)"
    return True, f"user namespaces (max {limit})"


def _criu() -> tuple[bool, str]:
    from engine.checkpoint import require_criu
    from engine.errors import EngineError

    try:
        path, version = require_criu()
    except EngineError as e:
        return False, str(e)
    return True, f"CRIU {version} at {path}, `criu check` passed"


def _strace() -> tuple[bool, str]:
    from engine.errors import EngineError
    from engine.strace import strace_binary

    try:
        return True, f"strace at {strace_binary()}"
    except EngineError as e:
        return False, str(e)


def _overlay() -> tuple[bool, str]:
    # The module may be loadable and not loaded yet: the first overlay mount loads it.
    if _filesystem("overlay") or os.path.isdir("/sys/module/overlay") or _module_file("overlay"):
        return True, "overlay filesystem"
    return False, "the kernel has no overlay filesystem (not in /proc/filesystems, no module)"


def _seccomp() -> tuple[bool, str]:
    if os.path.exists("/proc/sys/kernel/seccomp/actions_avail"):
        return True, "seccomp filters"
    return False, "the kernel was built without seccomp filters (no /proc/sys/kernel/seccomp)"


def _filesystem(name: str) -> bool:
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1] == name for line in f if line.strip())
    except OSError:
        return False


def _module_file(name: str) -> bool:
    base = f"/lib/modules/{platform.release()}/kernel/fs/{name}"
    return os.path.isdir(base)


CHECKS: dict[str, Callable[[], tuple[bool, str]]] = {
    "cgroup-v1": _cgroup_v1, "cgroup-v2": _cgroup_v2, "userns": _userns, "criu": _criu,
    "strace": _strace, "overlay": _overlay, "seccomp": _seccomp,
}
assert set(CHECKS) == set(FEATURES), "a feature of the schema has no check here"


def check(feature: str) -> tuple[bool, str]:
    """(ok, reason) for one feature of lessons.core.schema.FEATURES."""
    if feature not in _CACHE:
        fn = CHECKS.get(feature)
        if fn is None:
            return False, f"unknown feature {feature!r}"
        try:
            _CACHE[feature] = fn()
        except OSError as e:  # a host file we could not read: say so rather than guess
            _CACHE[feature] = (False, f"cannot tell whether this host has {feature}: {e}")
    return _CACHE[feature]


def unsupported(lesson: Lesson) -> str | None:
    """Why this host cannot run the lesson (every missing feature), or None when it can."""
    reasons = []
    for feature in lesson.requires:
        ok, reason = check(feature)
        if not ok:
            reasons.append(f"{feature}: {reason}")
    return "; ".join(reasons) or None


def host_facts() -> dict:
    """What a transcript's header says about the host the lesson ran on."""
    try:
        cgroups = _layout().kind
    except Exception:  # a facts line must never stop a lesson  # noqa: BLE001
        cgroups = "unknown"
    return {"kernel": platform.release(), "cgroups": cgroups, "arch": platform.machine()}


def report() -> dict[str, tuple[bool, str]]:
    """Every feature's verdict on this host (lesson list --format json shows it)."""
    return {f: check(f) for f in FEATURES}
