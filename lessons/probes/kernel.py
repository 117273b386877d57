"""Probes of the kernel's objects: processes, namespaces, cgroups, files, commands run inside.

Each reads the kernel through the engine's readers (engine.procfs, engine.capabilities,
engine.cgroups, engine.api) at the moment a check runs; the network probes (links, addresses,
routes, bridge ports, TCP) are in lessons/probes/net.py.
"""

from __future__ import annotations

import ctypes
import os
import signal
import stat
import struct
import subprocess

from lessons.probes import target
from lessons.probes.registry import EXPECT, Context, Observation, ProbeError, expect, probe

TEXT_EXPECT = {k: v for k, v in EXPECT.items() if k != "exists"}  # on a file's text, not its presence


def _expects(p: dict, keys: dict = EXPECT) -> dict:
    return {k: v for k, v in p.items() if k in keys}


def _normalise(text: str) -> str:
    """Whitespace-normalised text: uid_map's column padding ("         0     100000      65536")
    is the kernel's layout, not part of the fact ("0 100000 65536")."""
    return "\n".join(" ".join(line.split()) for line in text.strip().splitlines())


# ---- the container itself -------------------------------------------------------------------

@probe("container", "a container's status, exit code and restarts, as the runtime reports them",
       required={"container": str},
       optional={"status": str, "exit_code": int, "restarts_min": int, "health": str, "oom_killed": bool,
                 **EXPECT},
       describe=lambda p: f"container {p['container']} is {p.get('status', 'there')}")
def container(ctx: Context, p: dict) -> Observation:
    c = target.container(p["container"])
    status = c.status
    why: list[str] = []
    if "status" in p and status != p["status"]:
        why.append(f"it is {status}, not {p['status']}")
    if "exit_code" in p and c.state.get("exit_code") != p["exit_code"]:
        why.append(f"its exit code is {c.state.get('exit_code')}, not {p['exit_code']}")
    if "restarts_min" in p and int(c.state.get("restart_count", 0) or 0) < p["restarts_min"]:
        why.append(f"it restarted {c.state.get('restart_count', 0)} times, fewer than {p['restarts_min']}")
    if "health" in p:
        health = (c.state.get("health") or {}).get("Status") if c.config.get("health") else "none"
        if health != p["health"]:
            why.append(f"its health is {health}, not {p['health']}")
    if "oom_killed" in p and bool(c.state.get("oom_killed")) != p["oom_killed"]:
        why.append("the OOM killer did not kill it" if p["oom_killed"] else "the OOM killer killed it")
    ok, more = expect(status, _expects(p))
    return Observation(not why and ok, status, why + more)


# ---- a process's /proc files ----------------------------------------------------------------

def _proc_name(file: str) -> str:
    if not file or file.startswith("/") or ".." in file.split("/"):
        raise ProbeError(f"file must name a file of /proc/PID (uid_map, status, ns/net ...), not {file!r}")
    return file


@probe("proc_file", "a file of /proc/PID of a container's process (uid_map, gid_map, setgroups, cgroup, ...)",
       required={"container": str, "file": str}, optional={"process": str, **EXPECT},
       describe=lambda p: f"/proc/PID/{p['file']} of {p['container']}'s {p.get('process', 'main')} process")
def proc_file(ctx: Context, p: dict) -> Observation:
    from engine import procfs

    pid = target.process_of(p["container"], p.get("process", "main"))
    raw = procfs.read_text(f"/proc/{pid}/{_proc_name(p['file'])}")
    if raw is None:
        if not os.path.exists(f"/proc/{pid}"):
            raise ProbeError(f"the process of {p['container']} went away while it was read")
        absent_ok = p.get("exists", True) is False
        return Observation(absent_ok, "(absent)", [] if absent_ok else [f"/proc/{pid}/{p['file']} cannot be read"])
    text = _normalise(raw)
    ok, why = expect(text, _expects(p))
    return Observation(ok, text, why)


