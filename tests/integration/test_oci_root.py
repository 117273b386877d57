"""labtui-oci, the OCI runtime command, on the real kernel: hand-made bundles (each config.json
field checked on the kernel), lifecycle errors that change nothing, and podman driving it.

The runtime is run as `python -m labtui.oci` from this tree (the installed /usr/local/bin/labtui-oci
is the same module); podman gets a wrapper script that does the same with this run's LABTUI_ROOT.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers import labtui, lib, our_processes, ps_json, wait_for

root = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]
OCI = [sys.executable, "-m", "labtui.oci"]
APPLETS = ("sh", "cat", "echo", "sleep", "id", "hostname", "ls", "mkdir", "grep", "tty", "true", "httpd", "env")
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID"]


def make_rootfs(d: Path) -> Path:
    rootfs = d / "rootfs"
    for sub in ("bin", "etc", "tmp", "proc", "sys", "dev"):
        (rootfs / sub).mkdir(parents=True)
    busybox = shutil.which("busybox") or "/bin/busybox"
    shutil.copy2(busybox, rootfs / "bin" / "busybox")
    for a in APPLETS:
        os.symlink("busybox", rootfs / "bin" / a)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    os.chmod(rootfs / "tmp", 0o1777)
    return rootfs


def base_config(args: list[str]) -> dict:
    """What `runc spec` writes, reduced: the namespaces, the standard mounts, a few capabilities."""
    return {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": args,
                    "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "cwd": "/",
                    "capabilities": {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")},
                    "noNewPrivileges": True},
        "root": {"path": "rootfs"},
        "hostname": "ocibox",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
                  "maskedPaths": ["/proc/keys"], "readonlyPaths": ["/proc/sys"]},
    }


class Oci:
    """One test's runtime: its own --root, bundles under a temporary directory, and everything
    created removed at the end (delete --force), whatever the test did."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = tmp / "state"
        self.ids: list[str] = []

    def __call__(self, *args: str, check: bool = True, stdout=None, timeout: float = 60,
                 **kw) -> subprocess.CompletedProcess:
        # Files, not pipes: the container's process inherits the runtime's stdio (as conmon's
        # pipes), so a pipe would not reach EOF when the runtime exits.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            p = subprocess.run(OCI + ["--root", str(self.root), *args], cwd=REPO, stdin=subprocess.DEVNULL,
                               stdout=stdout if stdout is not None else out, stderr=err, timeout=timeout, **kw)
            out.seek(0)
            err.seek(0)
            p.stdout, p.stderr = out.read(), err.read()
        if check and p.returncode != 0:
            raise AssertionError(f"labtui-oci {' '.join(args)} exited {p.returncode}: {p.stderr}")
        return p

    def bundle(self, name: str, cfg: dict) -> Path:
        b = self.tmp / name
        if not (b / "rootfs").exists():
            make_rootfs(b)
        (b / "config.json").write_text(json.dumps(cfg))
        return b

    def create(self, cid: str, cfg: dict, out: Path | None = None, **kw) -> int:
        b = self.bundle(cid, cfg)
        pidfile = self.tmp / f"{cid}.pid"
        self.ids.append(cid)
        with open(out or os.devnull, "w") as f:
            self("create", cid, "--bundle", str(b), "--pid-file", str(pidfile), stdout=f, **kw)
        return int(pidfile.read_text())

    def run(self, cid: str, cfg: dict) -> tuple[int, Path]:
        """create + start; returns the PID and the file the command's stdout goes to."""
        out = self.tmp / f"{cid}.out"
        pid = self.create(cid, cfg, out)
        self("start", cid)
        return pid, out

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid).stdout)

    def cleanup(self) -> None:
        for cid in self.ids:
            self("delete", "--force", cid, check=False)


@pytest.fixture
def oci():
    tmp = Path(tempfile.mkdtemp(prefix="labtui-oci-", dir="/var/tmp"))
    tmp.chmod(0o755)  # a user namespace's root (an unprivileged host uid) must reach its rootfs
    o = Oci(tmp)
    yield o
    o.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)


def status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def mountinfo(pid: int) -> list[list[str]]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return [line.split() for line in f]


def mount_at(pid: int, point: str) -> list[str]:
    found = [m for m in mountinfo(pid) if m[4] == point]
    assert found, f"nothing mounted at {point}"
    return found[-1]


def steps_of(cid: str) -> list[dict]:
    from engine.oci.runtime import labtui_id

    with open(lib() / "containers" / labtui_id(cid) / "steps.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def mask(names: list[str]) -> int:
    from engine.capabilities import CAP_BITS

    return sum(1 << CAP_BITS[n] for n in names)


def wait_exit(pid: int, timeout: float = 10) -> None:
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or status(pid).get("State", "").startswith("Z"),
             timeout, what=f"pid {pid} to exit")


# ---- the lifecycle ---------------------------------------------------------------------------------------

@root
def test_create_blocks_before_execve_then_start_runs_the_command(oci):
    cfg = base_config(["sh", "-c", "echo started as $$; sleep 600; true"])
    out = oci.tmp / "c1.out"
    pid = oci.create("c1", cfg, out)
    st = oci.state("c1")
    assert st["status"] == "created" and st["pid"] == pid and st["bundle"] == str(oci.tmp / "c1")
    # set up, not yet the command: still labtui's process, no output
    assert status(pid)["Name"] == "labtui-oci-init"
    assert out.read_text() == ""
    [c] = [c for c in ps_json() if c["Names"] == "c1"]
    assert c["State"] == "created"
    oci("start", "c1")
    assert oci.state("c1")["status"] == "running"
    wait_for(lambda: out.read_text(), what="output")
    assert out.read_text() == "started as 1\n"  # PID 1 is the command itself: no labtui init
    assert status(pid)["Name"] == "sh"
    [c] = [c for c in ps_json() if c["Names"] == "c1"]
    assert c["State"] == "running"
    ops = [(s["mechanism"], s["op"]) for s in steps_of("c1")]
    for want in [("namespace", "clone"), ("rootfs", "pivot_root"), ("cgroup", "mkdir"), ("exec", "execve"),
                 ("process", "write")]:
        assert want in ops, want
    assert ops.index(("namespace", "clone")) < ops.index(("rootfs", "pivot_root")) < ops.index(("exec", "execve"))
    oci("kill", "c1", "KILL")
    wait_exit(pid)
    assert oci.state("c1")["status"] == "stopped"
    # no conmon here: the exit watcher read the status all the same (128+SIGKILL)
    wait_for(lambda: labtui_row("c1").get("ExitCode") == 137, what="Exited (137) in labtui's record")
    oci("delete", "c1")
    assert not (oci.root / "c1").exists()
    assert [c for c in ps_json() if c["Names"] == "c1"] == []


