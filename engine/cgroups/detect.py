"""Which cgroup hierarchies this machine has, read from the mount table.

There are three layouts in the wild (Documentation/admin-guide/cgroup-v2.rst, "Mounting"):

* unified: one cgroup2 mount at /sys/fs/cgroup holding every controller;
* legacy: one cgroup (v1) mount per controller, e.g. /sys/fs/cgroup/memory;
* hybrid: v1 mounts for the controllers plus a cgroup2 mount (usually /sys/fs/cgroup/unified)
  that holds no controllers or only the few not bound to v1. A controller can be bound to one
  hierarchy at a time, so whatever sits on v1 is absent from the v2 side.

We tell them apart by the filesystem type of each mount in /proc/self/mountinfo ("cgroup" vs
"cgroup2"), like runc's and youki's detection, and read cgroup.controllers at the cgroup2 root
to learn which controllers the v2 side really holds.
"""

from __future__ import annotations

import json
import os

from engine.record import asdict, dataclass, field

DEFAULT_ROOT = "/sys/fs/cgroup"

# Controllers a v1 mount can carry (Documentation/admin-guide/cgroup-v1/*). Anything else in
# the super options (rw, clone_children, noprefix, release_agent=, ...) is a mount option.
V1_CONTROLLER_NAMES = frozenset({
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "net_prio",
    "blkio", "perf_event", "hugetlb", "pids", "rdma", "misc",
})


@dataclass
class Layout:
    """The cgroup layout of the host: kind, v1 mounts per controller, and the cgroup2 side."""

    kind: str  # "unified" | "legacy" | "hybrid" | "none"
    v1: dict[str, str] = field(default_factory=dict)  # controller (or "name=systemd") -> mountpoint
    v2_mount: str | None = None
    v2_controllers: list[str] = field(default_factory=list)
    kernel: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def rebased(self, root: str, old_root: str = DEFAULT_ROOT) -> Layout:
        """The same layout with mountpoints under ``old_root`` moved under ``root`` (fake trees)."""
        if os.path.normpath(root) == os.path.normpath(old_root):
            return self
        return Layout(
            kind=self.kind,
            v1={c: _rebase(m, root, old_root) for c, m in self.v1.items()},
            v2_mount=_rebase(self.v2_mount, root, old_root) if self.v2_mount else None,
            v2_controllers=list(self.v2_controllers),
            kernel=self.kernel,
        )


def _rebase(path: str, root: str, old_root: str) -> str:
    old = os.path.normpath(old_root)
    if path == old:
        return os.path.normpath(root)
    if path.startswith(old + "/"):
        return os.path.join(root, path[len(old) + 1:])
    return path


def _unescape(field_text: str) -> str:
    r"""mountinfo escapes space, tab, newline and backslash as octal (\040 ...), see proc(5)."""
    if "\\" not in field_text:
        return field_text
    out, i = [], 0
    while i < len(field_text):
        code = field_text[i + 1:i + 4]
        if field_text[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field_text[i])
            i += 1
    return "".join(out)


@dataclass
class _Mount:
    mountpoint: str
    fstype: str
    super_options: list[str]


def parse_mountinfo(text: str) -> list[_Mount]:
    """The mounts of type cgroup or cgroup2 in mountinfo text (proc(5) "/proc/pid/mountinfo")."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if len(fields) < sep + 4 or len(fields) < 5:
            continue
        fstype = fields[sep + 1]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        mounts.append(_Mount(_unescape(fields[4]), fstype, fields[sep + 3].split(",")))
    return mounts


def _v1_controllers(options: list[str]) -> list[str]:
    names = [o for o in options if o in V1_CONTROLLER_NAMES]
    names += [o for o in options if o.startswith("name=")]
    return names


def _read_controllers(mount: str) -> list[str]:
    try:
        with open(os.path.join(mount, "cgroup.controllers")) as f:
            return f.read().split()
    except OSError:
        return []


def detect(
    mountinfo: str = "/proc/self/mountinfo",
    *,
    text: str | None = None,
    root: str | None = None,
    kernel: str | None = None,
) -> Layout:
    """Detect the layout from mountinfo (a path, or ``text`` directly for tests).

    ``root`` rebases mountpoints under /sys/fs/cgroup onto a fake tree, both for reading the v2
    cgroup.controllers file and in the returned layout.
    """
    if text is None:
        with open(mountinfo) as f:
            text = f.read()
    v1: dict[str, str] = {}
    v2_mount: str | None = None
    for m in parse_mountinfo(text):
        if m.fstype == "cgroup2":
            # The first cgroup2 mount wins; bind mounts of it elsewhere are the same hierarchy.
            v2_mount = v2_mount or m.mountpoint
            continue
        for c in _v1_controllers(m.super_options):
            v1.setdefault(c, m.mountpoint)
    has_v1 = any(not c.startswith("name=") for c in v1)
    if has_v1:
        kind = "hybrid" if v2_mount else "legacy"
    else:
        kind = "unified" if v2_mount else "none"
    layout = Layout(kind=kind, v1=v1, v2_mount=v2_mount, kernel=kernel or os.uname().release)
    if root is not None:
        layout = layout.rebased(root)
    if layout.v2_mount:
        layout.v2_controllers = _read_controllers(layout.v2_mount)
    return layout
