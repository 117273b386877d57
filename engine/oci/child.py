"""The container's process under labtui-oci: set up from config.json, wait for `start`, execve.

Runs in the process cloned by engine/oci/runtime.create. Unlike labtui's own containers there is
no labtui init: this process becomes the command itself (PID 1 of a new PID namespace), and its
parent is whoever started the runtime (podman's conmon, a subreaper, adopts it when the runtime
exits). Its stdio are the runtime's own (conmon's pipes), or a terminal whose master goes out
over --console-socket.

Order (runc's standard_init_linux.go):
  wait for "go" (cgroup joined, user namespace maps written)  ->  setns(mnt) if joined
  rootfs: propagation, bind the root onto itself, config.mounts in order, /dev nodes, pivot_root
  sysctl, read-only paths, masked paths, hostname, lo up, rlimits, oom_score_adj
  bounding set, setgroups/setresgid/setresuid (keeping capabilities), capset, ambient, cwd, umask
  no_new_privs; seccomp now if no_new_privs is off (loading needs CAP_SYS_ADMIN then)
  the command looked up in the container's PATH (a missing command fails `create`)
  "ready" to the runtime  ->  block reading exec.fifo until `start` writes to it
  seccomp (with no_new_privs: last, nothing of the runtime runs filtered), startContainer hooks
  execve; exec.result is O_CLOEXEC, so `start` sees EOF exactly when execve succeeded.

Every step is recorded straight to the container's step files through descriptors opened on
the host before clone (O_CLOEXEC: execve closes them), so the steps done after `create` exited
are recorded too.
"""

from __future__ import annotations

import json
import os
import resource  # imported here, not lazily: after pivot_root the host's files are out of reach
import signal
import stat
import sys
import time

from engine import capabilities as caps_mod
from engine import init, namespaces, rootfs, security
from engine import syscalls as sc
from engine.errors import EngineError, StepError
from engine.oci import spec as ocispec
from engine.record import dataclass, field
from engine.steps import Recorder

