"""Checkpoint and restore a running container with CRIU (docs/checkpoint.md).

checkpoint(): `criu dump` freezes every process of the container, reads its state through a
parasite injected with ptrace (memory, registers, fds, signal masks, namespaces, mounts) into
image files under <container dir>/checkpoints/<name>, and then labtui kills the frozen tree.

restore(): the container's supervisor starts again in "restore" mode; instead of clone(2) it runs
`criu restore` (restore_in_supervisor), which rebuilds the process tree in new namespaces with
the same PIDs inside, as a child of the supervisor (--restore-sibling), so exit codes, logs and
attach keep working as after a normal start.

What CRIU cannot see is declared to it:
- the supervisor's ends of the stdio pipes: the pipes are dumped by inode (`pipe:[123]`) and
  replaced at restore by new pipes of the new supervisor (--inherit-fd fd[N]:pipe:[123]);
- bind mounts of host files (/etc/hosts, /etc/hostname, /etc/resolv.conf, volumes): external
  mounts (--external mnt[/etc/hosts]:hosts at dump, mnt[hosts]:<host file> at restore);
- files that live outside the container's mount namespace: labtui's PID 1 is a Python process
  whose interpreter and libraries are mapped from the host's root, which the container cannot
  reach after pivot_root. Each is an external file (--external file[mnt_id:inode]) and is handed
  back at restore as an open fd (--inherit-fd fd[N]:file[mnt_id:inode]);
- the container's root: an overlay that the restore mounts again in a private mount namespace
  of its own and gives CRIU as --root.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

from engine import events, state
from engine.errors import Conflict, EngineError, InvalidArgument, NotFound
from engine.state import Container
from engine.steps import Recorder, container_recorder

CRIU_ENV = "LABTUI_CRIU"
CRIU_MIN_MAJOR = 3
MANIFEST = "labtui.json"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
ETC_FILES = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")
FALLBACK_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
# The container has its own network namespace, dumped whole: its TCP connections (over its
# loopback) are restored in repair mode; file locks held by its processes are restored too.
SOCKETS_AND_LOCKS = ("--tcp-established", "--file-locks")
# Errors CRIU logs on every run here and that decide nothing: a probe of RLIMIT_NOFILE, and of
# /dev/net/tun from inside the container's devices cgroup at restore.
BENIGN = ("rlimit:", "Unable to create tun")
INSTALL_HINT = "run scripts/install-criu (it builds CRIU 4 from Debian's source package)"


# ---- CRIU itself ---------------------------------------------------------------------------------

def criu_path() -> str | None:
    """$LABTUI_CRIU, else the first CRIU >= 4 among `criu` on PATH and the usual sbin directories
    (scripts/install-criu puts one in /usr/local/sbin next to an older distribution one in
    /usr/sbin, and sudo's or CI's PATH may lack either), else the first criu found."""
    env = os.environ.get(CRIU_ENV)
    if env:
        return env if os.access(env, os.X_OK) else None
    found = [shutil.which("criu")] + [os.path.join(d, "criu") for d in FALLBACK_DIRS]
    cands = list(dict.fromkeys(os.path.realpath(p) for p in found if p and os.access(p, os.X_OK)))
    for p in cands:
        try:
            if _major(criu_version(p)) >= 4:
                return p
        except EngineError:
            continue
    return cands[0] if cands else None


def _major(version: str) -> int:
    head = version.split(".")[0]
    return int(head) if head.isdigit() else 0


def criu_reason(output: str) -> str:
    """CRIU's own words: its Error lines without the source location, else its last line."""
    errs = [re.sub(r"^.*?Error \([^)]*\):\s*", "", ln.strip()) for ln in output.splitlines() if "Error (" in ln]
    errs = [e for e in errs if e and not e.startswith(BENIGN)]
    if errs:
        return "; ".join(dict.fromkeys(errs))
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def criu_version(criu: str) -> str:
    try:
        out = subprocess.run([criu, "--version"], capture_output=True, text=True, timeout=10).stdout
    except OSError as e:
        raise EngineError(f"checkpoint needs CRIU, and {criu} cannot run: {e.strerror}") from None
    m = re.search(r"Version:\s*([0-9][0-9.]*)", out)
    return m.group(1) if m else "unknown"


