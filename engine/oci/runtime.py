"""labtui as an OCI runtime: the verbs of runc's command line, on labtui's engine (docs/oci-runtime.md).

    create ID --bundle DIR [--pid-file F] [--console-socket S]
        read and check DIR/config.json (engine/oci/spec.py); make the container's cgroup and
        write its limits and device rules; join the namespaces given by path; clone(2) the
        container's process with the new ones; write its uid/gid maps; the process builds its
        root and blocks before execve (engine/oci/child.py). Writes the pid file and EXITS: the
        caller (podman's conmon, a subreaper) adopts the process, reaps it and owns its stdio.
    start ID       one byte into exec.fifo; EOF on exec.result = execve done
    state ID       the OCI state JSON (status recomputed from the kernel); a stopped one's exit
                   code, read where conmon wrote it, goes into labtui's record
    kill ID SIG    pidfd_send_signal(2) to the container's process (--all: every process of its cgroup)
    delete ID      poststop hooks, cgroup removed, runtime state gone; labtui's record of a container
                   that exited on its own stays while podman keeps it (--force kills a running one
                   first and removes everything)
    exec ID        one more process in the container's namespaces and cgroup (podman exec)

Each container is also a labtui container (same 64-hex ID when the OCI ID is one, as podman's
are): `labtui ps`, `labtui steps` and the app show it, every kernel step recorded as usual.

The runtime's own state (runc's --root) is one directory per container: state.json (bundle, the
process's PID with its start time and boot id, whether it was started, conmon's exit file), and
the two fifos.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

from engine import events, paths, state
from engine import syscalls as sc
from engine.errors import Conflict, EngineError, InvalidArgument, NotFound, StepError
from engine.oci import spec as ocispec
from engine.steps import FileSink, Recorder

OCI_VERSION = "1.0.2"
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,1023}$")
CREATED, RUNNING, STOPPED = "created", "running", "stopped"
START_TIMEOUT = 30.0


def default_root() -> Path:
    """runc's /run/runc: here under labtui's run directory (LABTUI_ROOT moves it)."""
    return paths.run_dir() / "oci"


def labtui_id(oci_id: str) -> str:
    """podman's IDs are 64 hex digits, labtui's too: the same ID; any other is hashed to one."""
    if re.fullmatch(r"[0-9a-f]{64}", oci_id):
        return oci_id
    import hashlib

    return hashlib.sha256(oci_id.encode()).hexdigest()


def _name_for(oci_id: str, cfg: dict) -> str:
    from engine.spec import NAME_RE

    if not re.fullmatch(r"[0-9a-f]{64}", oci_id) and NAME_RE.match(oci_id) and len(oci_id) <= 64:
        return oci_id
    prefix = "podman" if cfg["annotations"].get("io.container.manager") == "libpod" else "oci"
    return f"{prefix}-{oci_id[:12]}"


class Bundle:
    """One container's runtime state directory (<root>/<id>)."""

    def __init__(self, root: Path, oci_id: str) -> None:
        if not ID_RE.match(oci_id):
            raise InvalidArgument(f"invalid container id {oci_id!r}: letters, digits and _.+- only")
        self.id = oci_id
        self.dir = Path(root) / oci_id

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    def load(self) -> dict:
        try:
            return state.read_json(self.state_file)
        except FileNotFoundError:
            raise NotFound(f"container {self.id} does not exist") from None
        except ValueError as e:
            raise EngineError(f"container {self.id}: its state.json is damaged ({e}); delete --force it") from None

    def save(self, st: dict) -> None:
        state.write_json_atomic(self.state_file, st)

    @contextlib.contextmanager
    def locked(self):
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def status_of(st: dict) -> str:
    if not state.pid_alive(st.get("pid"), st.get("pid_start"), st.get("boot_id")):
        return STOPPED
    return RUNNING if st.get("started") else CREATED


def oci_state(b: Bundle, st: dict | None = None) -> dict:
    st = st if st is not None else b.load()
    status = status_of(st)
    return {"ociVersion": OCI_VERSION, "id": b.id, "status": status,
            "pid": st.get("pid", 0) if status != STOPPED else 0, "bundle": st["bundle"],
            "rootfs": st.get("rootfs", ""), "created": st.get("created", ""), "owner": "",
            "annotations": st.get("annotations", {})}


def _recorder(cid: str) -> Recorder:
    return Recorder(cid, FileSink(str(paths.container_dir(cid) / "steps.jsonl")))


# ---- create ----------------------------------------------------------------------------------------