PR_SET_KEEPCAPS = 8
PR_CAP_AMBIENT_RAISE = 2
MS_SHARED = 1 << 20
MS_UNBINDABLE = 1 << 17
DEFAULT_DEVICES = [  # config-linux.md "Default Devices"
    ("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7), ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0),
]
DEV_LINKS = [("/dev/fd", "/proc/self/fd"), ("/dev/stdin", "/proc/self/fd/0"), ("/dev/stdout", "/proc/self/fd/1"),
             ("/dev/stderr", "/proc/self/fd/2"), ("/dev/ptmx", "pts/ptmx")]

# mount(8) option -> (flag to set, flag to clear)
FLAG_OPTS = {
    "ro": (sc.MS_RDONLY, 0), "rw": (0, sc.MS_RDONLY), "nosuid": (sc.MS_NOSUID, 0), "suid": (0, sc.MS_NOSUID),
    "nodev": (sc.MS_NODEV, 0), "dev": (0, sc.MS_NODEV), "noexec": (sc.MS_NOEXEC, 0), "exec": (0, sc.MS_NOEXEC),
    "sync": (16, 0), "async": (0, 16), "mand": (64, 0), "nomand": (0, 64), "dirsync": (128, 0),
    "noatime": (1024, 0), "atime": (0, 1024), "nodiratime": (2048, 0), "diratime": (0, 2048),
    "relatime": (1 << 21, 0), "norelatime": (0, 1 << 21), "strictatime": (sc.MS_STRICTATIME, 0),
    "nostrictatime": (0, sc.MS_STRICTATIME), "remount": (sc.MS_REMOUNT, 0),
    "bind": (sc.MS_BIND, 0), "rbind": (sc.MS_BIND | sc.MS_REC, 0),
}
PROPAGATION = {
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC, "slave": sc.MS_SLAVE,
    "rslave": sc.MS_SLAVE | sc.MS_REC, "shared": MS_SHARED, "rshared": MS_SHARED | sc.MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | sc.MS_REC,
}
# Options podman and cri-o put in config.json for themselves (SELinux relabel, copy-up, idmap):
# not mount(2) options; left out, and the step says so.
IGNORED_OPTS = {"z", "Z", "U", "tmpcopyup", "notmpcopyup", "copy", "nocopy", "idmap", "chown", "noswap"}


@dataclass
class ChildPlan:
    cid: str
    cfg: dict
    chan_w: int  # child -> runtime: JSON lines ("ready", "error", "console")
    go_r: int  # runtime -> child: "g" once cgroup and maps are done
    fifo_go: int  # exec.fifo, O_RDWR: `start` writes one byte
    fifo_result: int  # exec.result, O_RDWR|O_CLOEXEC: EOF at execve for `start`
    console: int | None  # connected --console-socket
    keep: list[int] = field(default_factory=list)  # the step files' descriptors
    cgroup_dirs: list = field(default_factory=list)  # [(name under /sys/fs/cgroup, host dir)]
    userns_new: bool = False
    filter: object | None = None  # the compiled seccomp filter (engine.seccomp.Filter)


def send(fd: int, msg: dict) -> None:
    data = (json.dumps(msg, default=str) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def child_main(plan: ChildPlan, rec: Recorder) -> None:
    """Right after clone(2). Never returns."""
    code = 125
    try:
        os.setsid()
        keep = {0, 1, 2, plan.chan_w, plan.go_r, plan.fifo_go, plan.fifo_result, *plan.keep}
        if plan.console is not None:
            keep.add(plan.console)
        init.close_other_fds(keep)
        init.hide_host_args(rec, "labtui-oci-init", [], target="container")
        if os.read(plan.go_r, 1) != b"g":
            raise EngineError("the runtime went away during container setup")
        os.close(plan.go_r)
        setup(rec, plan)
        send(plan.chan_w, {"t": "ready"})
        os.close(plan.chan_w)
        plan.chan_w = -1
        code = wait_and_exec(rec, plan)
    except StepError as e:
        report(plan, str(e), 125, e.step)
    except EngineError as e:
        report(plan, str(e), e.exit_code)
    except BaseException as e:  # never a silent death: say why to the runtime
        report(plan, f"container setup failed: {e!r}", 125)
    finally:
        os._exit(code)


def report(plan: ChildPlan, message: str, code: int, step: dict | None = None) -> None:
    msg = {"t": "error", "message": message, "exit_code": code, "step": step}
    for fd in (plan.chan_w, plan.fifo_result):
        if fd >= 0:
            try:
                send(fd, msg)
                return
            except OSError:
                continue


def setup(rec: Recorder, plan: ChildPlan) -> None:
    cfg = plan.cfg
    linux = cfg["linux"]
    kinds = {n["type"]: n.get("path") for n in ocispec.ns_list(cfg)}
    if plan.userns_new:
        with rec.step("userns", "setresuid", target="self", value="0 0 0 (in the new user namespace)",
                      shell="# setresgid(0,0,0); setresuid(0,0,0): root of the namespace, mapped by uid_map"):
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
    if kinds.get("mount"):
        join(rec, kinds["mount"], sc.CLONE_NEWNS, "mnt")
    if "cgroup" in kinds and not kinds["cgroup"]:
        # Only now, in its cgroup: a cgroup namespace's root is its creator's cgroup then.
        namespaces.unshare(rec, sc.CLONE_NEWCGROUP)
    if "mount" in kinds and not kinds["mount"]:
        build_rootfs(rec, plan)
    for key, value in (linux.get("sysctl") or {}).items():
        path = "/proc/sys/" + key.replace(".", "/")
        with rec.step("sysctl", "write", target=path, value=value, shell=f"sysctl -w {key}={value!r}"):
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)
    if "mount" in kinds and not kinds["mount"]:
        for p in linux.get("readonlyPaths") or []:
            readonly_path(rec, p)
        for p in linux.get("maskedPaths") or []:
            mask_path(rec, p)
    if "uts" in kinds and not kinds["uts"]:
        if cfg.get("hostname"):
            namespaces.set_hostname(rec, cfg["hostname"])
        if cfg.get("domainname"):
            with rec.step("uts", "setdomainname", value=cfg["domainname"], shell=f"domainname {cfg['domainname']}"):
                name = cfg["domainname"].encode()
                sc._check(sc._libc.setdomainname(name, len(name)))
    if "network" in kinds and not kinds["network"]:
        namespaces.loopback_up(rec)  # runc's "loopback" network for a new network namespace
    proc = cfg["process"]
    set_rlimits(rec, proc)
    if "oomScoreAdj" in proc:
        with rec.step("process", "write", target="/proc/self/oom_score_adj", value=str(proc["oomScoreAdj"]),
                      shell=f"echo {proc['oomScoreAdj']} > /proc/self/oom_score_adj"):
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(proc["oomScoreAdj"]))
    if plan.console is not None:
        open_terminal(rec, plan, proc)
    if not proc.get("noNewPrivileges") and plan.filter is not None:
        # Without no_new_privs loading a filter needs CAP_SYS_ADMIN (seccomp(2)): now, before the
        # capabilities go (runc's order); what follows must then be allowed by the profile.
        load_seccomp(rec, plan.filter, "before the capabilities are dropped: without no_new_privs, "
                     "loading needs CAP_SYS_ADMIN")
    become_user(rec, proc)
    if proc.get("noNewPrivileges"):
        with rec.step("process", "prctl", target="self", value="PR_SET_NO_NEW_PRIVS 1", shell="setpriv --no-new-privs"):
            sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    with rec.step("process", "chdir", target=proc["cwd"], shell=f"cd {proc['cwd']}"):
        os.chdir(proc["cwd"])
    plan.cfg["_path"] = lookup(rec, proc)


