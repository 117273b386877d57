"""seccomp: docker-format profiles, the filter built with libseccomp, and live denials.

Three parts, each usable alone:

1. Profiles (pure Python, unit-tested): load and validate a profile in docker's JSON format
   (defaultAction, defaultErrnoRet, architectures/archMap, syscalls[{names, action, errnoRet,
   args[{index, value, valueTwo, op}], includes{caps, arches, minKernel}, excludes{caps, arches}}])
   and resolve it for one container - its capabilities, this architecture, this kernel - into a
   flat list of rules (moby's profiles/seccomp setupSeccomp does the same resolution).

2. The filter: the resolved rules handed to a backend. The real backend is libseccomp's own
   Python binding (Debian's python3-seccomp); a recording backend lets tests see every call. The
   filter is built in the supervisor before clone and only loaded in the container's command
   process right before execve (crun's order), with SECCOMP_FILTER_FLAG_LOG so that every
   denial is logged by the kernel.

3. Denials: with the log flag the kernel writes an audit record (type 1326, AUDIT_SECCOMP) for
   each denied call. DenialWatcher reads them from the audit netlink multicast group (the
   read-only group journald uses; every record, no rate limit) or, failing that, from /dev/kmsg,
   keeps only this container's (its audit session id, set per supervisor, or its PID namespace)
   and turns each into a "seccomp_denied" event with the syscall's name and number.
"""

from __future__ import annotations

import errno as errno_mod
import json
import os
import re
import socket
import struct
import time
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


# ---- 1. profiles -----------------------------------------------------------------------------

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
    if "defaultErrnoRet" in obj and not isinstance(obj["defaultErrnoRet"], int):
        raise _bad(src, "defaultErrnoRet must be an integer")
    for key in ("architectures",):
        if key in obj and obj[key] is not None and not isinstance(obj[key], list):
            raise _bad(src, f"{key} must be a list of SCMP_ARCH_* names")
    for i, am in enumerate(obj.get("archMap") or []):
        if not isinstance(am, dict) or not isinstance(am.get("architecture"), str):
            raise _bad(src, f"archMap[{i}] needs an architecture name")
    calls = obj.get("syscalls") or []
    if not isinstance(calls, list):
        raise _bad(src, "syscalls must be a list")
    for i, sc in enumerate(calls):
        where = f"syscalls[{i}]"
        if not isinstance(sc, dict):
            raise _bad(src, f"{where} must be an object")
        names = sc.get("names") if sc.get("names") is not None else ([sc["name"]] if sc.get("name") else None)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise _bad(src, f"{where} needs names: a list of syscall names")
        if sc.get("action") not in ACTIONS:
            raise _bad(src, f"{where} ({names[0]}...): action must be one of {', '.join(ACTIONS)}, "
                            f"not {sc.get('action')!r}")
        if "errnoRet" in sc and sc["errnoRet"] is not None and not isinstance(sc["errnoRet"], int):
            raise _bad(src, f"{where}: errnoRet must be an integer")
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
            for cap in f.get("caps") or []:
                from engine.capabilities import normalize

                try:
                    normalize(cap)
                except InvalidArgument:
                    raise _bad(src, f"{where}.{part}.caps: unknown capability {cap!r}") from None
    return obj


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


# ---- 2. the filter ---------------------------------------------------------------------------

class RecordingBackend:
    """Stands in for libseccomp in tests: records every call."""

    def __init__(self, known: set[str] | None = None) -> None:
        self.calls: list[tuple] = []
        self.known = known

    def new(self, default_action: str, default_errno: int | None) -> None:
        self.calls.append(("new", default_action, default_errno))

    def add_arch(self, arch: str) -> None:
        self.calls.append(("add_arch", arch))

    def set_log(self) -> None:
        self.calls.append(("set_log",))

    def set_binary_tree(self) -> None:
        self.calls.append(("set_binary_tree",))

    def resolve(self, name: str) -> int:
        return -1 if self.known is not None and name not in self.known else 0

    def add_rule(self, rule: Rule) -> None:
        self.calls.append(("add_rule", rule.name, rule.action_text(), tuple(
            (a["index"], a["op"], a["value"], a["valueTwo"]) for a in rule.args)))