@root
def test_lifecycle_errors_change_nothing(oci):
    pid, _ = oci.run("c2", base_config(["sleep", "600"]))
    before = oci.state("c2")
    p = oci("start", "c2", check=False)
    assert p.returncode == 125 and "cannot start container c2: it is running" in p.stderr
    p = oci("delete", "c2", check=False)
    assert p.returncode == 125 and "it is running" in p.stderr
    assert oci.state("c2") == before and os.path.exists(f"/proc/{pid}")
    p = oci("create", "c2", "--bundle", str(oci.tmp / "c2"), check=False)
    assert p.returncode == 125 and "already exists" in p.stderr
    assert oci.state("c2") == before
    oci("kill", "c2", "KILL")
    wait_exit(pid)
    p = oci("kill", "c2", "TERM", check=False)
    assert p.returncode == 125 and "it is stopped" in p.stderr
    p = oci("start", "c2", check=False)
    assert p.returncode == 125 and "it is stopped" in p.stderr
    for args in (("state", "nope"), ("start", "nope"), ("kill", "nope"), ("delete", "nope")):
        p = oci(*args, check=False)
        assert p.returncode == 125 and "container nope does not exist" in p.stderr, args


@root
@pytest.mark.parametrize(("change", "field"), [
    (lambda c: c["process"].pop("args"), "process.args"),
    (lambda c: c["process"].update(cwd="relative"), "process.cwd"),
    (lambda c: c["linux"]["namespaces"].append({"type": "time-travel"}), "linux.namespaces[5].type"),
    (lambda c: c["mounts"].append({"destination": "tmp"}), "mounts[5].destination"),
    (lambda c: c["process"]["capabilities"]["bounding"].append("CAP_FLY"), "process.capabilities.bounding"),
    (lambda c: c["process"].update(rlimits=[{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]),
     "process.rlimits[0].soft"),
    (lambda c: c["linux"].update(resources={"memory": {"limit": 1000}}), "linux.resources.memory.limit"),
    (lambda c: c["linux"].update(seccomp={"defaultAction": "SCMP_ACT_NOPE"}), "linux.seccomp"),
    (lambda c: c.update(hooks={"prestart": [{"path": "relative"}]}), "hooks.prestart[0].path"),
    (lambda c: c["linux"].update(cgroupsPath="machine.slice:libpod:x"), "linux.cgroupsPath"),
])
def test_an_invalid_config_names_the_field_and_leaves_nothing(oci, change, field):
    cfg = base_config(["true"])
    change(cfg)
    b = oci.bundle("bad", cfg)
    p = oci("create", "bad", "--bundle", str(b), check=False)
    assert p.returncode == 125, p.stderr
    assert f"config.json: {field}:" in p.stderr
    assert "Traceback" not in p.stderr
    assert not (oci.root / "bad").exists()
    assert [c for c in ps_json() if c["Names"] == "bad"] == []


@root
def test_a_missing_command_fails_create_with_127_and_leaves_nothing(oci):
    b = oci.bundle("nocmd", base_config(["no-such-command"]))
    p = oci("create", "nocmd", "--bundle", str(b), check=False)
    assert p.returncode == 127 and 'exec: "no-such-command": executable file not found in $PATH' in p.stderr
    assert not (oci.root / "nocmd").exists()
    assert [c for c in ps_json() if c["Names"] == "nocmd"] == []
    from engine.oci.runtime import labtui_id

    assert not [d for d in Path("/sys/fs/cgroup/memory", os.environ["LABTUI_CGROUP_PARENT"]).glob("*")
                if d.name == labtui_id("nocmd")]


@root
def test_global_flags_features_and_version(oci):
    p = oci("--systemd-cgroup", "create", "x", "--bundle", str(oci.tmp), check=False)
    assert p.returncode == 125 and "--systemd-cgroup is not supported" in p.stderr
    feats = json.loads(oci("features").stdout)
    assert feats["linux"]["namespaces"] == sorted(["cgroup", "ipc", "mount", "network", "pid", "user", "uts"])
    assert "createRuntime" in feats["hooks"] and feats["linux"]["seccomp"]["enabled"] is True
    assert "labtui-oci" in oci("--version").stdout
    log = oci.tmp / "oci.log"
    p = oci("--log", str(log), "--log-format", "json", "state", "ghost", check=False)
    assert p.returncode == 125
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    assert recs[-1]["level"] == "error" and "ghost does not exist" in recs[-1]["msg"]


# ---- config.json, field by field, read back from the kernel -----------------------------------------------

@root
def test_namespaces_new_and_joined_by_path(oci):
    first, _ = oci.run("ns1", base_config(["sleep", "600"]))
    cfg = base_config(["sleep", "600"])
    cfg["linux"]["namespaces"] = [{"type": "pid"}, {"type": "mount"}, {"type": "uts"},
                                  {"type": "network", "path": f"/proc/{first}/ns/net"},
                                  {"type": "ipc", "path": f"/proc/{first}/ns/ipc"}, {"type": "cgroup"}]
    second, _ = oci.run("ns2", cfg)
    ino = lambda pid, k: os.stat(f"/proc/{pid}/ns/{k}").st_ino  # noqa: E731
    for k in ("net", "ipc"):
        assert ino(second, k) == ino(first, k) != ino(os.getpid(), k)
    for k in ("pid", "mnt", "uts", "cgroup"):
        assert ino(second, k) != ino(first, k) or k == "cgroup"
        assert ino(second, k) != ino(os.getpid(), k)
    assert status(second)["NSpid"].split()[-1] == "1"
    assert ("namespace", "setns") in [(s["mechanism"], s["op"]) for s in steps_of("ns2")]
    # a new cgroup namespace: the process sees its own cgroup as the root
    with open(f"/proc/{second}/cgroup") as f:
        host_view = f.read()
    # /proc/PID/cgroup shows paths relative to the reader's cgroup namespace
    inside = subprocess.run(["nsenter", "-t", str(second), "-C", "cat", f"/proc/{second}/cgroup"],
                            capture_output=True, text=True).stdout
    assert ":memory:/" + os.environ["LABTUI_CGROUP_PARENT"] + "/" in host_view
    assert ":memory:/\n" in inside


@root
def test_user_namespace_with_uid_and_gid_mappings(oci):
    cfg = base_config(["sleep", "600"])
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 231072, "size": 65536}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 231072, "size": 65536}]
    cfg["process"]["noNewPrivileges"] = True
    pid, _ = oci.run("user1", cfg)
    with open(f"/proc/{pid}/uid_map") as f:
        assert f.read().split() == ["0", "231072", "65536"]
    with open(f"/proc/{pid}/gid_map") as f:
        assert f.read().split() == ["0", "231072", "65536"]
    assert status(pid)["Uid"].split()[0] == "231072"  # container root is an unprivileged host uid
    assert os.stat(f"/proc/{pid}/ns/user").st_ino != os.stat("/proc/self/ns/user").st_ino


