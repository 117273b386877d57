"""A bundle's config.json (the OCI runtime specification, config.md and config-linux.md), checked.

load(bundle) reads it and checks every field labtui-oci acts on before anything exists: a wrong
field is refused with its path named ("config.json: process.args: ..."), exit code 125. The
checked config is the spec's own dict (its key names), with root.path made absolute and a few
defaults filled in; the modules beside this one act on it.
"""

from __future__ import annotations

import json
import os
import posixpath

from engine.errors import InvalidArgument

NS_TYPES = {  # spec name -> /proc/PID/ns name
    "pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts", "user": "user",
    "cgroup": "cgroup",
}
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
CAP_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}
DEVICE_TYPES = ("c", "b", "u", "p")
U64_MAX = (1 << 64) - 1


class SpecError(InvalidArgument):
    """A config.json field that cannot be used; the message names the field."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"config.json: {where}: {why}")
        self.field = where


def load(bundle: str) -> dict:
    """The bundle's config.json, checked; root.path made absolute (relative to the bundle)."""
    path = os.path.join(bundle, "config.json")
    if not os.path.isdir(bundle):
        raise InvalidArgument(f"bundle {bundle}: not a directory")
    try:
        with open(path) as f:
            cfg = json.load(f)
    except FileNotFoundError:
        raise InvalidArgument(f"bundle {bundle}: no config.json in it") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"config.json: not valid JSON ({e})") from None
    return check(cfg, bundle)


def check(cfg: object, bundle: str, *, need_process: bool = True) -> dict:
    if not isinstance(cfg, dict):
        raise SpecError("(top level)", "must be a JSON object")
    ver = cfg.get("ociVersion")
    if not isinstance(ver, str) or not ver.startswith("1."):
        raise SpecError("ociVersion", f"must be a 1.x version string, not {ver!r}")
    root = _obj(cfg, "root")
    if not isinstance(root.get("path"), str) or not root["path"]:
        raise SpecError("root.path", "must name the container's root filesystem")
    rpath = root["path"] if root["path"].startswith("/") else os.path.join(bundle, root["path"])
    root["path"] = os.path.realpath(rpath)
    if not os.path.isdir(root["path"]):
        raise SpecError("root.path", f"{rpath} is not a directory")
    _opt_bool(root, "readonly", "root.readonly")
    proc = cfg.get("process")
    if proc is None and need_process:
        raise SpecError("process", "is required by create (the command to run)")
    if proc is not None:
        check_process(proc, "process")
    for key in ("hostname", "domainname"):
        if key in cfg and not isinstance(cfg[key], str):
            raise SpecError(key, "must be a string")
    mounts = cfg.setdefault("mounts", [])
    if not isinstance(mounts, list):
        raise SpecError("mounts", "must be a list")
    for i, m in enumerate(mounts):
        _check_mount(m, f"mounts[{i}]")
    linux = cfg.setdefault("linux", {})
    if not isinstance(linux, dict):
        raise SpecError("linux", "must be an object")
    _check_linux(linux)
    if "hostname" in cfg and cfg["hostname"] and not any(n.get("type") == "uts" and not n.get("path")
                                                          for n in linux.get("namespaces", [])):
        raise SpecError("hostname", "needs a new uts namespace (linux.namespaces) to be set")
    hooks = cfg.get("hooks") or {}
    if not isinstance(hooks, dict):
        raise SpecError("hooks", "must be an object")
    for kind, items in hooks.items():
        if kind not in HOOK_KINDS:
            raise SpecError(f"hooks.{kind}", f"unknown hook kind (expected one of {', '.join(HOOK_KINDS)})")
        if not isinstance(items, list):
            raise SpecError(f"hooks.{kind}", "must be a list")
        for j, h in enumerate(items):
            _check_hook(h, f"hooks.{kind}[{j}]")
    cfg["hooks"] = hooks
    ann = cfg.setdefault("annotations", {})
    if not isinstance(ann, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in ann.items()):
        raise SpecError("annotations", "must be an object of string values")
    return cfg


