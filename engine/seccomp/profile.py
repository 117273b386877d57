"""seccomp profiles: docker's JSON format loaded, validated and resolved for one container.

Pure Python (unit-tested): load and validate a profile in docker's JSON format (defaultAction,
defaultErrnoRet, architectures/archMap, syscalls[{names, action, errnoRet, args[{index, value,
valueTwo, op}], includes{caps, arches, minKernel}, excludes{caps, arches}}]) and resolve it for
one container - its capabilities, this architecture, this kernel - into a flat list of rules
(moby's profiles/seccomp setupSeccomp does the same resolution).
"""

from __future__ import annotations

import errno as errno_mod
import json
import os
import re
from pathlib import Path

from engine.errors import InvalidArgument
from engine.record import dataclass, field

DEFAULT_PROFILE = Path(__file__).with_name("seccomp_default.json")

ACTIONS = ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS",
           "SCMP_ACT_TRAP", "SCMP_ACT_TRACE", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY")
OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
       "SCMP_CMP_MASKED_EQ")
# docker's Go-style names for includes/excludes.arches, by SCMP_ARCH_ name
GO_ARCH = {
    "SCMP_ARCH_X86": "x86", "SCMP_ARCH_X86_64": "amd64", "SCMP_ARCH_X32": "x32", "SCMP_ARCH_ARM": "arm",
    "SCMP_ARCH_AARCH64": "arm64", "SCMP_ARCH_MIPS": "mips", "SCMP_ARCH_MIPS64": "mips64",
    "SCMP_ARCH_MIPS64N32": "mips64n32", "SCMP_ARCH_MIPSEL": "mipsle", "SCMP_ARCH_MIPSEL64": "mips64le",
    "SCMP_ARCH_MIPSEL64N32": "mips64len32", "SCMP_ARCH_PPC": "ppc", "SCMP_ARCH_PPC64": "ppc64",
    "SCMP_ARCH_PPC64LE": "ppc64le", "SCMP_ARCH_S390": "s390", "SCMP_ARCH_S390X": "s390x",
    "SCMP_ARCH_RISCV64": "riscv64",
}
MACHINE_ARCH = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64", "i686": "SCMP_ARCH_X86",
                "ppc64le": "SCMP_ARCH_PPC64LE", "s390x": "SCMP_ARCH_S390X", "riscv64": "SCMP_ARCH_RISCV64"}
MAX_ARGS = 6


def _bad(src: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"invalid seccomp profile {src}: {why}")


def load_default() -> dict:
    with open(DEFAULT_PROFILE) as f:
        return json.load(f)