def require_criu(rec: Recorder | None = None, check: bool = True) -> tuple[str, str]:
    """The CRIU binary and its version, after `criu check` passed; else an EngineError that
    carries CRIU's own reason (e.g. bookworm's 3.17 on a newer kernel: "vdso: Failed to fill self
    vdso symtable")."""
    criu = criu_path()
    if criu is None:
        where = f"${CRIU_ENV}={os.environ[CRIU_ENV]} is not executable" if os.environ.get(CRIU_ENV) \
            else "no criu binary found"
        raise EngineError(f"checkpoint/restore needs CRIU: {where}; {INSTALL_HINT}")
    version = criu_version(criu)
    if _major(version) < CRIU_MIN_MAJOR:
        raise EngineError(f"checkpoint/restore needs CRIU >= {CRIU_MIN_MAJOR}, {criu} is {version}; {INSTALL_HINT}")
    if not check:
        return criu, version
    argv = [criu, "check"]
    rec = rec or Recorder(None, lambda r: None)
    try:
        with rec.step("checkpoint", "criu check", target=criu, value=version, shell=shlex.join(argv)) as s:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            if p.returncode != 0:
                s["result_override"] = "failed"
                raise _CheckFailed(criu_reason(p.stdout + p.stderr))
    except _CheckFailed as e:
        raise EngineError(f"CRIU cannot checkpoint on this host: `criu check` says: {e} "
                          f"(CRIU {version} at {criu}; kernel {os.uname().release}); {INSTALL_HINT}") from None
    except subprocess.TimeoutExpired:
        raise EngineError(f"`{criu} check` did not answer within 60 s") from None
    return criu, version


class _CheckFailed(Exception):
    pass


# ---- where checkpoints live ----------------------------------------------------------------------

def checkpoints_dir(c: Container) -> Path:
    return c.dir / "checkpoints"


def validate_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise InvalidArgument(f"invalid checkpoint name '{name}': use letters, digits, '_', '.' or '-'")
    return name


def checkpoint_dir(c: Container, name: str) -> Path:
    return checkpoints_dir(c) / validate_name(name)


def read_manifest(c: Container, name: str) -> dict:
    d = checkpoint_dir(c, name)
    try:
        return state.read_json(d / MANIFEST)
    except (FileNotFoundError, NotADirectoryError):
        have = list_checkpoints(c)
        hint = f" (it has: {', '.join(x['name'] for x in have)})" if have else " (it has none)"
        raise NotFound(f"container {c.name} has no checkpoint named '{name}'{hint}") from None
    except ValueError:
        raise EngineError(f"checkpoint '{name}' of {c.name} is damaged: {d / MANIFEST} is not JSON") from None


def list_checkpoints(c: Container) -> list[dict]:
    out = []
    try:
        names = sorted(os.listdir(checkpoints_dir(c)))
    except FileNotFoundError:
        return []
    for n in names:
        try:
            out.append(state.read_json(checkpoints_dir(c) / n / MANIFEST))
        except (OSError, ValueError):
            continue
    return out


def remove_checkpoint(c: Container, name: str) -> None:
    read_manifest(c, name)
    shutil.rmtree(checkpoint_dir(c, name))


# ---- what the container holds that CRIU cannot see --------------------------------------------