def check_process(proc: object, where: str) -> dict:
    """process (config.json) or an exec's process.json."""
    if not isinstance(proc, dict):
        raise SpecError(where, "must be an object")
    args = proc.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args) or not args[0]:
        raise SpecError(f"{where}.args", "must be a non-empty list of strings (the command)")
    env = proc.setdefault("env", [])
    if not isinstance(env, list) or not all(isinstance(e, str) and "=" in e for e in env):
        raise SpecError(f"{where}.env", 'must be a list of "KEY=value" strings')
    cwd = proc.setdefault("cwd", "/")
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise SpecError(f"{where}.cwd", f"must be an absolute path, not {cwd!r}")
    _opt_bool(proc, "terminal", f"{where}.terminal")
    _opt_bool(proc, "noNewPrivileges", f"{where}.noNewPrivileges")
    user = proc.setdefault("user", {"uid": 0, "gid": 0})
    if not isinstance(user, dict):
        raise SpecError(f"{where}.user", "must be an object")
    for k in ("uid", "gid"):
        if not _uint(user.get(k, 0), 0xFFFFFFFE):
            raise SpecError(f"{where}.user.{k}", "must be an integer 0..4294967294")
        user.setdefault(k, 0)
    if "umask" in user and not _uint(user["umask"], 0o777):
        raise SpecError(f"{where}.user.umask", "must be an integer 0..0777")
    gids = user.setdefault("additionalGids", [])
    if not isinstance(gids, list) or not all(_uint(g, 0xFFFFFFFE) for g in gids):
        raise SpecError(f"{where}.user.additionalGids", "must be a list of integers")
    caps = proc.get("capabilities") or {}
    if not isinstance(caps, dict):
        raise SpecError(f"{where}.capabilities", "must be an object")
    from engine.capabilities import CAP_BITS

    for s in CAP_SETS:
        names = caps.get(s) or []
        if not isinstance(names, list):
            raise SpecError(f"{where}.capabilities.{s}", "must be a list of capability names")
        for n in names:
            if n not in CAP_BITS:
                raise SpecError(f"{where}.capabilities.{s}", f"unknown capability {n!r} (capabilities(7): "
                                "CAP_ and the name in capitals)")
    rl = proc.get("rlimits") or []
    if not isinstance(rl, list):
        raise SpecError(f"{where}.rlimits", "must be a list")
    seen = set()
    for i, r in enumerate(rl):
        w = f"{where}.rlimits[{i}]"
        if not isinstance(r, dict) or r.get("type") not in RLIMITS:
            raise SpecError(f"{w}.type", f"must be one of getrlimit(2)'s RLIMIT_* names, not {r.get('type')!r}"
                            if isinstance(r, dict) else "must be an object")
        if r["type"] in seen:
            raise SpecError(f"{w}.type", f"{r['type']} is given twice")
        seen.add(r["type"])
        for k in ("soft", "hard"):
            if not _uint(r.get(k), U64_MAX):
                raise SpecError(f"{w}.{k}", "must be a non-negative integer")
        if r["soft"] > r["hard"]:
            raise SpecError(f"{w}.soft", f"{r['soft']} is above the hard limit {r['hard']}")
    if "oomScoreAdj" in proc and not (isinstance(proc["oomScoreAdj"], int) and -1000 <= proc["oomScoreAdj"] <= 1000):
        raise SpecError(f"{where}.oomScoreAdj", "must be an integer -1000..1000")
    cs = proc.get("consoleSize")
    if cs is not None and not (isinstance(cs, dict) and all(_uint(cs.get(k), 65535) for k in ("height", "width"))):
        raise SpecError(f"{where}.consoleSize", "must be {height, width}")
    return proc


def _check_mount(m: object, where: str) -> None:
    if not isinstance(m, dict):
        raise SpecError(where, "must be an object")
    dest = m.get("destination")
    if not isinstance(dest, str) or not dest.startswith("/"):
        raise SpecError(f"{where}.destination", f"must be an absolute path, not {dest!r}")
    m["destination"] = posixpath.normpath(dest)
    for k in ("type", "source"):
        if k in m and not isinstance(m[k], str):
            raise SpecError(f"{where}.{k}", "must be a string")
    opts = m.setdefault("options", [])
    if not isinstance(opts, list) or not all(isinstance(o, str) for o in opts):
        raise SpecError(f"{where}.options", "must be a list of strings")
    is_bind = m.get("type") == "bind" or any(o in ("bind", "rbind") for o in opts)
    if is_bind and not m.get("source"):
        raise SpecError(f"{where}.source", "a bind mount needs a source")
    if not is_bind and not m.get("type"):
        raise SpecError(f"{where}.type", "must name a filesystem type (or the mount must be a bind)")


