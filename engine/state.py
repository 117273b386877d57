"""Container records on disk and their status, recomputed from the kernel on every read.

Two files per container under paths.container_dir(id):
- config.json: what was asked for (image, command, env, mounts, ...); written once at create.
- state.json: what happened (pids with their start times, exit code, times); rewritten
  atomically (temp + rename, as runc's state.json) by whoever changes it, under a lock.

Why store the start time and the boot id next to each PID: PIDs are reused. A PID is only trusted
when the process with that PID has the same start time (field 22 of /proc/PID/stat, proc(5)) and
we are in the same boot (/proc/sys/kernel/random/boot_id), so a SIGKILLed supervisor, a wiped
/run/labtui or a reboot never makes `ps` lie.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine import jsonl, paths
from engine.errors import Conflict, InvalidArgument, NotFound

# docker's status words
CREATED, RUNNING, PAUSED, RESTARTING, EXITED, DEAD, REMOVING = (
    "created", "running", "paused", "restarting", "exited", "dead", "removing",
)


def can_start(status: str) -> bool:
    return status in (CREATED, EXITED)


def can_stop(status: str) -> bool:
    return status in (RUNNING, RESTARTING)


def can_kill(status: str) -> bool:
    return status in (RUNNING, RESTARTING, PAUSED)


def can_pause(status: str) -> bool:
    return status == RUNNING


def can_exec(status: str) -> bool:
    return status == RUNNING


def now_iso() -> str:
    """RFC 3339 UTC with microseconds, as docker's timestamps (without importing datetime: ~1 ms
    of every command's start-up)."""
    sec, us = divmod(time.time_ns() // 1000, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{us:06d}Z"


def write_json_atomic(path: Path, obj: dict) -> None:
    jsonl.write_json_atomic(path, obj)


def read_json(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


_boot_id: str | None = None


def boot_id() -> str:
    global _boot_id
    if _boot_id is None:
        with open("/proc/sys/kernel/random/boot_id") as f:
            _boot_id = f.read().strip()
    return _boot_id


def proc_start_time(pid: int) -> int | None:
    """Field 22 (starttime, clock ticks since boot) of /proc/PID/stat, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'
    rest = data[data.rindex(b")") + 2 :].split()
    if rest[0] == b"Z" or rest[0] == b"X":
        return None  # a zombie is dead for our purposes
    return int(rest[19])


def _unreaped(s: dict) -> bool:
    """The recorded PID 1 is a zombie (exited, not yet waited for) of this boot."""
    pid, start = s.get("pid"), s.get("pid_start")
    if not pid or start is None or s.get("boot_id") != boot_id():
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    rest = data[data.rindex(b")") + 2:].split()
    return rest[0] == b"Z" and int(rest[19]) == start


def pid_alive(pid: int | None, start: int | None, boot: str | None) -> bool:
    if not pid or start is None or boot != boot_id():
        return False
    return proc_start_time(pid) == start


class Container:
    """One container's records. Cheap to construct: reads two small JSON files."""

    def __init__(self, cid: str, config: dict, state: dict, damaged: str | None = None) -> None:
        self.id = cid
        self.config = config
        self.state = state
        self.damaged = damaged  # why a record could not be read (load() stood in for it), else None

    @property
    def name(self) -> str:
        return self.config["name"]

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def dir(self) -> Path:
        return paths.container_dir(self.id)

    @property
    def run_dir(self) -> Path:
        return paths.container_run_dir(self.id)

    def init_alive(self) -> bool:
        s = self.state
        return pid_alive(s.get("pid"), s.get("pid_start"), s.get("boot_id"))

    def supervisor_alive(self) -> bool:
        s = self.state
        return pid_alive(s.get("supervisor_pid"), s.get("supervisor_start"), s.get("boot_id"))

    def removal_alive(self) -> bool:
        """Whether the process that marked this container "removing" is still at it. A removal
        cut short (its `rm` or its --rm supervisor SIGKILLed, a reboot) leaves the mark behind:
        the container is then what the kernel says, and the next rm takes the removal over
        (issue 15, chaos: such a container stayed "removing" for good, and rm did nothing)."""
        s = self.state
        mark = s.get("removing")
        if not mark:
            return False
        if mark == "supervisor":  # a --rm container's own supervisor (Supervisor.finish)
            return self.supervisor_alive()
        remover = s.get("remover")
        return isinstance(remover, list) and len(remover) == 3 and pid_alive(*remover)

    @property
    def status(self) -> str:
        """Recomputed from the kernel: a recorded PID counts only if it is still the same process."""
        s = self.state
        if s.get("removing") and self.removal_alive() or self.forgotten():
            return REMOVING
        if self.damaged and not self.init_alive():
            return DEAD  # docker's word for a container it cannot use: only `rm` is left
        if self.init_alive():
            if s.get("paused") and _frozen(self):
                return PAUSED
            return RUNNING
        if s.get("restarting") and self.supervisor_alive():
            return RESTARTING
        if s.get("started_at") and not s.get("finished_at") and _unreaped(s) and self.supervisor_alive():
            # PID 1 has exited but its supervisor has not reaped it yet: an idle supervisor is
            # becoming Python again (engine/idle.py) and will record the exit in a moment. Until
            # then the container still counts as running, as docker's until its shim reports.
            return RUNNING
        if s.get("started_at"):
            return EXITED
        return CREATED

    def forgotten(self) -> bool:
        """A labtui-oci record kept after the runtime's delete (the container exited; podman still
        lists it) whose bundle podman has removed since (`podman rm`): removed at labtui-oci's
        next command (engine/oci/runtime.py prune_forgotten), shown as being removed till then."""
        oci = self.config.get("oci") or {}
        return bool(oci.get("kept")) and not os.path.isfile(os.path.join(oci.get("bundle") or "", "config.json"))

    @property
    def exit_code(self) -> int | None:
        return self.state.get("exit_code")

    def reload(self) -> Container:
        self.state, damage = _read_record(self.dir / "state.json", {})
        self.damaged = self.damaged or damage
        return self


def _frozen(c: Container) -> bool:
    """Paused means the freezer says so; the cgroup driver answers (resource-control issue)."""
    try:
        from engine import cgroups

        return cgroups.is_frozen_for(c)
    except Exception:  # no cgroup support: trust the record
        return bool(c.state.get("paused"))


def load(cid: str) -> Container:
    d = paths.container_dir(cid)
    config, damage = _read_record(d / "config.json", None)
    if config is None and damage is None:
        raise NotFound(f"no such container: {cid[:12]}")
    if config is None or not isinstance(config.get("name"), str) or not isinstance(config.get("argv"), list):
        config, damage = _stand_in_config(cid, d), damage or "config.json lacks its name or command"
    st, st_damage = _read_record(d / "state.json", {})
    return Container(cid, config, st, damage or st_damage)


def _read_record(path: Path, missing: dict | None) -> tuple[dict | None, str | None]:
    """A JSON object and None, or (missing, why) when the file is truncated, garbage or not an
    object: a disk that filled up or a hand edit must make one container "dead", not every
    command that lists containers fail with a traceback (issue 15, faults)."""
    try:
        obj = read_json(path)
    except FileNotFoundError:
        return missing if missing is None else dict(missing), None
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None if missing is None else dict(missing), f"{path.name} is damaged ({e})"
    if not isinstance(obj, dict):
        return None if missing is None else dict(missing), f"{path.name} is damaged (not a JSON object)"
    return obj, None


def _stand_in_config(cid: str, d: Path) -> dict:
    """What ps, inspect and rm need of a container whose config.json is unreadable: its name
    (found back from the name link that points to it, so rm releases it) and harmless defaults."""
    name = cid[:12]
    try:
        for link in os.scandir(names_dir()):
            if link.is_symlink() and os.readlink(link.path) == cid:
                name = link.name
                break
    except OSError:
        pass
    try:
        created = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(os.stat(d).st_mtime))
    except OSError:
        created = now_iso()
    return {"id": cid, "name": name, "created": created, "image": "<damaged>", "image_id": "",
            "layers": [], "argv": ["?"], "env": [], "volumes": [], "tmpfs": [], "ports": [],
            # Not "none": rm then looks its address leases up by ID and releases them (hooks.cleanup).
            "network": "<damaged>", "hostname": cid[:12], "workdir": "/", "autoremove": False}


def all_ids() -> list[str]:
    try:
        return [e for e in os.listdir(paths.containers_dir()) if len(e) == 64 and not e.startswith(".")]
    except FileNotFoundError:
        return []


def all_containers() -> list[Container]:
    out = []
    for cid in all_ids():
        try:
            out.append(load(cid))
        except NotFound:
            continue  # being created or removed right now
    out.sort(key=lambda c: c.config.get("created", ""), reverse=True)
    return out


def names_dir() -> Path:
    return paths.lib_dir() / "names"


def resolve(ref: str) -> Container:
    """By name (docker allows a leading '/'), by full ID, or by a unique ID prefix."""
    if not ref:
        raise InvalidArgument("a container name or ID is required")
    name = ref.lstrip("/")
    try:
        cid = os.readlink(names_dir() / name)
        return load(cid)
    except (FileNotFoundError, OSError, NotFound):
        pass
    if all(ch in "0123456789abcdef" for ch in ref):
        matches = [cid for cid in all_ids() if cid.startswith(ref)]
        if len(matches) == 1:
            return load(matches[0])
        if len(matches) > 1:
            raise InvalidArgument(f"ID prefix '{ref}' is ambiguous: it matches {len(matches)} containers")
    raise NotFound(f"no such container: {ref}")


def claim_name(name: str, cid: str) -> None:
    """Reserve a name: symlink(2) creation is atomic, so two racing creators cannot both win."""
    names_dir().mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(cid, names_dir() / name)
    except FileExistsError:
        try:
            other = os.readlink(names_dir() / name)
        except OSError:
            other = "?"
        if not (paths.container_dir(other) / "config.json").exists():
            # a stale claim left by a crash between claim and create: take it over
            os.unlink(names_dir() / name)
            return claim_name(name, cid)
        raise Conflict(
            f"name '{name}' is already in use by container {other[:12]}: "
            "remove or rename that container to reuse the name"
        ) from None


def release_name(name: str, cid: str) -> None:
    link = names_dir() / name
    try:
        if os.readlink(link) == cid:
            os.unlink(link)
    except OSError:
        pass


@contextmanager
def locked(cid: str) -> Iterator[None]:
    """Serialise read-modify-write of one container's state (supervisor vs CLI vs app)."""
    lock = paths.container_dir(cid) / ".lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def start_lock(cid: str) -> Path:
    """Held (flock, shared) by a command starting the container and by its supervisor for its
    whole life; taken exclusively by a start to know that nobody is (engine/api.py _claim_start)."""
    return paths.container_dir(cid) / ".start.lock"


START_LOCK_FD: int | None = None


def hold_start_lock(cid: str, fd: int | None = None) -> int | None:
    """The container's start lock, shared, on our own descriptor for our whole life (engine/api.py
    _claim_start: no second supervisor while this one lives). Our own, not only the starter's
    inherited one: an exec'd supervisor (the app's fork+exec) and the idle monitor's exec keep it
    only this way (engine/idle.py passes it on)."""
    global START_LOCK_FD
    import fcntl

    if fd is None:
        try:
            fd = os.open(start_lock(cid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return None  # a start racing a removal: nothing to hold
    START_LOCK_FD = fd
    return fd


def update_state(cid: str, **changes: object) -> dict:
    with locked(cid):
        return update_state_locked(cid, **changes)


def update_state_locked(cid: str, **changes: object) -> dict:
    """update_state by a caller that holds locked(cid) already."""
    path = paths.container_dir(cid) / "state.json"
    st = _read_record(path, {})[0]  # a damaged record is replaced, not a traceback
    for k, v in changes.items():
        if v is None and k in st:
            del st[k]
        elif v is not None:
            st[k] = v
    write_json_atomic(path, st)
    return st


def update_state_unless_full(cid: str, **changes: object) -> dict:
    """update_state, or on a full disk the record as it was: a supervisor recording its
    container's exit must still go on to clean up after it (issue 15, faults)."""
    try:
        return update_state(cid, **changes)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        return _read_record(paths.container_dir(cid) / "state.json", {})[0]


def human_duration(seconds: float) -> str:
    """docker's units.HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(seconds / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    return f"{h // (24 * 7)} weeks"


def parse_iso(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def status_text(c: Container) -> str:
    st = c.status
    now = time.time()
    if st == RUNNING:
        since = c.state.get("started_at")
        text = "Up " + human_duration(now - parse_iso(since)) if since else "Up"
        health = (c.state.get("health") or {}).get("Status") if c.config.get("health") else None
        if health:
            text += f" ({'health: starting' if health == 'starting' else health})"
        return text
    if st == PAUSED:
        since = c.state.get("started_at")
        return ("Up " + human_duration(now - parse_iso(since)) if since else "Up") + " (Paused)"
    if st == EXITED:
        code = c.exit_code
        fin = c.state.get("finished_at")
        ago = f" {human_duration(now - parse_iso(fin))} ago" if fin else ""
        return f"Exited ({code if code is not None else 'unknown'}){ago}"
    if st == CREATED:
        return "Created"
    if st == RESTARTING:
        code = c.exit_code
        return f"Restarting ({code if code is not None else 'unknown'})"
    if st == DEAD and c.damaged:
        return f"Dead ({c.damaged.split(' (')[0]}: labtui rm -f {c.name})"
    return st.capitalize()