class LibseccompBackend:
    """libseccomp through its official Python binding (import seccomp)."""

    def __init__(self) -> None:
        import seccomp as lib

        self.lib = lib
        self.filter = None

    def _action(self, action: str, err: int | None):
        lib = self.lib
        return {
            "SCMP_ACT_ALLOW": lambda: lib.ALLOW, "SCMP_ACT_KILL": lambda: lib.KILL,
            "SCMP_ACT_KILL_THREAD": lambda: lib.KILL, "SCMP_ACT_KILL_PROCESS": lambda: lib.KILL_PROCESS,
            "SCMP_ACT_TRAP": lambda: lib.TRAP, "SCMP_ACT_LOG": lambda: lib.LOG,
            "SCMP_ACT_ERRNO": lambda: lib.ERRNO(err if err is not None else errno_mod.EPERM),
            "SCMP_ACT_TRACE": lambda: lib.TRACE(err or 0), "SCMP_ACT_NOTIFY": lambda: lib.NOTIFY,
        }[action]()

    def new(self, default_action: str, default_errno: int | None) -> None:
        lib = self.lib
        self.filter = lib.SyscallFilter(self._action(default_action, default_errno))
        # no_new_privs is labtui's own recorded step; libseccomp must not set it behind our back.
        self.filter.set_attr(lib.Attr.CTL_NNP, 0)

    def add_arch(self, arch: str) -> None:
        token = getattr(self.lib.Arch, arch.replace("SCMP_ARCH_", ""), None)
        if token is None:
            raise InvalidArgument(f"seccomp: architecture {arch} is unknown to libseccomp")
        if self.lib.system_arch() == (token & 0xFFFFFFFF):
            return  # the native arch is in every new filter
        try:
            self.filter.add_arch(token)
        except Exception as e:  # EEXIST or an arch this libseccomp cannot add
            if "17" not in str(e):
                raise InvalidArgument(f"seccomp: cannot add architecture {arch}: {e}") from None

    def set_log(self) -> None:
        self.filter.set_attr(self.lib.Attr.CTL_LOG, 1)  # SECCOMP_FILTER_FLAG_LOG

    def set_binary_tree(self) -> None:
        # SCMP_FLTATR_CTL_OPTIMIZE=2 (seccomp_attr_set(3), libseccomp >= 2.5): the syscall
        # numbers are searched as a binary tree instead of one long if-chain. The kernel, when
        # the filter is loaded, runs it once per syscall number to learn which are always
        # allowed (its seccomp action cache): a chain makes that ~2x slower (0.8 against 0.4 ms
        # here for docker's profile), and every syscall of the container not in the cache walks
        # the chain. Same rules, same verdicts.
        self.filter.set_attr(self.lib.Attr.CTL_OPTIMIZE, 2)

    def resolve(self, name: str) -> int:
        try:
            return self.lib.resolve_syscall(self.lib.Arch.NATIVE, name)
        except Exception:
            return -1

    def add_rule(self, rule: Rule) -> None:
        lib = self.lib
        ops = {"SCMP_CMP_NE": lib.NE, "SCMP_CMP_LT": lib.LT, "SCMP_CMP_LE": lib.LE, "SCMP_CMP_EQ": lib.EQ,
               "SCMP_CMP_GE": lib.GE, "SCMP_CMP_GT": lib.GT, "SCMP_CMP_MASKED_EQ": lib.MASKED_EQ}
        args = []
        for a in rule.args:
            if a["op"] == "SCMP_CMP_MASKED_EQ":  # docker: value is the mask, valueTwo the datum
                args.append(lib.Arg(a["index"], lib.MASKED_EQ, a["value"], a["valueTwo"]))
            else:
                args.append(lib.Arg(a["index"], ops[a["op"]], a["value"]))
        self.filter.add_rule(self._action(rule.action, rule.errno), rule.name, *args)

    def load(self) -> None:
        self.filter.load()

    def export(self, kind: str = "pfc") -> bytes:
        import tempfile

        with tempfile.TemporaryFile() as f:
            (self.filter.export_pfc if kind == "pfc" else self.filter.export_bpf)(f)
            f.flush()
            f.seek(0)
            return f.read()


