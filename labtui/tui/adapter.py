"""The terminal app's only door to the engine (as harlequin's adapters are to databases).

Screens and widgets import this module, never `engine`. Everything here is plain data in, plain
data out, safe to call from a worker thread, and never parses CLI text: it reads the engine's
state files and streams (engine.state, engine.paths) and the kernel's own files under /proc and
/sys/fs/cgroup, and drives the engine through engine.api.

Features other mechanisms are still building (pause, exec, checkpoint, strace, attacks) are
looked up when used; a missing one raises NotAvailable, which the screens show as "not
available yet".
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from engine import api, paths, state
from engine.errors import EngineError, InvalidArgument, NotFound


class NotAvailable(Exception):
    """A feature the engine does not have yet."""


ERRORS: tuple[type[BaseException], ...] = (EngineError, NotAvailable, OSError, ValueError)
"""What an action may fail with; screens turn these into notifications."""

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
RUNNING_STATES = (state.RUNNING, state.PAUSED)


# ---- small helpers ---------------------------------------------------------------------------------

def _read(path: str | Path) -> str | None:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return None


def short_duration(seconds: float) -> str:
    """3s, 4m05s, 2h07m, 3d04h: uptime in a narrow column."""
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}GiB"


def _optional(module: str) -> object | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _load(cid: str) -> state.Container | None:
    try:
        return state.load(cid)
    except (NotFound, ValueError, OSError):
        return None


def _init_pid(c: state.Container | None) -> int | None:
    if c is None or c.status not in RUNNING_STATES:
        return None
    return c.state.get("pid")


# ---- containers for the dashboard ------------------------------------------------------------------

@dataclass
class ContainerRow:
    """One line of the dashboard, recomputed on every poll."""

    id: str
    name: str
    image: str
    status: str
    status_text: str
    pid: int | None
    cpu_percent: float | None
    mem_bytes: int | None
    restarts: int
    health: str
    uptime: str
    command: str


class _LazyMembers:
    """_pidns_members(), computed on first use only (a scan of every /proc/PID)."""

    def __init__(self) -> None:
        self._m: dict[int, list[int]] | None = None

    def get(self, key: int, default: list[int]) -> list[int]:
        if self._m is None:
            self._m = _pidns_members()
        return self._m.get(key, default)


def _pidns_members() -> dict[int, list[int]]:
    """Every process on the host grouped by PID namespace (inode of /proc/PID/ns/pid)."""
    out: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ino = os.stat(f"/proc/{name}/ns/pid").st_ino
        except OSError:
            continue
        out.setdefault(ino, []).append(int(name))
    return out


def _cpu_ticks(pid: int) -> int:
    """utime + stime (fields 14 and 15 of /proc/PID/stat, proc(5)), in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        rest = data[data.rindex(b")") + 2:].split()
        return int(rest[11]) + int(rest[12])
    except (OSError, ValueError, IndexError):
        return 0


def _rss(pid: int) -> int:
    text = _read(f"/proc/{pid}/statm")
    try:
        return int(text.split()[1]) * PAGE_SIZE if text else 0
    except (ValueError, IndexError):
        return 0


def _health(c: state.Container) -> str:
    h = c.state.get("health")
    if isinstance(h, dict):
        return str(h.get("status") or "-")
    return str(h) if h else "-"


def _uptime(c: state.Container) -> str:
    since = c.state.get("started_at")
    if c.status not in RUNNING_STATES or not since:
        return "-"
    try:
        return short_duration(time.time() - state.parse_iso(since))
    except ValueError:
        return "-"


class Sampler:
    """Polls every container; keeps the previous CPU reading of each to compute CPU %.

    CPU and memory come from the container's cgroup when it has one (cpuacct usage / memory
    usage), else from /proc: the utime+stime and resident pages of every process in the
    container's PID namespace.
    """

    def __init__(self) -> None:
        self._prev: dict[str, tuple[float, float]] = {}  # cid -> (monotonic, cpu seconds)
        self._cgroups: dict[str, CgroupHandle | None] = {}

    def rows(self) -> list[ContainerRow]:
        containers = state.all_containers()
        members = _LazyMembers()  # /proc scanned only if some container has no cgroup to read
        rows = [self._row(c, members) for c in containers]
        live = {r.id for r in rows}
        self._prev = {k: v for k, v in self._prev.items() if k in live}
        return rows

    def _row(self, c: state.Container, members: dict[int, list[int]]) -> ContainerRow:
        status = c.status
        pid = c.state.get("pid") if status in RUNNING_STATES else None
        cpu = mem = None
        if pid:
            cpu_s, mem = self._usage(c, pid, members)
            cpu = self._percent(c.id, cpu_s)
        return ContainerRow(
            id=c.id, name=c.name, image=c.config.get("image", "?"), status=status,
            status_text=state.status_text(c), pid=pid, cpu_percent=cpu, mem_bytes=mem,
            restarts=int(c.state.get("restart_count") or 0), health=_health(c), uptime=_uptime(c),
            command=" ".join(c.config.get("argv", [])),
        )

    def _usage(self, c: state.Container, pid: int, members) -> tuple[float, int]:
        cg = self._cgroups.get(c.id)
        if cg is None:
            cg = self._cgroups[c.id] = cgroup_handle(c)
        light = cg.usage() if cg is not None else None
        if light is not None:
            return light[0] / 1e9, light[1]
        self._cgroups.pop(c.id, None)  # look again next time: it may be created later
        try:
            pids = members.get(os.stat(f"/proc/{pid}/ns/pid").st_ino, [pid])
        except OSError:
            pids = [pid]
        return sum(_cpu_ticks(p) for p in pids) / CLK_TCK, sum(_rss(p) for p in pids)

    def _percent(self, cid: str, cpu_seconds: float) -> float | None:
        now = time.monotonic()
        prev = self._prev.get(cid)
        self._prev[cid] = (now, cpu_seconds)
        if prev is None or now <= prev[0]:
            return None
        return max(cpu_seconds - prev[1], 0.0) / (now - prev[0]) * 100