@root
def test_hostname_domainname_sysctl_and_annotations(oci):
    cfg = base_config(["sleep", "600"])
    cfg["domainname"] = "lab.example"
    cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"}
    cfg["annotations"] = {"org.example.course": "containers-101"}
    pid, _ = oci.run("uts1", cfg)
    got = subprocess.run(["nsenter", "-t", str(pid), "-u", "-n", "-i", "sh", "-c",
                          "hostname; cat /proc/sys/kernel/domainname /proc/sys/net/ipv4/ip_forward "
                          "/proc/sys/kernel/shmmni"], capture_output=True, text=True).stdout.split()
    assert got == ["ocibox", "lab.example", "1", "1234"]
    with open("/proc/sys/kernel/shmmni") as f:
        assert f.read().strip() != "1234"  # the host's IPC namespace is untouched
    assert oci.state("uts1")["annotations"] == {"org.example.course": "containers-101"}


@root
def test_mounts_root_readonly_masked_and_readonly_paths(oci):
    cfg = base_config(["sleep", "600"])
    data = oci.tmp / "data"
    data.mkdir()
    (data / "f").write_text("from the host\n")
    cfg["root"]["readonly"] = True
    cfg["mounts"] += [{"destination": "/data", "type": "bind", "source": str(data), "options": ["rbind", "ro"]},
                      {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "nodev", "size=1m", "mode=700"]}]
    cfg["linux"]["maskedPaths"] = ["/proc/keys", "/proc/scsi-nonexistent", "/sys/firmware"]
    cfg["linux"]["readonlyPaths"] = ["/proc/sys", "/proc/sysrq-trigger"]
    pid, _ = oci.run("mnt1", cfg)
    root_mnt = mount_at(pid, "/")
    assert "ro" in root_mnt[5].split(",")
    d = mount_at(pid, "/data")
    assert "ro" in d[5].split(",")
    with open(f"/proc/{pid}/root/data/f") as f:
        assert f.read() == "from the host\n"
    s = mount_at(pid, "/scratch")
    assert s[s.index("-") + 1] == "tmpfs" and "size=1024k" in s[-1] and "mode=700" in s[-1]
    assert "nosuid" in s[5] and "nodev" in s[5]
    assert os.stat(f"/proc/{pid}/root/proc/keys").st_rdev == os.makedev(1, 3)  # /dev/null over it
    fw = mount_at(pid, "/sys/firmware")
    assert fw[fw.index("-") + 1] == "tmpfs" and "ro" in fw[5].split(",")
    assert "ro" in mount_at(pid, "/proc/sys")[5].split(",")
    assert not [m for m in mountinfo(pid) if m[4] == "/proc/scsi-nonexistent"]
    # none of it is in the host's mount table
    with open("/proc/self/mountinfo") as f:
        assert str(data) not in f.read()


@root
def test_devices_and_the_device_cgroup(oci):
    cfg = base_config(["sleep", "600"])
    cfg["linux"]["devices"] = [{"path": "/dev/myfull", "type": "c", "major": 1, "minor": 7, "fileMode": 0o640,
                                "uid": 0, "gid": 0}]
    cfg["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    pid, _ = oci.run("dev1", cfg)
    st = os.stat(f"/proc/{pid}/root/dev/myfull")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 7) and stat.S_IMODE(st.st_mode) == 0o640
    for name in ("null", "zero", "urandom", "tty"):
        assert stat.S_ISCHR(os.stat(f"/proc/{pid}/root/dev/{name}").st_mode)
    assert os.readlink(f"/proc/{pid}/root/dev/ptmx") == "pts/ptmx"
    from engine.oci.runtime import labtui_id

    devdir = Path("/sys/fs/cgroup/devices", os.environ["LABTUI_CGROUP_PARENT"], labtui_id("dev1"))
    rules = set((devdir / "devices.list").read_text().split("\n"))
    assert "c 1:7 rwm" in rules and "c 1:3 rwm" in rules and "a *:* rwm" not in rules
    with open(f"/proc/{pid}/cgroup") as f:
        assert f"devices:/{os.environ['LABTUI_CGROUP_PARENT']}/{labtui_id('dev1')}" in f.read()