@dataclass
class Filter:
    plan: Plan | None  # None when the program came from the cache (summary and errnos did too)
    backend: object | None = None
    unknown: list[str] = field(default_factory=list)  # names this libseccomp/arch does not know
    bpf: bytes | None = None  # the compiled program (struct sock_filter[])
    log: bool = True
    cached: bool = False
    seccomp_nr: int = 317  # __NR_seccomp of the native arch
    summary: dict = field(default_factory=dict)
    errnos: dict = field(default_factory=dict)  # syscall -> errno of its own ERRNO rule
    default_errno: int | None = None
    _loader: object | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.plan is not None and not self.summary:
            self.summary = self.plan.summary()
            self.errnos = {r.name: r.errno for r in self.plan.rules if r.action == "SCMP_ACT_ERRNO" and not r.args}
            self.default_errno = (self.plan.default_errno if self.plan.default_action == "SCMP_ACT_ERRNO"
                                  else None)

    def errno_for(self, name: str) -> int | None:
        return self.errnos.get(name, self.default_errno)

    def prepare_load(self) -> None:
        """Before clone (or once, in a process that keeps the filter): the program's ctypes
        structure, so that loading it in the container's process is one call."""
        if self.bpf is not None and self._loader is None:
            self._loader = BpfLoader(self.bpf, self.log, self.seccomp_nr)

    def load(self) -> None:
        """In the container's process: the precompiled program straight to seccomp(2), as crun
        does (compiling it here would cost ~30 ms in the child)."""
        if self.bpf is not None:
            self.prepare_load()
            self._loader()
        else:
            self.backend.load()

    def describe(self) -> str:
        s = self.summary
        n = f", {len(self.bpf) // 8} BPF instructions" if self.bpf else ""
        return (f"{s['rules']} rules, {s['allowed_syscalls']} syscalls allowed, default {s['default_action']}, "
                f"arches {','.join(a.replace('SCMP_ARCH_', '').lower() for a in s['arches'])}"
                f"{', log' if self.log else ''}{n}")


SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_LOG = 2