def create(root: Path, oci_id: str, bundle: str, pid_file: str | None = None,
           console_socket: str | None = None) -> dict:
    b = Bundle(root, oci_id)
    bundle = os.path.realpath(bundle)
    cfg = ocispec.load(bundle)
    paths.ensure_dirs()
    Path(root).mkdir(parents=True, exist_ok=True)
    try:
        b.dir.mkdir(mode=0o711)  # atomic: of two creates of one ID, one wins
    except FileExistsError:
        raise Conflict(f"container {oci_id} already exists") from None
    cid = labtui_id(oci_id)
    undo: list = [lambda: shutil.rmtree(b.dir, ignore_errors=True)]
    prune_forgotten()
    exit_file = conmon_exit_file(oci_id)
    try:
        record = _make_record(cid, oci_id, bundle, cfg, undo, exit_file)
        rec = _recorder(cid)
        rec.sink.open_files()  # opened now, on the host: the container's process writes through them
        pid = _spawn(rec, b, cid, cfg, record, console_socket, undo)
        st = {"id": oci_id, "labtui_id": cid, "bundle": bundle, "rootfs": cfg["root"]["path"],
              "pid": pid, "pid_start": state.proc_start_time(pid), "boot_id": state.boot_id(),
              "created": state.now_iso(), "annotations": cfg["annotations"], "started": False,
              "exit_file": exit_file, "created_ts": time.time()}
        b.save(st)
        if pid_file:
            _write_pid_file(pid_file, pid)
    except BaseException:
        for fn in reversed(undo):
            try:
                fn()
            except Exception:
                pass
        raise
    events.emit("created", cid, record["name"], image=record["image"], runtime="labtui-oci")
    return oci_state(b, st)


