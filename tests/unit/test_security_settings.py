"""--security-opt parsing, the settings a config resolves to, the run options' security_extra, user namespace
mappings, the device allowlist, and the order of operations before execve."""

from __future__ import annotations

import argparse
import contextlib
import json
import os

import pytest

from engine import devices, security, userns
from engine.errors import InvalidArgument


@pytest.mark.parametrize("opt,expected", [
    ("no-new-privileges", {"no_new_privileges": True}),
    ("no-new-privileges=true", {"no_new_privileges": True}),
    ("no-new-privileges:true", {"no_new_privileges": True}),
    ("no-new-privileges=false", {"no_new_privileges": False}),
    ("seccomp=unconfined", {"seccomp": "unconfined"}),
    ("systempaths=unconfined", {"systempaths": "unconfined"}),
])
def test_security_opts(opt, expected):
    assert security.parse_security_opts([opt]) == expected


@pytest.mark.parametrize("opt,match", [
    ("no-new-privileges=maybe", "true or false"), ("seccomp=", "seccomp="), ("apparmor=unconfined", "apparmor"),
    ("systempaths=strict", "systempaths"), ("label=disable", "label"), ("frobnicate", "expected"),
])
def test_bad_security_opts(opt, match):
    with pytest.raises(InvalidArgument, match=match):
        security.parse_security_opts([opt])


def test_seccomp_profile_file_is_read_and_stored(tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW",
                             "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}))
    out = security.parse_security_opts([f"seccomp={f}"])
    assert out["seccomp"] == "custom" and out["seccomp_profile"]["defaultAction"] == "SCMP_ACT_ALLOW"
    assert out["seccomp_profile_path"] == str(f)
    with pytest.raises(InvalidArgument, match="cannot read"):
        security.parse_security_opts([f"seccomp={tmp_path}/nope.json"])


def test_defaults():
    s = security.settings({})
    assert not s.privileged and s.no_new_privs and s.seccomp == "default" and s.systempaths == "default"
    assert len(s.caps) == 14 and s.userns == "host"
    assert s.security_opt() == ["no-new-privileges=true"]


def test_privileged_means_all_caps_no_seccomp_no_masks_and_no_nnp_unless_asked():
    s = security.settings({"security": {"privileged": True, "seccomp": "custom", "seccomp_profile": {}}})
    assert s.seccomp == "unconfined" and s.systempaths == "unconfined" and not s.no_new_privs
    assert len(s.caps) == security.caps_mod.last_cap() + 1
    assert security.settings({"security": {"privileged": True, "no_new_privileges": True}}).no_new_privs


def test_nnp_can_be_relaxed():
    assert not security.settings({"security": {"no_new_privileges": False}}).no_new_privs


def test_seccomp_plan_follows_the_caps():
    plan = security.seccomp_plan({"security": {"cap_add": ["CAP_SYS_ADMIN"]}})
    assert any(r.name == "mount" for r in plan.rules)
    assert security.seccomp_plan({"security": {"seccomp": "unconfined"}}) is None


def _args(**kw):
    base = {"cap_add": [], "cap_drop": [], "privileged": False, "security_opt": [], "userns": None, "device": []}
    base.update(kw)
    return argparse.Namespace(**base)


def test_cli_run_extra_validates_and_normalises():
    from labtui.common import runopts

    out = runopts.security_extra(_args(cap_add=["sys_admin"], cap_drop=["CAP_NET_RAW"],
                                       security_opt=["no-new-privileges=false"], userns="private"))
    assert out["userns"] == "private"
    assert out["security"]["cap_add"] == ["CAP_SYS_ADMIN"] and out["security"]["cap_drop"] == ["CAP_NET_RAW"]
    assert out["security"]["no_new_privileges"] is False
    assert runopts.security_extra(_args())["userns"] == "host"
    with pytest.raises(InvalidArgument, match="unknown capability"):
        runopts.security_extra(_args(cap_add=["SYS_EVERYTHING"]))


def test_cli_parser_has_the_flags_and_commands():
    from labtui.cli import main as cli

    ap = cli.build_parser()
    a = ap.parse_args(["run", "--cap-add", "NET_ADMIN", "--cap-drop", "ALL", "--privileged", "--security-opt",
                       "seccomp=unconfined", "--userns", "private", "busybox", "true"])
    assert a.cap_add == ["NET_ADMIN"] and a.cap_drop == ["ALL"] and a.privileged and a.userns == "private"
    assert ap.parse_args(["attack", "run", "shocker", "--profile", "weak", "--format", "json"]).profile == "weak"
    assert ap.parse_args(["seccomp", "show", "x", "--format", "bpf"]).format == "bpf"


# ---- user namespaces -----------------------------------------------------------------------------

def test_mapping_defaults_when_subuid_has_no_labtui_entry(tmp_path):
    (tmp_path / "subuid").write_text("")
    (tmp_path / "subgid").write_text("alice:100000:65536\n")
    m = userns.mapping(str(tmp_path / "subuid"), str(tmp_path / "subgid"))
    assert (m.uid, m.gid, m.count) == (100000, 100000, 65536)
    assert m.uid_line() == "0 100000 65536" and m.key == "100000-100000-65536"


def test_mapping_from_subuid_and_subgid(tmp_path):
    (tmp_path / "subuid").write_text("alice:100000:65536\nlabtui:200000:131072\n")
    (tmp_path / "subgid").write_text("labtui:300000:65536\n")
    m = userns.mapping(str(tmp_path / "subuid"), str(tmp_path / "subgid"))
    assert (m.uid, m.gid, m.count) == (200000, 300000, 65536)
    assert m.host_uid(0) == 200000 and m.host_uid(70000) == 65534


def test_userns_mode_validation():
    assert userns.validate_mode(None) == "host"
    assert userns.validate_mode("private") == "private"
    with pytest.raises(InvalidArgument):
        userns.validate_mode("remap")


class _Rec:
    def __init__(self):
        self.steps = []

    def step(self, mechanism, op, **kw):
        self.steps.append({"mechanism": mechanism, "op": op, **kw})
        return contextlib.nullcontext({})


def test_write_maps_order_setgroups_first(tmp_path, monkeypatch):
    d = tmp_path / "proc" / "4242"
    d.mkdir(parents=True)
    for n in ("uid_map", "gid_map", "setgroups"):
        (d / n).write_text("")
    real_open, real_os_open = open, os.open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: real_open(str(p).replace("/proc/", f"{tmp_path}/proc/"),
                                                                       *a, **k))
    monkeypatch.setattr(os, "open", lambda p, *a, **k: real_os_open(str(p).replace("/proc/", f"{tmp_path}/proc/"),
                                                                     *a, **k))
    rec = _Rec()
    assert userns.write_maps(rec, 4242, {"userns": "private"})
    assert [s["op"] for s in rec.steps] == ["write setgroups", "write uid_map", "write gid_map"]
    assert rec.steps[0]["shell"] == "echo 'deny' > /proc/4242/setgroups"
    assert (d / "uid_map").read_text() == "0 100000 65536"
    assert not userns.write_maps(_Rec(), 4242, {"userns": "private"})  # already written
    assert not userns.write_maps(_Rec(), 4242, {"userns": "host"})