def load_profile_file(path: str) -> dict:
    """Read and validate a docker-format profile; errors name the file and what is wrong."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise InvalidArgument(f"cannot read seccomp profile {path}: {e.strerror}") from None
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise _bad(path, f"not valid JSON ({e})") from None
    return validate_profile(obj, path)


def validate_profile(obj: object, src: str = "(inline)") -> dict:
    if not isinstance(obj, dict):
        raise _bad(src, "the top level must be a JSON object")
    da = obj.get("defaultAction")
    if da not in ACTIONS:
        raise _bad(src, f"defaultAction must be one of {', '.join(ACTIONS)}, not {da!r}")
    if "defaultErrnoRet" in obj and not _errno_ok(obj["defaultErrnoRet"]):
        raise _bad(src, f"defaultErrnoRet must be an integer 0..{MAX_ERRNO}")
    # Every list is checked down to its items: resolve() and libseccomp take them as strings,
    # and a profile is user input (fuzzing found None and {} items turning into tracebacks).
    if not _opt_str_list(obj.get("architectures")):
        raise _bad(src, "architectures must be a list of SCMP_ARCH_* names")
    arch_map = obj.get("archMap") or []
    if not isinstance(arch_map, list):
        raise _bad(src, "archMap must be a list")
    for i, am in enumerate(arch_map):
        if not isinstance(am, dict) or not isinstance(am.get("architecture"), str):
            raise _bad(src, f"archMap[{i}] needs an architecture name")
        if not _opt_str_list(am.get("subArchitectures")):
            raise _bad(src, f"archMap[{i}].subArchitectures must be a list of SCMP_ARCH_* names")
    calls = obj.get("syscalls") or []
    if not isinstance(calls, list):
        raise _bad(src, "syscalls must be a list")
    for i, sc in enumerate(calls):
        where = f"syscalls[{i}]"
        if not isinstance(sc, dict):
            raise _bad(src, f"{where} must be an object")
        names = sc.get("names") if sc.get("names") is not None else ([sc["name"]] if sc.get("name") else None)
        if not names or not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise _bad(src, f"{where} needs names: a list of syscall names")
        if sc.get("action") not in ACTIONS:
            raise _bad(src, f"{where} ({names[0]}...): action must be one of {', '.join(ACTIONS)}, "
                            f"not {sc.get('action')!r}")
        if "errnoRet" in sc and sc["errnoRet"] is not None and not _errno_ok(sc["errnoRet"]):
            raise _bad(src, f"{where}: errnoRet must be an integer 0..{MAX_ERRNO}")
        if not isinstance(sc.get("args") or [], list):
            raise _bad(src, f"{where}.args must be a list")
        for j, a in enumerate(sc.get("args") or []):
            if not isinstance(a, dict) or not isinstance(a.get("index"), int) or not 0 <= a["index"] < MAX_ARGS:
                raise _bad(src, f"{where}.args[{j}]: index must be 0..5")
            if a.get("op") not in OPS:
                raise _bad(src, f"{where}.args[{j}]: op must be one of {', '.join(OPS)}, not {a.get('op')!r}")
            for k in ("value", "valueTwo"):
                if k in a and (not isinstance(a[k], int) or a[k] < 0):
                    raise _bad(src, f"{where}.args[{j}]: {k} must be a non-negative integer")
        for part in ("includes", "excludes"):
            f = sc.get(part) or {}
            if not isinstance(f, dict):
                raise _bad(src, f"{where}.{part} must be an object")
            for key in ("caps", "arches"):
                if not _opt_str_list(f.get(key)):
                    raise _bad(src, f"{where}.{part}.{key} must be a list of names")
            if f.get("minKernel") and not (isinstance(f["minKernel"], str) and _KVER.match(f["minKernel"])):
                raise _bad(src, f"{where}.{part}.minKernel must be a kernel version like \"4.8\"")
            for cap in f.get("caps") or []:
                from engine.capabilities import normalize

                try:
                    normalize(cap)
                except InvalidArgument:
                    raise _bad(src, f"{where}.{part}.caps: unknown capability {cap!r}") from None
    return obj


# The kernel clamps a filter's errno to MAX_ERRNO (include/linux/err.h; kernel/seccomp.c), and
# libseccomp refuses a negative one with a bare "Library error" (fuzzing found -1 a traceback).
MAX_ERRNO = 4095


def _errno_ok(value: object) -> bool:
    return isinstance(value, int) and 0 <= value <= MAX_ERRNO


def _opt_str_list(value: object) -> bool:
    """None, or a list of strings."""
    return value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value))


_KVER = re.compile(r"\d+\.\d+")


def native_arch() -> str:
    return MACHINE_ARCH.get(os.uname().machine, "SCMP_ARCH_X86_64")


def kernel_version() -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _kver(s: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", str(s))
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


@dataclass
class Rule:
    name: str
    action: str
    errno: int | None = None
    args: list[dict] = field(default_factory=list)

    def action_text(self) -> str:
        return action_text(self.action, self.errno)


@dataclass
class Plan:
    """A profile resolved for one container: what will be handed to libseccomp."""

    default_action: str
    default_errno: int | None
    arches: list[str]
    rules: list[Rule]
    skipped: list[dict] = field(default_factory=list)  # entries left out, and why

    def default_text(self) -> str:
        return action_text(self.default_action, self.default_errno)

    def errno_for(self, name: str) -> int | None:
        """The errno a denied call returns (its own ERRNO rule, else the default action's)."""
        for r in self.rules:
            if r.name == name and r.action == "SCMP_ACT_ERRNO" and not r.args:
                return r.errno
        return self.default_errno if self.default_action == "SCMP_ACT_ERRNO" else None

    def summary(self) -> dict:
        allowed = sorted({r.name for r in self.rules if r.action == "SCMP_ACT_ALLOW"})
        return {"default_action": self.default_text(), "arches": self.arches, "rules": len(self.rules),
                "allowed_syscalls": len(allowed), "skipped": len(self.skipped)}


def action_text(action: str, err: int | None) -> str:
    if action == "SCMP_ACT_ERRNO":
        e = err if err is not None else errno_mod.EPERM
        return f"SCMP_ACT_ERRNO({errno_mod.errorcode.get(e, e)})"
    return action


def resolve(profile: dict, caps: set[str] | list[str], arch: str | None = None,
            kernel: tuple[int, int] | None = None) -> Plan:
    """moby's rules: an entry applies when every cap in includes.caps is held, the arch is in
    includes.arches, the kernel is at least includes.minKernel, no cap of excludes.caps is held
    and the arch is not in excludes.arches. Caps are names like CAP_SYS_ADMIN."""
    from engine.capabilities import normalize

    arch = arch or native_arch()
    kernel = kernel or kernel_version()
    held = {normalize(c) for c in caps}
    go_arch = GO_ARCH.get(arch, arch)
    default_action = profile["defaultAction"]
    default_errno = profile.get("defaultErrnoRet")
    if default_action == "SCMP_ACT_ERRNO" and default_errno is None:
        default_errno = errno_mod.EPERM
    arches: list[str] = []
    for am in profile.get("archMap") or []:
        if am["architecture"] == arch:
            arches = [arch] + [a for a in (am.get("subArchitectures") or []) if a != arch]
    if not arches:
        arches = list(profile.get("architectures") or []) or [arch]
        if arch not in arches:
            arches.insert(0, arch)
    rules: list[Rule] = []
    skipped: list[dict] = []
    for entry in profile.get("syscalls") or []:
        names = entry.get("names") if entry.get("names") is not None else [entry["name"]]
        inc = entry.get("includes") or {}
        exc = entry.get("excludes") or {}
        why = None
        if inc.get("arches") and go_arch not in inc["arches"]:
            why = f"only on {','.join(inc['arches'])}"
        elif inc.get("caps") and not all(normalize(c) in held for c in inc["caps"]):
            why = f"needs {','.join(inc['caps'])}"
        elif inc.get("minKernel") and kernel < _kver(inc["minKernel"]):
            why = f"needs kernel >= {inc['minKernel']}"
        elif exc.get("arches") and go_arch in exc["arches"]:
            why = f"not on {go_arch}"
        elif exc.get("caps") and any(normalize(c) in held for c in exc["caps"]):
            why = f"replaced when {','.join(exc['caps'])} is held"
        if why:
            skipped.append({"names": names, "action": entry["action"], "why": why})
            continue
        err = entry.get("errnoRet")
        if entry["action"] == "SCMP_ACT_ERRNO" and err is None:
            err = default_errno if default_errno is not None else errno_mod.EPERM
        args = [{"index": a["index"], "op": a["op"], "value": a.get("value", 0), "valueTwo": a.get("valueTwo", 0)}
                for a in entry.get("args") or []]
        for n in names:
            rules.append(Rule(n, entry["action"], err, args))
    return Plan(default_action, default_errno, arches, _dedupe(rules, default_action, default_errno), skipped)


def _dedupe(rules: list[Rule], default_action: str, default_errno: int | None) -> list[Rule]:
    """Drop rules libseccomp would refuse or that change nothing: a rule whose action is the
    default action, and conditional rules of a syscall already allowed outright."""
    out: list[Rule] = []
    unconditional: dict[str, Rule] = {}
    seen: set[str] = set()
    for r in rules:
        if r.action == default_action and (r.action != "SCMP_ACT_ERRNO" or r.errno == default_errno):
            continue
        key = json.dumps([r.name, r.action, r.errno, r.args], sort_keys=True)
        if key in seen:
            continue
        u = unconditional.get(r.name)
        if u is not None and u.action == r.action and u.errno == r.errno:
            continue
        seen.add(key)
        if not r.args:
            unconditional[r.name] = r
            # an unconditional rule makes earlier conditional ones with the same action redundant
            out = [o for o in out if not (o.name == r.name and o.args and o.action == r.action)]
        out.append(r)
    return out