def _cap_bits(names: list, field: str) -> list[tuple[str, int]]:
    from engine import capabilities
    from engine.errors import EngineError

    out = []
    for n in names:
        try:
            name = capabilities.normalize(str(n))
        except EngineError as e:
            raise ProbeError(f"{field}: {e}") from None
        if name == "ALL":  # every capability this kernel has
            out += [(capabilities.cap_name(b), b) for b in sorted(capabilities.all_caps())]
        else:
            out.append((name, capabilities.CAP_BITS[name]))
    return out


@probe("status_field", "a field of /proc/PID/status of a container's process (CapEff, NoNewPrivs, Seccomp, ...)",
       required={"container": str, "field": str},
       optional={"process": str, "has_caps": list, "lacks_caps": list, **EXPECT},
       describe=lambda p: f"{p['field']} of {p['container']}'s {p.get('process', 'main')} process")
def status_field(ctx: Context, p: dict) -> Observation:
    """EXPECT applies to the field's text; has_caps/lacks_caps decode the named Cap* field (CapEff
    when the field is not a capability set) with engine.capabilities."""
    from engine import capabilities, procfs

    pid = target.process_of(p["container"], p.get("process", "main"))
    try:
        fields = procfs.status(pid)
    except OSError:
        raise ProbeError(f"the process of {p['container']} went away while it was read") from None
    value = fields.get(p["field"])
    if value is None:
        absent_ok = p.get("exists", True) is False
        return Observation(absent_ok, "(absent)", [] if absent_ok else [f"/proc/{pid}/status has no {p['field']}"])
    ok, why = expect(value, _expects(p))
    cap_field = p["field"] if p["field"].startswith("Cap") else "CapEff"
    mask = int(fields.get(cap_field) or "0", 16)
    missing = [n for n, b in _cap_bits(p.get("has_caps", []), "has_caps") if not mask >> b & 1]
    present = [n for n, b in _cap_bits(p.get("lacks_caps", []), "lacks_caps") if mask >> b & 1]
    if missing:
        why.append(f"{cap_field} lacks {', '.join(missing)}")
    if present:
        why.append(f"{cap_field} has {', '.join(present)}")
    if missing or present:
        ok = False
        why.append(f"{cap_field} {fields.get(cap_field)} = {','.join(capabilities.decode(mask)) or '(none)'}")
    return Observation(ok, value, why)


# ---- namespaces -----------------------------------------------------------------------------

NS_KINDS = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")


def _ns_of(name: str, kind: str, process: str = "main") -> tuple[int, int]:
    from engine import procfs

    # "host": the namespaces labtui itself runs in (PID 1's may be unreadable in a confined lab)
    pid = os.getpid() if name == "host" else target.process_of(name, process)
    ns = procfs.namespaces(pid).get(kind)
    if ns is None:
        raise ProbeError(f"cannot read /proc/{pid}/ns/{kind} of {name}")
    return ns


@probe("namespace", "a container's namespace of one kind, compared with the host's or another container's",
       required={"container": str, "ns": str},
       optional={"process": str, "same_as": str, "expect_same": bool},
       describe=lambda p: f"{p['container']}'s {p['ns']} namespace is "
                          f"{'the same as' if p.get('expect_same') else 'not'} {p.get('same_as', 'host')}'s")
def namespace(ctx: Context, p: dict) -> Observation:
    """Two processes share a namespace exactly when /proc/PID/ns/KIND is the same (device, inode)
    (namespaces(7)). "host" is labtui's own; expect_same defaults to false: a container's own."""
    kind = p["ns"]  # not "kind": a check's kind is its probe's name
    if kind not in NS_KINDS:
        raise ProbeError(f"ns must be one of {', '.join(NS_KINDS)}, not {kind!r}")
    other = p.get("same_as", "host")
    mine = _ns_of(p["container"], kind, p.get("process", "main"))
    theirs = _ns_of(other, kind)
    same = mine == theirs
    want = p.get("expect_same", False)
    why = [] if same == want else [
        f"{p['container']} is in {kind}:[{mine[1]}], {other} in {kind}:[{theirs[1]}]: "
        f"{'the same' if same else 'different'} namespace{'s' if not same else ''}"]
    return Observation(same == want, f"{kind}:[{mine[1]}] ({'same as' if same else 'not'} {other}'s)", why)