@dataclass
class ContainerInfo:
    """What a container screen's title shows, refreshed every second."""

    id: str
    name: str
    image: str
    status: str
    status_text: str
    pid: int | None
    exists: bool = True
    gate_step: dict | None = None
    config: dict = field(default_factory=dict)


def container_info(cid: str) -> ContainerInfo:
    c = _load(cid)
    if c is None:
        return ContainerInfo(cid, cid[:12], "", "removed", "Removed", None, exists=False)
    status = c.status
    gate = None
    if c.config.get("gate"):
        with contextlib.suppress(*ERRORS):
            gate = api.gate_pending(cid)
    return ContainerInfo(c.id, c.name, c.config.get("image", ""), status, state.status_text(c),
                         _init_pid(c), gate_step=gate, config=c.config)


def on_startup() -> None:
    """What every labtui command does first (after a reboot: bring back `--restart always`).

    The sweep starts containers, so while SPAWN_THROUGH_CLI holds it runs in a CLI child (any
    command does it first; its output is not read)."""
    fn = getattr(api, "on_startup", None)
    if fn is None:
        return
    if SPAWN_THROUGH_CLI:
        _cli("ps", "-q")
    else:
        fn()


def resolve(ref: str) -> str:
    """A name, ID or ID prefix to the full ID."""
    return state.resolve(ref).id


# ---- host facts --------------------------------------------------------------------------------------

def host_facts() -> dict[str, str]:
    """Kernel, cgroup layout and the runtime's directories, for the dashboard's header."""
    u = os.uname()
    facts = {"kernel": f"{u.sysname} {u.release} ({u.machine})", "cgroups": cgroup_layout(),
             "state": str(paths.lib_dir()), "runtime": str(paths.run_dir())}
    missing = [name for name, ok in features().items() if not ok]
    facts["not yet"] = ", ".join(missing) if missing else "-"
    return facts


def cgroup_layout() -> str:
    cg = _optional("engine.cgroups")
    detect = getattr(cg, "detect", None)
    if detect is None:
        return "not available yet"
    try:
        layout = detect()
    except Exception as e:  # noqa: BLE001 - whatever the detector raises, the dashboard still opens
        return f"unknown ({e})"
    if layout.kind == "unified":
        return f"unified v2 at {layout.v2_mount} ({' '.join(layout.v2_controllers) or 'no controllers'})"
    if layout.kind in ("legacy", "hybrid"):
        ctrls = sorted(k for k in layout.v1 if not k.startswith("name="))
        return f"{layout.kind} v1 ({','.join(ctrls)})" + (f" + v2 at {layout.v2_mount}" if layout.v2_mount else "")
    return layout.kind


def features() -> dict[str, bool]:
    """Which optional engine features exist in this build."""
    return {
        "pause": hasattr(api, "pause") and hasattr(api, "unpause"),
        "exec": has_cli_command("exec"),
        "checkpoint": _checkpoint_fn("checkpoint") is not None,
        "attacks": _optional("engine.attacks") is not None,
        "strace": _optional("engine.strace") is not None,
    }


_CLI_COMMANDS: set[str] | None = None


def has_cli_command(name: str) -> bool:
    """Whether `labtui NAME` exists (extension modules add commands as they land)."""
    global _CLI_COMMANDS
    if _CLI_COMMANDS is None:
        try:
            from labtui.cli import main as cli

            cli.build_parser()
            _CLI_COMMANDS = set(cli.COMMANDS)
        except Exception:  # noqa: BLE001 - a broken extension must not stop the app
            _CLI_COMMANDS = set()
    return name in _CLI_COMMANDS


# ---- lifecycle ----------------------------------------------------------------------------------------

@dataclass
class RunForm:
    """What the run form asks for; `flags` takes any other `labtui run` flag (limits, network...)."""

    image: str = "busybox"
    command: str = ""
    name: str = ""
    env: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    read_only: bool = False
    gate: bool = False
    flags: str = ""

    def argv(self) -> list[str]:
        out = ["run", "-d"]
        if self.name:
            out += ["--name", self.name]
        for e in self.env:
            out += ["-e", e]
        for v in self.volumes:
            out += ["-v", v]
        if self.read_only:
            out.append("--read-only")
        if self.gate:
            out.append("--gate")
        out += shlex.split(self.flags)
        return out + [self.image or "busybox"] + shlex.split(self.command)


def run_options(form: RunForm):
    """The form as engine RunOptions, parsed by the CLI's own `run` parser so every flag another
    mechanism adds (and its validation, stored in RunOptions.extra) works here too."""
    from labtui.cli import main as cli

    try:
        argv = form.argv()
    except ValueError as e:
        raise InvalidArgument(f"cannot parse the form: {e}") from None
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = cli.build_parser().parse_args(argv)  # the whole parser: extensions add run flags
    except SystemExit:
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
        raise InvalidArgument(lines[-1] if lines else "invalid options") from None
    return cli.opts_from_args(args)


def create(form: RunForm) -> tuple[str, bool]:
    """Create the container; returns (id, whether its steps are gated)."""
    opts = run_options(form)
    return api.create(opts).id, bool(opts.gate)


# True runs the verbs that spawn a supervisor as `labtui start/restore` child processes instead of
# in-process. Not needed: engine.api.spawn_supervisor fork+execs the supervisor when the caller
# has threads (this app). Kept as a switch for debugging the two paths against each other.
SPAWN_THROUGH_CLI = False