@root
def test_resources_and_cgroups_path(oci):
    cfg = base_config(["sleep", "600"])
    parent = os.environ["LABTUI_CGROUP_PARENT"] + "-oci"
    cfg["linux"]["cgroupsPath"] = f"/{parent}/my-box"
    cfg["linux"]["resources"] = {"memory": {"limit": 64 << 20, "swap": 128 << 20},
                                 "cpu": {"shares": 512, "quota": 50000, "period": 100000}, "pids": {"limit": 77}}
    cfg["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                          "options": ["nosuid", "noexec", "nodev", "ro"]})
    pid, _ = oci.run("res1", cfg)
    base = Path("/sys/fs/cgroup")
    try:
        assert (base / "memory" / parent / "my-box" / "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
        assert (base / "memory" / parent / "my-box" / "memory.memsw.limit_in_bytes").read_text().strip() \
            in (str(128 << 20),) or not (base / "memory" / parent / "my-box" / "memory.memsw.limit_in_bytes").exists()
        assert (base / "cpu" / parent / "my-box" / "cpu.shares").read_text().strip() == "512"
        assert (base / "cpu" / parent / "my-box" / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (base / "pids" / parent / "my-box" / "pids.max").read_text().strip() == "77"
        with open(f"/proc/{pid}/cgroup") as f:
            assert f"memory:/{parent}/my-box" in f.read()
        # the cgroup mount shows the container its own directory, read-only
        with open(f"/proc/{pid}/root/sys/fs/cgroup/memory/memory.limit_in_bytes") as f:
            assert f.read().strip() == str(64 << 20)
        assert "ro" in mount_at(pid, "/sys/fs/cgroup/memory")[5].split(",")
        oci("delete", "--force", "res1")
        assert not (base / "memory" / parent / "my-box").exists()
    finally:
        for ctrl in os.listdir(base):
            d = base / ctrl / parent
            if d.is_dir() and not (d / "my-box").exists():
                os.rmdir(d)


@root
def test_capabilities_user_rlimits_no_new_privileges_and_oom_score(oci):
    cfg = base_config(["sleep", "600"])
    proc = cfg["process"]
    proc["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 27], "umask": 0o27}
    proc["capabilities"] = {"bounding": ["CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_CHOWN"],
                            "permitted": ["CAP_NET_BIND_SERVICE", "CAP_KILL"], "effective": ["CAP_NET_BIND_SERVICE"],
                            "inheritable": ["CAP_NET_BIND_SERVICE"], "ambient": ["CAP_NET_BIND_SERVICE"]}
    proc["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654}, {"type": "RLIMIT_NPROC", "soft": 99,
                                                                               "hard": 99}]
    proc["noNewPrivileges"] = True
    proc["oomScoreAdj"] = 123
    pid, _ = oci.run("cap1", cfg)
    st = status(pid)
    assert st["Uid"].split() == ["1000"] * 4 and st["Gid"].split() == ["1000"] * 4
    assert st["Groups"].split() == ["5", "27"]
    assert int(st["CapBnd"], 16) == mask(["CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_CHOWN"])
    # after execve a non-root process keeps what is ambient: permitted = effective = ambient
    assert int(st["CapAmb"], 16) == mask(["CAP_NET_BIND_SERVICE"])
    assert int(st["CapEff"], 16) == int(st["CapPrm"], 16) == mask(["CAP_NET_BIND_SERVICE"])
    assert int(st["CapInh"], 16) == mask(["CAP_NET_BIND_SERVICE"])
    assert st["NoNewPrivs"] == "1" and st["Umask"] == "0027"
    with open(f"/proc/{pid}/limits") as f:
        limits = f.read()
    assert [ln.split()[3:5] for ln in limits.splitlines() if ln.startswith("Max open files")] == [["321", "654"]]
    assert [ln.split()[2:4] for ln in limits.splitlines() if ln.startswith("Max processes")] == [["99", "99"]]
    with open(f"/proc/{pid}/oom_score_adj") as f:
        assert f.read().strip() == "123"


@root
@pytest.mark.parametrize("nnp", [True, False])
def test_seccomp_profile_is_loaded_and_denies(oci, nnp):
    cfg = base_config(["sh", "-c", "mkdir /tmp/x 2>&1; echo rc=$?; sleep 600"])
    cfg["process"]["noNewPrivileges"] = nnp
    if not nnp:
        cfg["process"]["capabilities"] = {k: list(DEFAULT_CAPS) + ["CAP_SYS_ADMIN"]
                                          for k in ("bounding", "effective", "permitted")}
    cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                                             "errnoRet": 1}]}
    pid, out = oci.run(f"sec{int(nnp)}", cfg)
    wait_for(lambda: "rc=" in out.read_text(), what="the command's output")
    assert "Operation not permitted" in out.read_text() and "rc=1" in out.read_text()
    st = status(pid)
    assert st["Seccomp"] == "2" and int(st["Seccomp_filters"]) >= 1
    assert st["NoNewPrivs"] == ("1" if nnp else "0")
    loads = [s for s in steps_of(f"sec{int(nnp)}") if s["op"] == "load filter"]
    assert len(loads) == 1 and loads[0]["result"] == "ok"