# ---- cgroups --------------------------------------------------------------------------------

V1_UNLIMITED = 2**62  # v1 memory/pids "no limit" is PAGE_COUNTER_MAX pages (9223372036854771712)
VERSIONS = {"unified": "v2", "legacy": "v1", "hybrid": "hybrid", "none": "none"}


def _cgroup_file_path(c, p: dict) -> tuple[str, str]:
    """(version, path) of the check's file for this container: the v2 name when its cgroups are
    v2 (engine.api.cgroup_paths has a "unified" directory), else the v1 name in its controller's
    directory (memory.limit_in_bytes lives under the memory controller)."""
    from engine import api
    from engine.errors import EngineError

    try:
        dirs = api.cgroup_paths(c.id)
    except EngineError as e:
        raise ProbeError(f"cannot find {c.name}'s cgroups: {e}") from None
    if not dirs:
        raise ProbeError(f"container {c.name} has no cgroups (this host has none labtui can use)")
    version = "v2" if "unified" in dirs else "v1"
    name = p.get(version)
    if not name:
        raise ProbeError(f"this check names no {version} file, and {c.name}'s cgroups are {version}")
    if "/" in name or name.startswith("."):
        raise ProbeError(f"{version} must be a file name such as memory.max, not {name!r}")
    if version == "v2":
        return version, os.path.join(dirs["unified"], name)
    controller = name.split(".")[0]
    d = dirs.get(controller) or (next(iter(dirs.values())) if controller == "cgroup" else None)
    if d is None:
        raise ProbeError(f"{c.name} has no {controller} controller directory (its v1 controllers: "
                         f"{', '.join(sorted(dirs))})")
    return version, os.path.join(d, name)


def _unlimited(word: str | None) -> bool:
    if word == "max":
        return True
    try:
        return word is not None and int(word) >= V1_UNLIMITED
    except ValueError:
        return False


@probe("cgroup_file", "a cgroup file of a container (its v1 or v2 name, whichever its cgroups use)",
       required={"container": str}, optional={"v1": str, "v2": str, "unlimited": bool, **EXPECT},
       describe=lambda p: f"{p.get('v2') or p.get('v1') or 'a cgroup file'} of {p['container']}")
def cgroup_file(ctx: Context, p: dict) -> Observation:
    """EXPECT applies to the file's text; min and max compare its first word as a number, where
    v2's "max" and v1's 9223372036854771712 (no limit) count as infinite."""
    from engine import procfs

    c = target.running(p["container"])
    version, path = _cgroup_file_path(c, p)
    raw = procfs.read_text(path)
    if raw is None:
        absent_ok = p.get("exists", True) is False
        return Observation(absent_ok, "(absent)", [] if absent_ok else [f"{path} does not exist ({version})"])
    text = _normalise(raw)
    first = text.split()[0] if text else None
    numeric = {k: v for k, v in p.items() if k in ("min", "max")}
    ok, why = expect(text, {k: v for k, v in _expects(p).items() if k not in numeric})
    if numeric:
        ok2, why2 = expect("inf" if _unlimited(first) else first, numeric)
        ok, why = ok and ok2, why + why2
    if "unlimited" in p and _unlimited(first) != p["unlimited"]:
        ok = False
        why.append(f"{os.path.basename(path)} is {first}: {'a limit' if p['unlimited'] else 'no limit'}")
    return Observation(ok, text, why + [f"read {path} ({version})"] if not ok else [])


@probe("cgroup_version", "the host's cgroup layout: v1, v2 or hybrid",
       optional={"expect": str, "driver": str, **EXPECT},
       describe=lambda p: f"the host's cgroups are {p.get('expect', 'known')}")