class BpfLoader:
    """seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_LOG, &(struct sock_fprog){len, filter})
    for one program, with its ctypes structures built ahead: making a ctypes Structure class and
    looking up libc costs more than the system call itself (~0.5 ms in a freshly forked child)."""

    def __init__(self, prog: bytes, log: bool = True, nr: int = 317) -> None:
        import ctypes

        class SockFprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        self._syscall = ctypes.CDLL(None, use_errno=True).syscall
        self._syscall.restype = ctypes.c_long
        self._get_errno = ctypes.get_errno
        self._buf = ctypes.create_string_buffer(prog, len(prog))
        self._fprog = SockFprog(len(prog) // 8, ctypes.cast(self._buf, ctypes.c_void_p))
        self._args = (ctypes.c_long(nr), ctypes.c_ulong(SECCOMP_SET_MODE_FILTER),
                      ctypes.c_ulong(SECCOMP_FILTER_FLAG_LOG if log else 0), ctypes.byref(self._fprog))

    def __call__(self) -> None:
        if self._syscall(*self._args) < 0:
            e = self._get_errno()
            raise OSError(e, os.strerror(e))


_LIB_ID: str | None = None


def _lib_id() -> str:
    """The libseccomp build this process uses (its file and mtime); looked up once per process:
    the library mapped into a process does not change under it."""
    global _LIB_ID
    if _LIB_ID is None:
        try:
            p = os.path.realpath("/usr/lib/x86_64-linux-gnu/libseccomp.so.2")
            _LIB_ID = f"{p}:{os.stat(p).st_mtime_ns}"
        except OSError:
            _LIB_ID = "libseccomp"
    return _LIB_ID


def compile_plan(plan: Plan, log: bool = True, cache: Path | None = None) -> Filter:
    """The filter as a BPF program, cached by the resolved rules."""
    key = {"plan": [plan.default_action, plan.default_errno, plan.arches,
                    [[r.name, r.action, r.errno, r.args] for r in plan.rules]]}
    return load_or_compile(key, lambda: plan, log, cache)


# Compiled programs this process has read or built, by cache key: the key covers everything the
# program depends on (profile digest, capabilities, libseccomp, arch, kernel), so it cannot go stale.
_MEMO: dict[tuple[str, str], Filter] = {}


def load_or_compile(key_obj: dict, make_plan, log: bool = True, cache: Path | None = None) -> Filter:
    """The filter for key_obj (what determines it: the profile, the capabilities, ...) from a
    cache of compiled programs, else make_plan() compiled by libseccomp and stored there. A cache
    hit costs one small file read: no JSON profile, no resolution, no libseccomp."""
    from engine.digest import sha256_hex

    key_src = json.dumps({**key_obj, "log": log, "lib": _lib_id(), "arch": native_arch(),
                          "kernel": kernel_version(), "tree": 2}, sort_keys=True, default=str)
    key = sha256_hex(key_src.encode())[:32]
    path = (cache / f"{key}.json") if cache is not None else None
    memo = _MEMO.get((key, str(path)))
    if memo is not None:  # a process that built or read it before: labtui's helper, the app
        return memo
    if path is not None:
        try:
            with open(path) as f:
                m = json.load(f)
            flt = Filter(None, None, m["unknown"], bytes.fromhex(m["bpf"]), log, True, m["nr"], m["summary"],
                         m["errnos"], m["default_errno"])
            _MEMO[(key, str(path))] = flt
            return flt
        except (OSError, ValueError, KeyError):
            pass
    flt = build(make_plan(), log=log)
    flt.bpf = flt.backend.export("bpf")
    flt.seccomp_nr = max(flt.backend.resolve("seccomp"), 0) or 317
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "w") as f:
                json.dump({"bpf": flt.bpf.hex(), "unknown": flt.unknown, "nr": flt.seccomp_nr,
                           "summary": flt.summary, "errnos": flt.errnos, "default_errno": flt.default_errno}, f)
            os.rename(tmp, path)
        except OSError:
            pass
    return flt


def build(plan: Plan, backend=None, log: bool = True) -> Filter:
    """Hand a resolved plan to libseccomp (or a stand-in). Nothing is loaded yet."""
    b = backend if backend is not None else LibseccompBackend()
    b.new(plan.default_action, plan.default_errno)
    for arch in plan.arches:
        b.add_arch(arch)
    if log:
        b.set_log()
    b.set_binary_tree()
    unknown: list[str] = []
    for rule in plan.rules:
        if b.resolve(rule.name) == -1:
            if rule.name not in unknown:
                unknown.append(rule.name)  # docker skips names libseccomp cannot resolve, too
            continue
        try:
            b.add_rule(rule)
        except InvalidArgument:
            raise
        except Exception as e:
            raise InvalidArgument(f"seccomp: libseccomp refused the rule {rule.name} {rule.action_text()} "
                                  f"{rule.args or ''}: {e}") from None
    return Filter(plan, b, unknown, log=log)


# ---- BPF disassembly (for `labtui seccomp show --format bpf`) ------------------------------------

_SECCOMP_DATA = {0: "nr", 4: "arch", 8: "instruction_pointer", 12: "instruction_pointer_hi"}
for _i in range(6):
    _SECCOMP_DATA[16 + 8 * _i] = f"args[{_i}]"
    _SECCOMP_DATA[20 + 8 * _i] = f"args[{_i}]_hi"
_RET = {0x80000000: "KILL_PROCESS", 0x00000000: "KILL_THREAD", 0x00030000: "TRAP", 0x00050000: "ERRNO",
        0x7FC00000: "USER_NOTIF", 0x7FF00000: "TRACE", 0x7FFC0000: "LOG", 0x7FFF0000: "ALLOW"}
_JMP = {0x00: "ja", 0x10: "jeq", 0x20: "jgt", 0x30: "jge", 0x40: "jset"}
_ALU = {0x00: "add", 0x10: "sub", 0x20: "mul", 0x30: "div", 0x40: "or", 0x50: "and", 0x60: "lsh",
        0x70: "rsh", 0x80: "neg", 0x90: "mod", 0xA0: "xor"}