def _write_pid_file(path: str, pid: int) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def conmon_exit_file(oci_id: str, ppid: int | None = None) -> str | None:
    """Where the container's exit code will be, when conmon runs this runtime: conmon is a
    subreaper and adopts the container's process once `create` exits, so conmon, not the runtime,
    reaps it (wait(2)); it writes the code in decimal (128+N for a signal N) to
    <--exit-dir>/<container ID> before it runs podman's exit command (conmon(8), podman's
    `container cleanup`, which calls `delete`). Read from the parent's /proc/PID/cmdline now:
    `create`'s parent is conmon. None for any other parent (runc's own callers, a shell)."""
    ppid = os.getppid() if ppid is None else ppid
    try:
        comm = Path(f"/proc/{ppid}/comm").read_text().strip()
        args = Path(f"/proc/{ppid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    if comm != "conmon":
        return None
    flags: dict[str, str] = {}
    for i, a in enumerate(args):
        name, eq, value = a.partition("=")
        if name in ("--exit-dir", "-c", "--cid"):
            # the first of each: podman's --exit-command-arg values come later and are not conmon's
            flags.setdefault(name.lstrip("-")[:1], value if eq else (args[i + 1] if i + 1 < len(args) else ""))
    exit_dir, cid = flags.get("e"), flags.get("c", oci_id)
    # conmon names the file after its own -c: another ID means this is not that container's create
    if not exit_dir or not os.path.isabs(exit_dir) or cid != oci_id:
        return None
    return os.path.join(exit_dir, oci_id)


def _make_record(cid: str, oci_id: str, bundle: str, cfg: dict, undo: list, exit_file: str | None = None) -> dict:
    """The labtui container record (config.json, state.json): what `labtui ps`, `steps`, `inspect`
    and the app read. Made first, so every step below has a container to belong to."""
    proc = cfg["process"]
    nss = {n["type"]: n.get("path") for n in ocispec.ns_list(cfg)}
    cgpath = cfg["linux"].get("cgroupsPath")
    from engine import cgroups

    parent = os.path.dirname(cgpath.strip("/")) if cgpath else cgroups.cgroup_parent()
    if cgpath and not parent:
        raise ocispec.SpecError("linux.cgroupsPath", "must have a parent directory: /parent/name")
    name = _name_for(oci_id, cfg)
    d = paths.container_dir(cid)
    if d.exists():
        _replace_kept(cid, oci_id)
    state.claim_name(name, cid)
    undo.append(lambda: state.release_name(name, cid))
    d.mkdir(parents=True)
    undo.append(lambda: shutil.rmtree(d, ignore_errors=True))
    image = cfg["annotations"].get("org.opencontainers.image.ref.name") or f"bundle:{bundle}"
    record = {
        "id": cid, "name": name, "created": state.now_iso(), "image": image, "image_id": "",
        "layers": [], "argv": list(proc["args"]), "env": list(proc["env"]), "workdir": proc["cwd"],
        "hostname": cfg.get("hostname") or "", "volumes": [], "tmpfs": [],
        "read_only": bool(cfg["root"].get("readonly")), "tty": bool(proc.get("terminal")),
        "interactive": False, "autoremove": False, "gate": False,
        "network": "host" if "network" not in nss else "none", "cgroupns": "cgroup" in nss,
        "limits": ocispec.limits_of(cfg), "cgroup_parent": parent,
        "cgroup_name": os.path.basename(cgpath.strip("/")) if cgpath else cid,
        "oci": {"id": oci_id, "bundle": bundle, "root": cfg["root"]["path"], "exit_file": exit_file,
                "podman": cfg["annotations"].get("io.container.manager") == "libpod",
                "autoremove": cfg["annotations"].get("io.podman.annotations.autoremove") == "TRUE",
                "namespaces": {k: v or "new" for k, v in nss.items()}},
    }
    if "pid" not in nss:
        record["pid_mode"] = "host"
    state.write_json_atomic(d / "state.json", {})
    state.write_json_atomic(d / "config.json", record)
    return record


def _spawn(rec: Recorder, b: Bundle, cid: str, cfg: dict, record: dict, console_socket: str | None,
           undo: list) -> int:
    from engine.oci import child as oci_child

    nss = ocispec.ns_list(cfg)
    new = {n["type"] for n in nss if not n.get("path")}
    joins = [(n["type"], n["path"]) for n in nss if n.get("path")]
    flt = oci_child.build_filter(rec, cfg)
    cg = _cgroup(rec, cid, cfg, record, undo)
    for fifo in ("exec.fifo", "exec.result"):
        os.mkfifo(b.dir / fifo, 0o600)
    fifo_go = os.open(b.dir / "exec.fifo", os.O_RDWR | os.O_CLOEXEC)
    fifo_result = os.open(b.dir / "exec.result", os.O_RDWR | os.O_CLOEXEC)
    console = None
    if console_socket:
        with rec.step("process", "connect", target=console_socket, value="AF_UNIX SOCK_STREAM",
                      shell=f"# connect to {console_socket}: the pty master will go there (SCM_RIGHTS)"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(console_socket)
            console = s.detach()
    # Joined by path before clone: setns(CLONE_NEWPID) moves only the children made after it, and
    # the user namespace must be entered first (it owns the others). The mount namespace is
    # joined by the child itself: this process still needs the host's files.
    order = ["user", "ipc", "uts", "network", "pid", "cgroup"]
    for kind, path in sorted(joins, key=lambda j: order.index(j[0]) if j[0] in order else 99):
        if kind == "mount":
            continue
        _setns(rec, path, kind)
    flags = 0
    for kind in new:
        flags |= {"pid": sc.CLONE_NEWPID, "network": sc.CLONE_NEWNET, "mount": sc.CLONE_NEWNS,
                  "ipc": sc.CLONE_NEWIPC, "uts": sc.CLONE_NEWUTS, "user": sc.CLONE_NEWUSER, "cgroup": 0}[kind]
    chan_r, chan_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    plan = oci_child.ChildPlan(cid=cid, cfg=cfg, chan_w=chan_w, go_r=go_r, fifo_go=fifo_go,
                               fifo_result=fifo_result, console=console, keep=rec.sink.fds(),
                               cgroup_dirs=_cgroup_dirs(cg), userns_new="user" in new, filter=flt)
    pid = _clone(rec, flags, plan)
    undo.append(lambda: _kill_and_reap(pid))
    for fd in (chan_w, go_r, fifo_go, fifo_result) + ((console,) if console is not None else ()):
        os.close(fd)
    if "user" in new:
        _write_maps(rec, pid, cfg["linux"])
    cg.add_pid(pid)
    _run_hooks(rec, cfg, ("prestart", "createRuntime", "createContainer"),
               {"ociVersion": OCI_VERSION, "id": b.id, "status": "creating", "pid": pid,
                "bundle": os.path.dirname(cfg["root"]["path"]), "annotations": cfg["annotations"]})
    os.write(go_w, b"g")
    os.close(go_w)
    msg = _read_until_ready(chan_r)
    if msg.get("t") != "ready":
        if msg.get("step"):
            rec.record(msg["step"])
        raise EngineError(msg.get("message") or "the container's process died during setup",
                          exit_code=int(msg.get("exit_code") or 125))
    return pid


def _read_until_ready(fd: int) -> dict:
    buf = b""
    while True:
        data = os.read(fd, 65536)
        if not data:
            os.close(fd)
            return {"t": "error", "message": "the container's process died during setup"}
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            msg = json.loads(line)
            if msg.get("t") in ("ready", "error"):
                os.close(fd)
                return msg


def _clone(rec: Recorder, flags: int, plan) -> int:
    from engine import namespaces
    from engine.oci import child as oci_child

    step = {"mechanism": "namespace", "op": "clone", "target": "container process",
            "value": (sc.flags_names(flags) or "(no new namespace)") + "|SIGCHLD",
            "shell": namespaces.unshare_shell(flags), "container": plan.cid, "ts": time.time()}
    t0 = time.perf_counter()
    try:
        pid = sc.clone(flags)
    except OSError as e:
        step.update(result=errno.errorcode.get(e.errno, str(e.errno)), errno=e.errno, strerror=e.strerror,
                    pid=os.getpid(), duration_ms=round((time.perf_counter() - t0) * 1000, 3))
        rec.record(step)
        raise EngineError(f"namespace: clone({step['value']}) failed: {e.strerror}") from e
    if pid == 0:
        sc.set_comm("labtui-oci-init")
        oci_child.child_main(plan, rec)  # never returns
    step.update(result="ok", errno=0, pid=os.getpid(), child_pid=pid,
                duration_ms=round((time.perf_counter() - t0) * 1000, 3))
    rec.record(step)
    return pid


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _setns(rec: Recorder, path: str, kind: str) -> None:
    ns = ocispec.NS_TYPES[kind]
    nstype = {"pid": sc.CLONE_NEWPID, "net": sc.CLONE_NEWNET, "ipc": sc.CLONE_NEWIPC, "uts": sc.CLONE_NEWUTS,
              "user": sc.CLONE_NEWUSER, "cgroup": sc.CLONE_NEWCGROUP, "mnt": sc.CLONE_NEWNS}[ns]
    with rec.step("namespace", "setns", target=path, value=ns, shell=f"nsenter --{ns}={path}"):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            sc.setns(fd, nstype)
        finally:
            os.close(fd)


def _write_maps(rec: Recorder, pid: int, linux: dict) -> None:
    """Written by the parent between clone and "go": only a process with CAP_SETUID in the
    parent user namespace may map more than its own ID (user_namespaces(7))."""
    for key, name in (("uidMappings", "uid_map"), ("gidMappings", "gid_map")):
        lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in linux[key])
        path = f"/proc/{pid}/{name}"
        with rec.step("userns", f"write {name}", target=path, value=lines.strip().replace("\n", "; "),
                      shell=f"printf '{lines.strip()}' > {path}"):
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, lines.encode())
            finally:
                os.close(fd)


