"""Capabilities, no_new_privs, seccomp (with live denials), masked paths, the init's hardening and
user namespaces, on the real kernel through the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

import pytest

from tests.helpers import inspect, labtui, lib, proc_status, run_d, wait_for

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("clean_containers")]

DOCKER_MASK = "00000000a80425fb"
ZERO = "0000000000000000"


def main_pid(cid: str) -> int:
    init = inspect(cid)["State"]["Pid"]

    def child():
        with open(f"/proc/{init}/task/{init}/children") as f:
            kids = f.read().split()
        return int(kids[0]) if kids else None

    return wait_for(child, what="the container's command")


def status_of(*run_args: str) -> dict:
    cid = run_d(*run_args, "busybox", "sleep", "30")
    st = proc_status(main_pid(cid))
    labtui("rm", "-f", cid)
    return st


def events(cid: str, type_: str) -> list[dict]:
    path = lib() / "events.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        ev = json.loads(line)
        if ev.get("container") == cid and ev.get("type") == type_:
            out.append(ev)
    return out


def steps(cid: str) -> list[dict]:
    return [json.loads(x) for x in labtui("steps", cid, "--format", "json").stdout.splitlines() if x.strip()]


# ---- capabilities and no_new_privs ------------------------------------------------------------------

def test_default_sets_are_dockers_14_caps_with_nnp_and_a_filter():
    cid = run_d("busybox", "sleep", "30")
    st = proc_status(main_pid(cid))
    assert st["CapEff"] == st["CapPrm"] == st["CapBnd"] == DOCKER_MASK
    assert st["CapInh"] == st["CapAmb"] == ZERO
    assert st["NoNewPrivs"] == "1"
    assert st["Seccomp"] == "2" and st["Seccomp_filters"] == "1"
    info = inspect(cid)
    proc = info["Security"]["process"]
    assert proc["effective"]["mask"] == "0x" + DOCKER_MASK
    assert proc["effective"]["names"][:2] == ["cap_chown", "cap_dac_override"]
    assert proc["seccomp"]["name"] == "filter" and proc["no_new_privs"] is True
    assert info["HostConfig"]["SecurityOpt"] == ["no-new-privileges=true"]
    recorded = {(s["mechanism"], s["op"]): s for s in steps(cid)}
    assert recorded[("capability", "capset")]["shell"].startswith('capsh --caps="cap_chown,')
    assert recorded[("capability", "prctl PR_CAPBSET_DROP")]["shell"].startswith("capsh --drop=")
    assert recorded[("process", "prctl")]["result"] == "ok"
    assert "seccomp" in recorded[("seccomp", "load filter")]["shell"]


def test_the_init_keeps_no_capability_and_no_host_fd():
    cid = run_d("busybox", "sleep", "30")
    init = inspect(cid)["State"]["Pid"]
    st = proc_status(init)
    assert st["CapEff"] == st["CapPrm"] == st["CapBnd"] == ZERO
    fds = os.listdir(f"/proc/{init}/fd")
    assert sorted(fds) == ["0", "1", "2"]
    assert all(os.readlink(f"/proc/{init}/fd/{fd}") == "/dev/null" for fd in fds)


def test_cap_drop_all_empties_every_set():
    st = status_of("--cap-drop", "ALL")
    assert st["CapEff"] == st["CapPrm"] == st["CapBnd"] == st["CapInh"] == st["CapAmb"] == ZERO


def test_cap_add_sys_admin_adds_bit_21():
    st = status_of("--cap-add", "sys_admin")
    assert int(st["CapEff"], 16) == 0xA80425FB | 1 << 21
    assert int(st["CapBnd"], 16) == 0xA80425FB | 1 << 21


def test_privileged_gets_the_full_sets_and_no_seccomp():
    st = status_of("--privileged")
    mine = proc_status(os.getpid())["CapBnd"]  # root here lacks CAP_SYS_MODULE: that is the full set
    assert st["CapEff"] == st["CapPrm"] == st["CapBnd"] == mine
    assert st["Seccomp"] == "0"


def test_no_new_privileges_false_still_loads_the_filter():
    st = status_of("--security-opt", "no-new-privileges=false")
    assert st["NoNewPrivs"] == "0"
    assert st["Seccomp"] == "2" and st["CapEff"] == DOCKER_MASK


def test_unknown_capability_is_refused_before_anything_exists():
    p = labtui("run", "--rm", "--cap-add", "SYS_EVERYTHING", "busybox", "true", check=False)
    assert p.returncode == 125 and "unknown capability" in p.stderr


# ---- seccomp ------------------------------------------------------------------------------------------

def test_a_denied_syscall_is_an_event_within_a_second():
    cid = run_d("busybox", "sh", "-c", "unshare -U true; echo rc=$?; sleep 30")
    ev = wait_for(lambda: events(cid, "seccomp_denied"), timeout=5, what="a seccomp_denied event")[0]
    exec_ts = [s for s in steps(cid) if s["mechanism"] == "exec"][0]["ts"]
    assert ev["syscall"] == "unshare" and ev["nr"] == 272
    assert ev["action"] == "SCMP_ACT_ERRNO(EPERM)"
    assert ev["pid"] > 0 and ev["name"] == inspect(cid)["Name"].lstrip("/")
    assert ev["ts"] - exec_ts < 1.0
    logs = labtui("logs", cid)
    assert "Operation not permitted" in logs.stderr and "rc=1" in logs.stdout
    assert inspect(cid)["Security"]["seccomp_denials"]["count"] >= 1


def test_mount_is_denied_and_named():
    p = labtui("run", "--name", "mnt-denied", "busybox", "mount", "-t", "tmpfs", "x", "/mnt", check=False)
    assert p.returncode != 0
    cid = inspect("mnt-denied")["Id"]
    assert any(e["syscall"] == "mount" for e in wait_for(lambda: events(cid, "seccomp_denied"), timeout=3))


def test_unconfined_has_no_filter_and_no_denials():
    cid = run_d("--security-opt", "seccomp=unconfined", "busybox", "sh", "-c", "unshare -U true; sleep 30")
    assert proc_status(main_pid(cid))["Seccomp"] == "0"
    time.sleep(0.6)
    assert events(cid, "seccomp_denied") == []


def test_a_custom_profile_blocking_mkdir(tmp_path):
    prof = tmp_path / "no-mkdir.json"
    prof.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW",
                                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    p = labtui("run", "--name", "nomkdir", "--security-opt", f"seccomp={prof}", "busybox", "sh", "-c",
               "mkdir /x; echo rc=$?; touch /y && echo touched", check=False)
    assert "Operation not permitted" in p.stderr and "rc=1" in p.stdout and "touched" in p.stdout
    cid = inspect("nomkdir")["Id"]
    ev = wait_for(lambda: events(cid, "seccomp_denied"), timeout=3)[0]
    assert ev["syscall"] in ("mkdir", "mkdirat")
    shown = labtui("seccomp", "show", "nomkdir").stdout
    assert "no-mkdir.json" in shown and "mkdir" in shown


def test_an_invalid_profile_is_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"defaultAction": "SCMP_ACT_MAYBE"}')
    p = labtui("run", "--rm", "--security-opt", f"seccomp={bad}", "busybox", "true", check=False)
    assert p.returncode == 125 and "defaultAction" in p.stderr and str(bad) in p.stderr
    p = labtui("run", "--rm", "--security-opt", f"seccomp={tmp_path}/none.json", "busybox", "true", check=False)
    assert p.returncode == 125 and "cannot read seccomp profile" in p.stderr


def test_seccomp_show_prints_pfc_and_bpf():
    cid = run_d("busybox", "sleep", "30")
    pfc = labtui("seccomp", "show", cid).stdout
    assert "Seccomp=2" in pfc and "pseudo filter code" in pfc and "ERRNO(1)" in pfc
    bpf = labtui("seccomp", "show", cid, "--format", "bpf").stdout
    assert "; arch" in bpf and "ret #0x7fff0000" in bpf


# ---- masked and read-only paths ------------------------------------------------------------------------

def test_masked_and_read_only_paths():
    script = ("for f in /proc/kcore /proc/keys /proc/timer_list /proc/interrupts; do "
              "[ -e $f ] && echo \"$f $(wc -c < $f)\"; done; ls -A /sys/firmware | wc -l; "
              "echo 1 > /proc/sys/vm/drop_caches; echo x > /proc/sys/kernel/hostname; "
              "grep -E ' /proc/(sys|bus|fs|irq) ' /proc/self/mountinfo | grep -c ' ro,'")
    p = labtui("run", "--rm", "busybox", "sh", "-c", script, check=False)
    out = p.stdout.split("\n")
    sizes = [ln for ln in out if ln.startswith("/proc/")]
    assert sizes and all(ln.endswith(" 0") for ln in sizes), sizes
    assert "/proc/kcore 0" in sizes or not os.path.exists("/proc/kcore")
    assert out[len(sizes)] == "0"  # /sys/firmware: an empty tmpfs
    assert p.stderr.count("Read-only file system") == 2
    assert out[len(sizes) + 1] == "4"


def test_systempaths_unconfined_removes_the_masks():
    p = labtui("run", "--rm", "--security-opt", "systempaths=unconfined", "busybox", "sh", "-c",
               "grep -c ' /proc/sys ' /proc/self/mountinfo; wc -c < /proc/interrupts", check=False)
    lines = p.stdout.split()
    assert lines[0] == "0" and int(lines[1]) > 0


# ---- the runtime's processes from inside ------------------------------------------------------------

def test_the_container_cannot_reach_its_init():
    from engine.attacks import helpers

    d = tempfile.mkdtemp(dir=str(lib()))
    os.chmod(d, 0o755)
    shutil.copy2(helpers.build("ptrace_peek"), os.path.join(d, "ptrace_peek"))
    script = ("readlink /proc/1/exe || echo exe-denied; readlink /proc/1/fd/0 || echo fd-denied; "
              "ls /proc/1/root/ || echo root-denied; cat /proc/1/environ || echo environ-denied; "
              "cat /proc/1/mem || echo mem-denied; /h/ptrace_peek 1 0 8")
    p = labtui("run", "--rm", "-v", f"{d}:/h:ro", "busybox", "sh", "-c", script, check=False)
    for word in ("exe-denied", "fd-denied", "root-denied", "environ-denied", "mem-denied"):
        assert word in p.stdout, p.stdout + p.stderr
    assert "BLOCKED: ptrace(PTRACE_ATTACH): Operation not permitted" in p.stdout
    shutil.rmtree(d)


# ---- user namespaces ------------------------------------------------------------------------------------

def test_userns_host_is_the_default():
    cid = run_d("busybox", "sleep", "30")
    with open(f"/proc/{inspect(cid)['State']['Pid']}/uid_map") as f:
        assert f.read().split() == ["0", "0", "4294967295"]


def test_userns_private_maps_root_to_an_unprivileged_range():
    cid = run_d("--userns=private", "busybox", "sleep", "30")
    pid = inspect(cid)["State"]["Pid"]
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{pid}/{name}") as f:
            assert f.read().split() == ["0", "100000", "65536"]
    with open(f"/proc/{pid}/setgroups") as f:
        assert f.read().strip() == "deny"
    assert os.stat(f"/proc/{main_pid(cid)}").st_uid == 100000
    info = inspect(cid)
    assert info["HostConfig"]["UsernsMode"] == "private"
    assert info["Security"]["userns"]["uid_map"] == ["0", "100000", "65536"]
    ops = [s["op"] for s in steps(cid) if s["mechanism"] == "userns"]
    assert ops.index("write setgroups") < ops.index("write uid_map") < ops.index("write gid_map")


def test_userns_root_files_in_a_volume_belong_to_the_mapped_uid():
    vol = tempfile.mkdtemp(dir="/var/tmp", prefix="labtui-userns-")
    try:
        os.chmod(vol, 0o755)
        os.chown(vol, 100000, 100000)
        p = labtui("run", "--rm", "--userns=private", "-v", f"{vol}:/data", "busybox", "sh", "-c",
                   "id -u; echo hi > /data/made-by-root && ls -ln /data", check=False)
        assert p.returncode == 0, p.stderr
        st = os.stat(os.path.join(vol, "made-by-root"))
        assert (st.st_uid, st.st_gid) == (100000, 100000)
        assert p.stdout.startswith("0\n")
    finally:
        shutil.rmtree(vol, ignore_errors=True)


def test_userns_root_cannot_read_a_host_root_only_file():
    d = tempfile.mkdtemp(dir="/var/tmp", prefix="labtui-userns-")
    try:
        os.chmod(d, 0o755)
        secret = os.path.join(d, "secret")
        with open(secret, "w") as f:
            f.write("host-only\n")
        os.chmod(secret, 0o600)
        p = labtui("run", "--rm", "--userns=private", "-v", f"{secret}:/secret:ro", "busybox", "sh", "-c",
                   "ls -ln /secret; cat /secret", check=False)
        assert p.returncode != 0 and "Permission denied" in p.stderr
        assert "host-only" not in p.stdout
        assert "65534" in p.stdout  # the host's root is unmapped: it shows as the overflow id
        p = labtui("run", "--rm", "-v", f"{secret}:/secret:ro", "busybox", "cat", "/secret", check=False)
        assert p.stdout == "host-only\n"  # the same file without a user namespace
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_userns_container_works_normally():
    p = labtui("run", "--rm", "--userns=private", "busybox", "sh", "-c",
               "echo a > /tmp/f && cat /tmp/f && rm /bin/true && ls /bin/true; hostname; grep Seccomp: "
               "/proc/self/status; echo ok > /dev/null && echo devnull", check=False)
    assert "a\n" in p.stdout and "devnull" in p.stdout and "Seccomp:\t2" in p.stdout
    assert "No such file" in p.stderr  # a whiteout in the upper dir hides the lower layer's file