def process_tree(pid: int) -> list[int]:
    """The init and all its descendants (children files of every thread, proc(5))."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        out.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(x) for x in f.read().split()]
            except OSError:
                continue
    return out


def mount_ids(pid: int) -> set[int]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return {int(line.split()[0]) for line in f if line.strip()}


def _fd_mnt_id(fd: int) -> int | None:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    return None


def external_files(pids: list[int], inside: set[int]) -> dict[str, dict]:
    """Files mapped or open in the container that live on mounts outside its mount namespace,
    keyed as CRIU names them: file[<mnt_id hex>:<inode hex>] (criu/files-reg.c)."""
    out: dict[str, dict] = {}
    for pid in pids:
        cands = [f"/proc/{pid}/exe"]
        for sub in ("map_files", "fd"):
            try:
                cands += [f"/proc/{pid}/{sub}/{n}" for n in os.listdir(f"/proc/{pid}/{sub}")]
            except OSError:
                continue
        for p in cands:
            try:
                fd = os.open(p, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # gone, or a socket/anon inode that has no path to open
            try:
                st = os.fstat(fd)
                if not (stat.S_ISREG(st.st_mode) or stat.S_ISCHR(st.st_mode)):
                    continue
                mnt = _fd_mnt_id(fd)
                if mnt is None or mnt in inside:
                    continue
                key = f"file[{mnt:x}:{st.st_ino:x}]"
                if key not in out:
                    out[key] = {"path": os.readlink(p), "dev": st.st_dev, "ino": st.st_ino,
                                "size": st.st_size, "mtime_ns": st.st_mtime_ns, "chr": stat.S_ISCHR(st.st_mode)}
            finally:
                os.close(fd)
    return out


def _pipe_inodes(pid: int) -> set[str]:
    out = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for n in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{n}")
        except OSError:
            continue
        if link.startswith("pipe:["):
            out.add(link)
    return out


def stdio_pipes(pids: list[int], supervisor_pid: int | None) -> dict[str, str]:
    """Which of the container's pipes are its stdio, shared with the supervisor: role -> pipe:[ino].

    The supervisor holds the other end of each. The role comes from the first task (the main
    process, then others) that has that pipe as fd 0, 1 or 2."""
    shared = _pipe_inodes(supervisor_pid) if supervisor_pid else set()
    roles: dict[str, str] = {}
    order = pids[1:] + pids[:1]  # the command first: the init keeps none of its stdio
    for pid in order:
        for fd, role in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link in shared and role not in roles and link not in roles.values():
                roles[role] = link
    missing = shared - set(roles.values())
    found_all: set[str] = set()
    for pid in pids:
        found_all |= _pipe_inodes(pid)
    unknown = sorted(missing & found_all)
    if unknown:
        raise EngineError(f"cannot tell which stdio stream {', '.join(unknown)} is: no process of the container "
                          "has it as fd 0, 1 or 2")
    return roles


def external_mounts(c: Container) -> dict[str, dict]:
    """Bind mounts of host paths: key -> {container path, host path}."""
    out = {}
    for path in ETC_FILES:
        key = path.rsplit("/", 1)[1]
        out[key] = {"container": path, "host": str(c.dir / key)}
    for i, v in enumerate(c.config.get("volumes", [])):
        out[f"volume{i}"] = {"container": v["container"], "host": v["host"]}
    return out


# ---- checkpoint ----------------------------------------------------------------------------------

def _check_supported(c: Container, what: str) -> None:
    cfg = c.config
    if cfg.get("tty"):
        raise Conflict(f"cannot {what} container {c.name}: containers with a terminal (-t) are not supported "
                       "(the pty master lives in the supervisor, outside what CRIU dumps)")
    net = cfg.get("network", "none")
    if net not in ("none", "host"):
        raise Conflict(f"cannot {what} container {c.name}: it is on network '{net}'; checkpoint supports "
                       "--network none (its veth's host end is outside what CRIU dumps)")
    if net == "host":
        raise Conflict(f"cannot {what} container {c.name}: with --network host its sockets live in the host's "
                       "network namespace, which CRIU does not dump")


def _check_session(c: Container, init_pid: int) -> None:
    """CRIU refuses a PID namespace whose init belongs to a session led from outside it (it
    could not recreate that session: "A session leader of N(1) is outside of its pid
    namespace"); labtui's init calls setsid(2) first thing, as runc's does."""
    try:
        with open(f"/proc/{init_pid}/stat", "rb") as f:
            data = f.read()
        session = int(data[data.rindex(b")") + 2:].split()[3])
    except (OSError, ValueError, IndexError):
        return  # gone: CRIU will say so
    if session != init_pid:
        raise EngineError(f"cannot checkpoint container {c.name}: its init (pid {init_pid}) is in session {session} "
                          "outside the container, and CRIU can only dump a PID namespace whose init leads its "
                          "own session (engine/init.py must call setsid() when the init starts)")


def _criu_log_reason(log: Path, output: str) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        text = ""
    return criu_reason(text + "\n" + output)


def checkpoint(ref: str | Container, name: str = "checkpoint", leave_running: bool = False) -> dict:
    """`criu dump` of the container's whole process tree into <container>/checkpoints/<name>.

    Without leave_running the dump leaves the tree stopped (--leave-stopped), then the init is
    killed (a recorded signal step) and the supervisor records the exit as after `stop`.
    Returns the checkpoint's manifest."""
    c = ref if isinstance(ref, Container) else state.resolve(ref)
    validate_name(name)
    st = c.status
    if st == state.PAUSED:
        raise Conflict(f"cannot checkpoint container {c.name}: it is paused; unpause it first")
    if st != state.RUNNING:
        raise Conflict(f"cannot checkpoint container {c.name}: it is not running ({st})")
    _check_supported(c, "checkpoint")
    if c.config.get("autoremove") and not leave_running:
        raise Conflict(f"cannot checkpoint container {c.name}: it was started with --rm, so stopping it would "
                       "remove it with its checkpoint; use --leave-running")
    d = checkpoint_dir(c, name)
    if (d / MANIFEST).exists():
        raise Conflict(f"container {c.name} already has a checkpoint named '{name}'")
    rec = container_recorder(c.id)
    criu, version = require_criu(rec)

    init_pid = c.state["pid"]
    _check_session(c, init_pid)
    pids = process_tree(init_pid)
    inside = mount_ids(init_pid)
    ext_files = external_files(pids, inside)
    pipes = stdio_pipes(pids, c.state.get("supervisor_pid"))
    mounts = external_mounts(c)
    inside_pids = {_nspid(p): p for p in pids}

    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True, mode=0o700)
    argv = [criu, "dump", "--tree", str(init_pid), "--images-dir", str(d), "--log-file", "dump.log", "-v4",
            "--manage-cgroups=soft", *SOCKETS_AND_LOCKS, "--leave-running" if leave_running else "--leave-stopped"]
    for key, m in mounts.items():
        argv += ["--external", f"mnt[{m['container']}]:{key}"]
    for key in ext_files:
        argv += ["--external", key]
    manifest = {
        "name": name, "container": c.id, "container_name": c.name, "created": state.now_iso(),
        "criu": criu, "criu_version": version, "kernel": os.uname().release, "leave_running": leave_running,
        "init_pid": init_pid, "pids_inside": sorted(inside_pids), "stdio": pipes,
        "external_files": ext_files, "external_mounts": mounts, "image_id": c.config.get("image_id"),
    }
    if not leave_running:
        state.update_state(c.id, manual_stop=True)
    try:
        _run_criu(rec, argv, d / "dump.log", op="criu dump", target=f"pid {init_pid}",
                  value=f"{name} ({len(pids)} processes)", what=f"checkpoint {c.name}")
    except BaseException:
        # CRIU resumed the tree. The directory keeps dump.log (the error names it); without a
        # manifest it is no checkpoint, and the next checkpoint of that name replaces it.
        if not leave_running:
            state.update_state(c.id, manual_stop=None)
        raise
    manifest["size"] = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
    state.write_json_atomic(d / MANIFEST, manifest)
    state.update_state(c.id, last_checkpoint=name)
    events.emit("checkpointed", c.id, c.name, checkpoint=name, leave_running=leave_running,
                pid=init_pid, processes=len(pids), criu=version)
    if not leave_running:
        _kill_stopped_tree(c, rec, init_pid)
    return manifest


