"""seccomp: docker's profile format, resolution for caps/arch/kernel, filter building with a
recording stand-in for libseccomp, audit record parsing, BPF disassembly, denial matching."""

from __future__ import annotations

import json
import struct

import pytest

from engine import seccomp
from engine.capabilities import DOCKER_DEFAULT
from engine.errors import InvalidArgument

DEFAULT_CAPS = list(DOCKER_DEFAULT)


def rules_by_name(plan) -> dict[str, list]:
    out: dict[str, list] = {}
    for r in plan.rules:
        out.setdefault(r.name, []).append(r)
    return out


def test_default_profile_is_dockers_shape():
    p = seccomp.load_default()
    seccomp.validate_profile(p, "default")
    assert p["defaultAction"] == "SCMP_ACT_ERRNO" and p["defaultErrnoRet"] == 1
    allow = p["syscalls"][0]["names"]
    assert 340 <= len(allow) <= 380
    for blocked in ("mount", "umount2", "unshare", "setns", "keyctl", "add_key", "bpf", "ptrace", "reboot",
                    "init_module", "kexec_load", "open_by_handle_at", "io_uring_setup", "pivot_root"):
        assert blocked not in allow
    x86 = [m for m in p["archMap"] if m["architecture"] == "SCMP_ARCH_X86_64"][0]
    assert x86["subArchitectures"] == ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]


def test_default_caps_resolution():
    plan = seccomp.resolve(seccomp.load_default(), DEFAULT_CAPS, "SCMP_ARCH_X86_64", (6, 18))
    by = rules_by_name(plan)
    assert plan.default_text() == "SCMP_ACT_ERRNO(EPERM)"
    assert plan.arches == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    for name in ("mount", "unshare", "setns", "open_by_handle_at", "reboot", "init_module", "clock_settime"):
        assert name not in by, name
    assert by["clone"][0].args == [{"index": 0, "op": "SCMP_CMP_MASKED_EQ", "value": 2114060288, "valueTwo": 0}]
    assert by["clone3"][0].action == "SCMP_ACT_ERRNO" and by["clone3"][0].errno == 38
    assert sorted(a.args[0]["value"] for a in by["personality"]) == [0, 8, 131072, 131080, 4294967295]
    assert by["socket"][0].args == [{"index": 0, "op": "SCMP_CMP_NE", "value": 40, "valueTwo": 0}]
    assert by["ptrace"][0].action == "SCMP_ACT_ALLOW" and not by["ptrace"][0].args  # kernel >= 4.8
    assert by["chroot"][0].action == "SCMP_ACT_ALLOW"  # CAP_SYS_CHROOT is a default cap
    assert "arch_prctl" in by and "set_tls" not in by  # amd64 only rules
    assert plan.errno_for("mount") == 1 and plan.errno_for("clone3") == 38


def test_sys_admin_unlocks_mount_and_plain_clone():
    plan = seccomp.resolve(seccomp.load_default(), DEFAULT_CAPS + ["CAP_SYS_ADMIN"], "SCMP_ARCH_X86_64", (6, 18))
    by = rules_by_name(plan)
    for name in ("mount", "umount2", "unshare", "setns", "fsopen", "sethostname"):
        assert by[name][0].action == "SCMP_ACT_ALLOW"
    assert [r.args for r in by["clone"]] == [[]]
    assert by["clone3"][0].action == "SCMP_ACT_ALLOW"


@pytest.mark.parametrize("cap,syscalls", [
    ("CAP_DAC_READ_SEARCH", ["open_by_handle_at"]), ("CAP_SYS_PTRACE", ["kcmp", "pidfd_getfd"]),
    ("CAP_SYS_MODULE", ["init_module", "finit_module"]), ("CAP_SYS_BOOT", ["reboot"]),
    ("CAP_SYS_TIME", ["settimeofday", "clock_settime"]), ("CAP_SYSLOG", ["syslog"]),
])
def test_capability_gated_rules(cap, syscalls):
    plan = seccomp.resolve(seccomp.load_default(), DEFAULT_CAPS + [cap], "SCMP_ARCH_X86_64", (6, 18))
    by = rules_by_name(plan)
    for s in syscalls:
        assert by[s][0].action == "SCMP_ACT_ALLOW"


def test_old_kernels_lose_the_ptrace_rule():
    plan = seccomp.resolve(seccomp.load_default(), DEFAULT_CAPS, "SCMP_ARCH_X86_64", (4, 4))
    assert "ptrace" not in rules_by_name(plan)
    assert any("4.8" in s["why"] for s in plan.skipped)


def test_arm_gets_its_own_rules():
    plan = seccomp.resolve(seccomp.load_default(), DEFAULT_CAPS, "SCMP_ARCH_AARCH64", (6, 1))
    by = rules_by_name(plan)
    assert "set_tls" in by and "arch_prctl" not in by
    assert plan.arches == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]