def ret_text(k: int) -> str:
    act = k & 0xFFFF0000
    name = _RET.get(act, f"{act:#x}")
    if name == "ERRNO":
        return f"ERRNO({errno_mod.errorcode.get(k & 0xFFFF, k & 0xFFFF)})"
    return name if not k & 0xFFFF else f"{name}({k & 0xFFFF})"


def disassemble(prog: bytes) -> list[str]:
    """Classic BPF (struct sock_filter: u16 code, u8 jt, u8 jf, u32 k) as text, one line each."""
    out = []
    n = len(prog) // 8
    for pc in range(n):
        code, jt, jf, k = struct.unpack_from("=HBBI", prog, pc * 8)
        cls = code & 0x07
        if cls == 0x00 and code & 0xE0 == 0x20:  # ld [k]
            text = f"ld  [{k}]  ; {_SECCOMP_DATA.get(k, '')}"
        elif cls == 0x00 and code & 0xE0 == 0x60:
            text = f"ld  M[{k}]"
        elif cls == 0x00 and code & 0xE0 == 0x00:
            text = f"ld  #{k:#x}"
        elif cls == 0x01:
            text = f"ldx M[{k}]" if code & 0xE0 == 0x60 else f"ldx #{k:#x}"
        elif cls in (0x02, 0x03):
            text = f"{'st' if cls == 2 else 'stx'} M[{k}]"
        elif cls == 0x04:
            src = "x" if code & 0x08 else f"#{k:#x}"
            text = f"{_ALU.get(code & 0xF0, '?')} {src}"
        elif cls == 0x05:
            op = _JMP.get(code & 0xF0, "j?")
            if op == "ja":
                text = f"ja  {pc + 1 + k}"
            else:
                src = "x" if code & 0x08 else f"#{k:#x}"
                text = f"{op} {src}, {pc + 1 + jt}, {pc + 1 + jf}"
        elif cls == 0x06:
            text = "ret a" if code & 0x18 == 0x10 else f"ret #{k:#010x}  ; {ret_text(k)}"
        elif cls == 0x07:
            text = "tax" if code & 0xF8 == 0x00 else "txa"
        else:
            text = f".word {code:#06x} {jt} {jf} {k:#x}"
        out.append(f"{pc:4d}: {text}")
    return out


# ---- 3. denials ------------------------------------------------------------------------------

NETLINK_AUDIT = 9
AUDIT_NLGRP_READLOG = 1
AUDIT_SECCOMP = 1326
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
_FIELD_RE = re.compile(r'(\w+)=("[^"]*"|\S+)')


def parse_audit(text: str) -> dict | None:
    """One AUDIT_SECCOMP record ("audit(TS:SEQ): auid=... pid=... syscall=83 ... code=0x50000",
    or the same line as printed to the kernel log after "audit: type=1326") -> its fields."""
    if "syscall=" not in text or "code=" not in text:
        return None
    out = {k: v.strip('"') for k, v in _FIELD_RE.findall(text)}
    try:
        out["pid"] = int(out["pid"])
        out["syscall"] = int(out["syscall"])
        out["code"] = int(out["code"], 16)
    except (KeyError, ValueError):
        return None
    return out


def action_of_code(code: int) -> str:
    act = code & 0xFFFF0000
    return {0x80000000: "SCMP_ACT_KILL_PROCESS", 0: "SCMP_ACT_KILL_THREAD", 0x00030000: "SCMP_ACT_TRAP",
            0x00050000: "SCMP_ACT_ERRNO", 0x7FC00000: "SCMP_ACT_NOTIFY", 0x7FF00000: "SCMP_ACT_TRACE",
            0x7FFC0000: "SCMP_ACT_LOG", 0x7FFF0000: "SCMP_ACT_ALLOW"}.get(act, f"{act:#x}")


NR_CLONE3 = 435  # x86_64 (and every architecture added since: the unified syscall table)