def _cgroup(rec: Recorder, cid: str, cfg: dict, record: dict, undo: list):
    from engine import cgroups
    from engine.state import Container

    cg = cgroups.for_container(Container(cid, record, {}), rec)
    cg.create()
    undo.append(cg.destroy)
    devdir = cg.paths().get("devices")
    if devdir:
        _device_rules(rec, devdir, cfg)
    cg.apply(cgroups.Limits.from_dict(record["limits"]))
    return cg


def _device_rules(rec: Recorder, devdir: str, cfg: dict) -> None:
    """cgroup v1's devices controller: linux.resources.devices in order, then the devices the
    container is given (its default nodes, /dev/pts, /dev/ptmx, linux.devices)."""
    rules: list[tuple[str, str]] = []
    for d in (cfg["linux"].get("resources") or {}).get("devices") or []:
        major = "*" if d.get("major") is None else d["major"]
        minor = "*" if d.get("minor") is None else d["minor"]
        text = "a" if d.get("type", "a") == "a" and major == "*" and minor == "*" else \
            f"{d.get('type', 'a')} {major}:{minor}"
        rules.append(("allow" if d["allow"] else "deny", f"{text} {d.get('access') or 'rwm'}"))
    from engine.oci.child import DEFAULT_DEVICES

    for _, ma, mi in DEFAULT_DEVICES:
        rules.append(("allow", f"c {ma}:{mi} rwm"))
    rules += [("allow", "c 136:* rwm"), ("allow", "c 5:2 rwm"), ("allow", "c 5:1 rwm")]
    for d in cfg["linux"].get("devices") or []:
        if d["type"] in ("c", "b", "u"):
            rules.append(("allow", f"{'c' if d['type'] == 'u' else d['type']} {d['major']}:{d['minor']} rwm"))
    for kind, text in rules:
        path = os.path.join(devdir, f"devices.{kind}")
        with rec.step("cgroup", "write devices", target=path, value=text, shell=f"echo '{text}' > {path}"):
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)


def _cgroup_dirs(cg) -> list[tuple[str, str]]:
    """What a `cgroup` mount in the container shows: each v1 controller's directory of the
    container under its own name, or the one v2 directory."""
    if cg.version == "v2":
        return [("", p) for p in list(cg.paths().values())[:1]]
    out: dict[str, str] = {}
    for ctrl, path in cg.paths().items():
        out.setdefault(ctrl, path)
    return sorted(out.items())


