"""Security settings applied to a container: capabilities, no_new_privs, seccomp, masked paths.

The container's config carries what `labtui run` was asked for (config["security"], written by
labtui/cli_security.run_extra, and config["userns"]); settings(cfg) turns it into what is applied.
Hook points used by the runtime:

- prepare(cfg) in the supervisor before clone: resolve the settings, build the seccomp filter
  (built before fork and only loaded in the child, as crun does), open the denial watcher, give the
  supervisor its own audit session, and for --userns=private prepare the mapped root filesystem;
- mask_paths(rec, cfg) in the child after pivot_root: docker's masked and read-only paths;
- harden_init(rec, cfg) in PID 1 once the command's process is forked: the init keeps no
  capabilities at all (it only reaps and forwards signals);
- apply_before_exec(rec, cfg, prepared) in the command's process right before execve.

The order before execve is runc's (libcontainer/standard_init_linux.go): close-on-exec every fd
the runtime did not pass, no_new_privs, then capabilities and seccomp. Loading a filter without
no_new_privs needs CAP_SYS_ADMIN, so with --security-opt no-new-privileges=false the filter is
loaded first, while the process still has it; with no_new_privs set it is loaded last, so that
nothing between it and execve runs filtered.
"""

from __future__ import annotations

import os

from engine import capabilities as caps_mod
from engine import syscalls as sc
from engine.errors import EngineError, InvalidArgument
from engine.record import dataclass, field
from engine.steps import Recorder

# docker's defaults (moby oci/defaults.go), REFERENCE "Security defaults".
MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/sched_debug", "/proc/scsi", "/proc/timer_list", "/proc/timer_stats", "/sys/devices/virtual/powercap",
    "/sys/firmware",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

@dataclass
class Settings:
    privileged: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    caps: set[int] = field(default_factory=set)
    no_new_privs: bool = True
    seccomp: str = "default"  # default | unconfined | custom
    profile: dict | None = None
    profile_source: str = "default"
    systempaths: str = "default"  # default | unconfined (docker --security-opt systempaths=unconfined)
    userns: str = "host"

    def cap_names(self) -> list[str]:
        return [caps_mod.cap_name(b) for b in sorted(self.caps)]

    def security_opt(self) -> list[str]:
        out = [f"no-new-privileges={'true' if self.no_new_privs else 'false'}"]
        if self.seccomp == "unconfined":
            out.append("seccomp=unconfined")
        elif self.seccomp == "custom":
            out.append(f"seccomp={self.profile_source}")
        if self.systempaths == "unconfined":
            out.append("systempaths=unconfined")
        return out


def parse_security_opts(opts: list[str] | None) -> dict:
    """docker's --security-opt values labtui knows: no-new-privileges[=true|false] (also
    no-new-privileges:true), seccomp=PROFILE.json|unconfined, systempaths=unconfined."""
    out: dict = {}
    for raw in opts or []:
        opt = raw.strip()
        key, sep, value = opt.partition("=")
        if not sep and ":" in opt:
            key, _, value = opt.partition(":")
            sep = ":"
        key = key.strip().lower()
        if key == "no-new-privileges":
            v = value.strip().lower() if sep else "true"
            if v not in ("true", "false", "1", "0"):
                raise InvalidArgument(f"invalid --security-opt '{raw}': no-new-privileges takes true or false")
            out["no_new_privileges"] = v in ("true", "1")
        elif key == "seccomp":
            if not value:
                raise InvalidArgument(f"invalid --security-opt '{raw}': seccomp=PROFILE.json or seccomp=unconfined")
            if value == "unconfined":
                out["seccomp"] = "unconfined"
                out.pop("seccomp_profile", None)
            else:
                from engine import seccomp

                out["seccomp"] = "custom"
                out["seccomp_profile"] = seccomp.load_profile_file(value)
                out["seccomp_profile_path"] = os.path.abspath(value)
        elif key == "systempaths":
            if value != "unconfined":
                raise InvalidArgument(f"invalid --security-opt '{raw}': only systempaths=unconfined is supported")
            out["systempaths"] = "unconfined"
        elif key in ("apparmor", "label"):
            raise InvalidArgument(f"invalid --security-opt '{raw}': this host has no {key} LSM; labtui "
                                  "supports no-new-privileges, seccomp and systempaths")
        else:
            raise InvalidArgument(f"invalid --security-opt '{raw}': expected no-new-privileges[=true|false], "
                                  "seccomp=PROFILE.json|unconfined or systempaths=unconfined")
    return out


