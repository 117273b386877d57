"""The seccomp filter: a resolved plan handed to libseccomp, compiled to BPF, cached, loaded.

The real backend is libseccomp's own Python binding (Debian's python3-seccomp); a recording
backend lets tests see every call. The filter is built in the supervisor before clone and only
loaded in the container's command process right before execve (crun's order), with
SECCOMP_FILTER_FLAG_LOG so that every denial is logged by the kernel.
"""

from __future__ import annotations

import errno as errno_mod
import json
import os
from pathlib import Path

from engine.errors import InvalidArgument
from engine.record import dataclass, field
from engine.seccomp.profile import Plan, Rule, kernel_version, native_arch


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