def join(rec: Recorder, path: str, nstype: int, kind: str) -> None:
    with rec.step("namespace", "setns", target=path, value=kind, shell=f"nsenter --{kind}={path}"):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            sc.setns(fd, nstype)
        finally:
            os.close(fd)


# ---- the root filesystem ---------------------------------------------------------------------------

def build_rootfs(rec: Recorder, plan: ChildPlan) -> None:
    cfg = plan.cfg
    root = cfg["root"]["path"]
    prop = PROPAGATION.get(cfg["linux"].get("rootfsPropagation") or "rprivate", sc.MS_PRIVATE | sc.MS_REC)
    rootfs.mount(rec, None, "/", None, prop | sc.MS_REC, op="propagation",
                 shell=f"mount --make-{cfg['linux'].get('rootfsPropagation') or 'rprivate'} /")
    # pivot_root(2) needs the new root to be a mount point: bind it onto itself (runc does too).
    rootfs.mount(rec, root, root, None, sc.MS_BIND | sc.MS_REC, op="bind root", mechanism="rootfs",
                 shell=f"mount --rbind {root} {root}")
    dev_is_tmpfs = False
    for m in cfg["mounts"]:
        mount_one(rec, root, m, plan)
        if m["destination"] == "/dev" and m.get("type") == "tmpfs":
            dev_is_tmpfs = True
    if dev_is_tmpfs:
        make_devices(rec, root, cfg, plan.userns_new)
    rootfs.pivot(rec, root)
    if cfg["root"].get("readonly"):
        rootfs.remount_root_ro(rec)


def parse_options(options: list[str]) -> tuple[int, int, list[str], list[str]]:
    """(flags, propagation flags, data options, ignored options) from a mount's options."""
    flags, clear, props, data, ignored = 0, 0, 0, [], []
    for o in options:
        if o in FLAG_OPTS:
            s, c = FLAG_OPTS[o]
            flags |= s
            clear |= c
        elif o in PROPAGATION:
            props |= PROPAGATION[o]
        elif o in IGNORED_OPTS:
            ignored.append(o)
        else:
            data.append(o)
    return flags & ~clear, props, data, ignored


def mount_one(rec: Recorder, root: str, m: dict, plan: ChildPlan) -> None:
    flags, props, data, ignored = parse_options(m["options"])
    typ = m.get("type") or "bind"
    dest = rootfs.secure_join(root, m["destination"])
    note = {"ignored_options": ignored} if ignored else {}
    if flags & sc.MS_BIND or typ == "bind":
        src = m["source"]
        if not src.startswith("/"):
            src = os.path.join(os.path.dirname(plan.cfg["root"]["path"]), src)
        rootfs.ensure_mountpoint(dest, os.path.isdir(src))
        bind = sc.MS_BIND | (flags & sc.MS_REC)
        rootfs.mount(rec, src, dest, None, bind, op="bind", shell=f"mount --{'r' if bind & sc.MS_REC else ''}bind "
                     f"{src} {dest}")
        extra = flags & ~(sc.MS_BIND | sc.MS_REC)
        if extra:
            # A bind's own flags (ro, nosuid...) can only be set by remounting it (mount(2)); the
            # flags the kernel locked on the source must be repeated or the remount is EPERM.
            rootfs.mount(rec, None, dest, None, sc.MS_BIND | sc.MS_REMOUNT | extra | rootfs.locked_flags(dest),
                         op="remount", shell=f"mount -o remount,bind,{sc.ms_names(extra).lower()} {dest}")
    elif typ == "cgroup":
        mount_cgroup(rec, dest, flags, plan)
    else:
        rootfs.ensure_mountpoint(dest, True)
        src = m.get("source") or typ
        with_data = ",".join(data) or None
        if typ == "mqueue" and plan.userns_new:
            with_data = None
        mount_fs(rec, src, dest, typ, flags, with_data, note)
    if props:
        rootfs.mount(rec, None, dest, None, props, op="propagation",
                     shell=f"mount --make-{[k for k, v in PROPAGATION.items() if v == props][0]} {dest}")