@root
def test_hooks_get_the_state_on_stdin(oci):
    out = oci.tmp / "hooks"
    out.mkdir()
    script = oci.tmp / "hook.sh"
    script.write_text(f"#!/bin/sh\ncat > {out}/$1.json\n")
    script.chmod(0o755)
    cfg = base_config(["sleep", "600"])
    cfg["hooks"] = {k: [{"path": str(script), "args": ["hook.sh", k]}]
                    for k in ("prestart", "createRuntime", "createContainer", "poststart", "poststop")}
    pid = oci.create("hk1", cfg)
    for k in ("prestart", "createRuntime", "createContainer"):
        got = json.loads((out / f"{k}.json").read_text())
        assert got["id"] == "hk1" and got["pid"] == pid and got["status"] == "creating"
    assert not (out / "poststart.json").exists()
    oci("start", "hk1")
    assert json.loads((out / "poststart.json").read_text())["status"] == "running"
    oci("delete", "--force", "hk1")
    assert json.loads((out / "poststop.json").read_text())["status"] == "stopped"
    # a failing hook fails create, and nothing is left
    bad = dict(cfg, hooks={"createRuntime": [{"path": "/bin/false"}]})
    b = oci.bundle("hk2", bad)
    p = oci("create", "hk2", "--bundle", str(b), check=False)
    assert p.returncode == 125 and "createRuntime hook /bin/false exited 1" in p.stderr
    assert not (oci.root / "hk2").exists()


@root
def test_console_socket_gets_the_terminal_master(oci):
    sock_path = oci.tmp / "console.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(sock_path))
    srv.listen(1)
    cfg = base_config(["sh", "-c", "tty; echo cols=$(stty size 2>/dev/null); sleep 600"])
    cfg["process"]["terminal"] = True
    cfg["process"]["consoleSize"] = {"height": 30, "width": 100}
    b = oci.bundle("tty1", cfg)
    oci.ids.append("tty1")
    oci("create", "tty1", "--bundle", str(b), "--console-socket", str(sock_path))
    conn, _ = srv.accept()
    _, fds, _, _ = socket.recv_fds(conn, 16, 1)
    master = fds[0]
    try:
        oci("start", "tty1")
        data = b""
        deadline = time.monotonic() + 10
        while b"/dev/pts/0" not in data and time.monotonic() < deadline:
            data += os.read(master, 1024)
        assert b"/dev/pts/0" in data
    finally:
        os.close(master)
        conn.close()
        srv.close()


@root
def test_exec_joins_the_running_container(oci):
    pid, _ = oci.run("ex1", base_config(["sleep", "600"]))
    proc = {"args": ["sh", "-c", "echo pid=$$ host=$(hostname); cat /proc/1/cmdline; exit 7"],
            "env": ["PATH=/bin"], "cwd": "/tmp", "user": {"uid": 0, "gid": 0}}
    pf = oci.tmp / "proc.json"
    pf.write_text(json.dumps(proc))
    p = oci("exec", "--process", str(pf), "ex1", check=False)
    assert p.returncode == 7
    assert "host=ocibox" in p.stdout and "sleep600" in p.stdout.replace("\0", "")
    epid = oci.tmp / "exec.pid"
    oci("exec", "--detach", "--pid-file", str(epid), "ex1", "sleep", "300")
    xp = int(epid.read_text())
    assert os.stat(f"/proc/{xp}/ns/pid").st_ino == os.stat(f"/proc/{pid}/ns/pid").st_ino
    assert os.stat(f"/proc/{xp}/ns/mnt").st_ino == os.stat(f"/proc/{pid}/ns/mnt").st_ino
    with open(f"/proc/{xp}/cgroup") as f1, open(f"/proc/{pid}/cgroup") as f2:
        assert f1.read() == f2.read()
    os.kill(xp, signal.SIGKILL)
    p = oci("exec", "ex1", "no-such-thing", check=False)
    assert p.returncode == 127 and "executable file not found" in p.stderr


@root
def test_kill_all_and_delete_force_leave_nothing(oci):
    pid, _ = oci.run("k1", base_config(["sh", "-c", "sleep 600 & sleep 600"]))
    from engine.oci.runtime import labtui_id

    cid = labtui_id("k1")
    oci("kill", "--all", "k1", "KILL")
    wait_exit(pid)
    oci("delete", "k1")
    assert not (lib() / "containers" / cid).exists()
    assert not Path("/sys/fs/cgroup/memory", os.environ["LABTUI_CGROUP_PARENT"], cid).exists()
    # a created (never started) container may be deleted without --force, as runc allows
    pid2 = oci.create("k2", base_config(["sleep", "600"]))
    oci("delete", "k2")
    wait_exit(pid2)
    assert not (oci.root / "k2").exists()
    assert labtui("ps", "-a", "--format", "json").stdout.count('"k2"') == 0


# ---- podman, end to end ---------------------------------------------------------------------------------

PODMAN = shutil.which("podman")
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]


BRIDGE, SUBNET, GATEWAY = "zzocip0", "10.213.57.0/24", "10.213.57.1"


def cni_conflist(tmp: Path) -> dict:
    """The test's network for podman's CNI backend: Debian's bridge plugin with ipMasq off (no
    MASQUERADE for the subnet: the project never adds NAT toward the outside; netavark's bridge
    always adds one), host-local addresses kept in the temporary directory, no default route in
    the container (it only answers 127.0.0.1 through the portmap plugin's DNAT)."""
    return {"cniVersion": "0.4.0", "name": "zzoci", "plugins": [
        {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
         "ipam": {"type": "host-local", "dataDir": str(tmp / "cni-ipam"),
                  "ranges": [[{"subnet": SUBNET, "gateway": GATEWAY}]]}},
        {"type": "portmap", "capabilities": {"portMappings": True}}]}