def _run_hooks(rec: Recorder, cfg: dict, kinds: tuple[str, ...], st: dict, fatal: bool = True) -> None:
    """Hooks get the state JSON on stdin (runtime-spec config.md "POSIX-platform Hooks"); a
    failing hook before the command runs fails the operation."""
    for kind in kinds:
        for h in (cfg.get("hooks") or {}).get(kind) or []:
            argv = h.get("args") or [h["path"]]
            with rec.step("process", f"hook {kind}", target=h["path"], value=" ".join(argv),
                          shell=" ".join(argv)) as step:
                try:
                    p = subprocess.run(argv, executable=h["path"], input=json.dumps(st).encode(),
                                       env=dict(e.split("=", 1) for e in h.get("env") or []),
                                       capture_output=True, timeout=h.get("timeout"))
                except subprocess.TimeoutExpired:
                    step["exit_code"] = None
                    if fatal:
                        raise EngineError(f"{kind} hook {h['path']} timed out after {h['timeout']} s") from None
                    continue
                step["exit_code"] = p.returncode
                if p.returncode != 0 and fatal:
                    raise EngineError(f"{kind} hook {h['path']} exited {p.returncode}: "
                                      f"{p.stderr.decode(errors='replace').strip()}")


# ---- start, state, kill, delete ------------------------------------------------------------------------