def cgroup_version(ctx: Context, p: dict) -> Observation:
    """`expect` is the layout (v1: legacy, v2: unified, hybrid: v1 controllers with a cgroup2
    mount beside them); `driver` is the version containers get (v1 on a hybrid host)."""
    from engine import cgroups

    layout = cgroups.host_layout()
    version = VERSIONS.get(layout.kind, layout.kind)
    driver = {"v2": "v2", "v1": "v1", "hybrid": "v1"}.get(version, "none")
    why: list[str] = []
    for key, seen in (("expect", version), ("driver", driver)):
        if key in p and p[key] not in ("v1", "v2", "hybrid", "none"):
            raise ProbeError(f"{key} must be v1, v2, hybrid or none, not {p[key]!r}")
        if key in p and p[key] != seen:
            why.append(f"the host's cgroup layout is {seen}, not {p[key]}" if key == "expect"
                       else f"containers get {seen} cgroups here, not {p[key]}")
    ok, more = expect(version, _expects(p))
    return Observation(not why and ok, f"{version} (containers use {driver})", why + more)


# ---- files: a container's upper dir, its root, the host ---------------------------------------

SYS_OPENAT2 = 437  # the same number on every architecture (syscalls added after 5.1 share one table)
RESOLVE_IN_ROOT = 0x10
_libc = ctypes.CDLL(None, use_errno=True)


def _open_in_root(root_fd: int, path: str, flags: int) -> int:
    """openat2(2) with RESOLVE_IN_ROOT: path and every symlink on the way resolve as if root_fd
    were "/", so a container's symlink to /etc/shadow never reaches the host's."""
    how = ctypes.create_string_buffer(struct.pack("QQQ", flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT), 24)
    fd = _libc.syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(root_fd), ctypes.c_char_p(path.encode()),
                       how, ctypes.c_size_t(24))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


def _root_of(where: str, name: str | None) -> str:
    if where == "host":
        return "/"
    if not name:
        raise ProbeError(f"a path in the {where} needs the field 'container'")
    if where == "upper":
        return str(target.container(name).dir / "upper")
    if where == "rootfs":
        return f"/proc/{target.process_of(name, 'init')}/root"
    if where == "state":  # the runtime's own record of the container: config, logs, strace.log
        return str(target.container(name).dir)
    raise ProbeError(f"where must be upper (the container's upper dir), rootfs, state or host, not {where!r}")


def _kind_of(st: os.stat_result) -> str:
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return "whiteout"  # overlayfs marks a deleted lower file with a 0:0 character device
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISCHR, "chardev"), (stat.S_ISBLK, "blockdev"), (stat.S_ISFIFO, "fifo")):
        if test(st.st_mode):
            return name
    return "socket"


def _opaque(fd: int) -> bool:
    """An overlay directory that hides the whole lower directory (rm -r then mkdir): the
    trusted.overlay.opaque xattr, or user.overlay.opaque under a user namespace (userxattr)."""
    for attr in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            if os.getxattr(f"/proc/self/fd/{fd}", attr) == b"y":
                return True
        except OSError:
            continue
    return False


