"""The engine's facade: one function per lifecycle verb, used by the CLI and the terminal app."""

from __future__ import annotations

import json
import os
import select
import signal
import time
from collections.abc import Iterator

from engine import events, paths, prefork, state
from engine.errors import Conflict, EngineError, InvalidArgument, NotFound
from engine.spec import RunOptions
from engine.state import Container


def require_root() -> None:
    if os.geteuid() != 0:
        raise EngineError("labtui must run as root: try sudo labtui")


def on_startup() -> None:
    """Once per boot, bring back containers whose restart policy says so (docker's daemon start)."""
    from engine import restart

    restart.boot_sweep()


# ---- create --------------------------------------------------------------------------------------

def create(opts: RunOptions) -> Container:
    """Validate everything, then make the container's records and directories (nothing is
    left behind if any step fails)."""
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
    img = images.resolve(opts.image)
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
    if c.state.get("manual_stop") or c.state.get("kill_requested"):
        state.update_state(c.id, manual_stop=None, kill_requested=None)
    status_r, sup_pid = spawn_supervisor(c.id, client, winsize, c)
    msg = _read_status(status_r, c)
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


# Both are set through engine.prefork, the one hook of a process that imported the engine ahead of
# time (labtui's helper); kept as names of the facade. FORK_CLOSE_FDS is prefork's very list.
FORK_CLOSE_FDS: list[int] = prefork.fork_close_fds()
SUPERVISOR_SPAWNER = None  # read no more: engine.prefork.set_supervisor_spawner()


def spawn_supervisor(cid: str, client, winsize, container: Container | None = None) -> tuple[int, int]:
    """Start the container's supervisor in its own session; returns (status fd, its pid).

    Forking without exec is the fast path (no interpreter start-up) and is safe only when the
    caller has a single thread; the terminal app has several, so it gets fork+exec.
    """
    import sys

    # A process that never imported threading has no threads to worry about (and need not pay
    # for the import).
    threading = sys.modules.get("threading")
    r, w = os.pipe2(os.O_CLOEXEC)
    spawner = prefork.supervisor_spawner()
    pid = spawner(cid, w, client, winsize) if spawner is not None else None
    if pid:
        pass  # a process that was waiting for this took it over (labtui/launcher/helper.py's spare)
    elif threading is None or threading.active_count() == 1:
        pid = os.fork()
        if pid == 0:
            code = 125
            try:
                os.close(r)
                for fd in prefork.fork_close_fds():
                    os.close(fd)
                from engine import supervisor

                supervisor.become_supervisor()
                code = supervisor.run(cid, w, client, winsize, container)
            finally:
                os._exit(code)
    else:
        import subprocess

        args = [sys.executable, "-m", "engine.supervisor", cid, str(w)]
        fds = [w]
        if client is not None:
            args.append(str(client.fileno()))
            fds.append(client.fileno())
        elif winsize:
            args.append("-")
        if winsize:
            args += [str(winsize[0]), str(winsize[1])]
        pid = subprocess.Popen(args, pass_fds=fds, start_new_session=True,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL).pid
        _reap_later(pid)
    os.close(w)
    return r, pid


def _reap_later(pid: int) -> None:
    import threading

    def reap() -> None:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass

    threading.Thread(target=reap, daemon=True).start()


def _read_status(fd: int, c: Container) -> dict:
    buf = b""
    try:
        while b"\n" not in buf:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
    finally:
        os.close(fd)
    if not buf.strip():
        raise EngineError(f"the supervisor of {c.name} exited during start; see {c.dir}/supervisor.log")
    return json.loads(buf.split(b"\n")[0])


# ---- signals, stop, kill -------------------------------------------------------------------------

SIGNAL_ALIASES = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM}


def parse_signal(s: str) -> int:
    s = s.strip().upper()
    if s.isdigit():
        n = int(s)
        if n in signal.Signals._value2member_map_:
            return n
    else:
        name = s if s.startswith("SIG") else "SIG" + s
        try:
            return int(signal.Signals[name])
        except KeyError:
            pass
    raise InvalidArgument(f"invalid signal '{s}'")


def send_signal(c: Container, sig: int, pid: int | None = None) -> None:
    """Signal a recorded PID through a pidfd (pidfd_send_signal(2)): once the pidfd is open the
    number cannot be recycled under us, closing the race a plain kill(2) has."""
    from engine.steps import container_recorder

    target = pid or c.state.get("pid")
    if not target or not c.init_alive():
        raise Conflict(f"container {c.name} is not running")
    rec = container_recorder(c.id)
    name = signal.Signals(sig).name
    with rec.step("signal", "pidfd_send_signal", target=f"pid {target}", value=name,
                  shell=f"kill -{name[3:]} {target}"):
        fd = os.pidfd_open(target)
        try:
            signal.pidfd_send_signal(fd, sig)
        finally:
            os.close(fd)