def security_config(cap_add: list[str] | None = None, cap_drop: list[str] | None = None,
                    privileged: bool = False, security_opt: list[str] | None = None,
                    devices: list[str] | None = None) -> dict:
    """What goes into config["security"]: validated, names normalised (CAP_ prefix, upper case)."""
    from engine import devices as dev

    sec: dict = {"privileged": bool(privileged), "cap_add": caps_mod.normalize_list(cap_add),
                 "cap_drop": caps_mod.normalize_list(cap_drop)}
    sec.update(parse_security_opts(security_opt))
    if devices:
        sec["devices"] = [dev.parse_device(d) for d in devices]
    return sec


def settings(cfg: dict) -> Settings:
    sec = cfg.get("security") or {}
    privileged = bool(sec.get("privileged"))
    s = Settings(privileged=privileged, cap_add=list(sec.get("cap_add") or []),
                 cap_drop=list(sec.get("cap_drop") or []), userns=cfg.get("userns") or "host")
    s.caps = caps_mod.effective_set(s.cap_add, s.cap_drop, privileged)
    nnp = sec.get("no_new_privileges")
    s.no_new_privs = (not privileged) if nnp is None else bool(nnp)
    mode = sec.get("seccomp") or "default"
    if privileged:
        mode = "unconfined"  # docker: --privileged runs without seccomp whatever the profile
    s.seccomp = mode
    if mode == "custom":
        s.profile = sec.get("seccomp_profile")
        s.profile_source = sec.get("seccomp_profile_path") or "custom"
        if not isinstance(s.profile, dict):
            raise InvalidArgument("the container's seccomp profile is missing from its config")
    s.systempaths = "unconfined" if privileged else (sec.get("systempaths") or "default")
    return s


def seccomp_plan(cfg: dict):
    """The container's resolved seccomp rules, or None when it runs unconfined."""
    from engine import seccomp

    s = settings(cfg)
    if s.seccomp == "unconfined":
        return None
    profile = s.profile if s.seccomp == "custom" else seccomp.load_default()
    return seccomp.resolve(profile, s.cap_names())


# ---- supervisor side ---------------------------------------------------------------------------

@dataclass
class Prepared:
    settings: Settings
    filter: object | None = None  # seccomp.Filter
    watcher: object | None = None  # seccomp.DenialWatcher
    session: int | None = None
    lowers: list[str] | None = None
    keep_fds: list[int] = field(default_factory=list)


_CURRENT: Prepared | None = None


def prepare(cfg: dict, rec: Recorder | None = None, joining: bool | None = None) -> Prepared:
    """Before the container's processes exist: in the supervisor before clone, or in the process
    that starts an exec into a running container (engine/exec.py). Steps go to rec when given,
    else straight to the container's step stream."""
    global _CURRENT
    own = None
    if rec is None:
        from engine.steps import container_recorder

        own = rec = container_recorder(cfg["id"])
    try:
        if joining is None:  # an exec: the container's supervisor watches
            joining = _container_running(cfg["id"])
        s = settings(cfg)
        p = Prepared(s)
        if s.seccomp != "unconfined":
            from engine import paths, seccomp

            with rec.step("seccomp", "build filter", target="libseccomp", value=s.profile_source,
                          shell="# seccomp_init + seccomp_rule_add x N (libseccomp); labtui seccomp show "
                                + cfg.get("name", cfg["id"][:12])) as st:
                p.filter = seccomp.load_or_compile(_filter_key(s), lambda: seccomp_plan(cfg),
                                                   cache=paths.lib_dir() / "seccomp-cache")
                st["value"] = f"{s.profile_source}: {p.filter.describe()}"
                st["cached"] = p.filter.cached
                st["unknown_to_libseccomp"] = p.filter.unknown
            p.filter.prepare_load()  # here, not in the child: its load is then one system call
            with rec.step("seccomp", "audit session", target="/proc/self/loginuid", value=str(os.getuid()),
                          shell=f"echo {os.getuid()} > /proc/self/loginuid",
                          why="a fresh audit session id (ses=) names this container's seccomp denials") as st:
                p.session = seccomp.start_audit_session()
                st["session"] = p.session
            if joining:
                seccomp.add_session(cfg["id"], p.session)  # the supervisor's watcher picks it up
            else:
                if _CURRENT is not None and _CURRENT.watcher is not None:  # a restart: the last run's
                    _CURRENT.watcher.poll()
                    _CURRENT.watcher.close()
                try:
                    p.watcher = seccomp.DenialWatcher(cfg["id"], cfg.get("name"), p.session, p.filter)
                except OSError:
                    p.watcher = None
        if s.userns == "private" and not joining:
            from engine import userns

            p.lowers = userns.prepare_rootfs(rec, cfg)
        leak = cfg.get("leak_fd_for_attack_demo")
        if leak and not joining:
            with rec.step("process", "open (deliberately leaked)", target=leak, value="O_RDONLY|O_DIRECTORY",
                          shell=f"exec 7< {leak}  # attack demo: a host directory fd left open for the container"):
                p.keep_fds.append(os.open(leak, os.O_RDONLY | os.O_DIRECTORY))
        if not joining:
            _CURRENT = p
        return p
    finally:
        if own is not None:
            own.sink.close()