def mount_fs(rec: Recorder, src: str, dest: str, typ: str, flags: int, data: str | None, note: dict) -> None:
    value = ",".join(x for x in (sc.ms_names(flags), data or "") if x)
    with rec.step("mount", "mount", target=dest, value=f"{typ} {value}".strip(), source=src,
                  shell=f"mount -t {typ} {src}{' -o ' + value if value else ''} {dest}", **note):
        sc.mount(src, dest, typ, flags, data)


def mount_cgroup(rec: Recorder, dest: str, flags: int, plan: ChildPlan) -> None:
    """A `cgroup` mount: on cgroup v1 a tmpfs with the container's own directory of each
    controller bound under it, as runc does; on v2 the container's one directory."""
    rootfs.ensure_mountpoint(dest, True)
    dirs = plan.cgroup_dirs
    if len(dirs) == 1 and dirs[0][0] == "":
        binds = [(dest, dirs[0][1])]
    else:
        mount_fs(rec, "tmpfs", dest, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, "mode=755", {})
        binds = []
        for name, host in dirs:
            d = os.path.join(dest, name)
            os.makedirs(d, exist_ok=True)
            binds.append((d, host))
    for target, host in binds:
        rootfs.mount(rec, host, target, None, sc.MS_BIND | sc.MS_REC, op="bind cgroup",
                     shell=f"mount --rbind {host} {target}")
        if flags & sc.MS_RDONLY:
            flags_ro = sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | rootfs.locked_flags(target)
            rootfs.mount(rec, None, target, None, flags_ro, op="remount ro", shell=f"mount -o remount,bind,ro {target}")
    if len(binds) > 1 and flags & sc.MS_RDONLY:
        rootfs.mount(rec, None, dest, None, sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC,
                     op="remount ro", shell=f"mount -o remount,ro {dest}")


def make_devices(rec: Recorder, root: str, cfg: dict, in_userns: bool) -> None:
    """The spec's default devices, then linux.devices; in a user namespace mknod is refused, so
    the host's node is bound instead (as runc does)."""
    devs = [{"path": p, "type": "c", "major": ma, "minor": mi, "fileMode": 0o666, "uid": 0, "gid": 0}
            for p, ma, mi in DEFAULT_DEVICES]
    given = {d["path"] for d in cfg["linux"].get("devices") or []}
    devs = [d for d in devs if d["path"] not in given] + list(cfg["linux"].get("devices") or [])
    for d in devs:
        target = rootfs.secure_join(root, d["path"])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if in_userns:
            rootfs.ensure_mountpoint(target, False)
            rootfs.mount(rec, d["path"], target, None, sc.MS_BIND, op="bind device", mechanism="device",
                         shell=f"mount --bind {d['path']} {target}")
            continue
        kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[d["type"]]
        mode = d.get("fileMode", 0o666)
        t = "c" if d["type"] == "u" else d["type"]
        with rec.step("device", "mknod", target=target, value=f"{t} {d.get('major', 0)}:{d.get('minor', 0)} {mode:o}",
                      shell=f"mknod -m {mode:o} {target} {t} {d.get('major', '')} {d.get('minor', '')}".rstrip()):
            if os.path.lexists(target):
                os.unlink(target)
            os.mknod(target, mode | kind, os.makedev(d.get("major", 0), d.get("minor", 0)))
            os.chmod(target, mode)
            os.chown(target, d.get("uid", 0), d.get("gid", 0))
    for link, to in DEV_LINKS:
        path = rootfs.secure_join(root, link)
        if not os.path.lexists(path):
            os.symlink(to, path)


def readonly_path(rec: Recorder, path: str) -> None:
    if not os.path.lexists(path):
        return
    rootfs.mount(rec, path, path, None, sc.MS_BIND | sc.MS_REC, op="bind read-only path",
                 shell=f"mount --rbind {path} {path}")
    rootfs.mount(rec, None, path, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | rootfs.locked_flags(path),
                 op="remount ro", shell=f"mount -o remount,bind,ro {path}")


def mask_path(rec: Recorder, path: str) -> None:
    """runc's maskPath: the same as labtui's own containers get (engine/security.py)."""
    security.mask_path(rec, path)