def wait_pid_exit(pid: int, timeout: float | None) -> bool:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        r, _, _ = select.select([fd], [], [], timeout)
        return bool(r)
    finally:
        os.close(fd)


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
            _term_then_kill(c, timeout)
        c = wait_recorded(c)
        sup = c.state.get("supervisor_pid")
        if not c.supervisor_alive() or wait_pid_exit(sup, 2):
            break
    return state.load(c.id)


def _term_then_kill(c: Container, timeout: float) -> None:
    pid = c.state["pid"]
    try:
        send_signal(c, signal.SIGTERM)
    except Conflict:
        return
    if not wait_pid_exit(pid, timeout):
        try:
            send_signal(c, signal.SIGKILL)
        except Conflict:
            pass
        wait_pid_exit(pid, 10)


def wait_recorded(c: Container, timeout: float = 5) -> Container:
    """After the init died, give its supervisor a moment to record the exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c = state.load(c.id)
        except NotFound:
            return c
        if c.state.get("finished_at") or not c.supervisor_alive():
            return c
        time.sleep(0.01)
    return c


def main_pid(c: Container) -> int | None:
    """The command's host PID: the child of our init."""
    pid = c.state.get("pid")
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
        return int(kids[0]) if kids else None
    except (OSError, TypeError):
        return None


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


# ---- remove --------------------------------------------------------------------------------------

def remove(ref: str, force: bool = False, from_supervisor: bool = False,
           deferred: list | None = None) -> None:
    """rm: kill if asked, then take down everything the container owns. With deferred (a list),
    the container's directory is renamed out of the way (it is gone for every reader), and its
    deletion (and a veth's) appended there as callables for the caller to run after it has let
    its waiting clients go."""
    c = state.resolve(ref)
    st = c.status
    if st in (state.RUNNING, state.PAUSED, state.RESTARTING) and not force:
        raise Conflict(f"cannot remove running container {c.name}: stop it first or use rm -f")
    with state.locked(c.id):
        c.reload()
        if c.state.get("removing") == "supervisor" and from_supervisor:
            pass  # marked with the exit record already (Supervisor.finish): one write fewer
        elif c.state.get("removing"):
            return
        else:
            c.state["removing"] = "supervisor" if from_supervisor else True
            state.write_json_atomic(c.dir / "state.json", c.state)
    if c.init_alive():
        _thaw_quietly(c)
        try:
            send_signal(c, signal.SIGKILL)
        except Conflict:
            pass
        wait_pid_exit(c.state["pid"], 10)
    if not from_supervisor and c.supervisor_alive():
        # Let the supervisor write its last records, then make sure it is gone.
        if not wait_pid_exit(c.state["supervisor_pid"], 5) and c.supervisor_alive():
            os.kill(c.state["supervisor_pid"], signal.SIGKILL)
            wait_pid_exit(c.state["supervisor_pid"], 5)
    teardown(c, deferred)
    events.emit("removed", c.id, c.name)


def _thaw_quietly(c: Container) -> None:
    try:
        from engine import hooks

        hooks.thaw(c)
    except Exception:
        pass


def teardown(c: Container, deferred: list | None = None) -> None:
    """Remove everything a container owns: cgroups, links, upper/work dirs, runtime files, name."""
    import shutil

    from engine import hooks
    from engine.steps import container_recorder

    hooks.cleanup(container_recorder(c.id), c, deferred)
    shutil.rmtree(c.run_dir, ignore_errors=True)
    try:
        os.unlink(paths.attach_socket(c.id))
    except FileNotFoundError:
        pass
    # One rename takes the directory away at once; deleting its files (on ext4, each waits for
    # the block bitmap the journal is writing) can then happen off the caller's critical path.
    trash = paths.trash_dir() / c.id
    try:
        trash.parent.mkdir(exist_ok=True)
        os.rename(c.dir, trash)
    except OSError:
        trash = c.dir
    state.release_name(c.name, c.id)
    if deferred is not None:
        deferred.append(lambda: shutil.rmtree(trash, ignore_errors=True))
    else:
        shutil.rmtree(trash, ignore_errors=True)


def empty_trash() -> None:
    """Directories of removed containers whose deletion was cut short (a killed supervisor)."""
    import shutil

    d = paths.trash_dir()
    for name in os.listdir(d) if d.is_dir() else []:
        shutil.rmtree(d / name, ignore_errors=True)


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