def start(root: Path, oci_id: str) -> dict:
    b = Bundle(root, oci_id)
    b.load()  # NotFound before anything else
    with b.locked():
        st = b.load()
        status = status_of(st)
        if status != CREATED:
            raise Conflict(f"cannot start container {oci_id}: it is {status}, not created")
        cid = st["labtui_id"]
        rec = _recorder(cid)
        try:
            result = os.open(b.dir / "exec.result", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            go = os.open(b.dir / "exec.fifo", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:  # ENXIO: nobody holds exec.fifo for reading any more
            raise EngineError(f"cannot start container {oci_id}: its process is gone ({e.strerror})") from None
        # Opened while the process still waits (it is known by its start time): a command that
        # exits at once is reaped by conmon within a millisecond, and the pidfd keeps its status.
        pidfd = _pidfd_of(st)
        t0 = time.time()
        try:
            st["started"] = True
            b.save(st)
            with rec.step("process", "write", target=str(b.dir / "exec.fifo"), value="g",
                          shell=f"echo -n g > {b.dir / 'exec.fifo'}  # the container's process may execve now"):
                os.write(go, b"g")
            msg = _read_result(result)
        finally:
            os.close(go)
            os.close(result)
        if msg:
            if msg.get("step"):
                rec.record(msg["step"])
            raise EngineError(msg.get("message", "the command did not start"), exit_code=int(msg.get("exit_code", 125)))
        cfg = ocispec.check(state.read_json(Path(st["bundle"]) / "config.json"), st["bundle"])
        argv = cfg["process"]["args"]
        rec.record({"mechanism": "exec", "op": "execve", "target": argv[0], "value": " ".join(argv),
                    "shell": " ".join(argv), "pid": st["pid"], "result": "ok", "errno": 0, "ts": t0,
                    "duration_ms": round((time.time() - t0) * 1000, 3),
                    "via": "EOF on exec.result (O_CLOEXEC): execve succeeded"})
        state.update_state(cid, pid=st["pid"], pid_start=st["pid_start"], boot_id=st["boot_id"],
                           started_at=state.now_iso(), exit_code=None, finished_at=None)
        if pidfd is not None:
            _watch_exit(b, st, pidfd)
        for fifo in ("exec.fifo", "exec.result"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(b.dir / fifo)
    events.emit("started", cid, _labtui_name(cid), pid=st["pid"], runtime="labtui-oci")
    _run_hooks(rec, cfg, ("poststart",), oci_state(b, st), fatal=False)
    return oci_state(b, st)


def _read_result(fd: int) -> dict | None:
    """exec.result: nothing then EOF once execve closed the process's O_CLOEXEC end; an error
    line if it failed."""
    buf = b""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not data:
            break
        buf += data
    line = buf.split(b"\n", 1)[0]
    return json.loads(line) if line.strip() else None


def _labtui_name(cid: str) -> str | None:
    try:
        return state.load(cid).name
    except (NotFound, OSError):
        return None


def get_state(root: Path, oci_id: str) -> dict:
    b = Bundle(root, oci_id)
    st = b.load()
    out = oci_state(b, st)
    if out["status"] == STOPPED:
        _record_exit(b, st)
    return out


# ---- the exit code conmon reaped, and labtui's record after delete ------------------------------------

def _read_exit_file(path: str) -> tuple[int, float] | None:
    """conmon's exit file: the code in decimal, and when it was written (the exit's time)."""
    try:
        with open(path) as f:
            text, mtime = f.read(), os.fstat(f.fileno()).st_mtime
        return int(text.strip()), mtime
    except (OSError, ValueError):  # not there yet, or being written
        return None


def _pidfd_of(st: dict) -> int | None:
    try:
        fd = os.pidfd_open(st["pid"])
    except OSError:
        return None
    if state.proc_start_time(st["pid"]) != st.get("pid_start"):
        os.close(fd)  # the PID names another process now
        return None
    return fd


PIDFD_GET_INFO = 0xC040FF0B  # _IOWR(PIDFS_IOCTL_MAGIC 0xFF, 11, struct pidfd_info), 64 bytes (linux/pidfd.h)
PIDFD_INFO_EXIT = 1 << 3


def pidfd_exit_status(pidfd: int) -> int | None:
    """The wait(2) status the kernel kept for a process that has exited and been reaped, by
    anyone: ioctl(PIDFD_GET_INFO) with PIDFD_INFO_EXIT (Linux 6.15). None while it has not been
    reaped, or on an older kernel (EINVAL/ENOTTY)."""
    buf = bytearray(64)
    struct.pack_into("Q", buf, 0, PIDFD_INFO_EXIT)
    try:
        fcntl.ioctl(pidfd, PIDFD_GET_INFO, buf)
    except OSError:
        return None
    if not struct.unpack_from("Q", buf, 0)[0] & PIDFD_INFO_EXIT:
        return None
    return struct.unpack_from("i", buf, 60)[0]  # __s32 exit_code, after mask, cgroupid and 11 __u32


def zombie_exit_status(st: dict) -> int | None:
    """A zombie's wait(2) status, field 52 of /proc/PID/stat (proc(5)), before its parent reaps it."""
    try:
        with open(f"/proc/{st['pid']}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is field 3 (state); fields[19] field 22 (starttime), the PID's identity
    if fields[0] != "Z" or int(fields[19]) != st.get("pid_start") or len(fields) < 50:
        return None
    return int(fields[49])


def _exit_status(pidfd: int, st: dict) -> int | None:
    """Reaped: the pidfd has it; not yet (its parent is slow, or init is): the zombie's stat."""
    status = pidfd_exit_status(pidfd)
    return status if status is not None else zombie_exit_status(st)


def _watch_exit(b: Bundle, st: dict, pidfd: int) -> None:
    """conmon, not the runtime, is the process's parent (a subreaper that adopted it), so only
    conmon can wait(2) for it. A small process of ours holds a pidfd instead: poll(2) says when
    the process exits; its status is in /proc/PID/stat while it is a zombie, and PIDFD_GET_INFO
    keeps it once conmon has reaped it; the code goes into labtui's record. It holds exit.lock
    till then: `delete` waits for it (podman's cleanup deletes within milliseconds of the exit)."""
    lock = os.open(b.dir / "exit.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        try:
            os.setsid()
            if os.fork() == 0:  # orphaned at once: nobody has to wait for the watcher
                fcntl.flock(lock, fcntl.LOCK_EX)
                _detach_fds(keep=(pidfd, lock, ready_w))
                os.write(ready_w, b"r")
                os.close(ready_w)
                _exit_watcher(b, st, pidfd)
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    os.close(ready_w)
    os.read(ready_r, 1)  # the watcher holds the lock now (or is gone: then EOF)
    for fd in (ready_r, lock, pidfd):
        os.close(fd)


def _detach_fds(keep: tuple[int, ...]) -> None:
    """The watcher outlives `start`: it must not hold the caller's pipes (podman reads the
    runtime's stdout and stderr to their end) nor anything else inherited."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _exit_watcher(b: Bundle, st: dict, pidfd: int) -> None:
    sc.set_comm("labtui-oci-wait")
    select.select([pidfd], [], [])  # readable once the process has exited (pidfd_open(2))
    finished = state.now_iso()
    deadline = time.monotonic() + 30  # conmon reaps at once; a dead conmon's orphan is init's to reap
    status = _exit_status(pidfd, st)
    while status is None and time.monotonic() < deadline:
        time.sleep(0.005)
        status = _exit_status(pidfd, st)
    if status is None:
        return  # an older kernel: conmon's exit file, read at state/delete, is all there is
    code = os.waitstatus_to_exitcode(status)
    code = 128 - code if code < 0 else code  # killed by signal N: 128+N, as a shell and docker say
    _store_exit(st, code, finished, {
        "op": "pidfd exit status", "target": f"pid {st['pid']}", "value": str(code),
        "shell": f"# ioctl(pidfd, PIDFD_GET_INFO) PIDFD_INFO_EXIT: pid {st['pid']}'s status, reaped by its parent"})


def _store_exit(st: dict, code: int, finished: str, step: dict) -> bool:
    """The exit code into labtui's record, once (`labtui ps -a`: Exited (7); inspect's
    State.ExitCode), with its step and a `died` event, as labtui's supervisor does."""
    cid = st["labtui_id"]
    try:
        c = state.load(cid)
    except NotFound:
        return False
    if c.exit_code is not None:
        return False
    rec = _recorder(cid)
    with rec.step("process", step.pop("op"), **step):
        state.update_state(cid, exit_code=code, finished_at=finished)
    events.emit("died", cid, c.name, exit_code=code, runtime="labtui-oci")
    return True


def _wait_for_watcher(b: Bundle, timeout: float = 5.0) -> None:
    """Until the exit watcher has recorded the code (it holds exit.lock till then)."""
    try:
        fd = os.open(b.dir / "exit.lock", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # never started, or started without a watcher
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.01)
    finally:
        os.close(fd)


def _record_exit(b: Bundle, st: dict) -> None:
    """The fallback when no watcher recorded it (a kernel before 6.15): the code conmon wrote to
    its exit file, if it is still there (podman 4.3 removes it before it calls delete)."""
    path = st.get("exit_file")
    got = _read_exit_file(path) if path else None
    # podman removes the last run's file before it creates the container again (podman start);
    # one older than this create is that run's all the same, never this one's
    if got is None or got[1] < st.get("created_ts", 0) - 1:
        return
    code, when = got
    sec, us = divmod(int(when * 1_000_000), 1_000_000)  # state.now_iso's format, at the exit
    finished = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{us:06d}Z"
    with b.locked():  # state and delete may both find it stopped: one records it
        _store_exit(st, code, finished, {"op": "read exit code", "target": path, "value": str(code),
                                         "shell": f"cat {path}  # written by conmon, which reaped the process"})


def _keep_after_delete(c, st: dict, status_at_delete: str) -> bool:
    """Does labtui's record outlive the runtime's delete? podman deletes a container from its
    runtime as soon as it has exited (`podman container cleanup`) but keeps it itself, Exited,
    until `podman rm`; the student compares `podman ps -a` with `labtui ps -a`, so the record stays
    as an exited container while podman keeps the bundle (its userdata directory). Not for a
    container that never ran, one deleted --force while running (that is a removal), a `podman
    run --rm` one (podman removes it right after), or another caller's (runc's delete forgets)."""
    oci = c.config.get("oci") or {}
    return (oci.get("podman") and status_at_delete == STOPPED and bool(st.get("started")) and c.exit_code is not None
            and not oci.get("autoremove") and os.path.isfile(os.path.join(st["bundle"], "config.json")))


def _replace_kept(cid: str, oci_id: str) -> None:
    """create of an ID whose record was kept after delete: `podman start` of an exited container
    creates it again under the same ID. The old record goes; any other is a conflict."""
    from engine import teardown

    try:
        c = state.load(cid)
    except NotFound:
        return
    if not (c.config.get("oci") or {}).get("kept") or (c.config["oci"].get("id") != oci_id) \
            or c.status != state.EXITED:
        raise Conflict(f"a labtui container with ID {cid[:12]} already exists")
    teardown.remove(cid)


def prune_forgotten() -> None:
    """Kept records whose container podman has removed since (`podman rm` calls no runtime
    command): gone at the runtime's next create or delete (till then `labtui ps` says Removing)."""
    from engine import teardown

    for c in state.all_containers():
        if c.forgotten():
            with contextlib.suppress(EngineError, OSError):
                teardown.remove(c.id)


def kill(root: Path, oci_id: str, sig: str = "SIGTERM", all_: bool = False) -> None:
    from engine.process import parse_signal

    b = Bundle(root, oci_id)
    st = b.load()
    signum = parse_signal(sig)
    status = status_of(st)
    if status == STOPPED:
        raise Conflict(f"cannot kill container {oci_id}: it is stopped")
    rec = _recorder(st["labtui_id"])
    others: list[int] = []
    if all_:
        from engine import cgroups

        others = [p for p in cgroups.for_container(state.load(st["labtui_id"]), rec).pids() if p != st["pid"]]
    name = signal.Signals(signum).name
    # --all: the others first, the container's PID 1 last (its death kills the rest of a PID
    # namespace); one that has exited meanwhile (ESRCH) is no error, as with runc.
    from engine.process import pidfd_signal

    for pid in [*others, st["pid"]]:
        try:
            pidfd_signal(rec, pid, signum)
        except StepError as e:
            if pid == st["pid"] or e.step.get("errno") != errno.ESRCH:
                raise
    if signum in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotFound, OSError):
            state.update_state(st["labtui_id"], kill_requested=name)


def delete(root: Path, oci_id: str, force: bool = False) -> None:
    b = Bundle(root, oci_id)
    st = b.load()
    status = status_of(st)
    if status == RUNNING and not force:
        raise Conflict(f"cannot delete container {oci_id}: it is running (stop it, or delete --force)")
    cid = st["labtui_id"]
    rec = _recorder(cid)
    if status == STOPPED:
        _wait_for_watcher(b)
        _record_exit(b, st)
    if status != STOPPED:
        with rec.step("signal", "pidfd_send_signal", target=f"pid {st['pid']}", value="SIGKILL",
                      shell=f"kill -KILL {st['pid']}"):
            fd = os.pidfd_open(st["pid"])
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            finally:
                os.close(fd)
        from engine.process import wait_pid_exit

        wait_pid_exit(st["pid"], 10)
        _wait_for_watcher(b)  # it records the code before the record goes
    try:
        cfg = ocispec.check(state.read_json(Path(st["bundle"]) / "config.json"), st["bundle"], need_process=False)
    except (OSError, ValueError, EngineError):
        cfg = None  # the bundle is gone already: nothing left to run its poststop hooks from
    if cfg is not None:
        _run_hooks(rec, cfg, ("poststop",), dict(oci_state(b, st), status=STOPPED), fatal=False)
    try:
        c = state.load(cid)
    except NotFound:
        c = None
    if c is not None:
        with contextlib.suppress(NotFound, OSError):
            state.update_state(cid, finished_at=c.state.get("finished_at") or state.now_iso())
        from engine import hooks, teardown

        if _keep_after_delete(c, st, status):
            hooks.cleanup(rec, c)  # what it held in the kernel (its cgroup) goes; the record stays
            c.config["oci"]["kept"] = True
            state.write_json_atomic(c.dir / "config.json", c.config)
        else:
            teardown.remove(cid, force=True)  # cgroup, name, directory: each a recorded step where it is one
    shutil.rmtree(b.dir, ignore_errors=True)
    prune_forgotten()


# ---- exec ------------------------------------------------------------------------------------------------

def exec_process(root: Path, oci_id: str, proc: dict, detach: bool = False, pid_file: str | None = None,
                 console_socket: str | None = None) -> int:
    """One more process in the container (runc exec): returns 0 with --detach once it runs, else
    its exit code."""
    from engine.oci import joiner

    b = Bundle(root, oci_id)
    st = b.load()
    if status_of(st) != RUNNING:
        raise Conflict(f"cannot exec in container {oci_id}: it is {status_of(st)}, not running")
    cfg = ocispec.check(state.read_json(Path(st["bundle"]) / "config.json"), st["bundle"])
    ocispec.check_process(proc, "process")
    rec = _recorder(st["labtui_id"])
    rec.sink.open_files()
    return joiner.run(rec, st, cfg, proc, detach, pid_file, console_socket, _write_pid_file)


# ---- features ---------------------------------------------------------------------------------------------

def features() -> dict:
    from engine import capabilities as caps_mod
    from engine.oci.child import FLAG_OPTS, PROPAGATION
    from engine.seccomp.profile import ACTIONS, OPS

    return {
        "ociVersionMin": "1.0.0", "ociVersionMax": "1.1.0",
        "hooks": list(ocispec.HOOK_KINDS),
        "mountOptions": sorted(set(FLAG_OPTS) | set(PROPAGATION)),
        "linux": {
            "namespaces": sorted(ocispec.NS_TYPES),
            "capabilities": [caps_mod.cap_name(b) for b in sorted(caps_mod.all_caps())],
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": True, "actions": list(ACTIONS), "operators": list(OPS),
                        "archs": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            "apparmor": {"enabled": False}, "selinux": {"enabled": False},
        },
        "annotations": {"org.labtui.runtime": "labtui-oci", "org.labtui.steps": "labtui steps ID"},
    }


def freeze(root: Path, oci_id: str, frozen: bool) -> None:
    """pause/resume: the container's cgroup frozen or thawed (labtui pause's driver)."""
    from engine import cgroups

    st = Bundle(root, oci_id).load()
    if status_of(st) != RUNNING:
        raise Conflict(f"container {oci_id} is not running")
    cg = cgroups.for_container(state.load(st["labtui_id"]), _recorder(st["labtui_id"]))
    cg.freeze() if frozen else cg.thaw()