def _check_linux(linux: dict) -> None:
    nss = linux.setdefault("namespaces", [])
    if not isinstance(nss, list):
        raise SpecError("linux.namespaces", "must be a list")
    kinds = set()
    for i, n in enumerate(nss):
        w = f"linux.namespaces[{i}]"
        if not isinstance(n, dict) or n.get("type") not in NS_TYPES:
            raise SpecError(f"{w}.type", f"must be one of {', '.join(NS_TYPES)}, not "
                            f"{n.get('type') if isinstance(n, dict) else n!r}")
        if n["type"] in kinds:
            raise SpecError(f"{w}.type", f"the {n['type']} namespace is listed twice")
        kinds.add(n["type"])
        if "path" in n:
            p = n["path"]
            if not isinstance(p, str) or not p.startswith("/"):
                raise SpecError(f"{w}.path", "must be an absolute path to a namespace file")
            if not os.path.exists(p):
                raise SpecError(f"{w}.path", f"{p} does not exist")
    for key in ("uidMappings", "gidMappings"):
        maps = linux.get(key) or []
        if not isinstance(maps, list):
            raise SpecError(f"linux.{key}", "must be a list")
        for i, mp in enumerate(maps):
            for k in ("containerID", "hostID", "size"):
                if not isinstance(mp, dict) or not _uint(mp.get(k), 0xFFFFFFFF):
                    raise SpecError(f"linux.{key}[{i}].{k}", "must be a non-negative integer")
        if maps and "user" not in kinds:
            raise SpecError(f"linux.{key}", "needs a user namespace in linux.namespaces")
    if "user" in kinds and not any(n.get("path") for n in nss if n["type"] == "user"):
        if not linux.get("uidMappings") or not linux.get("gidMappings"):
            raise SpecError("linux.uidMappings", "a new user namespace needs uidMappings and gidMappings")
    sysctl = linux.get("sysctl") or {}
    if not isinstance(sysctl, dict) or not all(isinstance(v, str) for v in sysctl.values()):
        raise SpecError("linux.sysctl", "must be an object of string values")
    for k in sysctl:
        if not k or ".." in k or k.startswith((".", "/")):
            raise SpecError(f"linux.sysctl.{k}", "is not a sysctl name")
    for key in ("maskedPaths", "readonlyPaths"):
        paths_ = linux.get(key) or []
        if not isinstance(paths_, list) or not all(isinstance(p, str) and p.startswith("/") for p in paths_):
            raise SpecError(f"linux.{key}", "must be a list of absolute paths")
    if "cgroupsPath" in linux:
        cp = linux["cgroupsPath"]
        if not isinstance(cp, str) or ":" in cp or ".." in cp.split("/") or not cp.strip("/"):
            raise SpecError("linux.cgroupsPath", f"must be a cgroupfs path like /parent/name, not {cp!r} "
                            "(a systemd slice:prefix:name needs --systemd-cgroup, which labtui-oci does not do)")
    devs = linux.get("devices") or []
    if not isinstance(devs, list):
        raise SpecError("linux.devices", "must be a list")
    for i, d in enumerate(devs):
        w = f"linux.devices[{i}]"
        if not isinstance(d, dict) or not isinstance(d.get("path"), str) or not d["path"].startswith("/dev/"):
            raise SpecError(f"{w}.path", "must be a path under /dev")
        if d.get("type") not in DEVICE_TYPES:
            raise SpecError(f"{w}.type", "must be c, b, u or p")
        for k in ("major", "minor"):
            if d["type"] != "p" and not _uint(d.get(k), 0xFFFFFFFF):
                raise SpecError(f"{w}.{k}", "must be a non-negative integer")
        if "fileMode" in d and not _uint(d["fileMode"], 0o7777):
            raise SpecError(f"{w}.fileMode", "must be a mode 0..07777")
    _check_resources(linux.get("resources") or {})
    if linux.get("seccomp") is not None:
        from engine.seccomp.profile import validate_profile

        try:
            validate_profile(linux["seccomp"], "linux.seccomp")
        except InvalidArgument as e:
            raise SpecError("linux.seccomp", str(e)) from None
    prop = linux.get("rootfsPropagation")
    if prop is not None and prop not in ("private", "rprivate", "slave", "rslave", "shared", "rshared",
                                          "unbindable", "runbindable"):
        raise SpecError("linux.rootfsPropagation", f"unknown propagation {prop!r}")