def _filter_key(s: Settings) -> dict:
    """What the compiled filter depends on: the profile's content and the capabilities."""
    from engine import seccomp
    from engine.digest import sha256_hex

    if s.seccomp == "custom":
        import json

        profile = sha256_hex(json.dumps(s.profile, sort_keys=True).encode())
    else:
        profile = _default_profile_digest(seccomp.DEFAULT_PROFILE)
    return {"profile": profile, "caps": s.cap_names()}


_DIGESTS: dict[tuple, str] = {}


def _default_profile_digest(path) -> str:
    """sha256 of the default profile's file, read again only when the file changed."""
    from engine.digest import sha256_hex

    st = os.stat(path)
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    digest = _DIGESTS.get(key)
    if digest is None:
        with open(path, "rb") as f:
            digest = _DIGESTS[key] = "default:" + sha256_hex(f.read())
    return digest


def warm_up() -> None:
    """Read the default seccomp program into memory (labtui's helper, before it forks workers)."""
    from engine import paths, seccomp

    cfg = {"id": "warm-up", "security": {}}
    s = settings(cfg)
    flt = seccomp.load_or_compile(_filter_key(s), lambda: seccomp_plan(cfg), cache=paths.lib_dir() / "seccomp-cache")
    flt.prepare_load()


def _container_running(cid: str) -> bool:
    from engine import state
    from engine.errors import NotFound

    try:
        return state.load(cid).init_alive()
    except (NotFound, OSError, ValueError):
        return False


def adopt_denial_watcher(cfg: dict, fd: int, session: int | None, init_pid: int | None) -> None:
    """The supervisor back from its idle phase (engine/idle.py): its DenialWatcher again, on the
    audit socket the monitor kept (records that arrived meanwhile are still queued on it)."""
    global _CURRENT
    import socket

    from engine import paths, seccomp

    s = settings(cfg)
    w = seccomp.DenialWatcher(cfg["id"], cfg.get("name"), session, None, source="none")
    w.sock = socket.socket(fileno=fd)
    w.source = "audit-netlink"
    if init_pid:
        w.set_target(init_pid)
    try:  # the profile's errno for ERRNO actions; compiled already, so read from the cache
        w.plan = seccomp.load_or_compile(_filter_key(s), lambda: seccomp_plan(cfg),
                                         cache=paths.lib_dir() / "seccomp-cache")
    except Exception:
        w.plan = None
    _CURRENT = Prepared(s)
    _CURRENT.watcher = w
    _CURRENT.session = session


def denial_watcher():
    """The DenialWatcher this supervisor process opened in prepare() (None if unconfined)."""
    return _CURRENT.watcher if _CURRENT is not None else None


def child_keep_fds(prepared: Prepared | None) -> list[int]:
    """fds the child must not close (only the attack demo's deliberate leak)."""
    return list(prepared.keep_fds) if prepared is not None else []


# ---- child side ------------------------------------------------------------------------------