class Podman:
    """podman with its own store, run dir, locks and network configuration in a temporary
    directory (nothing of a podman store a lab VM has is touched), on CNI (`network_backend`) with
    the test's own bridge network as the default one (cni_conflist)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        for d in ("tmp", "net"):
            (tmp / d).mkdir(parents=True)
        self.wrapper = tmp / "labtui-oci"
        self.wrapper.write_text(
            "#!/bin/sh\n"
            f"export LABTUI_ROOT={os.environ['LABTUI_ROOT']} "
            f"LABTUI_CGROUP_PARENT={os.environ['LABTUI_CGROUP_PARENT']}\n"
            f"export PYTHONPATH={REPO}\n"
            f"exec {sys.executable} -m labtui.oci \"$@\"\n")
        self.wrapper.chmod(0o755)
        (tmp / "containers.conf").write_text(
            f'[engine]\nlock_type = "file"\ntmp_dir = "{tmp}/tmp"\nevents_logger = "none"\n'
            f'cgroup_manager = "cgroupfs"\n[network]\nnetwork_backend = "cni"\n'
            f'cni_plugin_dirs = ["/usr/lib/cni"]\nnetwork_config_dir = "{tmp}/net"\ndefault_network = "zzoci"\n')
        (tmp / "net" / "zzoci.conflist").write_text(json.dumps(cni_conflist(tmp)))
        self.env = dict(os.environ, CONTAINERS_CONF=str(tmp / "containers.conf"))

    def __call__(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [PODMAN, "--root", str(self.tmp / "store"), "--runroot", str(self.tmp / "run"),
               "--runtime", str(self.wrapper), *args]
        p = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {p.returncode}: {p.stdout}\n{p.stderr}")
        return p

    def import_busybox(self) -> None:
        rootfs = make_rootfs(self.tmp / "img")
        tar = self.tmp / "busybox.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
        self("import", str(tar), "localhost/labtui-busybox")

    def cleanup(self) -> None:
        self("rm", "--all", "--force", "--time", "0", check=False)
        # `podman rm` of an exited container calls no runtime command: its kept labtui record
        # waits for labtui-oci's next create or delete, which will not come now
        for c in ps_json():
            if c["Names"].startswith("podman-"):
                labtui("rm", "-f", c["Id"], check=False)
        self("rmi", "--all", "--force", check=False)
        with open("/proc/self/mountinfo") as f:
            points = [ln.split()[4] for ln in f if str(self.tmp) in ln.split()[4]]
        for m in sorted(points, reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        if os.path.exists(f"/sys/class/net/{BRIDGE}"):
            subprocess.run(["ip", "link", "del", BRIDGE], check=False)


OUTSIDE = "192.0.2.1"  # TEST-NET-1 (RFC 5737): stands for any address beyond the host


def masquerade_path(nat_rules: str, src: str, dst: str = OUTSIDE, bridge: str = BRIDGE) -> list[str]:
    """Follow an unmarked packet from src to dst, leaving by an interface other than the bridge,
    through the nat table's POSTROUTING (`iptables -t nat -S`): the rules that lead it to
    MASQUERADE or SNAT, or [] when none does. A match this reader does not know counts as a match:
    it may report a rule that would not apply, never miss one that would."""
    chains: dict[str, list[list[str]]] = {}
    for line in nat_rules.splitlines():
        words = shlex.split(line)
        if len(words) > 2 and words[0] == "-A":
            chains.setdefault(words[1], []).append(words)

    def matches(words: list[str]) -> bool:
        neg, i = False, 2
        while i < len(words):
            w = words[i]
            if w == "!":
                neg, i = True, i + 1
                continue
            arg = words[i + 1] if i + 1 < len(words) else ""
            if w in ("-s", "-d"):
                hit = ipaddress.ip_address(src if w == "-s" else dst) in ipaddress.ip_network(arg, strict=False)
            elif w == "-o":
                hit = arg != bridge
            elif w == "--mark":  # value/mask: an unmarked packet carries 0
                value, _, mask = arg.partition("/")
                hit = int(value, 0) & int(mask or "0xffffffff", 0) == 0
            elif w == "--dst-type":
                hit = "LOCAL" not in arg.split(",")
            else:  # -p, -m, --comment, --dport, -j's arguments...: assume it matches
                hit = True
            if w.startswith("-") and hit == neg:
                return False
            neg, i = False, i + (2 if w.startswith("-") else 1)
        return True

    def walk(chain: str, seen: tuple[str, ...]) -> list[str]:
        for words in chains.get(chain, []):
            if not matches(words) or "-j" not in words:
                continue
            target = words[words.index("-j") + 1]
            if target in ("MASQUERADE", "SNAT"):
                return [" ".join(words)]
            if target in ("ACCEPT", "RETURN"):
                return []
            if target in chains and target not in seen:
                found = walk(target, seen + (target,))
                if found:
                    return [" ".join(words), *found]
        return []

    return walk("POSTROUTING", ("POSTROUTING",))


NETAVARK_BRIDGE = """-A POSTROUTING -j NETAVARK-HOSTPORT-MASQ
-A POSTROUTING -s 10.213.57.0/24 -j NETAVARK-1D8721804F16F
-A NETAVARK-1D8721804F16F -d 10.213.57.0/24 -j ACCEPT
-A NETAVARK-1D8721804F16F ! -d 224.0.0.0/4 -j MASQUERADE
-A NETAVARK-HOSTPORT-MASQ -m comment --comment "netavark portfw masq mark" -m mark --mark 0x2000/0x2000 -j MASQUERADE"""
CNI_PORTMAP = """-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE
-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000
-A CNI-DN-1 -s 10.213.57.0/24 -d 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-1 -s 127.0.0.1/32 -d 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-1 -d 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.213.57.2:80"""
CNI_IPMASQ = """-A POSTROUTING -s 10.213.57.2/32 -m comment --comment "name: \\"zzoci\\" id: \\"ab\\"" -j CNI-ab
-A CNI-ab -d 10.213.57.0/24 -m comment --comment "name: \\"zzoci\\" id: \\"ab\\"" -j ACCEPT
-A CNI-ab ! -d 224.0.0.0/4 -m comment --comment "name: \\"zzoci\\" id: \\"ab\\"" -j MASQUERADE"""


def test_masquerade_path_finds_the_subnet_masquerades_and_not_the_port_mark():
    """The reader the podman test trusts: netavark's and CNI's ipMasq rules are found, the
    portmap plugin's mark-only MASQUERADE (localhost hairpin toward the container) is not."""
    assert masquerade_path(NETAVARK_BRIDGE, "10.213.57.2")[-1].endswith("! -d 224.0.0.0/4 -j MASQUERADE")
    both = CNI_PORTMAP + "\n" + CNI_IPMASQ
    assert masquerade_path(both, "10.213.57.2")[0].startswith("-A POSTROUTING -s 10.213.57.2/32")
    assert masquerade_path(CNI_IPMASQ, "10.213.57.9") == []  # that rule is for .2 alone
    assert masquerade_path(CNI_IPMASQ, "10.213.57.2", dst="10.213.57.7") == []  # inside the subnet
    assert masquerade_path(CNI_PORTMAP, "10.213.57.2") == []
    assert masquerade_path("-A POSTROUTING -o zzocip0 -j MASQUERADE", "10.213.57.2") == []
    assert masquerade_path("-A POSTROUTING ! -o zzocip0 -j MASQUERADE", "10.213.57.2") != []


