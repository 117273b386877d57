"""Load (issue 15): many containers and commands at once, through the real command, on the real kernel.

- 50 containers started by 50 concurrent `labtui run -d` on one user-defined network, each
  publishing a port on 127.0.0.1: every one starts, with a name, an address and a port of its
  own (read from inspect and from the kernel), each port serving its own container; all removed
  at once, nothing left.
- 200 concurrent `labtui exec` into one container, each with its own exit code and output.
- 100 idle containers held for a minute while the terminal app runs (in tmux, as a person would
  run it); it still answers a key at the end; all removed at once, nothing left.

Every wait is for a condition, with a deadline far above what the 2-core CI machine needs;
nothing is retried. Each test and the whole file print how long they took (the figures go into
the issue's closing note); pytest-timeout bounds each test.
"""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import LABTUI, labtui, lib, wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.usefixtures("clean_containers")]

TAG = f"{os.getpid() % 10000:04d}"
ID = re.compile(r"[0-9a-f]{64}")


# ------------------------------------------------------------------------------------- reporting

@pytest.fixture(scope="module", autouse=True)
def whole_file(request):
    t0 = time.monotonic()
    yield
    say(request, f"whole file: {time.monotonic() - t0:.1f} s")


def say(request, line: str) -> None:
    """A line on the terminal even under capture: the load figures belong in CI's log."""
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        print(f"\n[load] {line}", flush=True)


# -------------------------------------------------------------------------------- the commands

def concurrently(argvs: list[list[str]], timeout: float) -> list[tuple[int, str, str]]:
    """Start every command at once (each its own `labtui` process, as typed in its own shell),
    then collect (exit code, stdout, stderr) of each."""
    procs = [subprocess.Popen(LABTUI + argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for argv in argvs]
    deadline = time.monotonic() + timeout
    out = []
    try:
        for p in procs:
            o, e = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            out.append((p.returncode, o, e))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return out


def failed(results: list[tuple[int, str, str]], argvs: list[list[str]]) -> str:
    bad = [(a, r) for a, r in zip(argvs, results, strict=True) if r[0] != 0]
    return "\n".join(f"labtui {shlex.join(a)} exited {r[0]}: {r[2].strip()[-500:]}" for a, r in bad[:10])


def started(results: list[tuple[int, str, str]], argvs: list[list[str]]) -> list[str]:
    assert all(r[0] == 0 for r in results), f"{sum(r[0] != 0 for r in results)} failed:\n{failed(results, argvs)}"
    ids = [r[1].strip() for r in results]
    assert all(ID.fullmatch(i) for i in ids), ids
    assert len(set(ids)) == len(ids), "two runs printed the same ID"
    return ids


def inspect_all(ids: list[str]) -> list[dict]:
    infos = json.loads(labtui("inspect", *ids, timeout=120).stdout)
    assert [i["Id"] for i in infos] == ids
    return infos


def remove_concurrently(ids: list[str]) -> float:
    argvs = [["rm", "-f", cid] for cid in ids]
    t0 = time.monotonic()
    results = concurrently(argvs, timeout=180)
    took = time.monotonic() - t0
    assert all(r[0] == 0 for r in results), failed(results, argvs)
    return took


# ------------------------------------------------------------------------------------ the kernel

def alive(pid: int, start: str) -> bool:
    """The process is there and is the same one (its start time in /proc/PID/stat, field 22)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19] == start
    except (OSError, IndexError):
        return False


def start_time(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


def kept_processes(infos: list[dict]) -> list[tuple[int, str]]:
    """(PID, start time) of each container's supervisor and PID 1, as the kernel has them now."""
    out = []
    for i in infos:
        for pid in (i["State"]["Pid"], i["State"]["SupervisorPid"]):
            out.append((pid, start_time(pid)))
    return out


def cgroup_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split(" - ")[1].split()[0] in ("cgroup", "cgroup2")]