# ---- the process -----------------------------------------------------------------------------------

def set_rlimits(rec: Recorder, proc: dict) -> None:
    for r in proc.get("rlimits") or []:
        num = ocispec.RLIMITS[r["type"]]
        soft = resource.RLIM_INFINITY if r["soft"] >= ocispec.U64_MAX else r["soft"]
        hard = resource.RLIM_INFINITY if r["hard"] >= ocispec.U64_MAX else r["hard"]
        with rec.step("process", "setrlimit", target=r["type"], value=f"soft={r['soft']} hard={r['hard']}",
                      shell=f"prlimit --pid $$ --{r['type'][7:].lower()}={r['soft']}:{r['hard']}"):
            resource.setrlimit(num, (soft, hard))


def open_terminal(rec: Recorder, plan: ChildPlan, proc: dict) -> None:
    """process.terminal: a pty from the container's own devpts; the master goes out over the
    console socket (conmon's), the slave becomes stdin, stdout and stderr."""
    slave = rootfs.open_console(rec, "/", plan.console, lambda msg: None)
    plan.console = None
    size = proc.get("consoleSize")
    if size:
        import fcntl
        import struct
        import termios

        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size["height"], size["width"], 0, 0))
    import fcntl
    import termios

    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def cap_mask(names: list[str] | None) -> int:
    return caps_mod.to_mask({caps_mod.CAP_BITS[n] for n in names or []})