def _nspid(pid: int) -> int:
    from engine import procfs

    v = procfs.status_field(pid, "NSpid")
    return int(v.split()[-1]) if v else pid


def _kill_stopped_tree(c: Container, rec: Recorder, init_pid: int) -> None:
    """CRIU left the tree stopped: SIGKILL the init; the kernel kills the rest of its PID
    namespace, and the supervisor records the exit."""
    from engine import api

    with rec.step("signal", "pidfd_send_signal", target=f"pid {init_pid}", value="SIGKILL",
                  shell=f"kill -KILL {init_pid}  # the tree is dumped: end it"):
        try:
            fd = os.pidfd_open(init_pid)
        except ProcessLookupError:
            fd = None
        if fd is not None:
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            finally:
                os.close(fd)
    api.wait_pid_exit(init_pid, 10)
    api.wait_recorded(state.load(c.id))
    # Let the supervisor finish its teardown (cgroup removal) before anyone restores.
    cur = state.load(c.id)
    sup = cur.state.get("supervisor_pid")
    if sup and cur.supervisor_alive():
        api.wait_pid_exit(sup, 10)


def _run_criu(rec: Recorder, argv: list[str], log: Path, *, op: str, target: str, value: str, what: str,
              **popen: object) -> None:
    shell = shlex.join(argv)
    try:
        with rec.step("checkpoint", op, target=target, value=value, shell=shell) as s:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=300, **popen)  # type: ignore[call-overload]
            if p.returncode != 0:
                s["result_override"] = "failed"
                s["criu_exit"] = p.returncode
                raise _CheckFailed(_criu_log_reason(log, p.stdout + p.stderr))
    except _CheckFailed as e:
        raise EngineError(f"{what}: {op} failed: {e} (full log: {log})") from None
    except subprocess.TimeoutExpired:
        raise EngineError(f"{what}: {op} did not finish within 300 s (log: {log})") from None