def system_prune() -> tuple[list[str], list[str]]:
    """Remove every stopped container, then every network no container uses."""
    empty_trash()
    removed = []
    for c in state.all_containers():
        if c.status in (state.EXITED, state.CREATED, state.DEAD):
            try:
                remove(c.id)
                removed.append(c.id)
            except (NotFound, Conflict):
                continue
    nets: list[str] = []
    if (paths.lib_dir() / "networks").exists():
        from engine import network

        nets = network.prune(host_recorder(), network_users)
    from engine import cgroups

    cgroups.remove_empty_parents(host_recorder())  # kept between containers: gone once unused
    return removed, nets


def read_logs(ref: str, tail: int | None = None) -> list[dict]:
    c = state.resolve(ref)
    from engine import jsonl

    recs = jsonl.read_all(c.dir / "container.log")
    if tail is not None:
        recs = recs[-tail:] if tail > 0 else []
    return recs


def follow_logs(ref: str, tail: int | None = None) -> Iterator[dict]:
    from engine import jsonl

    c = state.resolve(ref)
    path = c.dir / "container.log"
    existing = jsonl.read_all(path)
    start_from = existing[-tail:] if tail is not None and tail > 0 else ([] if tail == 0 else existing)
    yield from start_from
    size = os.path.getsize(path) if path.exists() else 0

    def stopped() -> bool:
        try:
            cur = state.load(c.id)
        except NotFound:
            return True
        return cur.status not in (state.RUNNING, state.PAUSED, state.RESTARTING) and not cur.supervisor_alive()

    with open(path, "a+b") as f:
        f.seek(size)
        buf = b""
        idle_checks = 0
        while True:
            chunk = f.read()
            if chunk:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
                continue
            idle_checks += 1
            if idle_checks % 5 == 0 and stopped():
                chunk = f.read()
                if not chunk:
                    return
                buf += chunk
                continue
            time.sleep(0.05)


def top(ref: str) -> list[dict]:
    """Processes in the container's PID namespace, as seen from the host and from inside."""
    c = state.resolve(ref)
    if c.status not in (state.RUNNING, state.PAUSED):
        raise Conflict(f"container {c.name} is not running")
    init_pid = c.state["pid"]
    target = os.stat(f"/proc/{init_pid}/ns/pid").st_ino
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}/ns/pid").st_ino != target:
                continue
            out.append(_proc_info(int(name)))
        except OSError:
            continue
    out.sort(key=lambda p: p["pid"])
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


# ---- the step gate -------------------------------------------------------------------------------

def gate_release(ref: str, count: int = 1) -> None:
    """Let `count` gated steps go (writes to the gate FIFO the supervisor reads from)."""
    c = state.resolve(ref)
    fifo = c.run_dir / "gate"
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, OSError) as e:
        raise Conflict(f"container {c.name} has no step gate waiting ({e.strerror})") from None
    try:
        os.write(fd, b"n" * count)
    finally:
        os.close(fd)


def gate_pending(ref: str) -> dict | None:
    c = state.resolve(ref)
    try:
        with open(c.run_dir / "gate.json") as f:
            info = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    return info.get("step") if info.get("waiting") else None


# ---- resources: pause, update, stats, host info ---------------------------------------------------

def _driver(c: Container):
    from engine import hooks
    from engine.steps import container_recorder

    return hooks.cgroup_driver(c, container_recorder(c.id))


def pause(ref: str) -> Container:
    """Freeze every process through the freezer; returns once the kernel reports FROZEN."""
    c = state.resolve(ref)
    st = c.status
    if st == state.PAUSED:
        raise Conflict(f"container {c.name} is already paused")
    if not state.can_pause(st):
        raise Conflict(f"container {c.name} is not running")
    _driver(c).freeze()
    state.update_state(c.id, paused=True)
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
    from engine import hooks
    from engine.cgroups import read_stats
    from engine.steps import null_recorder

    out = []
    for c in containers if containers is not None else list_containers(False):
        if c.status not in (state.RUNNING, state.PAUSED):
            continue
        cg = hooks.cgroup_driver(c, null_recorder())
        st = read_stats(cg)
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


def restore(ref: str, name: str = "checkpoint") -> str:
    from engine import checkpoint as cp

    cp.restore(ref, name)
    return f"restored from {name}"


def cgroup_paths(ref: str) -> dict[str, str]:
    """controller -> the container's cgroup directory (for readers such as the app)."""
    return _driver(state.resolve(ref)).paths()