def leftovers(ids: list[str], names: list[str], procs: list[tuple[int, str]], links: list[str] = ()) -> list[str]:
    """Whatever of these containers is still on the machine, by the kernel and the state directory."""
    found = []
    short = {cid[:12] for cid in ids}
    full = set(ids)
    found += [f"process {pid}" for pid, start in procs if alive(pid, start)]
    for name in os.listdir("/proc"):  # any process in one of their cgroups (the sleeps, an exec)
        if name.isdigit():
            try:
                cg = Path(f"/proc/{name}/cgroup").read_text()
            except OSError:
                continue
            found += [f"process {name} in cgroup {cid[:12]}" for cid in full if cid in cg]
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {line.split()[4]}" for line in f if any(cid in line for cid in full)]
    for mnt in cgroup_mounts():
        for d, subdirs, _ in os.walk(mnt):
            found += [f"cgroup {d}/{s}" for s in subdirs if s in full]
    root = Path(os.environ["LABTUI_ROOT"])
    for d, subdirs, files in os.walk(root):
        found += [f"state {d}/{n}" for n in subdirs + files if n in full or n in short]
    found += [f"name {n}" for n in names if (lib() / "names" / n).exists()]
    found += [f"link {n}" for n in links if Path(f"/sys/class/net/{n}").exists()]
    return found


def nothing_left(ids, names, procs, links=()) -> None:
    """Nothing of theirs remains: waited for (an rm hands the deletion of the container's
    directory to the background: engine/teardown.py), then `system check` agrees."""
    try:
        wait_for(lambda: not leftovers(ids, names, procs, links), timeout=60, interval=0.2, what="nothing left")
    except AssertionError:
        raise AssertionError("left behind:\n" + "\n".join(leftovers(ids, names, procs, links)[:30])) from None
    findings = json.loads(labtui("system", "check", "--format", "json", check=False).stdout or "[]")
    ours = [f for f in findings if any(x in json.dumps(f) for x in [c[:12] for c in ids] + names)]
    assert not ours, ours


def no_crash(ids: list[str]) -> None:
    """rm -f is a kill asked for: no container of these died a crash (the app alerts on one)."""
    out = labtui("events", "--format", "json", "--filter", "type=crash").stdout
    evs = [json.loads(line) for line in out.splitlines()]
    assert not [e for e in evs if e.get("container") in set(ids)], evs[:3]


def tcp_listening(table: str, port: int, ip_hex: str | None = None) -> set[int]:
    """Socket inodes listening on port (state 0A in /proc/.../net/tcp), on ip_hex if given."""
    out = set()
    with open(table) as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            ip, p = fields[1].split(":")
            if fields[3] == "0A" and int(p, 16) == port and ip_hex in (None, ip):
                out.add(int(fields[9]))
    return out


def socket_inodes(pid: int) -> set[int]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(int(link[8:-1]))
    return out


def supervisor_sockets(pid: int) -> set[int]:
    """The socket inodes of the supervisor and every process under it."""
    import psutil

    out = set()
    for p in [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]:
        try:
            out |= socket_inodes(p)
        except OSError:
            pass
    return out


def addresses_inside(pid: int) -> list[str]:
    """The IPv4 addresses of the container's network namespace, asked of the kernel over netlink."""
    from pyroute2 import IPRoute

    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        with IPRoute(netns=fd) as ipr:
            return [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=socket.AF_INET)]
    finally:
        os.close(fd)