def _look(root: str, path: str) -> tuple[str | None, bool, str | None]:
    """(kind or None when absent, opaque, text of a regular file) of path under root."""
    try:
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise ProbeError(f"cannot open {root}: {e.strerror}") from None
    try:
        try:
            fd = _open_in_root(root_fd, path, os.O_PATH | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None, False, None
        try:
            st = os.fstat(fd)
            kind, opaque = _kind_of(st), stat.S_ISDIR(st.st_mode) and _opaque(fd)
        finally:
            os.close(fd)
        if kind != "file" and kind != "symlink":
            return kind, opaque, None
        try:  # the text, following symlinks inside the root only; never block on a FIFO
            fd = _open_in_root(root_fd, path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return kind, opaque, None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return kind, opaque, None
            return kind, opaque, os.read(fd, 1 << 20).decode(errors="replace")
        finally:
            os.close(fd)
    finally:
        os.close(root_fd)


@probe("path", "a path in a container's upper dir, in its root filesystem, or on the host",
       required={"path": str},
       optional={"where": str, "container": str, "is_whiteout": bool, "is_opaque": bool, "type": str,
                 **EXPECT},
       describe=lambda p: f"{p['path']} " + (f"in {p['container']}'s {p.get('where', 'rootfs')}"
                                             if p.get("container") else "on the host"))
def path(ctx: Context, p: dict) -> Observation:
    """exists defaults to true; type is file, dir, symlink, whiteout, chardev, blockdev, fifo or
    socket; the text EXPECT fields (contains, equals, matches, ...) apply to a regular file's text."""
    where = p.get("where", "rootfs" if p.get("container") else "host")
    if not p["path"].startswith("/") or ".." in p["path"].split("/"):
        raise ProbeError(f"path must be absolute and without '..', not {p['path']!r}")
    kind, opaque, text = _look(_root_of(where, p.get("container")), p["path"])
    why: list[str] = []
    if kind is None:
        if p.get("exists", True):
            why.append(f"{p['path']} does not exist in the {where}")
        return Observation(not why, "(absent)", why)
    if not p.get("exists", True):
        why.append(f"{p['path']} exists in the {where} ({kind})")
    if "is_whiteout" in p and (kind == "whiteout") != p["is_whiteout"]:
        why.append(f"it is a {kind}, not a whiteout" if p["is_whiteout"]
                   else "it is a whiteout: the file of the image below is deleted")
    if "is_opaque" in p and opaque != p["is_opaque"]:
        why.append(f"it is {'' if opaque else 'not '}an opaque directory")
    if "type" in p and kind != p["type"]:
        why.append(f"it is a {kind}, not a {p['type']}")
    text_expect = _expects(p, TEXT_EXPECT)
    if text_expect:
        if text is None:
            why.append(f"it is a {kind}, not a file with text")
        else:
            why += expect(text, text_expect)[1]
    shown = kind + (" (opaque)" if opaque else "") + (f": {text.strip()[:200]}" if text and text_expect else "")
    return Observation(not why, shown, why)


# ---- a command inside a container -----------------------------------------------------------

def _engine_env() -> dict[str, str]:
    """The environment for `python -m engine.exec_main`, able to import this engine wherever the
    caller's working directory is."""
    import engine

    root = os.path.dirname(os.path.dirname(os.path.abspath(engine.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


def run_inside(name: str, cmd: str, timeout: float = 10, user: str | None = None) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `sh -c cmd` in the running container, through exec's own
    program (a probe may run in the threaded app, and exec needs a single-threaded caller)."""
    from engine import exec_main, state

    c = target.running(name)
    if c.status != state.RUNNING:
        raise ProbeError(f"container {c.name} is {c.status}: a command cannot run in it")
    argv = exec_main.command_line(c.id, ["sh", "-c", cmd], user=user)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_engine_env(), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # exec_main passes it on to the command inside
        try:
            proc.communicate(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        raise ProbeError(f"`{cmd}` did not finish within {timeout:g} s in {c.name}") from None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


@probe("exec", "a command's exit code and output inside a running container",
       required={"container": str, "cmd": str},
       optional={"exit_code": int, "fails": bool, "stderr_contains": str, "user": str,
                 "timeout": (int, float), **EXPECT},
       describe=lambda p: f"`{p['cmd']}` in {p['container']}")
def exec_(ctx: Context, p: dict) -> Observation:
    """Runs `sh -c cmd`; exit_code defaults to 0 (`fails = true`: any other code); EXPECT applies
    to its standard output."""
    code, out, err = run_inside(p["container"], p["cmd"], float(p.get("timeout", 10)), p.get("user"))
    why: list[str] = []
    if p.get("fails"):
        if code == 0:
            why.append("it succeeded (exit code 0), expected it to fail")
    elif code != p.get("exit_code", 0):
        why.append(f"exit code {code}, expected {p.get('exit_code', 0)}")
    if "stderr_contains" in p and p["stderr_contains"] not in err:
        why.append(f"expected its error output to contain {p['stderr_contains']!r}, saw {err.strip()!r}")
    ok, more = expect(out, _expects(p))
    why += more
    if why and err.strip():
        why.append("stderr: " + err.strip()[-300:])
    shown = f"exit {code}" + (f": {out.strip()[:200]}" if out.strip() else "")
    return Observation(ok and not why, shown, why)