def mask_path(rec: Recorder, path: str) -> None:
    """An empty read-only tmpfs over a directory, /dev/null over a file (runc's maskPath)."""
    from engine import rootfs

    if not os.path.lexists(path):
        return
    if os.path.isdir(path):
        rootfs.mount(rec, "tmpfs", path, "tmpfs", sc.MS_RDONLY, op="mask path",
                     shell=f"mount -t tmpfs -o ro tmpfs {path}")
    else:
        rootfs.mount(rec, "/dev/null", path, None, sc.MS_BIND, op="mask path",
                     shell=f"mount --bind /dev/null {path}")


def mask_paths(rec: Recorder, cfg: dict) -> None:
    """docker's masked paths (an empty read-only tmpfs over a directory, /dev/null over a file)
    and read-only paths (a bind of the path onto itself, remounted read-only). In the child,
    after pivot_root, so the paths are the container's."""
    from engine import rootfs

    s = settings(cfg)
    if s.systempaths == "unconfined":
        return
    for path in MASKED_PATHS:
        mask_path(rec, path)
    for path in READONLY_PATHS:
        if not os.path.lexists(path):
            continue
        rootfs.mount(rec, path, path, None, sc.MS_BIND | sc.MS_REC, op="bind read-only path",
                     shell=f"mount --rbind {path} {path}")
        flags = sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | rootfs.locked_flags(path)
        rootfs.mount(rec, None, path, None, flags, op="remount ro", shell=f"mount -o remount,bind,ro {path}")


def harden_init(rec: Recorder, cfg: dict) -> None:
    """PID 1 only reaps and forwards signals: it needs no capability and keeps none, so even a
    process that could ptrace it would find nothing to borrow."""
    with rec.step("capability", "drop all (init)", target="init", value="bounding=prm=eff=inh=amb=0",
                  shell="setpriv --bounding-set=-all --inh-caps=-all --ambient-caps=-all"):
        caps_mod.drop_bounding(sorted(caps_mod.current_bounding()))
        caps_mod.clear_ambient()
        caps_mod.capset(0, 0, 0)
    with rec.step("process", "prctl", target="init", value="PR_SET_NO_NEW_PRIVS 1", shell="setpriv --no-new-privs"):
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)


def _close_on_exec(rec: Recorder, keep: list[int]) -> None:
    """runc's CloseExecFrom(3): every fd >= 3 the command was not given is marked close-on-exec,
    so nothing of the runtime (a host directory, a socket) survives execve - CVE-2024-21626."""
    import fcntl

    fds = sorted(int(n) for n in os.listdir("/proc/self/fd"))
    marked, leaked = [], []
    with rec.step("process", "close-on-exec fds >= 3", target="self",
                  shell="# fcntl(fd, F_SETFD, FD_CLOEXEC) for each fd >= 3; ls -l /proc/self/fd") as st:
        for fd in fds:
            if fd < 3:
                continue
            try:
                flags = fcntl.fcntl(fd, fcntl.F_GETFD)
            except OSError:
                continue  # the fd of the listing itself, closed by now
            if fd in keep:
                fcntl.fcntl(fd, fcntl.F_SETFD, flags & ~fcntl.FD_CLOEXEC)
                leaked.append(fd)
            elif not flags & fcntl.FD_CLOEXEC:
                fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
                marked.append(fd)
        st["value"] = (f"marked {marked or 'none'}" +
                       (f"; deliberately leaked for the attack demo: {leaked}" if leaked else ""))
    with rec.step("process", "verify cwd", target="self", value=os.environ.get("PWD", ""),
                  shell="pwd -P  # must be inside the container's root") as st:
        try:
            cwd = os.getcwd()
        except OSError as e:
            raise EngineError("the working directory is outside the container's root (CVE-2024-21626 "
                              f"class): {e.strerror}") from None
        if not cwd.startswith("/"):
            raise EngineError(f"the working directory is outside the container's root: {cwd}")
        st["value"] = cwd