def free_ports(n: int) -> list[int]:
    """n TCP ports free on 127.0.0.1, below the ephemeral range (so no connect(2) elsewhere on the
    machine is handed one before the containers bind it)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randrange(10000, low)
        if port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


# ---------------------------------------------------------------------------------------- tests

@pytest.fixture
def network():
    name = f"ld{TAG}"
    labtui("network", "create", name)
    yield name
    labtui("network", "rm", name, check=False)


@pytest.mark.timeout(240)
def test_fifty_containers_started_at_once_on_one_network_each_with_a_port(request, network):
    n = 50
    ports = free_ports(n)
    argvs = [["run", "-d", "--network", network, "-p", f"127.0.0.1:{port}:80", "busybox",
              "httpd", "-f", "-p", "80", "-h", "/etc"] for port in ports]  # no --name: labtui names them
    t0 = time.monotonic()
    results = concurrently(argvs, timeout=180)
    took = time.monotonic() - t0
    ids = started(results, argvs)
    infos = inspect_all(ids)
    procs = kept_processes(infos)

    names = [i["Name"].lstrip("/") for i in infos]
    assert len(set(names)) == n and all(names), names
    assert all(i["State"]["Status"] == "running" for i in infos)
    nets = [i["NetworkSettings"]["Networks"][network] for i in infos]
    ips = [x["IPAddress"] for x in nets]
    assert len(set(ips)) == n, sorted(ips)
    veths = [x["HostVeth"] for x in nets]
    assert len(set(veths)) == n
    published = [int(i["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]) for i in infos]
    assert published == ports  # each got the port it asked for: so they are unique too

    # The kernel: each network namespace holds the address inspect gives, and no other's.
    inside = [addresses_inside(i["State"]["Pid"]) for i in infos]
    for ip, addrs in zip(ips, inside, strict=True):
        assert ip in addrs, (ip, addrs)
    kernel_ips = [a for addrs in inside for a in addrs if a != "127.0.0.1"]
    assert sorted(kernel_ips) == sorted(ips)
    # Each port is listened on, on 127.0.0.1 only, by its own container's supervisor (the
    # userspace proxy: engine/network/ports.py) or a process under it.
    for info, port in zip(infos, ports, strict=True):
        listening = tcp_listening("/proc/net/tcp", port)
        assert listening and listening == tcp_listening("/proc/net/tcp", port, "0100007F"), port
        assert listening <= supervisor_sockets(info["State"]["SupervisorPid"]), (port, info["Name"])
    # Each port reaches its own container: once each httpd listens in its namespace, one GET
    # of /etc/hostname through the port returns that container's host name.
    wait_for(lambda: all(tcp_listening(f"/proc/{i['State']['Pid']}/net/tcp6", 80)  # busybox binds [::]:80
                         | tcp_listening(f"/proc/{i['State']['Pid']}/net/tcp", 80) for i in infos),
             timeout=60, interval=0.2, what="every httpd to listen")
    for info, port in zip(infos, ports, strict=True):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=30) as r:
            assert r.read().decode().strip() == info["Config"]["Hostname"], port

    took_rm = remove_concurrently(ids)
    nothing_left(ids, names, procs, veths)
    no_crash(ids)
    net = json.loads(labtui("network", "inspect", network).stdout)[0]
    assert net["containers"] == {}  # every address lease went back
    labtui("network", "rm", network)
    assert not Path(f"/sys/class/net/{net['bridge']}").exists()
    say(request, f"{n} concurrent `run -d` on network {network} with -p: {took:.1f} s; "
                 f"{n} concurrent `rm -f`: {took_rm:.1f} s")


@pytest.mark.timeout(240)
def test_two_hundred_concurrent_execs_each_get_their_own_exit_code_and_output(request):
    cid = labtui("run", "-d", "--name", f"ld{TAG}-exec", "busybox", "sleep", "100000").stdout.strip()
    info = inspect_all([cid])[0]
    procs = kept_processes([info])
    n = 200
    argvs = [["exec", cid, "sh", "-c", f"echo out-{k}; echo err-{k} >&2; exit {k % 256}"] for k in range(n)]
    t0 = time.monotonic()
    results = concurrently(argvs, timeout=180)
    took = time.monotonic() - t0
    wrong = [(k, r) for k, r in enumerate(results) if r != (k % 256, f"out-{k}\n", f"err-{k}\n")]
    assert not wrong, f"{len(wrong)} of {n} wrong, e.g. {wrong[:5]}"
    # Nothing of theirs stays in the container: its PID namespace holds PID 1 and the sleep.
    pidns = os.readlink(f"/proc/{info['State']['Pid']}/ns/pid")

    def in_container() -> list[int]:
        pids = []
        for name in os.listdir("/proc"):
            try:
                if name.isdigit() and os.readlink(f"/proc/{name}/ns/pid") == pidns:
                    pids.append(int(name))
            except OSError:
                pass
        return pids

    wait_for(lambda: len(in_container()) == 2, timeout=30, what="only PID 1 and the sleep in the container")
    labtui("rm", "-f", cid)
    nothing_left([cid], [f"ld{TAG}-exec"], procs)
    say(request, f"{n} concurrent `exec` into one container: {took:.1f} s")


# ----------------------------------------------------------------------------- the app in tmux

class App:
    """The terminal app, `labtui` with no arguments through the same command as every other
    call here, in a private tmux server (its own socket) at 120x40."""

    def __init__(self) -> None:
        self.socket = f"labtui-load-{os.getpid()}"

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args], capture_output=True,
                              text=True, check=check, timeout=30)

    def start(self) -> None:
        env = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in
                       ("LABTUI_ROOT", "LABTUI_CGROUP_PARENT", "LABTUI_DEFAULT_BRIDGE") if k in os.environ)
        cmd = f"env {env} {shlex.join(LABTUI)}; echo \"[labtui exited $?]\"; sleep 600"
        self.tmux("new-session", "-d", "-s", "app", "-x", "120", "-y", "40", cmd)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "app", check=False).stdout

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "app", *keys)

    def shows(self, pattern: str, timeout: float = 60) -> re.Match:
        try:
            return wait_for(lambda: re.search(pattern, self.screen()), timeout=timeout, interval=0.2,
                            what=f"{pattern!r} on the app's screen")
        except AssertionError:
            raise AssertionError(f"{pattern!r} never appeared on the screen:\n{self.screen()}") from None

    def gone(self, text: str, timeout: float = 60) -> None:
        wait_for(lambda: text not in self.screen(), timeout=timeout, interval=0.2, what=f"{text!r} to go")

    def pid(self) -> int:
        """The app's process: the pane's shell's child (the command, whatever exec'd it)."""
        import psutil

        shell = int(self.tmux("display-message", "-p", "-t", "app", "#{pane_pid}").stdout)
        children = psutil.Process(shell).children()
        assert len(children) == 1, children
        return children[0].pid

    def kill(self) -> None:
        self.tmux("kill-server", check=False)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def counts_shown(app: App) -> tuple[int, int]:
    """The dashboard's "containers R running / N"."""
    m = app.shows(r"containers (\d+) running / (\d+)")
    return int(m.group(1)), int(m.group(2))