def become_user(rec: Recorder, proc: dict) -> None:
    """runc's finalizeNamespace: bounding set, then the user (keeping capabilities across
    setuid with PR_SET_KEEPCAPS), then the capability sets and the ambient set."""
    caps = proc.get("capabilities")
    user = proc["user"]
    have = caps_mod.current_bounding()
    if caps is not None:
        keep = {caps_mod.CAP_BITS[n] for n in caps.get("bounding") or []}
        drop = sorted(have - keep)
        with rec.step("capability", "prctl PR_CAPBSET_DROP", target="bounding",
                      value=f"keep {caps_mod.shell_list(keep & have) or '(none)'}",
                      shell=f"capsh --drop={caps_mod.shell_list(drop)} --" if drop else "# nothing to drop"):
            caps_mod.drop_bounding(drop)
    uid, gid, groups = user["uid"], user["gid"], user.get("additionalGids") or []
    with rec.step("process", "setuid", target=str(uid), value=f"uid={uid} gid={gid} groups={groups or '-'}",
                  shell=f"setpriv --reuid={uid} --regid={gid} " +
                        (f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups")):
        sc.prctl(PR_SET_KEEPCAPS, 1)
        if _may_setgroups():
            os.setgroups(groups)
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        sc.prctl(PR_SET_KEEPCAPS, 0)
    if caps is not None:
        eff, prm, inh = (cap_mask(caps.get(k)) for k in ("effective", "permitted", "inheritable"))
        known = caps_mod.to_mask(have)
        with rec.step("capability", "capset", target="effective,permitted,inheritable",
                      value=f"eff={eff:#x} prm={prm:#x} inh={inh:#x}",
                      shell=f'capsh --caps="{caps_mod.shell_list(caps_mod.from_mask(prm)) or ""}=p" --'):
            caps_mod.capset(eff & known, prm & known, inh & known)
        raise_ambient(rec, [caps_mod.CAP_BITS[n] for n in caps.get("ambient") or []])
    if "umask" in user:
        with rec.step("process", "umask", value=f"{user['umask']:04o}", shell=f"umask {user['umask']:04o}"):
            os.umask(user["umask"])


def raise_ambient(rec: Recorder, amb: list[int]) -> None:
    """The ambient set: a capability can only be raised there if it is both permitted and
    inheritable (capabilities(7)); as runc, one that cannot is left out with a note, not an error."""
    with rec.step("capability", "prctl PR_CAP_AMBIENT_RAISE", target="ambient",
                  value=caps_mod.shell_list(amb) or "(none)",
                  shell=f"setpriv --ambient-caps={','.join('+' + caps_mod.cap_name(b)[4:].lower() for b in amb)}"
                  if amb else "setpriv --ambient-caps=-all") as st:
        caps_mod.clear_ambient()
        refused = []
        for b in amb:
            if sc._libc.prctl(caps_mod.PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, b, 0, 0) != 0:
                refused.append(caps_mod.cap_name(b).lower())
        if refused:
            st["note"] = f"not raised (not in both permitted and inheritable): {','.join(refused)}"


def _may_setgroups() -> bool:
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() != "deny"
    except OSError:
        return True


def build_filter(rec: Recorder, cfg: dict):
    """linux.seccomp (docker's profile format is the spec's, with extras) compiled now, loaded by
    the container's process: one seccomp(2) call there."""
    prof = cfg["linux"].get("seccomp")
    if not prof:
        return None
    from engine import paths, seccomp
    from engine.digest import sha256_hex

    caps = (cfg["process"].get("capabilities") or {}).get("effective") or []
    with rec.step("seccomp", "build filter", target="libseccomp", value="linux.seccomp",
                  shell="# seccomp_init + seccomp_rule_add x N (libseccomp)") as st:
        key = {"oci": sha256_hex(json.dumps(prof, sort_keys=True).encode()), "caps": sorted(caps)}
        flt = seccomp.load_or_compile(key, lambda: seccomp.resolve(prof, caps),
                                      cache=paths.lib_dir() / "seccomp-cache")
        st["value"] = f"linux.seccomp: {flt.describe()}"
    flt.prepare_load()
    return flt


def load_seccomp(rec: Recorder, flt, why: str) -> None:
    with rec.step("seccomp", "load filter", target="self", value=flt.describe(), why=why,
                  shell="# seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_LOG, &prog)"):
        flt.load()


def lookup(rec: Recorder, proc: dict) -> str:
    """The command in the container's PATH, now: a missing command fails `create` (runc does
    the same), 127 as docker's "executable file not found"."""
    argv = proc["args"]
    env = dict(e.split("=", 1) for e in proc["env"])
    try:
        return init.find_executable(argv[0], env.get("PATH", init.DEFAULT_PATH))
    except OSError as e:
        code = 127 if e.errno in (2, 20) else 126
        what = "executable file not found in $PATH" if code == 127 else e.strerror
        raise EngineError(f'exec: "{argv[0]}": {what}', exit_code=code) from None


def wait_and_exec(rec: Recorder, plan: ChildPlan) -> int:
    """Block until `start` writes to exec.fifo, then execve. Returns only on failure."""
    # Until then, signals keep their default action: `kill` of a created container ends it.
    data = os.read(plan.fifo_go, 1)
    os.close(plan.fifo_go)
    if data != b"g":
        raise EngineError("exec.fifo closed without a start")
    proc = plan.cfg["process"]
    if proc.get("noNewPrivileges") and plan.filter is not None:
        load_seccomp(rec, plan.filter, "last before execve: nothing of the runtime runs filtered")
    run_hooks_inside(rec, plan.cfg)
    for sig in range(1, signal.NSIG):  # ignored signals stay ignored across execve(2)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            try:
                if signal.getsignal(sig) == signal.SIG_IGN:
                    signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    env = dict(e.split("=", 1) for e in proc["env"])
    path = plan.cfg["_path"]
    sys.stdout.flush = lambda: None  # nothing of Python's buffers must reach the container's output
    try:
        os.execve(path, proc["args"], env)
    except OSError as e:
        code = 127 if e.errno in (2, 20) else 126
        step = {"mechanism": "exec", "op": "execve", "target": path, "value": " ".join(proc["args"]),
                "errno": e.errno, "result": init._errname(e.errno), "strerror": e.strerror,
                "container": plan.cid, "pid": os.getpid(), "ts": time.time()}
        send(plan.fifo_result, {"t": "error", "message": f'exec: "{proc["args"][0]}": {e.strerror}',
                                "exit_code": code, "step": step})
        os.write(2, f"labtui-oci: exec {proc['args'][0]}: {e.strerror}\n".encode())
        return code


def run_hooks_inside(rec: Recorder, cfg: dict) -> None:
    """startContainer hooks: run in the container, after start, before the command (runtime spec)."""
    for h in (cfg.get("hooks") or {}).get("startContainer") or []:
        argv = h.get("args") or [h["path"]]
        with rec.step("process", "hook startContainer", target=h["path"], value=" ".join(argv),
                      shell=" ".join(argv)) as st:
            pid = os.fork()
            if pid == 0:
                try:
                    os.execve(h["path"], argv, dict(e.split("=", 1) for e in h.get("env") or []))
                finally:
                    os._exit(127)
            _, status = os.waitpid(pid, 0)
            st["exit_code"] = os.waitstatus_to_exitcode(status)
            if st["exit_code"] != 0:
                raise EngineError(f"startContainer hook {h['path']} exited {st['exit_code']}")


