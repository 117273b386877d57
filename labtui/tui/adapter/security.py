"""The security tab: the command's capability sets, no_new_privs and seccomp (its
/proc/PID/status), the resolved seccomp profile, the denials seen, and docker's masked paths."""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field

from engine import api, capabilities, paths, procfs, state
from engine import security as engine_security
from labtui.tui.adapter.base import ERRORS, init_pid, load, status_fields
from labtui.tui.adapter.streams import Tail

SECCOMP_MODES = {"0": "disabled", "1": "strict", "2": "filter"}

decode_caps = capabilities.decode
"""A capability bit mask (hex as in /proc/PID/status, or an int) to cap_* names (capabilities(7))."""


@dataclass
class CapSet:
    field: str
    hex: str
    names: list[str]


@dataclass
class MaskedPath:
    path: str
    kind: str  # "masked" or "read-only"
    mounted: bool  # a mount on exactly this path in the container's /proc/PID/mountinfo
    detail: str = ""  # the mount's source/fstype and options


@dataclass
class SecurityView:
    running: bool
    pid: int | None = None
    which: str = ""
    caps: list[CapSet] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    no_new_privs: str = "?"
    seccomp: str = "?"
    seccomp_filters: str = "?"
    uids: str = ""
    init_cap_eff: str = ""
    config: dict = field(default_factory=dict)
    profile: dict = field(default_factory=dict)
    """inspect's "Security" section (engine.security.inspect_extra): seccomp mode and profile, denial
    stats, masked/read-only paths, user namespace maps."""
    plan: dict = field(default_factory=dict)
    """The resolved seccomp profile's summary: default action, rule and allowed-syscall counts, arches."""
    denials: list[dict] = field(default_factory=list)
    """The newest seccomp_denied events of this container (newest first, at most DENIALS_SHOWN)."""
    denial_events: int = 0
    masked: list[MaskedPath] = field(default_factory=list)


SECURITY_KEYS = ("security", "cap_add", "cap_drop", "privileged", "seccomp", "userns", "no_new_privileges",
                 "security_opt", "apparmor", "user")
CAP_SETS = ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb")


def security_view(cid: str) -> SecurityView:
    c = load(cid)
    init = init_pid(c)
    if not init or c is None:
        return SecurityView(running=False)
    main = procfs.first_child(init)  # the command, once labtui's init forked it
    pid = main or init
    st = status_fields(pid)
    caps = [CapSet(f, st.get(f, "0"), decode_caps(st.get(f, "0"))) for f in CAP_SETS]
    every = set(decode_caps(capabilities.to_mask(capabilities.all_caps())))  # what this kernel has
    return SecurityView(
        running=True, pid=pid, which="the command" if main else "init", caps=caps,
        dropped=sorted(every - set(caps[2].names)), no_new_privs=st.get("NoNewPrivs", "?"),
        seccomp=SECCOMP_MODES.get(st.get("Seccomp", ""), st.get("Seccomp", "?")),
        seccomp_filters=st.get("Seccomp_filters", "-"), uids=st.get("Uid", ""),
        init_cap_eff=status_fields(init).get("CapEff", "") if main else "",
        config={k: c.config[k] for k in SECURITY_KEYS if k in c.config},
        profile=_security_section(cid), plan=_seccomp_summary(c), masked=masked_paths(init),
        **_denial_feed(cid),
    )


DENIALS_SHOWN = 10


def _security_section(cid: str) -> dict:
    try:
        return dict(api.inspect(cid).get("Security") or {})
    except ERRORS:
        return {}


_PLAN_CACHE: dict[tuple[str, str], dict] = {}


def _seccomp_summary(c: state.Container) -> dict:
    """The container's resolved seccomp profile, summarised (resolved once per container config)."""
    key = (c.id, json.dumps((c.config.get("security") or {}), sort_keys=True, default=str))
    if key not in _PLAN_CACHE:
        try:
            plan = engine_security.seccomp_plan(c.config)
            _PLAN_CACHE[key] = plan.summary() if plan is not None else {}
        except ERRORS:  # a profile file gone or broken since the container was created: show nothing
            _PLAN_CACHE[key] = {}
    return _PLAN_CACHE[key]


class _DenialFeed:
    def __init__(self, cid: str) -> None:
        self.tail = Tail(paths.events_stream(),
                         lambda ev: ev.get("container") == cid and ev.get("type") == "seccomp_denied")
        self.last: collections.deque[dict] = collections.deque(maxlen=DENIALS_SHOWN)
        self.count = 0

    def read(self) -> dict:
        new = self.tail.read()
        self.count += len(new)
        self.last.extend(new)
        return {"denials": list(reversed(self.last)), "denial_events": self.count}


_FEEDS: dict[str, _DenialFeed] = {}


def _denial_feed(cid: str) -> dict:
    """The container's seccomp_denied events from the host-wide stream: the whole history on the
    first call, then only what is new (one follower per container)."""
    feed = _FEEDS.get(cid)
    if feed is None:
        feed = _FEEDS[cid] = _DenialFeed(cid)
    return feed.read()


def masked_paths(pid: int) -> list[MaskedPath]:
    """docker's masked and read-only paths (engine.security's lists) and whether each is a mount
    point in the container (its init's /proc/PID/mountinfo; paths are relative to its root)."""
    # The last mount on a point wins: it is the one the container sees.
    mounts = {m["mountpoint"]: f"{m['source']} {m['fstype']} {m['options']}" for m in procfs.mountinfo(pid)}
    out = []
    for kind, names in (("masked", engine_security.MASKED_PATHS), ("read-only", engine_security.READONLY_PATHS)):
        for path in names:
            out.append(MaskedPath(path, kind, path in mounts, mounts.get(path, "")))
    return out