# ---- restore -------------------------------------------------------------------------------------

def restore(ref: str | Container, name: str = "checkpoint", client=None, winsize=None) -> Container:
    """Start the container's supervisor in restore mode (state "restore": name) and wait until
    the restored tree runs. The supervisor calls start_restored() instead of its clone path."""
    from engine import api

    c = ref if isinstance(ref, Container) else state.resolve(ref)
    validate_name(name)
    st = c.status
    if st in (state.RUNNING, state.PAUSED, state.RESTARTING):
        raise Conflict(f"cannot restore container {c.name}: it is {st}; stop it first")
    if st == state.REMOVING:
        raise Conflict(f"cannot restore container {c.name}: it is being removed")
    manifest = read_manifest(c, name)
    _check_supported(c, "restore")
    if c.supervisor_alive():
        api.wait_pid_exit(c.state["supervisor_pid"], 10)
    require_criu(container_recorder(c.id))
    check_external_files(manifest)
    state.update_state(c.id, restore=name, manual_stop=None)
    try:
        status_r, sup_pid = api.spawn_supervisor(c.id, client, winsize)
        msg = api._read_status(status_r, c)
    finally:
        state.update_state(c.id, restore=None)
    if msg.get("t") == "error":
        raise EngineError(msg.get("message", "restore failed"), exit_code=int(msg.get("exit_code", 125)))
    c = state.load(c.id)
    c.supervisor_pid = sup_pid  # type: ignore[attr-defined]
    return c


def check_external_files(manifest: dict) -> None:
    """The host files the dumped init had mapped must be the same files (an upgraded Python
    would be mapped under the old process's feet)."""
    for key, f in manifest.get("external_files", {}).items():
        try:
            st = os.stat(f["path"])
        except OSError as e:
            raise EngineError(f"cannot restore: {f['path']} ({key}), open in the checkpointed container, "
                              f"is gone from the host: {e.strerror}") from None
        if f.get("chr"):
            continue
        if (st.st_ino, st.st_size, st.st_mtime_ns) != (f["ino"], f["size"], f["mtime_ns"]):
            raise EngineError(f"cannot restore: {f['path']} changed on the host since the checkpoint "
                              "(labtui's init had it mapped); checkpoint the container again")