@pytest.fixture
def app():
    a = App()
    a.start()
    try:
        yield a
    finally:
        a.kill()


@pytest.mark.timeout(300)
def test_a_hundred_idle_containers_held_a_minute_with_the_app_open(request, app):
    n, hold = 100, 60.0
    app.shows(r"containers \d+ running")
    app_pid = app.pid()
    run0, all0 = counts_shown(app)
    argvs = [["run", "-d", "--name", f"ld{TAG}-idle{k}", "busybox", "sleep", "100000"] for k in range(n)]
    t0 = time.monotonic()
    results = concurrently(argvs, timeout=240)
    took = time.monotonic() - t0
    ids = started(results, argvs)
    infos = inspect_all(ids)
    procs = kept_processes(infos)
    names = [a[3] for a in argvs]
    assert [i["Name"].lstrip("/") for i in infos] == names
    app.shows(rf"containers {run0 + n} running / {all0 + n}\b", timeout=120)

    # The minute: every container and the app stay up (looked at every few seconds).
    cpu0, t_hold = cpu_seconds(app_pid), time.monotonic()
    while (left := t_hold + hold - time.monotonic()) > 0:
        time.sleep(min(5.0, left))
        dead = [pid for pid, start in procs if not alive(pid, start)]
        assert not dead, f"{len(dead)} of the idle containers' processes died: {dead[:5]}"
        assert psutil_alive(app_pid), "the app exited:\n" + app.screen()
    app_cpu = (cpu_seconds(app_pid) - cpu0) / (time.monotonic() - t_hold)
    kept_mb = sum(pss_kb(pid) for pid, _ in procs) / 1024  # the supervisors and PIDs 1 (bench/bench_idle.py)
    assert counts_shown(app) == (run0 + n, all0 + n)

    # Still answering: the help opens on `?` and closes on Escape.
    t_key = time.monotonic()
    app.keys("?")
    app.shows("Everywhere")
    answered = time.monotonic() - t_key
    app.keys("Escape")
    app.gone("Everywhere")

    took_rm = remove_concurrently(ids)
    app.shows(rf"containers {run0} running / {all0}\b", timeout=120)
    nothing_left(ids, names, procs)
    no_crash(ids)
    assert psutil_alive(app_pid)
    app.keys("q")
    app.shows(r"\[labtui exited 0\]")
    say(request, f"{n} concurrent `run -d` (idle): {took:.1f} s; held {hold:.0f} s with the app open, "
                 f"the {n} supervisors and PIDs 1 then {kept_mb:.1f} MB PSS in all "
                 f"(the app used {app_cpu:.0%} of a CPU; `?` answered in {answered:.2f} s); "
                 f"{n} concurrent `rm -f`: {took_rm:.1f} s")


def pss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))


def psutil_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