def nat_table() -> str:
    return subprocess.run(["iptables", "-w", "-t", "nat", "-S"], capture_output=True, text=True, check=True).stdout


PORTMAP_CHAINS = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ")


def remove_portmap_chains() -> None:
    """The portmap plugin removes a container's own chain (CNI-DN-...) at teardown but keeps the
    shared ones it made at the first published port; they go once no container's rule is left."""
    rules = nat_table().splitlines()
    if any(r.startswith("-A CNI-HOSTPORT-DNAT ") or r.startswith("-A CNI-DN-") for r in rules):
        return  # some other CNI container publishes a port right now
    for r in rules:
        words = shlex.split(r)
        if words[0] == "-A" and words[1] not in PORTMAP_CHAINS and words[-1] in PORTMAP_CHAINS:
            subprocess.run(["iptables", "-w", "-t", "nat", "-D", *words[1:]], check=True)
    for chain in PORTMAP_CHAINS:
        subprocess.run(["iptables", "-w", "-t", "nat", "-F", chain], check=False, stderr=subprocess.DEVNULL)
        subprocess.run(["iptables", "-w", "-t", "nat", "-X", chain], check=False, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def podman():
    if PODMAN is None:
        pytest.skip("podman is not installed (scripts/install installs it with LABTUI_TEST_DEPS=1)")
    if not os.path.exists("/usr/lib/cni/bridge"):
        pytest.skip("CNI plugins are not installed (apt-get install containernetworking-plugins)")
    # The bridge plugin turns IPv4 forwarding on for a gateway (isGateway): put back what was here.
    forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    cache_existed = os.path.exists("/var/lib/cni")  # libcni's result cache, one file per attachment
    portmap_chains_existed = "CNI-HOSTPORT-MASQ" in nat_table()
    tmp = Path(tempfile.mkdtemp(prefix="labtui-podman-", dir="/var/tmp"))
    pm = Podman(tmp)
    try:
        pm.import_busybox()
        yield pm
    finally:
        pm.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
        Path("/proc/sys/net/ipv4/ip_forward").write_text(forward)
        if not portmap_chains_existed:
            remove_portmap_chains()
        if not cache_existed:
            for d, _, _ in sorted(os.walk("/var/lib/cni"), reverse=True):
                with contextlib.suppress(OSError):
                    os.rmdir(d)  # only the directories it left empty


def _labtui_names() -> set[str]:
    return {c["Names"] for c in ps_json()}


def labtui_row(name: str) -> dict:
    """NAME's line of `labtui ps -a` (ExitCode is None while none is recorded), {} when none."""
    return next((c for c in ps_json() if c["Names"] == name), {})


def labtui_state(name: str) -> dict:
    """`labtui inspect NAME`'s State (its ExitCode reads 0 when none is recorded, as docker's)."""
    return json.loads(labtui("inspect", name).stdout)[0]["State"]


@root
@pytest.mark.slow
def test_podman_run_rm_echo_hello(podman):
    p = podman("run", "--rm", *ULIMITS, "localhost/labtui-busybox", "echo", "hello")
    assert p.stdout == "hello\n"
    assert podman("ps", "-aq").stdout.strip() == ""
    wait_for(lambda: not [n for n in _labtui_names() if n.startswith("podman-")], what="the container removed")
    p = podman("run", "--rm", *ULIMITS, "localhost/labtui-busybox", "no-such-command", check=False)
    assert p.returncode == 127 and "executable file not found" in p.stderr


@root
@pytest.mark.slow
def test_podman_detach_exec_logs_stop_rm_and_steps(podman):
    cid = podman("run", "-d", "--name", "zzoci-web", *ULIMITS, "localhost/labtui-busybox", "sh", "-c",
                 "echo out-line; echo err-line >&2; trap 'exit 0' TERM; while true; do sleep 1; done").stdout.strip()
    name = f"podman-{cid[:12]}"
    try:
        assert name in _labtui_names()
        c = [c for c in ps_json() if c["Names"] == name][0]
        assert c["State"] == "running" and c["Id"].startswith(cid[:12])
        steps = [(s["mechanism"], s["op"]) for s in steps_of(cid)]
        assert ("namespace", "clone") in steps and ("exec", "execve") in steps and ("rootfs", "pivot_root") in steps
        p = podman("exec", "zzoci-web", "sh", "-c", "echo in-$(hostname); exit 4", check=False)
        assert p.returncode == 4 and p.stdout == f"in-{cid[:12]}\n"
        p = podman("exec", "-t", "zzoci-web", "tty")
        assert p.stdout.strip() == "/dev/pts/0"
        wait_for(lambda: "err-line" in podman("logs", "zzoci-web").stderr + podman("logs", "zzoci-web").stdout,
                 what="logs")
        logs = podman("logs", "zzoci-web")
        assert "out-line" in logs.stdout + logs.stderr
        podman("stop", "-t", "5", "zzoci-web")
        state = json.loads(podman("inspect", "zzoci-web").stdout)[0]["State"]
        assert state["Status"] == "exited" and state["ExitCode"] == 0
        # podman's cleanup deletes the runtime's container once it has stopped; podman keeps its
        # own record until `podman rm`, and so does labtui: Exited, with the exit code
        wait_for(lambda: labtui_row(name).get("ExitCode") == 0, what="the exit code in labtui's record")
        assert labtui_row(name)["State"] == "exited"
        with open(lib() / "steps.jsonl") as f:
            assert sum(1 for line in f if cid in line and '"execve"' in line) >= 3  # run and two execs
        podman("rm", "zzoci-web")
        assert "zzoci-web" not in podman("ps", "-a").stdout
        assert labtui_row(name)["State"] == "removing"  # podman forgot it: gone at labtui-oci's next command
    finally:
        podman("rm", "-f", "-t", "0", "zzoci-web", check=False)


@root
@pytest.mark.slow
def test_podman_published_port_and_memory_limit(podman):
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cid = podman("run", "-d", "--name", "zzoci-httpd", *ULIMITS, "--network", "zzoci", "-p", f"127.0.0.1:{port}:80",
                 "--memory", "64m", "localhost/labtui-busybox", "httpd", "-f", "-p", "80", "-h", "/etc").stdout.strip()
    try:
        def fetch():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=2) as r:
                    return r.read().decode()
            except OSError:
                return None

        assert wait_for(fetch, 15, 0.2, what="the published port").strip() == cid[:12]
        # The rules CNI wrote while the container runs: the portmap plugin's DNAT toward it, and
        # no MASQUERADE that would carry its subnet beyond the host (the bridge's ipMasq is off).
        ip = json.loads(podman("inspect", cid).stdout)[0]["NetworkSettings"]["Networks"]["zzoci"]["IPAddress"]
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(SUBNET)
        nat = nat_table()
        assert f"--dport {port} -j DNAT --to-destination {ip}:80" in nat, nat
        for src in (ip, "10.213.57.254"):
            assert masquerade_path(nat, src) == [], nat
        p = podman("exec", "zzoci-httpd", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
        assert p.stdout.strip() == str(64 << 20)
        with open(f"/proc/{json.loads(podman('inspect', cid).stdout)[0]['State']['Pid']}/cgroup") as f:
            assert f"memory:/libpod_parent/libpod-{cid}" in f.read()
        assert Path(f"/sys/fs/cgroup/memory/libpod_parent/libpod-{cid}/memory.limit_in_bytes").read_text().strip() \
            == str(64 << 20)
    finally:
        podman("rm", "-f", "-t", "0", "zzoci-httpd", check=False)
    assert not Path(f"/sys/fs/cgroup/memory/libpod_parent/libpod-{cid}").exists()


@root
@pytest.mark.slow
def test_podman_exit_code_reaches_labtuis_record_which_lasts_as_long_as_podmans(podman):
    """conmon reaps the process (its parent), so labtui-oci's exit watcher reads the status from
    a pidfd (PIDFD_INFO_EXIT, Linux 6.15) and records it; the record stays, Exited (7), until
    podman forgets it."""
    p = podman("run", "--name", "zzoci-exit7", *ULIMITS, "localhost/labtui-busybox", "sh", "-c", "exit 7", check=False)
    assert p.returncode == 7, p.stderr
    cid = json.loads(podman("inspect", "zzoci-exit7").stdout)[0]["Id"]
    name = f"podman-{cid[:12]}"
    try:
        row = wait_for(lambda: labtui_row(name).get("ExitCode") == 7 and labtui_row(name),
                       what="Exited (7) in labtui's record")
        assert row["State"] == "exited" and row["Status"].startswith("Exited (7)"), row
        st = labtui_state(name)
        assert st["ExitCode"] == 7 and st["FinishedAt"] >= st["StartedAt"] != ""
        # what the runtime deleted is gone: its state and the cgroup; the record is what is left
        assert subprocess.run([*OCI, "state", cid], cwd=REPO, capture_output=True).returncode != 0
        assert not Path(f"/sys/fs/cgroup/memory/libpod_parent/libpod-{cid}").exists()
        read = [s for s in steps_of(cid) if s["op"] in ("pidfd exit status", "read exit code")]
        assert [(s["op"], s["value"]) for s in read] == [("pidfd exit status", "7")]
        with open(lib() / "events.jsonl") as f:
            died = [json.loads(line) for line in f if cid in line and '"died"' in line]
        assert [e["exit_code"] for e in died] == [7]
        # podman start creates the same ID again: the kept record is replaced, the code recorded anew
        p = podman("start", "--attach", "zzoci-exit7", check=False)
        assert p.returncode == 7, p.stderr
        wait_for(lambda: labtui_row(name).get("ExitCode") == 7 and labtui_state(name)["StartedAt"] > st["StartedAt"],
                 what="the second run's exit in labtui's record")
        podman("rm", "zzoci-exit7")
        row = labtui_row(name)
        assert (row["State"], row["Status"]) == ("removing", "Removing")
        # `podman rm` runs no runtime command: the runtime's next one removes the record
        assert podman("run", "--rm", *ULIMITS, "localhost/labtui-busybox", "true").returncode == 0
        assert not [n for n in _labtui_names() if n.startswith("podman-")]
        # each run's exit watcher ended with its container (a zombie is init's to reap, and not ours)
        assert [p for p in our_processes() if p[1] == "labtui-oci-wait"] == []
    finally:
        podman("rm", "-f", "-t", "0", "zzoci-exit7", check=False)