@pytest.mark.root
def test_shift_copy_shifts_owners_and_keeps_links(tmp_path):
    src = tmp_path / "layer"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    os.chown(src / "etc" / "passwd", 0, 42)
    os.link(src / "etc" / "passwd", src / "etc" / "hardlink")
    os.symlink("passwd", src / "etc" / "sym")
    (src / "opq").mkdir()
    os.setxattr(src / "opq", "trusted.overlay.opaque", b"y")
    os.mknod(src / "wh", 0o600 | 0o020000, os.makedev(0, 0))
    os.chmod(src / "etc" / "passwd", 0o4755)
    userns.shift_copy(str(src), str(tmp_path / "out"), userns.Mapping(100000, 200000, 65536))
    out = tmp_path / "out"
    st = os.lstat(out / "etc" / "passwd")
    assert (st.st_uid, st.st_gid) == (100000, 200042) and st.st_mode & 0o7777 == 0o4755
    assert os.lstat(out / "etc" / "hardlink").st_ino == st.st_ino
    assert os.readlink(out / "etc" / "sym") == "passwd" and os.lstat(out / "etc" / "sym").st_uid == 100000
    assert os.getxattr(out / "opq", "user.overlay.opaque") == b"y"
    assert os.lstat(out / "wh").st_rdev == 0 and os.lstat(out / "wh").st_uid == 100000


# ---- devices ---------------------------------------------------------------------------------------

def test_allowlist_is_dockers():
    texts = [devices.rule_text(r) for r in devices.ALLOWLIST]
    for r in ("c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm",
              "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm"):
        assert r in texts


def test_apply_allowlist_denies_all_first(tmp_path):
    (tmp_path / "devices.deny").write_text("")
    (tmp_path / "devices.allow").write_text("")
    rec = _Rec()
    cfg = {"security": {"devices": [{"type": "b", "major": 254, "minor": 0, "perms": "r"}]}}
    rules = devices.apply_allowlist(rec, str(tmp_path), cfg)
    assert rec.steps[0]["value"] == "a" and rec.steps[0]["target"].endswith("devices.deny")
    assert [s["value"] for s in rec.steps[1:]] == rules
    assert rules[-1] == "b 254:0 r"
    assert all(s["shell"].startswith("echo '") for s in rec.steps)


def test_parse_device():
    d = devices.parse_device("/dev/null:/dev/mynull:rw")
    assert (d["type"], d["major"], d["minor"], d["perms"], d["container"]) == ("c", 1, 3, "rw", "/dev/mynull")
    assert devices.parse_device("/dev/zero")["container"] == "/dev/zero"
    assert devices.parse_device("/dev/zero:r")["perms"] == "r"
    for bad in ("/dev/nosuch", "/etc/passwd", "/dev/null:/dev/x:rwz", "/dev/null:/etc/x"):
        with pytest.raises(InvalidArgument):
            devices.parse_device(bad)


# ---- the order before execve -----------------------------------------------------------------------

def _order(monkeypatch, nnp: bool) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(security, "_close_on_exec", lambda rec, keep: seen.append("cloexec"))
    monkeypatch.setattr(security.sc, "prctl", lambda *a: seen.append(f"prctl {a[0]}"))
    monkeypatch.setattr(security.caps_mod, "apply", lambda rec, caps: seen.append("caps"))

    class F:
        def load(self):
            seen.append("seccomp")

        def describe(self):
            return "f"

    p = security.Prepared(security.settings({"security": {"no_new_privileges": nnp}}), filter=F())
    security.apply_before_exec(_Rec(), {}, p)
    return seen


def test_order_with_no_new_privs_is_nnp_caps_then_seccomp(monkeypatch):
    assert _order(monkeypatch, True) == ["cloexec", f"prctl {security.sc.PR_SET_NO_NEW_PRIVS}", "caps", "seccomp"]


def test_order_without_no_new_privs_loads_seccomp_while_sys_admin_is_held(monkeypatch):
    assert _order(monkeypatch, False) == ["cloexec", "seccomp", "caps"]