def syscall_name(nr: int, arch_hex: str | None = None) -> str:
    try:
        import seccomp as lib
    except ImportError:
        return f"syscall_{nr}"
    arch = int(arch_hex, 16) if arch_hex else AUDIT_ARCH_X86_64
    if arch == AUDIT_ARCH_X86_64 and nr & X32_SYSCALL_BIT:
        arch = 0x4000003E  # AUDIT_ARCH_X86_64 as x32
    token = arch - (1 << 32) if arch >= 1 << 31 else arch
    try:
        name = lib.resolve_syscall(token, nr)
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:
        return f"syscall_{nr}"


def start_audit_session() -> int | None:
    """Give this process (the supervisor) and everything it will start a new audit session:
    the kernel assigns a fresh session id whenever loginuid is written, and every audit record
    carries it (ses=N). It is how denials are told apart from other containers'. Returns the
    session id, or None when the host forbids it (loginuid immutable)."""
    try:
        with open("/proc/self/loginuid") as f:
            cur = int(f.read().strip() or "4294967295")
        uid = cur if cur != 4294967295 else os.getuid()
        fd = os.open("/proc/self/loginuid", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(uid).encode())
        finally:
            os.close(fd)
        with open("/proc/self/sessionid") as f:
            ses = int(f.read().strip())
        return None if ses == 4294967295 else ses
    except (OSError, ValueError):
        return None


