"""The engine's facade: one function per lifecycle verb, used by the CLI and the terminal app.

No module below it imports it (the attack lab, engine/attacks/, is a client above it, like the
CLI): the verbs are built from the modules below, and the facade re-exports the names its callers
use from there:

    engine/spawn.py      starting a supervisor, reading its first report
    engine/process.py    signalling and waiting (pidfds), the main PID
    engine/teardown.py   rm: everything a container owns, taken down
    engine/logs.py       the json-file log, read
    engine/gate.py       the step gate, released
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time

from engine import boot, events, paths, state
from engine.errors import Conflict, EngineError, InvalidArgument, NotFound
from engine.gate import gate_pending, gate_release, gate_waiting
from engine.logs import follow_logs, read_logs
from engine.process import (
    SIGNAL_ALIASES,
    main_pid,
    parse_signal,
    send_signal,
    term_then_kill,
    wait_pid_exit,
    wait_recorded,
)
from engine.spawn import FORK_CLOSE_FDS, read_status, spawn_supervisor
from engine.spec import RunOptions
from engine.state import Container
from engine.teardown import empty_trash, remove, teardown

__all__ = [
    # the verbs and helpers defined here
    "cgroup_paths", "checkpoint", "create", "host_info", "host_recorder", "inspect", "kill",
    "list_containers", "network_settings", "network_users", "on_startup", "pause", "require_root", "restart",
    "restore", "start", "stats_snapshot", "stop", "system_check", "system_prune", "top", "unpause", "update",
    "validate_extra", "validate_network", "wait", "write_etc_files",
    # re-exported from the modules below
    "FORK_CLOSE_FDS", "SIGNAL_ALIASES", "empty_trash", "follow_logs", "gate_pending", "gate_release", "gate_waiting",
    "main_pid", "parse_signal", "read_logs", "read_status", "remove", "restore_container", "send_signal",
    "spawn_supervisor",
    "teardown", "wait_pid_exit", "wait_recorded",
]


def require_root() -> None:
    if os.geteuid() != 0:
        raise EngineError("labtui must run as root: try sudo labtui")


def on_startup() -> None:
    """Once per boot, what docker's daemon does when it starts: record how the containers a
    reboot ended ended, and start again those whose restart policy says so (engine/boot.py).
    One open and read of a stamp for every other command."""
    boot.on_startup(start)


# ---- create --------------------------------------------------------------------------------------

def create(opts: RunOptions, *, out=None) -> Container:
    """Validate everything, then make the container's records and directories (nothing is
    left behind if any step fails). An image not in the store is pulled first (opts.pull, docker's
    --pull policy), its progress written to out (a text stream; None: silently)."""
    from engine import images, spec

    name = spec.validate_name(opts.name) if opts.name else None
    volumes = [spec.parse_volume(v) for v in opts.volumes]
    env = spec.parse_env(opts.env)
    tmpfs = spec.validate_tmpfs(opts.tmpfs)
    hostname = spec.validate_hostname(opts.hostname) if opts.hostname else None
    workdir = opts.workdir
    if workdir is not None and not workdir.startswith("/"):
        raise InvalidArgument(f"invalid working directory '{workdir}': it must be absolute")
    extra = validate_extra(opts.extra)
    paths.ensure_dirs()
    img = images.check_layers(_image_for(opts, out))
    argv = spec.resolve_argv(img.config, opts.command, opts.entrypoint)
    cid = os.urandom(32).hex()
    if name is None:
        name = _free_name()
    state.claim_name(name, cid)
    d = paths.container_dir(cid)
    try:
        d.mkdir(parents=True)
        for sub in ("upper", "work", "merged"):
            (d / sub).mkdir()
        for v in volumes:
            if not os.path.exists(v.host):
                os.makedirs(v.host, exist_ok=True)  # docker creates a missing host directory
        config = {
            "id": cid, "name": name, "created": state.now_iso(),
            "image": img.ref, "image_id": img.id, "layers": [str(p) for p in img.layer_paths()],
            "argv": argv, "env": spec.merge_env(img.config.get("Env") or [], env, opts.tty),
            "workdir": workdir or img.config.get("WorkingDir") or "/",
            "hostname": hostname or cid[:12],
            "volumes": [v.to_json() for v in volumes], "tmpfs": tmpfs, "read_only": opts.read_only,
            "tty": opts.tty, "interactive": opts.interactive, "autoremove": opts.autoremove,
            "gate": opts.gate, "network": extra.pop("network", "none"), "cgroupns": True,
        }
        config.update(extra)
        write_etc_files(d, config)
        if config["network"] not in ("none", "host"):
            _lease_address(config)
        state.write_json_atomic(d / "state.json", {})
        state.write_json_atomic(d / "config.json", config)  # last: its presence means "exists"
    except BaseException:
        if extra.get("network") not in (None, "none", "host"):
            from engine import network

            network.cleanup_container(cid)
        import shutil

        shutil.rmtree(d, ignore_errors=True)
        state.release_name(name, cid)
        raise
    events.emit("created", cid, name, image=img.ref)
    # What load() would read back (the same JSON round trip), without reading it back.
    return state.Container(cid, json.loads(json.dumps(config, default=str)), {})


def _image_for(opts: RunOptions, out):  # -> images.Image
    """The image by name: one JSON read in the usual case; the pull machinery only when needed."""
    from engine import images

    if opts.pull == "missing" and not opts.platform:
        try:
            return images.resolve(opts.image)
        except NotFound:
            pass
    from engine.images import pull

    return pull.ensure(opts.image, opts.pull, opts.platform, out=out,
                       rec=host_recorder())


def validate_extra(extra: dict) -> dict:
    """Options owned by other mechanisms (limits, network, security), validated before anything
    of the container exists."""
    out = {k: v for k, v in extra.items() if v not in (None, [], "")}
    validate_network(out)
    from engine import hooks

    hooks.validate(out)
    return out


def host_recorder():
    """Steps that belong to no container (a bridge made for a network) go to the host stream."""
    from engine.steps import FileSink, Recorder

    return Recorder(None, FileSink(None))


def validate_network(extra: dict) -> None:
    net = extra.get("network") or "none"
    extra["network"] = net
    ports = extra.get("ports") or []
    if net in ("none", "host"):
        if ports:
            raise InvalidArgument(f"publishing ports needs a bridge network, not --network {net}")
        if extra.get("ip") or extra.get("aliases"):
            raise InvalidArgument(f"--ip and --network-alias need a bridge network, not --network {net}")
        return
    from engine import network

    if net == "bridge":
        network.ensure_default_network(host_recorder())
    else:
        network.inspect_network(net)  # NotFound: "network x not found"
    specs = network.parse_ports(ports)
    others = {c.name: [network.PortSpec.from_dict(p) for p in c.config.get("ports", [])]
              for c in state.all_containers()}
    network.check_ports(specs, others)
    extra["ports"] = [dict(p.to_dict(), text=str(p)) for p in specs]


def network_users(name: str) -> list[str]:
    return [c.name for c in state.all_containers() if c.config.get("network") == name]


def _free_name() -> str:
    from engine import spec

    for _ in range(50):
        n = spec.random_name()
        if not (state.names_dir() / n).is_symlink():
            return n
    return "c_" + os.urandom(4).hex()


def _lease_address(config: dict) -> None:
    """The address is leased at create and kept until rm, so it survives restarts (IPAM)."""
    from engine import network

    cid = config["id"]
    config["ip"] = network.allocate(config["network"], cid, config.get("ip"), name=config["name"],
                                    hostname=config["hostname"], aliases=config.get("aliases", []))
    network.write_in_place(network.hosts_path(cid), network.render_hosts(cid, config["hostname"], []))


def write_etc_files(d, config: dict) -> None:
    """/etc/hostname, /etc/hosts, /etc/resolv.conf for this container (bind-mounted in)."""
    h = config["hostname"]
    (d / "hostname").write_text(h + "\n")
    (d / "hosts").write_text(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        f"127.0.1.1\t{h}\n"
    )
    try:
        with open("/etc/resolv.conf") as f:
            host_lines = f.read().splitlines()
    except OSError:
        host_lines = []
    # As docker: nameservers on the host's loopback are unreachable from a new network namespace.
    lines = [ln for ln in host_lines if not (ln.startswith("nameserver") and
                                            (" 127." in ln or " ::1" in ln))]
    (d / "resolv.conf").write_text("\n".join(lines) + "\n")


# ---- start ---------------------------------------------------------------------------------------

def start(ref: str | Container, client=None, winsize: tuple[int, int] | None = None) -> Container:
    """Start a created or exited container (a reference, or the record create() just returned);
    client is a connected socket to attach (run)."""
    c = ref if isinstance(ref, Container) else state.resolve(ref)
    st = c.status
    if st == state.RUNNING:
        return c  # docker: starting a running container is a no-op
    if not state.can_start(st):
        raise Conflict(f"cannot start container {c.name}: it is {st}")
    lock = _claim_start(c)
    if lock is None:
        return state.load(c.id)  # started by another command meanwhile: docker's no-op
    try:
        status_r, sup_pid = spawn_supervisor(c.id, client, winsize, c)
        msg = read_status(status_r, c)
    finally:
        os.close(lock)  # a supervisor forked from here keeps holding it
    if msg.get("t") == "error":
        err = EngineError(msg.get("message", "container failed to start"), exit_code=int(msg.get("exit_code", 125)))
        err.supervisor_pid = sup_pid  # type: ignore[attr-defined]
        raise err
    try:
        c = state.load(c.id)
    except NotFound:
        pass  # a short `run --rm` can be over and removed already; the record we had will do
    c.supervisor_pid = sup_pid  # type: ignore[attr-defined]
    return c


def _claim_start(c: Container) -> int | None:
    """One supervisor per container at a time, held by a lock (state.start_lock): this command
    takes it shared, the supervisor forked from it inherits it (a spare supervisor takes its own:
    labtui/launcher/spare.py), and it is let go when the last of them ends. A start takes it
    exclusively first, under the container's lock, so it waits while another command is starting
    the container or the last run's supervisor is still ending (up to 5 s; a start of a container
    that came up meanwhile is docker's no-op: None). Without it, a `start` killed after forking
    its supervisor left the container "created" until set-up was done, and a second `start`
    forked another supervisor and init (issue 15's chaos test). Returns the lock's descriptor,
    for the caller to close once the supervisor reported."""
    lock_path = state.start_lock(c.id)
    started_before = lock_path.exists()  # not a fresh container: it may have leftovers (below)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + 5
        while True:
            with state.locked(c.id):
                c.reload()
                st = c.status
                if st == state.RUNNING:
                    os.close(fd)
                    return None
                if not state.can_start(st):
                    raise Conflict(f"cannot start container {c.name}: it is {st}")
                try:
                    if c.supervisor_alive():
                        raise BlockingIOError  # the last run's, not done yet
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    pass
                else:
                    fcntl.flock(fd, fcntl.LOCK_SH)  # the container's lock keeps others out meanwhile
                    if c.state.get("manual_stop") or c.state.get("kill_requested"):
                        state.update_state_locked(c.id, manual_stop=None, kill_requested=None)
                    break
            if time.monotonic() > deadline:
                raise Conflict(f"cannot start container {c.name}: another labtui process is starting it, "
                               "or its supervisor is still ending its last run")
            time.sleep(0.02)
        # Nothing supervises it now: cgroups still there are a killed supervisor's leftovers (a
        # start cut short whose processes run unrecorded, or a half-made cpuset that a new
        # run could not join): taken down before the new run makes its own.
        if started_before:
            cg = _driver(c)
            if cg.exists():
                cg.destroy()
        return fd
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise


# ---- signals, stop, kill -------------------------------------------------------------------------

def stop(ref: str, timeout: float = 10) -> Container:
    """SIGTERM to PID 1 (which forwards it), wait `timeout` seconds, then SIGKILL (docker stop)."""
    c = state.resolve(ref)
    st = c.status
    if st == state.PAUSED:
        raise Conflict(f"container {c.name} is paused: unpause it before stopping it")
    if st not in (state.RUNNING, state.RESTARTING) and not c.supervisor_alive():
        return c
    # Marked first: a supervisor between two runs of a restart policy sees it and stops there.
    state.update_state(c.id, manual_stop=True)
    for _ in range(3):  # a restart may have begun just before the mark was seen
        c = state.load(c.id)
        if c.init_alive():
            term_then_kill(c, timeout)
        c = wait_recorded(c)
        sup = c.state.get("supervisor_pid")
        if not c.supervisor_alive() or wait_pid_exit(sup, 2):
            break
    return state.load(c.id)


def kill(ref: str, sig: str = "KILL") -> Container:
    from engine.init import FORWARDED

    signum = parse_signal(sig)
    c = state.resolve(ref)
    if c.status not in (state.RUNNING, state.RESTARTING, state.PAUSED):
        raise Conflict(f"cannot kill container {c.name}: it is not running")
    if signum in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        # Remember that a person asked: the timeline must not call this death a crash.
        state.update_state(c.id, kill_requested=signal.Signals(signum).name)
    if signum == signal.SIGKILL or signum in FORWARDED:
        send_signal(c, signum)  # PID 1 forwards these to the command (tini)
    else:
        mp = main_pid(c)
        send_signal(c, signum, mp)
    if signum == signal.SIGKILL:
        wait_pid_exit(c.state["pid"], 10)
        return wait_recorded(c)
    return c


def restart(ref: str, timeout: float = 10) -> Container:
    c = stop(ref, timeout)
    return start(c.id)


# ---- wait, list, inspect, logs, top ------------------------------------------------------------------

def wait(ref: str) -> int:
    c = state.resolve(ref)
    while True:
        st = c.status
        if st in (state.EXITED, state.CREATED) and not c.supervisor_alive():
            code = c.exit_code
            return code if code is not None else 255
        pid = c.state.get("pid") if st in (state.RUNNING, state.PAUSED) else c.state.get("supervisor_pid")
        if pid:
            wait_pid_exit(pid, 1)
        else:
            time.sleep(0.05)
        try:
            c = state.load(c.id)
        except NotFound:
            return _last_exit_code(c.id)


def _last_exit_code(cid: str) -> int:
    for ev in reversed(events.read_events()):
        if ev.get("container") == cid and ev.get("type") == "died":
            return int(ev.get("exit_code", 255))
    return 255


def list_containers(all_: bool = False) -> list[Container]:
    out = state.all_containers()
    if not all_:
        out = [c for c in out if c.status in (state.RUNNING, state.PAUSED, state.RESTARTING)]
    return out


def inspect(ref: str) -> dict:
    from engine import namespaces

    c = state.resolve(ref)
    if c.damaged:  # its records are stand-ins (engine/state.py): say so rather than show them
        raise EngineError(f"container {c.name} is damaged: {c.damaged}; remove it with `labtui rm -f {c.name}`")
    cfg, st = c.config, c.state
    status = c.status
    running = status in (state.RUNNING, state.PAUSED)
    pid = st.get("pid") if running else 0
    info = {
        "Id": c.id,
        "Name": "/" + c.name,
        "Created": cfg["created"],
        "Path": cfg["argv"][0],
        "Args": cfg["argv"][1:],
        "State": {
            "Status": status, "Running": running, "Paused": status == state.PAUSED,
            "Restarting": status == state.RESTARTING, "Pid": pid or 0,
            "ExitCode": st.get("exit_code") if st.get("exit_code") is not None else 0,
            "Error": st.get("error") or "", "StartedAt": st.get("started_at") or "",
            "FinishedAt": st.get("finished_at") or "",
            "SupervisorPid": st.get("supervisor_pid") if c.supervisor_alive() else 0,
            "OOMKilled": bool(st.get("oom_killed")), "RestartCount": st.get("restart_count", 0),
        },
        "RestartCount": st.get("restart_count", 0),
        "Image": cfg["image"],
        "ImageId": cfg["image_id"],
        "LogPath": str(c.dir / "container.log"),
        "StepsPath": str(c.dir / "steps.jsonl"),
        "HostnamePath": str(c.dir / "hostname"),
        "HostsPath": str(c.dir / "hosts"),
        "ResolvConfPath": str(c.dir / "resolv.conf"),
        "Config": {
            "Hostname": cfg["hostname"], "Env": cfg["env"], "Cmd": cfg["argv"], "WorkingDir": cfg["workdir"],
            "Tty": cfg["tty"], "OpenStdin": cfg["interactive"], "Image": cfg["image"],
        },
        "HostConfig": {
            "Binds": [f"{v['host']}:{v['container']}{':ro' if v['readonly'] else ''}" for v in cfg["volumes"]],
            "ReadonlyRootfs": cfg["read_only"], "Tmpfs": cfg["tmpfs"], "AutoRemove": cfg["autoremove"],
            "NetworkMode": cfg.get("network", "none"),
        },
        "GraphDriver": {"Name": "overlay", "Data": {
            "LowerDir": ":".join(reversed(cfg["layers"])), "UpperDir": str(c.dir / "upper"),
            "WorkDir": str(c.dir / "work"), "MergedDir": str(c.dir / "merged")}},
        "Mounts": [{"Type": "bind", "Source": v["host"], "Destination": v["container"], "RW": not v["readonly"]}
                   for v in cfg["volumes"]],
        "Namespaces": namespaces.ns_inodes(pid) if pid else {},
        "NetworkSettings": network_settings(c),
        "Timeline": events.timeline(c.id),
    }
    if cfg.get("health"):
        info["State"]["Health"] = st.get("health") or {"Status": "starting", "FailingStreak": 0, "Log": []}
        info["Config"]["Healthcheck"] = cfg["health"]
    info["HostConfig"]["RestartPolicy"] = {"Name": (cfg.get("restart") or {}).get("name", "no"),
                                           "MaximumRetryCount": (cfg.get("restart") or {}).get("max", 0)}
    from engine import hooks

    hooks.inspect_extra(c, info)
    return info


def network_settings(c: Container) -> dict:
    cfg = c.config
    ports = {f"{p['container_port']}/{p['proto']}": [{"HostIp": p["host_ip"], "HostPort": str(p["host_port"])}]
             for p in cfg.get("ports", [])}
    out: dict = {"Networks": {}, "Ports": ports}
    net = cfg.get("network", "none")
    if net in ("none", "host"):
        out["Networks"][net] = {}
        return out
    from engine import network

    try:
        n = network.inspect_network(net)
    except NotFound:
        return out
    lease = n.get("leases", {}).get(c.id, {})
    out["Networks"][net] = {
        "IPAddress": lease.get("ip", ""), "IPPrefixLen": int(n["subnet"].split("/")[1]),
        "Gateway": n["gateway"], "MacAddress": lease.get("mac", ""), "Aliases": lease.get("aliases", []),
        "HostVeth": lease.get("host_veth", ""), "Bridge": n["bridge"],
    }
    return out


def system_prune(report: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Remove every stopped container, every leak `system check` finds that it can fix (one
    line each appended to report), then every network no container uses (engine/doctor/)."""
    from engine import doctor

    return doctor.prune(remove, network_users, host_recorder(), [] if report is None else report)


def system_check() -> list:
    """What of labtui's is leaked or inconsistent: engine.doctor.Finding objects (kind, object,
    why, fixable, to_dict()); empty when everything is clean."""
    from engine import doctor

    return doctor.check()


def top(ref: str) -> list[dict]:
    """Processes in the container's PID namespace, as seen from the host and from inside."""
    from engine import procfs

    c = state.resolve(ref)
    if c.status not in (state.RUNNING, state.PAUSED):
        raise Conflict(f"container {c.name} is not running")
    out = []
    for pid in procfs.pidns_members(c.state["pid"]):
        try:
            out.append(_proc_info(pid))
        except OSError:
            continue
    return out


def _proc_info(pid: int) -> dict:
    from engine import procfs

    status = procfs.status(pid)
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    nspid = status.get("NSpid", str(pid)).split()
    return {
        "pid": pid, "ppid": int(status.get("PPid", 0)), "pid_inside": int(nspid[-1]),
        "uid": int(status.get("Uid", "0").split()[0]), "state": status.get("State", "?")[:1],
        "cmd": cmd or f"[{status.get('Name', '?')}]",
    }


# ---- resources: pause, update, stats, host info ---------------------------------------------------

def _driver(c: Container):
    from engine import cgroups
    from engine.steps import container_recorder

    return cgroups.for_container(c, container_recorder(c.id))


def pause(ref: str) -> Container:
    """Freeze every process through the freezer; returns once the kernel reports FROZEN."""
    c = state.resolve(ref)
    st = c.status
    if st == state.PAUSED:
        raise Conflict(f"container {c.name} is already paused")
    if not state.can_pause(st):
        raise Conflict(f"container {c.name} is not running")
    # Recorded first: the status is "paused" only while the record says so AND the freezer
    # reports FROZEN, so a pause killed between the two is never a frozen container that `ps`
    # calls running (and `stop` would wait on in vain).
    state.update_state(c.id, paused=True)
    try:
        _driver(c).freeze()
    except BaseException:
        try:
            _driver(c).thaw()  # a freeze that failed half-way (or was interrupted) is undone
        except Exception:
            pass
        state.update_state(c.id, paused=None)
        raise
    events.emit("paused", c.id, c.name)
    return state.load(c.id)


def unpause(ref: str) -> Container:
    c = state.resolve(ref)
    if c.status != state.PAUSED:
        raise Conflict(f"container {c.name} is not paused")
    _driver(c).thaw()
    state.update_state(c.id, paused=None)
    events.emit("unpaused", c.id, c.name)
    return state.load(c.id)


def update(ref: str, limits: dict) -> tuple[Container, list[str]]:
    """docker update: change limits live (each write a recorded step) and keep them for restarts."""
    from engine.cgroups import limits as lim

    c = state.resolve(ref)
    new = lim.Limits.from_dict(limits)
    if new.is_empty():
        raise InvalidArgument("nothing to update: give at least one limit")
    merged = lim.validate(lim.Limits.from_dict(c.config.get("limits") or {}).merged(new))
    warnings: list[str] = []
    if c.status in (state.RUNNING, state.PAUSED):
        warnings = _driver(c).update(new)
    with state.locked(c.id):
        cfg = state.read_json(c.dir / "config.json")
        cfg["limits"] = merged.to_dict()
        state.write_json_atomic(c.dir / "config.json", cfg)
    events.emit("updated", c.id, c.name, limits=new.to_dict())
    return state.load(c.id), warnings


def stats_snapshot(containers: list[Container] | None = None) -> list[dict]:
    """One reading of every running container's cgroup counters (no CPU % yet: that needs two)."""
    from engine import cgroups
    from engine.steps import null_recorder

    out = []
    for c in containers if containers is not None else list_containers(False):
        if c.status not in (state.RUNNING, state.PAUSED):
            continue
        cg = cgroups.for_container(c, null_recorder())
        st = cgroups.read_stats(cg)
        st.update(id=c.id, name=c.name, t=time.monotonic())
        out.append(st)
    return out


def host_info() -> dict:
    from engine import cgroups

    layout = cgroups.detect()
    return {
        "kernel": os.uname().release, "cgroup": layout.to_dict(),
        "lib_dir": str(paths.lib_dir()), "run_dir": str(paths.run_dir()),
        "containers": len(state.all_ids()),
    }


# ---- checkpoint / restore (CRIU) -------------------------------------------------------------------

def checkpoint(ref: str, name: str = "checkpoint", leave_running: bool = False) -> str:
    from engine import checkpoint as cp

    return "checkpointed as " + cp.checkpoint(ref, name, leave_running)["name"]


def restore_container(ref: str | Container, name: str = "checkpoint", client=None, winsize=None) -> Container:
    """Start the container's supervisor in restore mode and wait until the restored tree runs
    (engine/checkpoint: the checks and the mark here, criu restore in the supervisor)."""
    from engine import checkpoint as cp

    c = cp.prepare_restore(ref, name)
    try:
        status_r, sup_pid = spawn_supervisor(c.id, client, winsize)
        msg = read_status(status_r, c)
    finally:
        cp.end_restore(c)
    if msg.get("t") == "error":
        raise EngineError(msg.get("message", "restore failed"), exit_code=int(msg.get("exit_code", 125)))
    c = state.load(c.id)
    c.supervisor_pid = sup_pid  # type: ignore[attr-defined]
    return c


def restore(ref: str, name: str = "checkpoint") -> str:
    restore_container(ref, name)
    return f"restored from {name}"


def cgroup_paths(ref: str) -> dict[str, str]:
    """controller -> the container's cgroup directory (for readers such as the app)."""
    return _driver(state.resolve(ref)).paths()
