"""seccomp: docker-format profiles, the filter built with libseccomp, and live denials.

Three parts, each usable alone, one module each (plus the disassembler):

1. Profiles (profile.py, pure Python, unit-tested): load and validate a profile in docker's JSON
   format and resolve it for one container - its capabilities, this architecture, this kernel -
   into a flat list of rules (moby's profiles/seccomp setupSeccomp does the same resolution).
   seccomp_default.json, next to it, is docker's default profile.

2. The filter (filter.py): the resolved rules handed to a backend, libseccomp's own Python
   binding or a recording stand-in for tests. The filter is built in the supervisor before clone
   and only loaded in the container's command process right before execve (crun's order), with
   SECCOMP_FILTER_FLAG_LOG so that every denial is logged by the kernel. bpf.py disassembles
   the compiled program for `labtui seccomp show --format bpf`.

3. Denials (denials.py): with the log flag the kernel writes an audit record (type 1326,
   AUDIT_SECCOMP) for each denied call; DenialWatcher reads them from the audit netlink multicast
   group or /dev/kmsg, keeps only this container's and turns each into a "seccomp_denied" event.

profile.py imports nothing of the others; filter.py and denials.py import profile.py; none
imports this package back.
"""

from engine.seccomp.bpf import disassemble, ret_text
from engine.seccomp.denials import (
    AUDIT_ARCH_X86_64,
    AUDIT_NLGRP_READLOG,
    AUDIT_SECCOMP,
    NETLINK_AUDIT,
    NR_CLONE3,
    X32_SYSCALL_BIT,
    DenialWatcher,
    action_of_code,
    add_session,
    denial_stats,
    parse_audit,
    start_audit_session,
    syscall_name,
)
from engine.seccomp.filter import (
    SECCOMP_FILTER_FLAG_LOG,
    SECCOMP_SET_MODE_FILTER,
    BpfLoader,
    Filter,
    LibseccompBackend,
    RecordingBackend,
    build,
    compile_plan,
    load_or_compile,
)
from engine.seccomp.profile import (
    ACTIONS,
    DEFAULT_PROFILE,
    GO_ARCH,
    MACHINE_ARCH,
    MAX_ARGS,
    OPS,
    Plan,
    Rule,
    _dedupe,
    action_text,
    kernel_version,
    load_default,
    load_profile_file,
    native_arch,
    resolve,
    validate_profile,
)

__all__ = [
    "ACTIONS", "AUDIT_ARCH_X86_64", "AUDIT_NLGRP_READLOG", "AUDIT_SECCOMP", "DEFAULT_PROFILE", "GO_ARCH",
    "MACHINE_ARCH", "MAX_ARGS", "NETLINK_AUDIT", "NR_CLONE3", "OPS", "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_SET_MODE_FILTER", "X32_SYSCALL_BIT", "BpfLoader", "DenialWatcher", "Filter", "LibseccompBackend",
    "Plan", "RecordingBackend", "Rule", "_dedupe", "action_of_code", "action_text", "add_session", "build",
    "compile_plan", "denial_stats", "disassemble", "kernel_version", "load_default", "load_or_compile",
    "load_profile_file", "native_arch", "parse_audit", "resolve", "ret_text", "start_audit_session",
    "syscall_name", "validate_profile",
]