def _check_resources(res: object) -> None:
    if not isinstance(res, dict):
        raise SpecError("linux.resources", "must be an object")
    mem = res.get("memory") or {}
    for k in ("limit", "reservation", "swap"):
        v = mem.get(k)
        if v is not None and not (isinstance(v, int) and (v == -1 or v >= 0)):
            raise SpecError(f"linux.resources.memory.{k}", "must be a number of bytes (or -1: no limit)")
    lim = mem.get("limit")
    if isinstance(lim, int) and 0 < lim < 6 * 1024 * 1024:
        raise SpecError("linux.resources.memory.limit", f"{lim} bytes is below the 6 MiB minimum")
    cpu = res.get("cpu") or {}
    for k in ("shares", "quota", "period"):
        v = cpu.get(k)
        if v is not None and not isinstance(v, int):
            raise SpecError(f"linux.resources.cpu.{k}", "must be an integer")
    for k in ("cpus", "mems"):
        if cpu.get(k) is not None and not isinstance(cpu[k], str):
            raise SpecError(f"linux.resources.cpu.{k}", "must be a string like 0-1")
    pids = res.get("pids") or {}
    if pids.get("limit") is not None and not isinstance(pids["limit"], int):
        raise SpecError("linux.resources.pids.limit", "must be an integer")
    for i, d in enumerate(res.get("devices") or []):
        w = f"linux.resources.devices[{i}]"
        if not isinstance(d, dict) or not isinstance(d.get("allow"), bool):
            raise SpecError(f"{w}.allow", "must be true or false")
        if d.get("type", "a") not in ("a", "c", "b"):
            raise SpecError(f"{w}.type", "must be a, c or b")
        if not set(d.get("access", "rwm")) <= set("rwm"):
            raise SpecError(f"{w}.access", "must be a combination of r, w and m")


def _check_hook(h: object, where: str) -> None:
    if not isinstance(h, dict) or not isinstance(h.get("path"), str) or not h["path"].startswith("/"):
        raise SpecError(f"{where}.path", "must be an absolute path")
    for k in ("args", "env"):
        if k in h and not (isinstance(h[k], list) and all(isinstance(a, str) for a in h[k])):
            raise SpecError(f"{where}.{k}", "must be a list of strings")
    if "timeout" in h and not (isinstance(h["timeout"], int) and h["timeout"] > 0):
        raise SpecError(f"{where}.timeout", "must be a positive number of seconds")


def _obj(cfg: dict, key: str) -> dict:
    v = cfg.get(key)
    if not isinstance(v, dict):
        raise SpecError(key, "must be an object")
    return v


def _opt_bool(d: dict, key: str, where: str) -> None:
    if key in d and not isinstance(d[key], bool):
        raise SpecError(where, "must be true or false")


def _uint(v: object, top: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= top


def ns_list(cfg: dict) -> list[dict]:
    return list(cfg.get("linux", {}).get("namespaces") or [])


def limits_of(cfg: dict) -> dict:
    """linux.resources as labtui's Limits fields (engine/cgroups/limits.py), for the cgroup driver."""
    res = cfg.get("linux", {}).get("resources") or {}
    out: dict = {}
    mem = res.get("memory") or {}
    if isinstance(mem.get("limit"), int) and mem["limit"] > 0:
        out["memory"] = mem["limit"]
    if isinstance(mem.get("swap"), int) and mem["swap"] != 0:
        out["memory_swap"] = mem["swap"]  # the spec's swap is memory+swap, as v1's memsw
    cpu = res.get("cpu") or {}
    if cpu.get("shares"):
        out["cpu_shares"] = cpu["shares"]
    if cpu.get("quota") and cpu["quota"] > 0:
        out["cpus"] = cpu["quota"] / (cpu.get("period") or 100_000)
    if cpu.get("cpus"):
        out["cpuset_cpus"] = cpu["cpus"]
    pids = res.get("pids") or {}
    if pids.get("limit") not in (None, 0):
        out["pids_limit"] = pids["limit"]
    weight = (res.get("blockIO") or {}).get("weight")
    if weight:
        out["blkio_weight"] = weight
    return out
