"""Checkpoint and restore, the caller's side: the process of `labtui checkpoint` or `labtui restore`.

checkpoint() takes stock of what CRIU cannot see in the container (below), runs `criu dump`,
writes the manifest and ends the dumped tree. restore() only asks: it starts the container's
supervisor in restore mode (engine/spawn.py) and waits for its report; the restore itself runs
in the supervisor (in_supervisor.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import stat

from engine import events, procfs, state
from engine.checkpoint.criu import SOCKETS_AND_LOCKS, require_criu, run_criu
from engine.checkpoint.store import MANIFEST, checkpoint_dir, read_manifest, validate_name
from engine.errors import Conflict, EngineError
from engine.process import wait_pid_exit, wait_recorded
from engine.state import Container
from engine.steps import Recorder, container_recorder

ETC_FILES = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")


# ---- what the container holds that CRIU cannot see --------------------------------------------

def mount_ids(pid: int) -> set[int]:
    """The ids of the mounts in pid's mount namespace (the first field of mountinfo, proc(5))."""
    return {int(m["id"]) for m in procfs.mountinfo(pid)}


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
    pids = procfs.descendants(init_pid)  # the init and every process below it
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
        run_criu(rec, argv, d / "dump.log", op="criu dump", target=f"pid {init_pid}",
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
    v = procfs.status_field(pid, "NSpid")
    return int(v.split()[-1]) if v else pid


def _kill_stopped_tree(c: Container, rec: Recorder, init_pid: int) -> None:
    """CRIU left the tree stopped: SIGKILL the init; the kernel kills the rest of its PID
    namespace, and the supervisor records the exit."""
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
    wait_pid_exit(init_pid, 10)
    wait_recorded(state.load(c.id))
    # Let the supervisor finish its teardown (cgroup removal) before anyone restores.
    cur = state.load(c.id)
    sup = cur.state.get("supervisor_pid")
    if sup and cur.supervisor_alive():
        wait_pid_exit(sup, 10)


# ---- restore -------------------------------------------------------------------------------------

def prepare_restore(ref: str | Container, name: str = "checkpoint") -> Container:
    """Check that the container can be restored from checkpoint `name` and mark it so (state
    "restore": name): the supervisor that engine.api.restore_container starts next then calls
    in_supervisor.start_restored() instead of its clone path. Undo with end_restore()."""
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
        wait_pid_exit(c.state["supervisor_pid"], 10)
    require_criu(container_recorder(c.id))
    check_external_files(manifest)
    state.update_state(c.id, restore=name, manual_stop=None)
    return c


def end_restore(c: Container) -> None:
    """The supervisor has read the mark (or failed to start): clear it."""
    state.update_state(c.id, restore=None)


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