class RestorePlan:
    """What `criu restore` is given: its argv, and the fds it must inherit."""

    def __init__(self, argv: list[str], pass_fds: list[int], log: Path, pidfile: Path) -> None:
        self.argv = argv
        self.pass_fds = pass_fds
        self.log = log
        self.pidfile = pidfile


def build_restore(c: Container, manifest: dict, criu: str, stdio: dict[str, int]) -> RestorePlan:
    """criu restore's command line. stdio: role -> the fd the new supervisor made for the
    container's side of that stream (its new pipe end)."""
    d = checkpoint_dir(c, manifest["name"])
    pidfile = d / "restore.pid"
    try:
        pidfile.unlink()
    except FileNotFoundError:
        pass
    argv = [criu, "restore", "--images-dir", str(d), "--log-file", "restore.log", "-v4",
            "--root", str(c.dir / "merged"), "--restore-detached", "--restore-sibling",
            "--pidfile", str(pidfile), "--manage-cgroups=soft", *SOCKETS_AND_LOCKS]
    pass_fds: list[int] = []
    for key, m in manifest["external_mounts"].items():
        argv += ["--external", f"mnt[{key}]:{m['host']}"]
    for role, pipe in manifest["stdio"].items():
        fd = stdio.get(role)
        if fd is None:
            raise EngineError(f"cannot restore: the checkpoint has a {role} pipe and the new supervisor none")
        argv += ["--inherit-fd", f"fd[{fd}]:{pipe}"]
        pass_fds.append(fd)
    for key, f in manifest["external_files"].items():
        fd = os.open(f["path"], os.O_PATH | os.O_CLOEXEC)
        argv += ["--inherit-fd", f"fd[{fd}]:{key}"]
        pass_fds.append(fd)
    return RestorePlan(argv, pass_fds, d / "restore.log", pidfile)


def restore_in_supervisor(sup) -> int:
    """Called by Supervisor.start_once in restore mode INSTEAD of clone: make new stdio pipes, put
    `criu restore` in the container's cgroup, mount the overlay root in a private mount namespace
    for it, run it with the dumped pipes mapped to the new ones; returns the restored init's
    host PID (a child of the supervisor thanks to --restore-sibling). Raises EngineError."""
    from engine import init

    c = sup.c
    name = c.state.pop("restore", None) or "checkpoint"
    state.update_state(c.id, restore=None)  # once: a restart by policy starts afresh
    manifest = read_manifest(c, name)
    criu, version = require_criu(check=False)  # `restore` ran `criu check` before starting us
    fds = sup.prepare_stdio()
    plan = build_restore(c, manifest, criu, {"stdin": fds["stdin"], "stdout": fds["stdout"],
                                              "stderr": fds["stderr"]})
    chan_r, chan_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        _restore_child(c, sup.gate is not None, plan, chan_w, go_r)  # never returns
    for fd in {*plan.pass_fds, fds["stdin"], fds["stdout"], fds["stderr"], chan_w, go_r}:
        try:
            os.close(fd)
        except OSError:
            pass
    try:
        sup.before_go(child)  # the criu process enters the container's cgroup; its children stay there
    except BaseException:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        os.close(go_w)
        os.close(chan_r)
        raise
    os.write(go_w, b"g")
    t0 = time.time()
    error, exec_msg = sup.follow_child(chan_r, go_w)
    os.close(go_w)
    _, status = os.waitpid(child, 0)
    code = init.exit_code(status)
    dur = round((time.time() - (exec_msg or {}).get("ts", t0)) * 1000, 3)
    step = {"mechanism": "checkpoint", "op": "criu restore", "target": name, "value": f"CRIU {version}",
            "shell": shlex.join(plan.argv), "pid": child, "ts": (exec_msg or {}).get("ts", t0),
            "duration_ms": dur, "errno": 0, "result": "ok"}
    if error or code != 0:
        reason = error["message"] if error else _criu_log_reason(plan.log, "")
        step.update(result="failed", criu_exit=code)
        if not error:
            sup.rec.record(step)
        _undo_cgroup(sup)
        raise EngineError(f"restore {c.name} from '{name}': criu restore failed: {reason} (full log: {plan.log})")
    try:
        pid = int(plan.pidfile.read_text().strip())
    except (OSError, ValueError):
        step.update(result="failed", criu_exit=code)
        sup.rec.record(step)
        _undo_cgroup(sup)
        raise EngineError(f"restore {c.name}: criu restore wrote no pid file ({plan.pidfile})") from None
    step["child_pid"] = pid
    sup.rec.record(step)
    if _ppid(pid) != os.getpid():  # --restore-sibling not honoured: we could not wait for it
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _undo_cgroup(sup)
        raise EngineError(f"restore {c.name}: the restored init {pid} is not a child of the supervisor")
    state.update_state(c.id, pid=pid, pid_start=state.proc_start_time(pid), boot_id=state.boot_id(),
                       main_pid=None, exit_code=None, finished_at=None, error=None, paused=None,
                       started_at=state.now_iso(), supervisor_pid=os.getpid(),
                       supervisor_start=state.proc_start_time(os.getpid()), restored_from=name)
    events.emit("restored", c.id, c.name, checkpoint=name, pid=pid, criu=version)
    return pid