def _cli(*args: str) -> None:
    """`labtui ARGS` in a child process; its error line becomes an EngineError."""
    p = subprocess.run([sys.executable, "-m", "labtui.cli", *args], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        raise EngineError((lines[-1] if lines else f"labtui {args[0]} exited {p.returncode}")
                          .removeprefix("labtui: "), exit_code=p.returncode)


def start(cid: str) -> None:
    if SPAWN_THROUGH_CLI:
        _cli("start", cid)
    else:
        api.start(cid)


def stop(cid: str, timeout: float = 10) -> None:
    api.stop(cid, timeout)


def kill(cid: str, sig: str = "KILL") -> None:
    api.kill(cid, sig)


def restart(cid: str) -> None:
    api.stop(cid)
    start(cid)


def remove(cid: str) -> None:
    api.remove(cid, force=True)


def toggle_pause(cid: str) -> str:
    """Pause a running container or resume a paused one; returns what was done."""
    if not features()["pause"]:
        raise NotAvailable("pause/resume is not available yet: the engine has no freezer support")
    if state.load(cid).status == state.PAUSED:
        api.unpause(cid)  # type: ignore[attr-defined]
        return "resumed"
    api.pause(cid)  # type: ignore[attr-defined]
    return "paused"


def _checkpoint_fn(name: str) -> Callable | None:
    return getattr(api, name, None) or getattr(_optional("engine.checkpoint"), name, None)


def checkpoint(cid: str) -> str:
    """CRIU dump of the container (it stops); returns what was saved."""
    fn = _checkpoint_fn("checkpoint")
    if fn is None:
        raise NotAvailable("checkpoint is not available yet")
    out = fn(cid)
    return f"saved checkpoint {out.get('name', '')}" if isinstance(out, dict) else "checkpointed"


def restore(cid: str) -> str:
    fn = _checkpoint_fn("restore")
    if fn is None:
        raise NotAvailable("restore is not available yet")
    if SPAWN_THROUGH_CLI and has_cli_command("restore"):
        _cli("restore", cid)
    else:
        fn(cid)
    return "restored"


_TRACES: dict[str, subprocess.Popen] = {}


def toggle_trace(cid: str) -> str:
    """Start or stop strace on every process of the container (`labtui trace`, a child process
    of the app: strace runs on the host and writes the container's strace.log; the strace tab
    shows its totals). Traces the app started stop when it exits."""
    proc = _TRACES.get(cid)
    if proc is not None and proc.poll() is None:
        # The whole group (the CLI and its strace): strace detaches from every tracee on SIGINT,
        # even if the CLI was still starting it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
        del _TRACES[cid]
        return "strace stopped"
    if not has_cli_command("trace"):
        raise NotAvailable("strace is not available yet")
    proc = subprocess.Popen([sys.executable, "-m", "labtui.cli", "trace", cid], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    _TRACES[cid] = proc  # at once: a second press while it attaches must stop this one
    try:
        proc.wait(timeout=1.0)  # still running after a second: strace is attached
    except subprocess.TimeoutExpired:
        return "strace started"
    _TRACES.pop(cid, None)
    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
    raise NotAvailable(err.removeprefix("labtui: ") or "strace could not attach")


def stop_traces() -> None:
    for cid in list(_TRACES):
        try:
            toggle_trace(cid)
        except Exception:  # noqa: BLE001 - leaving the app must not fail on a trace
            pass


def shell_argv(cid: str) -> list[str]:
    """`labtui exec -it ID sh`, the command the shell key runs with the app suspended."""
    if not has_cli_command("exec"):
        raise NotAvailable("`labtui exec` is not available yet: no shell into containers")
    return [sys.executable, "-m", "labtui.cli", "exec", "-it", cid, "sh"]


def gate_release(cid: str, count: int = 1) -> None:
    api.gate_release(cid, count)


# ---- streams -------------------------------------------------------------------------------------------

class Tail:
    """Reads the JSON-lines records appended to a file since the previous read().

    Never blocks: a follower thread calls read() on its own tick and posts one message per
    batch. A file that is replaced (new inode) or truncated is read again from the start.
    """

    def __init__(self, path: Path, keep: Callable[[dict], bool] | None = None) -> None:
        self.path = path
        self.keep = keep
        self.pos = 0
        self.ino: int | None = None
        self.buf = b""

    def read(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                if st.st_ino != self.ino or st.st_size < self.pos:
                    if self.ino is not None:
                        self.pos, self.buf = 0, b""
                    self.ino = st.st_ino
                f.seek(self.pos)
                chunk = f.read()
        except OSError:
            return []  # not there (yet, or any more)
        self.pos += len(chunk)
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        return [r for r in _decode(lines) if self.keep is None or self.keep(r)]


def _decode(lines: Iterable[bytes]) -> Iterable[dict]:
    for line in lines:
        if line.strip():
            try:
                yield json.loads(line)
            except ValueError:
                continue


def steps_tail(cid: str) -> Tail:
    return Tail(paths.container_dir(cid) / "steps.jsonl")


def logs_tail(cid: str) -> Tail:
    return Tail(paths.container_dir(cid) / "container.log")


def container_events_tail(cid: str) -> Tail:
    return Tail(paths.events_stream(), lambda ev: ev.get("container") == cid)


def events_tail() -> Tail:
    """Host-wide events: the first read() returns the history, later ones what is new."""
    return Tail(paths.events_stream())


def shorten(text: str, cid: str) -> str:
    """Paths in steps are long: the container's directory becomes <ctr>, the state dir <lib>."""
    if not text:
        return ""
    return text.replace(str(paths.container_dir(cid)), "<ctr>").replace(str(paths.lib_dir()), "<lib>")


def container_dir(cid: str) -> str:
    return str(paths.container_dir(cid))


def gate_pending(cid: str) -> dict | None:
    try:
        return api.gate_pending(cid)
    except ERRORS:
        return None


# ---- namespaces, processes -----------------------------------------------------------------------------

NS_KINDS = ("cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time", "user", "uts")


@dataclass
class NsRow:
    kind: str
    inside: int | None
    host: int | None

    @property
    def isolated(self) -> bool:
        return self.inside is not None and self.host is not None and self.inside != self.host


@dataclass
class Proc:
    pid: int
    ppid: int
    nspid: list[int]
    state: str
    uid: int
    cmd: str
    depth: int = 0

    @property
    def zombie(self) -> bool:
        return self.state == "Z"


@dataclass
class NamespacesView:
    running: bool
    host_ref: str = ""
    rows: list[NsRow] = field(default_factory=list)
    uid_map: str = ""
    gid_map: str = ""
    procs: list[Proc] = field(default_factory=list)


def host_ns_ref() -> str:
    """The host's namespaces: PID 1's when we may read them, else our own."""
    return "1" if os.access("/proc/1/ns/pid", os.F_OK) and _ns_inode("1", "pid") else "self"


def _ns_inode(pid: int | str, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def namespaces_view(cid: str) -> NamespacesView:
    pid = _init_pid(_load(cid))
    if not pid:
        return NamespacesView(running=False)
    ref = host_ns_ref()
    rows = [NsRow(k, _ns_inode(pid, k), _ns_inode(ref, k)) for k in NS_KINDS]
    return NamespacesView(
        running=True, host_ref=f"/proc/{ref}/ns", rows=[r for r in rows if r.inside or r.host],
        uid_map=(_read(f"/proc/{pid}/uid_map") or "").rstrip(),
        gid_map=(_read(f"/proc/{pid}/gid_map") or "").rstrip(), procs=processes(cid),
    )


def _status_fields(pid: int) -> dict[str, str]:
    from engine import procfs

    try:
        return procfs.status(pid)
    except OSError:
        return {}


def processes(cid: str) -> list[Proc]:
    """The container's processes (engine.api.top) with their NSpid chain, as a depth-first tree."""
    try:
        top = api.top(cid)
    except ERRORS:
        return []
    procs = []
    for p in top:
        fields = _status_fields(p["pid"])
        nspid = fields.get("NSpid", str(p["pid"])).split()
        procs.append(Proc(p["pid"], p["ppid"], [int(x) for x in nspid if x.isdigit()], p["state"],
                          p["uid"], _command(fields.get("Name", ""), p["cmd"])))
    return _as_tree(procs)


def _command(comm: str, cmd: str) -> str:
    """The command line, named by comm when they differ: the init forked from a Python CLI keeps
    that CLI's argv but calls itself labtui-init."""
    first = os.path.basename(cmd.split(" ", 1)[0]) if cmd else ""
    return cmd if not comm or first.startswith(comm[:15]) or comm in first else f"[{comm}] {cmd}"


def _as_tree(procs: list[Proc]) -> list[Proc]:
    by_pid = {p.pid: p for p in procs}
    kids: dict[int, list[Proc]] = {}
    roots = []
    for p in procs:
        if p.ppid in by_pid:
            kids.setdefault(p.ppid, []).append(p)
        else:
            roots.append(p)
    out: list[Proc] = []

    def walk(p: Proc, depth: int) -> None:
        p.depth = depth
        out.append(p)
        for k in kids.get(p.pid, []):
            walk(k, depth + 1)

    for r in roots:
        walk(r, 0)
    return out


# ---- capabilities and other security fields -------------------------------------------------------------

def _cap_names() -> tuple[str, ...]:
    from engine.capabilities import CAP_NAMES as names  # one list, in the engine

    return tuple(n.lower() for n in names)


CAP_NAMES = _cap_names()  # capabilities(7), by bit number

SECCOMP_MODES = {"0": "disabled", "1": "strict", "2": "filter"}


def decode_caps(mask: int | str) -> list[str]:
    """A capability bit mask (hex as in /proc/PID/status, or an int) to cap_* names."""
    bits = int(mask, 16) if isinstance(mask, str) else mask
    return [CAP_NAMES[i] if i < len(CAP_NAMES) else f"cap_{i}" for i in range(64) if bits >> i & 1]


@dataclass
class CapSet:
    field: str
    hex: str
    names: list[str]


@dataclass
class MaskedPath:
    path: str
    kind: str  # "masked" or "read-only"
    mounted: bool  # a mount on exactly this path in the container's /proc/PID/mountinfo
    detail: str = ""  # the mount's source/fstype and options


@dataclass
class SecurityView:
    running: bool
    pid: int | None = None
    which: str = ""
    caps: list[CapSet] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    no_new_privs: str = "?"
    seccomp: str = "?"
    seccomp_filters: str = "?"
    uids: str = ""
    init_cap_eff: str = ""
    config: dict = field(default_factory=dict)
    profile: dict = field(default_factory=dict)
    """inspect's "Security" section (engine.security.inspect_extra): seccomp mode and profile, denial
    stats, masked/read-only paths, user namespace maps."""
    plan: dict = field(default_factory=dict)
    """The resolved seccomp profile's summary: default action, rule and allowed-syscall counts, arches."""
    denials: list[dict] = field(default_factory=list)
    """The newest seccomp_denied events of this container (newest first, at most DENIALS_SHOWN)."""
    denial_events: int = 0
    masked: list[MaskedPath] = field(default_factory=list)


SECURITY_KEYS = ("security", "cap_add", "cap_drop", "privileged", "seccomp", "userns", "no_new_privileges",
                 "security_opt", "apparmor", "user")


def security_view(cid: str) -> SecurityView:
    c = _load(cid)
    init = _init_pid(c)
    if not init or c is None:
        return SecurityView(running=False)
    main = _main_pid(init)
    pid = main or init
    st = _status_fields(pid)
    caps = [CapSet(f, st.get(f, "0"), decode_caps(st.get(f, "0"))) for f in ("CapEff", "CapPrm", "CapBnd",
                                                                              "CapInh", "CapAmb")]
    full = set(CAP_NAMES[: _last_cap() + 1])
    bnd = set(caps[2].names)
    return SecurityView(
        running=True, pid=pid, which="the command" if main else "init", caps=caps,
        dropped=sorted(full - bnd), no_new_privs=st.get("NoNewPrivs", "?"),
        seccomp=SECCOMP_MODES.get(st.get("Seccomp", ""), st.get("Seccomp", "?")),
        seccomp_filters=st.get("Seccomp_filters", "-"), uids=st.get("Uid", ""),
        init_cap_eff=_status_fields(init).get("CapEff", "") if main else "",
        config={k: c.config[k] for k in SECURITY_KEYS if k in c.config},
        profile=_security_section(cid), plan=_seccomp_summary(c), masked=masked_paths(init),
        **_denial_feed(cid),
    )


DENIALS_SHOWN = 10


def _security_section(cid: str) -> dict:
    try:
        return dict(api.inspect(cid).get("Security") or {})
    except ERRORS:
        return {}


_PLAN_CACHE: dict[tuple[str, str], dict] = {}


def _seccomp_summary(c: state.Container) -> dict:
    """The container's resolved seccomp profile, summarised (resolved once per container config)."""
    key = (c.id, json.dumps((c.config.get("security") or {}), sort_keys=True, default=str))
    if key not in _PLAN_CACHE:
        try:
            from engine import security

            plan = security.seccomp_plan(c.config)
            _PLAN_CACHE[key] = plan.summary() if plan is not None else {}
        except Exception:  # noqa: BLE001 - a profile the engine cannot resolve: show nothing
            _PLAN_CACHE[key] = {}
    return _PLAN_CACHE[key]


class _DenialFeed:
    def __init__(self, cid: str) -> None:
        import collections

        self.tail = Tail(paths.events_stream(),
                         lambda ev: ev.get("container") == cid and ev.get("type") == "seccomp_denied")
        self.last: collections.deque[dict] = collections.deque(maxlen=DENIALS_SHOWN)
        self.count = 0

    def read(self) -> dict:
        new = self.tail.read()
        self.count += len(new)
        self.last.extend(new)
        return {"denials": list(reversed(self.last)), "denial_events": self.count}


_FEEDS: dict[str, _DenialFeed] = {}


def _denial_feed(cid: str) -> dict:
    """The container's seccomp_denied events from the host-wide stream: the whole history on the
    first call, then only what is new (one follower per container)."""
    feed = _FEEDS.get(cid)
    if feed is None:
        feed = _FEEDS[cid] = _DenialFeed(cid)
    return feed.read()


def _unescape_mount(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def parse_mountinfo(text: str) -> dict[str, str]:
    """mount point -> "source fstype options" (the last mount on a point wins: it is the one seen)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        f, g = pre.split(), post.split()
        if not sep or len(f) < 6 or len(g) < 2:
            continue
        out[_unescape_mount(f[4])] = f"{g[1]} {g[0]} {f[5]}"
    return out


def masked_paths(pid: int) -> list[MaskedPath]:
    """docker's masked and read-only paths (engine.security's lists) and whether each is a mount
    point in the container (its init's /proc/PID/mountinfo; paths are relative to its root)."""
    from engine import security

    mounts = parse_mountinfo(_read(f"/proc/{pid}/mountinfo") or "")
    out = []
    for kind, names in (("masked", security.MASKED_PATHS), ("read-only", security.READONLY_PATHS)):
        for path in names:
            out.append(MaskedPath(path, kind, path in mounts, mounts.get(path, "")))
    return out


def _main_pid(init: int) -> int | None:
    text = _read(f"/proc/{init}/task/{init}/children")
    kids = text.split() if text else []
    return int(kids[0]) if kids else None


def _last_cap() -> int:
    text = _read("/proc/sys/kernel/cap_last_cap")
    try:
        return int(text) if text else len(CAP_NAMES) - 1
    except ValueError:
        return len(CAP_NAMES) - 1


# ---- network ----------------------------------------------------------------------------------------------

@dataclass
class Iface:
    name: str
    rx_bytes: int
    rx_packets: int
    tx_bytes: int
    tx_packets: int
    addresses: list[str] = field(default_factory=list)


@dataclass
class NetworkView:
    running: bool
    mode: str = "none"
    shares_host: bool = False
    ifaces: list[Iface] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)
    ip: str = ""
    link: HostLink | None = None
    """The host side of a bridged container's link (its network's lease, checked in /sys/class/net)."""
    inside_iface: str = ""  # the container's end of the veth (the interface with its address)


@dataclass
class HostLink:
    network: str
    host_veth: str
    bridge: str
    ip: str = ""
    prefix: int | None = None
    gateway: str = ""
    mac: str = ""
    veth_exists: bool = False
    veth_state: str = ""  # /sys/class/net/VETH/operstate
    veth_master: str = ""  # the bridge it is enslaved to (/sys/class/net/VETH/master)
    bridge_exists: bool = False
    bridge_state: str = ""


def _sys_net(name: str) -> tuple[bool, str, str]:
    """(exists, operstate, master) of a host interface, from /sys/class/net."""
    if not name:
        return False, "", ""
    base = Path("/sys/class/net") / name
    if not base.exists():
        return False, "", ""
    try:
        master = os.path.basename(os.readlink(base / "master"))
    except OSError:
        master = ""
    return True, (_read(base / "operstate") or "").strip(), master


def host_link(cid: str) -> HostLink | None:
    try:
        nets = api.inspect(cid).get("NetworkSettings", {}).get("Networks", {})
    except ERRORS:
        return None
    for name, n in nets.items():
        if not n or not (n.get("HostVeth") or n.get("Bridge")):
            continue
        link = HostLink(name, n.get("HostVeth", ""), n.get("Bridge", ""), n.get("IPAddress", ""),
                        n.get("IPPrefixLen"), n.get("Gateway", ""), n.get("MacAddress", ""))
        link.veth_exists, link.veth_state, link.veth_master = _sys_net(link.host_veth)
        link.bridge_exists, link.bridge_state, _ = _sys_net(link.bridge)
        return link
    return None


def parse_net_dev(text: str) -> list[Iface]:
    out = []
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        f = rest.split()
        if len(f) >= 10:
            out.append(Iface(name.strip(), int(f[0]), int(f[1]), int(f[8]), int(f[9])))
    return out


def parse_fib_local(text: str) -> list[str]:
    """The addresses the namespace owns: /32 host LOCAL leaves of the Local table (fib_trie)."""
    out: list[str] = []
    table, last_ip = "", ""
    for line in text.splitlines():
        if line and not line[0].isspace():
            table = line.rstrip(":")
            continue
        s = line.strip()
        if s.startswith("|-- "):
            last_ip = s[4:]
        elif s == "/32 host LOCAL" and table == "Local" and last_ip not in out:
            out.append(last_ip)
    return out


def _hex_ip(h: str) -> str:
    n = int(h, 16)
    return ".".join(str(n >> s & 0xFF) for s in (0, 8, 16, 24))


def parse_routes(text: str) -> list[tuple[str, str, str, str]]:
    """(iface, destination, gateway, mask) from /proc/net/route."""
    out = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) >= 8:
            out.append((f[0], _hex_ip(f[1]), _hex_ip(f[2]), _hex_ip(f[7])))
    return out


def _ip_int(ip: str) -> int:
    a, b, c, d = (int(x) for x in ip.split("."))
    return a << 24 | b << 16 | c << 8 | d


def _iface_for(ip: str, routes: list[tuple[str, str, str, str]]) -> str:
    if ip.startswith("127."):
        return "lo"
    for iface, dest, _, mask in routes:
        if dest != "0.0.0.0" and _ip_int(ip) & _ip_int(mask) == _ip_int(dest):
            return iface
    return ""


def network_view(cid: str) -> NetworkView:
    c = _load(cid)
    pid = _init_pid(c)
    cfg = c.config if c else {}
    view = NetworkView(running=bool(pid), mode=str(cfg.get("network", "none")), ip=str(cfg.get("ip") or ""),
                       ports=[_port_text(p) for p in cfg.get("ports", [])])
    if not pid:
        return view
    view.shares_host = _ns_inode(pid, "net") == _ns_inode(host_ns_ref(), "net")
    view.ifaces = parse_net_dev(_read(f"/proc/{pid}/net/dev") or "")
    routes = parse_routes(_read(f"/proc/{pid}/net/route") or "")
    by_name = {i.name: i for i in view.ifaces}
    for ip in parse_fib_local(_read(f"/proc/{pid}/net/fib_trie") or ""):
        iface = by_name.get(_iface_for(ip, routes))
        if iface is not None:
            iface.addresses.append(ip)
    for line in (_read(f"/proc/{pid}/net/if_inet6") or "").splitlines():
        f = line.split()
        if len(f) == 6 and f[5] in by_name:
            by_name[f[5]].addresses.append(_ipv6(f[0]) + "/" + str(int(f[2], 16)))
    view.routes = [f"{d}/{m} via {g} dev {i}" if g != "0.0.0.0" else f"{d}/{m} dev {i}" for i, d, g, m in routes]
    if not view.shares_host:
        view.link = host_link(cid)
        view.inside_iface = next((i.name for i in view.ifaces if i.name != "lo" and
                                  (not view.link or not view.link.ip or
                                   any(a == view.link.ip for a in i.addresses))), "")
    return view


def _ipv6(h: str) -> str:
    import ipaddress

    return str(ipaddress.IPv6Address(bytes.fromhex(h)))


def _port_text(p: object) -> str:
    if isinstance(p, dict):
        if p.get("text"):
            return str(p["text"])
        return (f"{p.get('host_ip', '0.0.0.0')}:{p.get('host_port', '?')}->"
                f"{p.get('container_port', '?')}/{p.get('proto', p.get('protocol', 'tcp'))}")
    return str(p)


# ---- SysV IPC ---------------------------------------------------------------------------------------------

IPC_KINDS = ("shm", "sem", "msg")
_SIZE_COLUMN = {"shm": "size", "sem": "nsems", "msg": "qnum"}
_ID_COLUMN = {"shm": "shmid", "sem": "semid", "msg": "msqid"}


@dataclass
class IpcObject:
    kind: str
    key: str
    id: str
    perms: str
    size: str
    owner: str


@dataclass
class IpcView:
    running: bool
    host: list[IpcObject] = field(default_factory=list)
    container: list[IpcObject] = field(default_factory=list)
    same_namespace: bool = False
    error: str = ""


def parse_sysvipc(kind: str, text: str) -> list[IpcObject]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    header = lines[0].split()
    out = []
    for line in lines[1:]:
        row = dict(zip(header, line.split(), strict=False))
        out.append(IpcObject(kind, f"0x{int(row.get('key', '0')) & 0xFFFFFFFF:08x}", row.get(_ID_COLUMN[kind], "?"),
                             row.get("perms", "?"), row.get(_SIZE_COLUMN[kind], "?"), row.get("uid", "?")))
    return out


def host_ipc() -> list[IpcObject]:
    """This process's IPC namespace (the host's): /proc/sysvipc shows the reader's namespace."""
    out = []
    for kind in IPC_KINDS:
        out += parse_sysvipc(kind, _read(f"/proc/sysvipc/{kind}") or "")
    return out


_IPC_SCRIPT = 'for f in shm sem msg; do echo "#$f"; cat /proc/sysvipc/$f; done'


def container_ipc(pid: int) -> list[IpcObject]:
    """The container's IPC namespace, read by a short-lived `nsenter --ipc` child.

    /proc/sysvipc/* always shows the IPC namespace of the process that reads it, whichever
    procfs it is read through (/proc/PID/root/proc/sysvipc included), so the reader has to join
    the namespace with setns(2): fork+exec through subprocess, never a bare fork in this
    threaded app.
    """
    p = subprocess.run(["nsenter", "-t", str(pid), "--ipc", "--", "sh", "-c", _IPC_SCRIPT],
                       capture_output=True, text=True, timeout=5, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise OSError(p.stderr.strip() or f"nsenter exited {p.returncode}")
    out: list[IpcObject] = []
    for chunk in p.stdout.split("#")[1:]:
        kind, _, body = chunk.partition("\n")
        if kind in IPC_KINDS:
            out += parse_sysvipc(kind, body)
    return out


def ipc_view(cid: str) -> IpcView:
    pid = _init_pid(_load(cid))
    view = IpcView(running=bool(pid), host=host_ipc())
    if not pid:
        return view
    view.same_namespace = _ns_inode(pid, "ipc") == _ns_inode("self", "ipc")
    try:
        view.container = container_ipc(pid)
    except (OSError, subprocess.SubprocessError) as e:
        view.error = str(e)
    return view


IPC_PRIVATE, IPC_RMID = 0, 0


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
    libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    libc.shmat.restype = ctypes.c_void_p
    libc.shmdt.argtypes = [ctypes.c_void_p]
    libc.shmctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    return libc


_demo_segments: dict[int, int] = {}  # shmid -> address where this process attached it


def create_host_shm(size: int = 4096) -> int:
    """shmget(IPC_PRIVATE) on the host, attached here and marked for removal at once: it stays
    listed while this process holds it and the kernel frees it when the app exits, crash or not."""
    libc = _libc()
    shmid = libc.shmget(IPC_PRIVATE, size, 0o600)
    if shmid < 0:
        raise OSError(ctypes.get_errno(), "shmget: " + os.strerror(ctypes.get_errno()))
    addr = libc.shmat(shmid, None, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        e = ctypes.get_errno()
        libc.shmctl(shmid, IPC_RMID, None)
        raise OSError(e, "shmat: " + os.strerror(e))
    libc.shmctl(shmid, IPC_RMID, None)
    _demo_segments[shmid] = addr
    return shmid


def remove_host_shm() -> int:
    """Detach every demo segment (they were marked IPC_RMID, so the kernel frees them)."""
    libc = _libc()
    n = 0
    for shmid, addr in list(_demo_segments.items()):
        libc.shmdt(addr)
        del _demo_segments[shmid]
        n += 1
    return n


_SHM_CODE = ("import ctypes,os;l=ctypes.CDLL(None,use_errno=True);"
             "l.shmget.argtypes=[ctypes.c_int,ctypes.c_size_t,ctypes.c_int];"
             "i=l.shmget(0,{size},0o1600);print(i);raise SystemExit(0 if i>=0 else 1)")


def create_container_shm(cid: str, size: int = 4096) -> int:
    """shmget(IPC_PRIVATE) by a helper that joined only the container's IPC namespace (setns(2)
    through nsenter, as `labtui exec` would). The segment lives until that namespace dies."""
    pid = _init_pid(_load(cid))
    if not pid:
        raise InvalidArgument("the container is not running")
    p = subprocess.run(["nsenter", "-t", str(pid), "--ipc", "--", sys.executable, "-I", "-S", "-c",
                        _SHM_CODE.format(size=size)],
                       capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise OSError(p.stderr.strip() or f"shmget in the container failed ({p.returncode})")
    return int(p.stdout.strip())


# ---- cgroups -----------------------------------------------------------------------------------------------

class CgroupHandle:
    """The container's cgroup directories, through engine.cgroups when it is there."""

    def __init__(self, driver: object) -> None:
        self.driver = driver

    def dirs(self) -> dict[str, str]:
        try:
            found = self.driver.paths()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - a driver still being built must not break the panel
            return {}
        return {k: v for k, v in found.items() if os.path.isdir(v)}

    def exists(self) -> bool:
        return bool(self.dirs())

    def version(self) -> str:
        return str(getattr(self.driver, "version", "?"))

    def cgroup_path(self) -> str:
        """The container's path inside each hierarchy, e.g. /labtui/<id> (what its cgroup
        namespace shows as /)."""
        try:
            return str(self.driver.namespace_path())  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001
            return ""

    def usage(self) -> tuple[int, int] | None:
        """(CPU ns, memory bytes) from two files: all the dashboard needs, 5 times a second for
        every container (the full stats read a dozen files). None when the cgroup is gone."""
        if not hasattr(self, "_usage_files"):
            try:
                p = self.driver.paths()  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001
                p = {}
            if "unified" in p:
                u = p["unified"]
                self._usage_files = ((u + "/cpu.stat", "usage_usec"), (u + "/memory.current", None))
            elif "cpuacct" in p and "memory" in p:
                self._usage_files = ((p["cpuacct"] + "/cpuacct.usage", None),
                                     (p["memory"] + "/memory.usage_in_bytes", None))
            else:
                self._usage_files = None
        if not self._usage_files:
            return None
        try:
            (cpu_path, cpu_key), (mem_path, _) = self._usage_files
            cpu = _read_number(cpu_path, cpu_key)
            mem = _read_number(mem_path, None)
        except (OSError, ValueError):
            return None
        return (cpu * 1000 if cpu_key == "usage_usec" else cpu), mem

    def stats(self) -> dict:
        read_stats = getattr(_optional("engine.cgroups"), "read_stats", None)
        if read_stats is None:
            return {}
        try:
            return read_stats(self.driver)
        except Exception:  # noqa: BLE001
            return {}


def _read_number(path: str, key: str | None) -> int:
    with open(path, "rb") as f:
        data = f.read()
    if key is None:
        return int(data)
    for line in data.split(b"\n"):
        k, _, v = line.partition(b" ")
        if k.decode() == key:
            return int(v)
    raise ValueError(f"{key} not in {path}")


def cgroup_handle(c: state.Container) -> CgroupHandle | None:
    hooks = _optional("engine.hooks")
    cg = _optional("engine.cgroups")
    from engine.steps import null_recorder

    try:
        if hasattr(hooks, "cgroup_driver"):
            return CgroupHandle(hooks.cgroup_driver(c, null_recorder()))  # type: ignore[union-attr]
        if hasattr(cg, "get_driver"):
            return CgroupHandle(cg.get_driver(c.id, null_recorder()))  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001
        return None
    return None


CGROUP_FILES = (
    "cgroup.procs", "cgroup.freeze", "cgroup.events", "cpu.max", "cpu.weight", "cpu.stat", "cpu.shares",
    "cpu.cfs_quota_us", "cpu.cfs_period_us", "cpuacct.usage", "cpuset.cpus", "cpuset.mems", "memory.current",
    "memory.max", "memory.high", "memory.peak", "memory.swap.max", "memory.events", "memory.usage_in_bytes",
    "memory.limit_in_bytes", "memory.max_usage_in_bytes", "memory.failcnt", "memory.oom_control",
    "memory.memsw.limit_in_bytes", "pids.current", "pids.max", "pids.events", "io.max", "io.stat",
    "blkio.throttle.io_service_bytes_recursive", "freezer.state", "devices.list",
)


@dataclass
class CgroupView:
    available: bool
    reason: str = ""
    version: str = ""
    cgroup_path: str = ""
    dirs: dict[str, str] = field(default_factory=dict)
    files: list[tuple[str, str]] = field(default_factory=list)  # (path shown, value)
    stats: dict = field(default_factory=dict)


def _one_line(text: str, width: int = 70) -> str:
    s = "; ".join(ln.strip() for ln in text.strip().splitlines() if ln.strip())
    return s if len(s) <= width else s[: width - 1] + "…"


def cgroup_view(cid: str) -> CgroupView:
    c = _load(cid)
    if c is None:
        return CgroupView(False, "the container is gone")
    if _optional("engine.cgroups") is None:
        return CgroupView(False, "not available yet: the engine has no cgroup support")
    cg = cgroup_handle(c)
    dirs = cg.dirs() if cg else {}
    if cg is None or not dirs:
        return CgroupView(False, "no cgroup directory for this container (not running, or not created)")
    files: list[tuple[str, str]] = []
    seen: set[str] = set()
    for controller, d in sorted(dirs.items()):
        if d in seen:
            continue  # cpu and cpuacct often share one v1 directory
        seen.add(d)
        for name in CGROUP_FILES:
            if name == "cgroup.procs" and files:
                continue  # the same processes in every v1 hierarchy: show them once
            text = _read(os.path.join(d, name))
            if text is not None:
                files.append((f"{controller}: {name}" if len(dirs) > 1 else name, _one_line(text)))
    return CgroupView(True, version=cg.version(), cgroup_path=cg.cgroup_path(), dirs=dirs, files=files,
                      stats=cg.stats())


# ---- optional features: strace, attacks ------------------------------------------------------------------

@dataclass
class StraceView:
    """`strace -c`-style totals for the container (engine.strace), or why there are none."""

    available: bool
    message: str = ""
    rows: list[dict] = field(default_factory=list)


def strace_summary(cid: str) -> StraceView:
    mod = _optional("engine.strace")
    fn = getattr(mod, "summary", None) or getattr(api, "strace_summary", None)
    if fn is None:
        return StraceView(False, "not available yet: the engine does not record system calls")
    try:
        rows = fn(cid)
    except ERRORS as e:
        return StraceView(True, str(e))
    return StraceView(True, "", [r for r in rows or [] if isinstance(r, dict)])


@dataclass
class AttackInfo:
    name: str
    title: str = ""
    cve: str = ""
    technique: str = ""
    weak: str = ""
    stops_it: str = ""


def attacks() -> list[AttackInfo] | None:
    """The attack lab's catalogue (engine.attacks), or None when this build has no attack lab."""
    mod = _optional("engine.attacks")
    if mod is None:
        return None
    if hasattr(mod, "catalogue"):
        out = []
        for a in mod.catalogue():
            info = a.info() if hasattr(a, "info") else {"name": getattr(a, "name", str(a))}
            out.append(AttackInfo(str(info.get("name", "?")), str(info.get("title") or ""), str(info.get("cve") or ""),
                                  str(info.get("technique") or ""), str(info.get("weak") or ""),
                                  str(info.get("default_mitigation") or "")))
        return out
    return [AttackInfo(str(n)) for n in getattr(mod, "names", list)()]


def run_attack(name: str, profile: str) -> dict:
    """Run one attack under "weak" or "default" (real containers; takes seconds)."""
    mod = _optional("engine.attacks")
    if mod is None or not hasattr(mod, "run"):
        raise NotAvailable("the attack lab is not available yet")
    return dict(mod.run(name, profile))


def mechanisms() -> tuple[str, ...]:
    """The step mechanisms the engine knows (engine.steps.MECHANISMS)."""
    from engine import steps

    return tuple(steps.MECHANISMS)