def test_custom_profile_in_dockers_format(tmp_path):
    prof = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                         {"name": "getpid", "action": "SCMP_ACT_ALLOW"},
                         {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
                         {"names": ["chroot"], "action": "SCMP_ACT_KILL", "excludes": {"caps": ["SYS_CHROOT"]}}]}
    f = tmp_path / "p.json"
    f.write_text(json.dumps(prof))
    loaded = seccomp.load_profile_file(str(f))
    plan = seccomp.resolve(loaded, DEFAULT_CAPS, "SCMP_ARCH_X86_64", (6, 18))
    by = rules_by_name(plan)
    assert by["mkdir"][0].errno == 13 and by["mkdirat"][0].action_text() == "SCMP_ACT_ERRNO(EACCES)"
    assert "getpid" not in by  # same as the default action: nothing to add
    assert by["kill"][0].errno == 1 and by["kill"][0].args[0]["value"] == 9
    assert "chroot" not in by  # excluded: the container holds CAP_SYS_CHROOT
    assert plan.arches == ["SCMP_ARCH_X86_64"]


@pytest.mark.parametrize("text,match", [
    ("{", "not valid JSON"),
    ("[]", "top level"),
    ('{"defaultAction": "SCMP_ACT_NOPE"}', "defaultAction"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "DENY"}]}', "action"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}', "names"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ALLOW",'
     ' "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}', "index"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ALLOW",'
     ' "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}]}]}', "op"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ALLOW",'
     ' "includes": {"caps": ["CAP_FLY"]}}]}', "unknown capability"),
])
def test_invalid_profiles_are_refused_with_the_reason(tmp_path, text, match):
    f = tmp_path / "bad.json"
    f.write_text(text)
    with pytest.raises(InvalidArgument, match=match) as e:
        seccomp.load_profile_file(str(f))
    assert str(f) in str(e.value)


def test_an_unreadable_profile_is_refused(tmp_path):
    with pytest.raises(InvalidArgument, match="cannot read seccomp profile"):
        seccomp.load_profile_file(str(tmp_path / "missing.json"))


def test_build_hands_every_rule_to_the_backend():
    plan = seccomp.resolve(seccomp.load_default(), DEFAULT_CAPS, "SCMP_ARCH_X86_64", (6, 18))
    b = seccomp.RecordingBackend()
    flt = seccomp.build(plan, backend=b)
    assert b.calls[0] == ("new", "SCMP_ACT_ERRNO", 1)
    assert b.calls[1:4] == [("add_arch", "SCMP_ARCH_X86_64"), ("add_arch", "SCMP_ARCH_X86"),
                            ("add_arch", "SCMP_ARCH_X32")]
    assert ("set_log",) in b.calls and ("set_binary_tree",) in b.calls
    rules = [c for c in b.calls if c[0] == "add_rule"]
    assert len(rules) == len(plan.rules)
    assert ("add_rule", "clone", "SCMP_ACT_ALLOW", ((0, "SCMP_CMP_MASKED_EQ", 2114060288, 0),)) in rules
    assert ("add_rule", "clone3", "SCMP_ACT_ERRNO(ENOSYS)", ()) in rules
    assert flt.unknown == []


def test_names_the_backend_cannot_resolve_are_skipped_like_docker_does():
    plan = seccomp.Plan("SCMP_ACT_ERRNO", 1, ["SCMP_ARCH_X86_64"],
                        [seccomp.Rule("read", "SCMP_ACT_ALLOW"), seccomp.Rule("nosuchcall", "SCMP_ACT_ALLOW")])
    b = seccomp.RecordingBackend(known={"read"})
    flt = seccomp.build(plan, backend=b, log=False)
    assert flt.unknown == ["nosuchcall"]
    assert ("set_log",) not in b.calls
    assert [c[1] for c in b.calls if c[0] == "add_rule"] == ["read"]


def test_dedupe_drops_redundant_rules():
    rules = [seccomp.Rule("ptrace", "SCMP_ACT_ALLOW"), seccomp.Rule("ptrace", "SCMP_ACT_ALLOW"),
             seccomp.Rule("clone", "SCMP_ACT_ALLOW", None, [{"index": 0, "op": "SCMP_CMP_MASKED_EQ",
                                                              "value": 1, "valueTwo": 0}]),
             seccomp.Rule("clone", "SCMP_ACT_ALLOW"), seccomp.Rule("x", "SCMP_ACT_ERRNO", 1)]
    out = seccomp._dedupe(rules, "SCMP_ACT_ERRNO", 1)
    assert [(r.name, bool(r.args)) for r in out] == [("ptrace", False), ("clone", False)]