def start_restored(sup, listener) -> tuple[int, bool]:
    """One run of the supervisor in restore mode: restore, report to the CLI, serve until the
    init exits. Same contract as Supervisor.start_once: (exit code, whether it started). The
    lead's hook at the top of start_once:

        if self.c.state.get("restore"):
            from engine import checkpoint
            return checkpoint.start_restored(self, listener)
    """
    try:
        pid = restore_in_supervisor(sup)
    except EngineError as e:
        sup.report({"t": "error", "message": str(e), "exit_code": e.exit_code})
        return e.exit_code, False
    sup.report({"t": "started", "pid": pid})
    return sup.serve(pid, listener), True


def _undo_cgroup(sup) -> None:
    try:
        sup.after_exit()
    except Exception:
        pass


def _ppid(pid: int) -> int | None:
    from engine import procfs

    v = procfs.status_field(pid, "PPid")
    return int(v) if v else None


def _restore_child(c: Container, gated: bool, plan: RestorePlan, chan_w: int, go_r: int) -> None:
    """The criu process-to-be: wait until the supervisor put us in the container's cgroup, take
    a private mount namespace, mount the container's overlay root there, exec criu. Steps go up
    the channel as in the container's own setup (engine.init); the channel closes on execve."""
    from engine import init, rootfs
    from engine import syscalls as sc
    from engine.errors import StepError

    chan = init.Channel(chan_w, go_r)
    code = 125
    try:
        keep = {0, 1, 2, chan_w, go_r, *plan.pass_fds}
        init.close_other_fds(keep)
        rec = Recorder(c.id, chan.step_sink, chan.gate if gated else None)
        chan.wait_go()
        with rec.step("namespace", "unshare", value="CLONE_NEWNS", shell="unshare --mount  # for criu only"):
            sc.unshare(sc.CLONE_NEWNS)
        rootfs.make_private(rec)
        cfg = c.config
        merged = str(c.dir / "merged")
        rootfs.mount_overlay(rec, cfg["layers"], str(c.dir / "upper"), str(c.dir / "work"), merged)
        if cfg.get("read_only"):
            # CRIU makes the container's / from --root (a bind keeps this per-mount flag); it does
            # not re-apply the dumped root's flags.
            rootfs.mount(rec, None, merged, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY,
                         shell=f"mount -o remount,bind,ro {merged}", op="remount / ro")
        for fd in plan.pass_fds:
            os.set_inheritable(fd, True)
        chan.send({"t": "exec", "argv": ["criu", "restore"], "ts": time.time(), "pid": os.getpid()})
        os.execv(plan.argv[0], plan.argv)
    except StepError as e:
        chan.send({"t": "error", "message": str(e), "exit_code": 125, "step": e.step})
    except BaseException as e:
        try:
            chan.send({"t": "error", "message": f"cannot run criu restore: {e!r}", "exit_code": 125})
        except OSError:
            pass
    finally:
        os._exit(code)
