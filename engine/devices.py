"""Devices: docker's device allowlist and --device.

What a container may open is limited twice:
- /dev holds only the standard nodes (engine/rootfs.setup_dev) and whatever --device adds;
- the device cgroup refuses open(2) of any other node, even one the container makes itself with
  mknod (it keeps CAP_MKNOD, like docker, so that is possible).

On cgroup v1 the second part is the devices controller: `devices.deny` "a" (everything), then the
allowlist written into `devices.allow` one rule per write (Documentation/admin-guide/cgroup-v1/
devices.rst). On cgroup v2 there is no such file: runc and crun attach a BPF_PROG_TYPE_CGROUP_DEVICE
program to the container's cgroup instead. labtui does not load BPF programs; on a v2 host it
relies on the fixed /dev, and docs/SECURITY.md says so.
"""

from __future__ import annotations

import os
import stat

from engine.errors import InvalidArgument
from engine.steps import Recorder

# (type, major, minor, access); "*" is any. docker/runc's default (libcontainer/specconv AllowedDevices
# plus the default spec), REFERENCE "Device allowlist".
ALLOWLIST = [
    ("c", "*", "*", "m"),  # mknod of any char device (opening is what is refused)...
    ("b", "*", "*", "m"),  # ...and of any block device
    ("c", 1, 3, "rwm"),  # /dev/null
    ("c", 1, 5, "rwm"),  # /dev/zero
    ("c", 1, 7, "rwm"),  # /dev/full
    ("c", 1, 8, "rwm"),  # /dev/random
    ("c", 1, 9, "rwm"),  # /dev/urandom
    ("c", 5, 0, "rwm"),  # /dev/tty
    ("c", 5, 1, "rwm"),  # /dev/console
    ("c", 5, 2, "rwm"),  # /dev/ptmx
    ("c", 136, "*", "rwm"),  # /dev/pts/*
]


def rule_text(rule: tuple) -> str:
    t, major, minor, access = rule
    return f"{t} {major}:{minor} {access}"


def parse_device(spec: str) -> dict:
    """docker's --device HOST[:CONTAINER][:PERMISSIONS], PERMISSIONS a combination of r, w, m."""
    parts = spec.split(":")
    if not parts[0] or len(parts) > 3:
        raise InvalidArgument(f"invalid --device '{spec}': expected HOST[:CONTAINER][:rwm]")
    host = parts[0]
    ctr = host
    perms = "rwm"
    if len(parts) == 2:
        if parts[1] and set(parts[1]) <= set("rwm") and not parts[1].startswith("/"):
            perms = parts[1]
        else:
            ctr = parts[1]
    elif len(parts) == 3:
        ctr, perms = parts[1] or host, parts[2]
    if not perms or not set(perms) <= set("rwm"):
        raise InvalidArgument(f"invalid --device '{spec}': permissions must be a combination of r, w and m")
    if not host.startswith("/") or not ctr.startswith("/dev/"):
        raise InvalidArgument(f"invalid --device '{spec}': the host path must be absolute and the "
                              "container path under /dev")
    try:
        st = os.stat(host)
    except OSError as e:
        raise InvalidArgument(f"invalid --device '{spec}': {host}: {e.strerror}") from None
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise InvalidArgument(f"invalid --device '{spec}': {host} is not a device node")
    return {"host": host, "container": ctr, "perms": perms, "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
            "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev), "mode": stat.S_IMODE(st.st_mode)}


def extra_devices(config: dict | None) -> list[dict]:
    return list(((config or {}).get("security") or {}).get("devices") or [])


def rules_for(config: dict | None) -> list[tuple]:
    rules = list(ALLOWLIST)
    for d in extra_devices(config):
        rules.append((d["type"], d["major"], d["minor"], d["perms"]))
    return rules


def _config_of_cgroup_dir(devices_cgroup_dir: str) -> dict | None:
    """The container a cgroup directory belongs to (<mount>/<parent>/<container-id>)."""
    from engine import paths, state

    cid = os.path.basename(os.path.normpath(devices_cgroup_dir))
    try:
        return state.read_json(paths.container_dir(cid) / "config.json")
    except (OSError, ValueError):
        return None


def apply_allowlist(rec: Recorder, devices_cgroup_dir: str, config: dict | None = None) -> list[str]:
    """cgroup v1: deny everything, then allow docker's list and the container's --device nodes.

    Written before the container's process joins the cgroup. Returns the rules allowed.
    """
    if config is None:
        config = _config_of_cgroup_dir(devices_cgroup_dir)
    deny = os.path.join(devices_cgroup_dir, "devices.deny")
    allow = os.path.join(devices_cgroup_dir, "devices.allow")
    _write(rec, deny, "a", "deny every device")
    rules = [rule_text(r) for r in rules_for(config)]
    for r in rules:
        _write(rec, allow, r, "allow")
    return rules


def _write(rec: Recorder, path: str, value: str, what: str) -> None:
    with rec.step("cgroup", "write devices", target=path, value=value, shell=f"echo '{value}' > {path}",
                  why=what):
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)


def read_list(devices_cgroup_dir: str) -> list[str]:
    with open(os.path.join(devices_cgroup_dir, "devices.list")) as f:
        return f.read().split("\n")[:-1]


def add_devices(rec: Recorder, root: str, config: dict, bind: bool = False) -> None:
    """--device: the host's node made in the container's /dev (before pivot_root). In a user
    namespace mknod is refused, so the host's node is bind-mounted instead (as runc does)."""
    from engine import rootfs
    from engine import syscalls as sc

    for d in extra_devices(config):
        target = rootfs.secure_join(root, d["container"])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if bind:
            rootfs.ensure_mountpoint(target, False)
            rootfs.mount(rec, d["host"], target, None, sc.MS_BIND, shell=f"mount --bind {d['host']} {target}",
                         op="bind device", mechanism="device")
            continue
        kind = stat.S_IFCHR if d["type"] == "c" else stat.S_IFBLK
        mode = d.get("mode", 0o660)
        with rec.step("device", "mknod", target=target, value=f"{d['type']} {d['major']}:{d['minor']} {mode:o}",
                      shell=f"mknod -m {mode:o} {target} {d['type']} {d['major']} {d['minor']}"):
            os.mknod(target, mode | kind, os.makedev(d["major"], d["minor"]))
            os.chmod(target, mode)