class DenialWatcher:
    """Live seccomp denials of one container, read from the kernel's audit records.

    poll() is non-blocking and cheap (one recv per pending record); it returns the new denials
    as dicts and, unless emit=False, puts each on the event stream as "seccomp_denied" and adds
    it to the container's denial count (denial_stats(cid)). Open it before the container's
    command starts: multicast records are not kept for late readers.
    """

    def __init__(self, cid: str, name: str | None = None, session: int | None = None,
                 plan: Plan | Filter | None = None, emit: bool = True, source: str = "auto") -> None:
        self.cid = cid
        self.name = name
        self.session = session
        self.plan = plan
        self.emit = emit
        self.pidns: int | None = None
        self.count = 0
        self.by_syscall: dict[str, int] = {}
        self.last: dict | None = None
        self.sock: socket.socket | None = None
        self.kmsg: int | None = None
        self.source = ""
        self._pid_cache: dict[int, bool] = {}
        prev = denial_stats(cid)  # a restarted container keeps counting
        self.count = int(prev.get("count") or 0)
        self.by_syscall = dict(prev.get("by_syscall") or {})
        if source in ("auto", "netlink"):
            try:
                s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK,
                                  NETLINK_AUDIT)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                s.bind((0, AUDIT_NLGRP_READLOG))
                self.sock = s
                self.source = "audit-netlink"
            except OSError:
                if source == "netlink":
                    raise
        if self.sock is None and source in ("auto", "kmsg"):
            fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(fd, 0, os.SEEK_END)
            self.kmsg = fd
            self.source = "kmsg"

    def fileno(self) -> int:
        if self.sock is not None:
            return self.sock.fileno()
        return self.kmsg if self.kmsg is not None else -1

    init_pid: int | None = None  # host PID of the container's init (set_target)

    def set_target(self, init_pid: int) -> None:
        """The container's init: its PID namespace identifies processes when no session id is
        available (and for processes that joined the container later, e.g. an exec)."""
        self.init_pid = init_pid
        try:
            self.pidns = os.stat(f"/proc/{init_pid}/ns/pid").st_ino
        except OSError:
            self.pidns = None

    def _records(self) -> list[str]:
        out: list[str] = []
        if self.sock is not None:
            while True:
                try:
                    data = self.sock.recv(65536)
                except BlockingIOError:
                    break
                except OSError as e:
                    if e.errno == errno_mod.ENOBUFS:  # overrun: some records were lost
                        continue
                    break
                off = 0
                while off + 16 <= len(data):
                    ln, typ = struct.unpack_from("=IH", data, off)
                    if ln < 16:
                        break
                    if typ == AUDIT_SECCOMP:
                        out.append(data[off + 16:off + ln].decode(errors="replace").rstrip("\0"))
                    off += (ln + 3) & ~3
        elif self.kmsg is not None:
            while True:
                try:
                    data = os.read(self.kmsg, 8192)
                except BlockingIOError:
                    break
                except OSError as e:
                    if e.errno == errno_mod.EPIPE:  # the ring buffer overwrote records
                        continue
                    break
                if not data:
                    break
                line = data.decode(errors="replace")
                msg = line.split(";", 1)[1] if ";" in line else line
                if "type=1326" in msg:
                    out.append(msg.split("type=1326", 1)[1])
        return out

    def _sessions(self) -> set[str]:
        """This container's audit sessions: the supervisor's, and those of execs into it
        (add_session), re-read only when that file changes."""
        from engine import paths

        path = paths.container_dir(self.cid) / "seccomp_sessions"
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            mtime = 0
        if mtime != getattr(self, "_sessions_mtime", None):
            self._sessions_mtime = mtime
            extra: set[str] = set()
            if mtime:
                try:
                    extra = set(path.read_text().split())
                except OSError:
                    pass
            self._session_set = extra | ({str(self.session)} if self.session is not None else set())
        return self._session_set

    def _ours(self, rec: dict) -> bool:
        if rec.get("ses") in self._sessions():
            return True
        if self.pidns is None:
            return False
        pid = rec["pid"]
        if pid not in self._pid_cache:
            try:
                self._pid_cache[pid] = os.stat(f"/proc/{pid}/ns/pid").st_ino == self.pidns
            except OSError:
                self._pid_cache[pid] = False
            if len(self._pid_cache) > 4096:
                self._pid_cache.clear()
        return self._pid_cache[pid]

    def poll(self) -> list[dict]:
        found = []
        for text in self._records():
            rec = parse_audit(text)
            if rec is None or not self._ours(rec):
                continue
            if self.init_pid is not None and rec["pid"] == self.init_pid and rec["syscall"] == NR_CLONE3 \
                    and rec.get("arch") in (None, f"{AUDIT_ARCH_X86_64:x}"):
                # labtui's own PID 1 starting the command: glibc's posix_spawn tries clone3, which
                # the profile answers ENOSYS (as docker's does) so that it falls back to clone.
                continue
            name = syscall_name(rec["syscall"], rec.get("arch"))
            action = action_of_code(rec["code"])
            if action == "SCMP_ACT_ERRNO" and self.plan is not None:  # a Plan or a Filter
                action = action_text(action, self.plan.errno_for(name))
            d = {"pid": rec["pid"], "syscall": name, "nr": rec["syscall"], "action": action,
                 "comm": rec.get("comm"), "exe": rec.get("exe"), "arch": rec.get("arch"), "ts": time.time()}
            found.append(d)
        if found:
            self.count += len(found)
            for d in found:
                self.by_syscall[d["syscall"]] = self.by_syscall.get(d["syscall"], 0) + 1
                if self.emit:
                    from engine import events

                    events.emit("seccomp_denied", self.cid, self.name, pid=d["pid"], syscall=d["syscall"],
                                nr=d["nr"], action=d["action"], comm=d["comm"], source=self.source)
            self.last = found[-1]
            self._save()
        return found

    def _save(self) -> None:
        from engine import paths

        d = paths.container_dir(self.cid)
        if not d.is_dir():
            return
        path = d / "seccomp_denials.json"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w") as f:
                json.dump({"count": self.count, "by_syscall": self.by_syscall, "last": self.last,
                           "source": self.source, "session": self.session}, f)
            os.rename(tmp, path)
        except OSError:
            pass

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.kmsg is not None:
            os.close(self.kmsg)
            self.kmsg = None


def add_session(cid: str, session: int | None) -> None:
    """Tell the container's DenialWatcher about another audit session of its processes (an exec)."""
    if session is None:
        return
    from engine import paths

    d = paths.container_dir(cid)
    if d.is_dir():
        with open(d / "seccomp_sessions", "a") as f:
            f.write(f"{session}\n")


def denial_stats(cid: str) -> dict:
    """The container's denial count (what its supervisor's DenialWatcher has seen)."""
    from engine import paths

    try:
        with open(paths.container_dir(cid) / "seccomp_denials.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"count": 0, "by_syscall": {}, "last": None}