def test_libseccomp_builds_and_exports_the_default_filter():
    pytest.importorskip("seccomp")
    plan = seccomp.resolve(seccomp.load_default(), DEFAULT_CAPS)
    flt = seccomp.build(plan)
    pfc = flt.backend.export("pfc").decode()
    assert "pseudo filter code" in pfc and '"mkdir"' in pfc
    bpf = flt.backend.export("bpf")
    assert len(bpf) % 8 == 0 and len(bpf) > 100 * 8
    text = seccomp.disassemble(bpf)
    assert text[0].endswith("; arch") and any("ALLOW" in t for t in text) and any("ERRNO(EPERM)" in t for t in text)
    # A binary tree over the syscall numbers (SCMP_FLTATR_CTL_OPTIMIZE=2): the program compares
    # nr with jgt/jge to halve the range, where an if-chain only tests equality.
    assert sum(1 for t in text if t.split()[1] in ("jgt", "jge")) > 10, text[:40]


def test_compile_plan_caches_the_program(tmp_path):
    pytest.importorskip("seccomp")
    plan = seccomp.resolve(seccomp.load_default(), DEFAULT_CAPS)
    a = seccomp.compile_plan(plan, cache=tmp_path)
    b = seccomp.compile_plan(plan, cache=tmp_path)
    assert not a.cached and b.cached and a.bpf == b.bpf and b.seccomp_nr == a.seccomp_nr > 0
    other = seccomp.compile_plan(seccomp.resolve(seccomp.load_default(), DEFAULT_CAPS + ["CAP_SYS_ADMIN"]),
                                 cache=tmp_path)
    assert not other.cached and other.bpf != a.bpf


def test_disassemble_a_small_program():
    prog = b"".join(struct.pack("=HBBI", *ins) for ins in [
        (0x20, 0, 0, 4), (0x15, 1, 0, 0xC000003E), (0x06, 0, 0, 0), (0x20, 0, 0, 0),
        (0x15, 0, 1, 83), (0x06, 0, 0, 0x00050001), (0x06, 0, 0, 0x7FFF0000)])
    out = seccomp.disassemble(prog)
    assert out[0] == "   0: ld  [4]  ; arch"
    assert out[1] == "   1: jeq #0xc000003e, 3, 2"
    assert "KILL_THREAD" in out[2]
    assert out[5].endswith("ERRNO(EPERM)")
    assert out[6].endswith("ALLOW")


AUDIT = ('audit(1795916280.832:3): auid=0 uid=0 gid=0 ses=7 pid=15752 comm="mkdir" exe="/bin/busybox" '
         'sig=0 arch=c000003e syscall=83 compat=0 ip=0x7fab19971f37 code=0x50000')


def test_parse_audit_record():
    r = seccomp.parse_audit(AUDIT)
    assert r["pid"] == 15752 and r["syscall"] == 83 and r["code"] == 0x50000
    assert r["ses"] == "7" and r["comm"] == "mkdir" and r["arch"] == "c000003e"
    assert seccomp.action_of_code(r["code"]) == "SCMP_ACT_ERRNO"
    assert seccomp.action_of_code(0x80000000) == "SCMP_ACT_KILL_PROCESS"
    assert seccomp.parse_audit("audit: type=1300 something else") is None


def test_syscall_names_from_numbers():
    pytest.importorskip("seccomp")
    assert seccomp.syscall_name(83, "c000003e") == "mkdir"
    assert seccomp.syscall_name(272) == "unshare"


class _FakeWatcher(seccomp.DenialWatcher):
    def __init__(self, records, **kw):
        self.cid, self.name, self.plan, self.emit = "c" * 64, "n", None, False
        self.session, self.pidns, self.count, self.by_syscall, self.last = kw.get("session"), None, 0, {}, None
        self.sock = self.kmsg = None
        self.source = "test"
        self._pid_cache = {}
        self._recs = records

    def _records(self):
        recs, self._recs = self._recs, []
        return recs

    def _save(self):
        pass


def test_watcher_keeps_only_its_own_session():
    other = AUDIT.replace("ses=7", "ses=8")
    w = _FakeWatcher([AUDIT, other, "garbage"], session=7)
    got = w.poll()
    assert len(got) == 1
    assert got[0]["pid"] == 15752 and got[0]["nr"] == 83 and got[0]["action"] == "SCMP_ACT_ERRNO"
    assert w.count == 1
    assert w.poll() == []


def test_watcher_names_the_errno_from_the_plan():
    plan = seccomp.resolve(seccomp.load_default(), DEFAULT_CAPS, "SCMP_ARCH_X86_64", (6, 18))
    w = _FakeWatcher([AUDIT.replace("syscall=83", "syscall=165")], session=7)
    w.plan = plan
    got = w.poll()
    assert got[0]["action"] == "SCMP_ACT_ERRNO(EPERM)"