def apply_before_exec(rec: Recorder, cfg: dict, prepared: Prepared | None) -> None:
    if prepared is None:
        prepared = Prepared(settings(cfg))
    s = prepared.settings
    _close_on_exec(rec, prepared.keep_fds)
    if s.no_new_privs:
        with rec.step("process", "prctl", target="self", value="PR_SET_NO_NEW_PRIVS 1",
                      shell="setpriv --no-new-privs"):
            sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    flt = prepared.filter
    if flt is not None and not s.no_new_privs:
        _load_seccomp(rec, flt, "before capabilities: without no_new_privs loading needs CAP_SYS_ADMIN")
    caps_mod.apply(rec, s.caps)
    if flt is not None and s.no_new_privs:
        _load_seccomp(rec, flt, "last before execve: nothing of the runtime runs filtered")


def _load_seccomp(rec: Recorder, flt, why: str) -> None:
    with rec.step("seccomp", "load filter", target="self", value=flt.describe(), why=why,
                  shell="# seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_LOG, &prog)"):
        flt.load()


# ---- inspect -----------------------------------------------------------------------------------

def describe(pid: int | str) -> dict:
    """/proc/PID/status decoded: capability sets by name, no_new_privs, seccomp mode and filters."""
    return caps_mod.describe(pid)


def inspect_extra(c, info: dict) -> None:
    """What inspect adds: HostConfig's security fields and a "Security" section with the
    command's decoded capability sets, seccomp state and denial count, and the user namespace."""
    from engine import seccomp

    cfg = c.config
    s = settings(cfg)
    hc = info.setdefault("HostConfig", {})
    hc.update({"Privileged": s.privileged, "CapAdd": s.cap_add or None, "CapDrop": s.cap_drop or None,
               "SecurityOpt": s.security_opt(), "UsernsMode": "" if s.userns == "host" else s.userns,
               "Devices": [{"PathOnHost": d["host"], "PathInContainer": d["container"],
                            "CgroupPermissions": d["perms"]}
                           for d in ((cfg.get("security") or {}).get("devices") or [])]})
    sec: dict = {"capabilities": s.cap_names(), "no_new_privs": s.no_new_privs, "seccomp": s.seccomp,
                 "seccomp_profile": s.profile_source if s.seccomp != "unconfined" else None,
                 "masked_paths": [] if s.systempaths == "unconfined" else MASKED_PATHS,
                 "readonly_paths": [] if s.systempaths == "unconfined" else READONLY_PATHS,
                 "seccomp_denials": seccomp.denial_stats(c.id)}
    pid = info.get("State", {}).get("Pid")
    if pid:
        from engine import procfs

        target = procfs.first_child(pid) or pid  # the command, not labtui's init
        try:
            sec["process"] = {"pid": target, **describe(target)}
        except OSError:
            pass
        if s.userns == "private":
            try:
                with open(f"/proc/{pid}/uid_map") as f:
                    uid_map = f.read().split()
                with open(f"/proc/{pid}/gid_map") as f:
                    gid_map = f.read().split()
                sec["userns"] = {"uid_map": uid_map, "gid_map": gid_map}
            except OSError:
                pass
    info["Security"] = sec


# ---- supervisor wiring ---------------------------------------------------------------------------

def supervisor_before_go(rec: Recorder, c, pid: int) -> None:
    """For hooks.before_go, first thing: the user namespace maps (between clone and "go"), and the
    denial watcher learns the container's init (its PID namespace)."""
    from engine import userns

    userns.write_maps(rec, pid, c.config)
    if _CURRENT is not None:
        dw = _CURRENT.watcher
        if dw is not None:
            dw.set_target(pid)
        for fd in _CURRENT.keep_fds:  # the attack demo's leak: the child has its copy now
            try:
                os.close(fd)
            except OSError:
                pass
        _CURRENT.keep_fds = []


def poll_denials() -> list[dict]:
    """For the supervisor's serve loop (every 250 ms, or when denial_watcher().fileno() is
    readable): emits the new seccomp_denied events and returns them."""
    dw = denial_watcher()
    return dw.poll() if dw is not None else []


def finish_denials() -> None:
    """For hooks.after_exit: the last records (the kernel's audit thread sends them a moment after
    the call), then close the watcher."""
    import select

    dw = denial_watcher()
    if dw is None:
        return
    dw.poll()
    # The kernel's audit thread sends a record a moment after the call: a call made just before
    # exit may still be on its way. Wait briefly for it (only if nothing is there already).
    if dw.fileno() >= 0 and select.select([dw.fileno()], [], [], 0.002)[0]:
        dw.poll()
    dw.close()

