"""The runtimes `bench/run` measures side by side: labtui and its peers, each on the same busybox
root filesystem (labtui's own busybox layer, built from Debian's busybox-static: no registry).

Each peer is installed from Debian's packages on first use (Peer.packages), set up in the bench's
private places (its own state directories, cgroup parent, bridge names, and for Docker its own
daemon on a private socket), probed with one `true` container, and torn down at the end. A peer
that cannot run on this host says why (Unsupported), and the results file keeps the reason.

Operations a peer may not have raise Unsupported with the reason, recorded in that case's
"skipped". Names: every container is called PREFIX-..., so cleanup finds only the bench's own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
LABTUI_M = [PY, "-m", "labtui.cli"]  # the ordinary way: set-up and cleanup (not timed)
LAUNCH_PY = [PY, "-SI", os.path.join(REPO, "labtui", "launcher", "launch.py")]
SLEEP = ["sleep", "600"]


class Unsupported(Exception):
    """This runtime cannot do this here; the message says why."""


class RunError(Exception):
    """A command failed: str() is the command, its status and stderr; .text is stderr alone."""

    def __init__(self, msg: str, text: str = "") -> None:
        super().__init__(msg)
        self.text = text or msg


def sh(cmd: list[str], env: dict | None = None, check: bool = True, timeout: float = 300,
       input: bytes | None = None, cwd: str | None = REPO) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, env=env, capture_output=True, timeout=timeout, input=input, cwd=cwd,
                       stdin=None if input is not None else subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise RunError(f"{' '.join(cmd[:8])} exited {p.returncode}: {p.stderr.decode(errors='replace').strip()[-600:]}")
    return p


def timed(cmd: list[str], env: dict | None = None, timeout: float = 300) -> float:
    """Wall time of one command in ms; RunError when it fails."""
    # stderr to a file, not a pipe: a detached container (runc run -d) inherits it and would hold a
    # pipe open long after the command returned.
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                           timeout=timeout, cwd=REPO)
        dt = (time.perf_counter() - t0) * 1000
        if p.returncode != 0:
            err.seek(0)
            text = err.read().decode(errors="replace").strip()[-600:]
            raise RunError(f"{' '.join(cmd[:8])} exited {p.returncode}: {text}", f"{cmd[0]}: {text}")
    return dt


def pss_kb(pid: int) -> int:
    """Proportional set size of one process (kB): its private pages plus its share of shared ones."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise RunError(f"no Pss line for pid {pid}")


def ppid_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def comm_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def installed(pkg: str) -> bool:
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
    return p.returncode == 0 and "install ok installed" in p.stdout


def apt_install(pkgs: list[str], log) -> str | None:
    """Install the missing Debian packages (no recommends: nothing that starts a service or adds a
    bridge). Returns the error text when apt-get fails."""
    need = [p for p in pkgs if not installed(p)]
    if not need:
        return None
    log(f"installing from Debian's packages: {' '.join(need)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    p = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *need], env=env,
                       capture_output=True, text=True)
    if p.returncode != 0:  # the lists may be missing or old on a fresh machine
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        p = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *need], env=env,
                           capture_output=True, text=True)
    if p.returncode != 0:
        return f"apt-get install {' '.join(need)} failed: {p.stderr.strip()[-300:]}"
    return None


def rmdir_cgroups(rel: str) -> None:
    """Remove an (empty) cgroup directory tree under every hierarchy, deepest first."""
    for top in _hierarchies():
        base = os.path.join(top, rel.strip("/"))
        if not os.path.isdir(base):
            continue
        for dirpath, _, _ in sorted(os.walk(base), key=lambda t: -t[0].count("/")):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


def _hierarchies() -> list[str]:
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                fstype = parts[parts.index("-") + 1]
                if fstype in ("cgroup", "cgroup2"):
                    out.append(parts[4])
    except OSError:
        pass
    return out


class Ctx:
    """What the peers share: the work directory, the busybox root filesystem (a directory, a plain
    tarball of it and a docker-save archive of it), and the bench's names."""

    def __init__(self, work: str, log) -> None:
        self.work = work
        self.log = log
        self.prefix = f"ltb{os.getpid() % 100000}"
        self.cgroup_parent = os.environ.get("LABTUI_CGROUP_PARENT") or "labtui-bench"
        self.bridge = os.environ.get("LABTUI_DEFAULT_BRIDGE") or "ltbench0"
        self.rootfs = ""        # a directory: the busybox layer as labtui stores it
        self.rootfs_tar = ""    # a plain tarball of it (docker import, podman import)
        self.archive = ""       # a docker-save archive of it (labtui image import, docker/podman load)
        self.image = "localhost/labtui-bench/busybox:latest"

    def bridge_name(self, suffix: str) -> str:
        return (self.bridge[:12] + "-" + suffix)[:15]


class Peer:
    name = ""
    packages: tuple[str, ...] = ()
    what = ""  # one line: what this peer is, as run here

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.ready = False

    # -- lifecycle --
    def install(self) -> str | None:
        return apt_install(list(self.packages), self.ctx.log) if self.packages else None

    def setup(self) -> None:
        """Make the image, start what must run; raise Unsupported when this host cannot run it."""

    def probe(self) -> None:
        """One `true` container: raises Unsupported with the runtime's own words when it fails."""
        try:
            cmd, env = self.true_cmd("none")
            timed(cmd, env, timeout=120)
        except RunError as e:
            raise Unsupported(e.text) from e

    def teardown(self) -> None:
        pass

    def version(self) -> str:
        return ""

    # -- operations (Unsupported when the runtime has none) --
    def true_cmd(self, network: str) -> tuple[list[str], dict | None]:
        raise Unsupported("no such operation")

    def start_cmd(self, name: str) -> tuple[list[str], dict | None]:
        raise Unsupported("no detached start")

    def start(self, name: str) -> float:
        cmd, env = self.start_cmd(name)
        return timed(cmd, env)

    def exec_cmd(self, name: str) -> tuple[list[str], dict | None]:
        raise Unsupported("no exec into a running container")

    def kept(self, names: list[str]) -> dict[str, list[tuple[int, str]]]:
        """The processes the runtime keeps for each container, workload excluded: (pid, role)."""
        raise Unsupported("no detached containers to measure")

    def daemons(self) -> list[tuple[int, str]]:
        """Processes shared by all containers (Docker's daemons); not counted per container."""
        return []

    def stats_cmd(self) -> tuple[list[str], dict | None]:
        raise Unsupported("no command that reads every container's stats at once")

    def import_cmd(self, ref: str) -> tuple[list[str], dict | None]:
        raise Unsupported("no image import")

    def unimport(self, ref: str) -> None:
        pass

    def remove(self, names: list[str]) -> None:
        pass


# ---- labtui -------------------------------------------------------------------------------------


class Labtui(Peer):
    name = "labtui"
    what = "labtui's command (labtui/launcher/launcher.c from this tree) through its warm helper"

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(ctx)
        self.root = os.path.join(ctx.work, "lt")  # short: socket paths under it must fit in 108 bytes
        self.env = dict(os.environ, LABTUI_ROOT=self.root, LABTUI_CGROUP_PARENT=ctx.cgroup_parent,
                        LABTUI_DEFAULT_BRIDGE=ctx.bridge)
        self.env.pop("LABTUI_HELPER", None)
        self.cold_env = dict(self.env, LABTUI_HELPER="0")
        self.cmd = LAUNCH_PY

    def install(self) -> str | None:
        return apt_install(["busybox-static"], self.ctx.log)

    def setup(self) -> None:
        sh([PY, "-m", "compileall", "-q", "engine", "labtui", "lessons"])
        # As scripts/install leaves it: the engine's C PID 1 and idle supervisor (engine/native).
        native = os.path.join(REPO, "scripts", "build-native")
        if os.path.exists(native) and subprocess.run([native], capture_output=True).returncode != 0:
            self.what += "; engine/native not built (no C compiler): PID 1 and the supervisor in Python"
        built = os.path.join(self.ctx.work, "labtui")
        build = subprocess.run([os.path.join(REPO, "scripts", "build-launcher"), built], capture_output=True)
        if build.returncode == 0:
            self.cmd = [built]
        else:
            self.what = "labtui's Python launcher (no C compiler here) through its warm helper"
        timed(self.cmd + ["run", "--rm", "busybox", "true"], self.cold_env)  # builds the busybox image
        timed(self.cmd + ["run", "--rm", "busybox", "true"], self.env)       # starts the warm helper
        time.sleep(1.5)  # ... which imports everything in the background
        layers = os.path.join(self.root, "lib", "layers")
        self.ctx.rootfs = os.path.join(layers, sorted(os.listdir(layers))[0])

    def version(self) -> str:
        from bench.results import labtui_commit

        return labtui_commit(REPO)["commit"][:12]

    def true_cmd(self, network: str, first: bool = False):
        env = self.cold_env if first else self.env
        return self.cmd + ["run", "--rm", "--network", network, "busybox", "true"], env

    def start_cmd(self, name: str):
        return self.cmd + ["run", "-d", "--name", name, "busybox", *SLEEP], self.env

    def exec_cmd(self, name: str):
        return self.cmd + ["exec", name, "true"], self.env

    def inspect(self, names: list[str]) -> list[dict]:
        out: list[dict] = []
        for i in range(0, len(names), 25):
            out += json.loads(sh(LABTUI_M + ["inspect", *names[i:i + 25]], self.env).stdout)
        return out

    def kept(self, names):
        from bench.bench_idle import labtui_kept  # the supervisor and PID 1, found by the kernel's tree

        return labtui_kept(self.inspect(names))

    def stats_cmd(self):
        return self.cmd + ["stats", "--no-stream"], self.env

    def import_cmd(self, ref: str):
        return self.cmd + ["image", "import", self.ctx.archive, ref], self.env

    def unimport(self, ref: str) -> None:
        sh(LABTUI_M + ["image", "rm", ref], self.env, check=False)

    def remove(self, names: list[str]) -> None:
        for i in range(0, len(names), 25):
            sh(LABTUI_M + ["rm", "-f", *names[i:i + 25]], self.env, check=False)

    def teardown(self) -> None:
        from bench.bench_run import STOP_HELPER

        sh(STOP_HELPER, self.env, check=False)
        left = sh(LABTUI_M + ["ps", "-aq"], self.env, check=False).stdout.decode().split()
        if left:
            self.remove(left)
        code = ("from engine import network, cgroups; from engine.steps import null_recorder\n"
                "try: network.remove_network('bridge', lambda n: [], allow_default=True)\n"
                "except Exception: pass\n"
                "cgroups.remove_empty_parents(null_recorder())")
        sh([PY, "-c", code], self.env, check=False)
        sh(LABTUI_M + ["system", "prune"], self.env, check=False)


# ---- runc ---------------------------------------------------------------------------------------


class Runc(Peer):
    name = "runc"
    packages = ("runc",)
    binary = "runc"
    what = "runc run on an OCI bundle (the spec `runc spec` writes: no seccomp filter), busybox rootfs"

    def __init__(self, ctx: Ctx, seccomp: bool = False) -> None:
        super().__init__(ctx)
        self.seccomp = seccomp
        if seccomp:
            self.name = f"{self.binary}+seccomp"
            self.what = f"{self.binary} run with labtui's default seccomp filter (docker's profile) in the spec"
        self.state = os.path.join(ctx.work, f"{self.name}-state")
        self.bundles = os.path.join(ctx.work, f"{self.name}-bundles")
        self.spec: dict = {}
        self.ids = iter(range(1 << 30))
        self.running: dict[str, int] = {}

    def setup(self) -> None:
        if shutil.which(self.binary) is None:
            raise Unsupported(f"{self.binary} is not installed")
        os.makedirs(self.bundles, exist_ok=True)
        tmp = os.path.join(self.ctx.work, f"{self.name}-spec")
        os.makedirs(tmp, exist_ok=True)
        sh([self.binary, "spec"], cwd=tmp)
        with open(os.path.join(tmp, "config.json")) as f:
            self.spec = json.load(f)
        self.spec["process"]["terminal"] = False
        self.spec["root"] = {"path": self.ctx.rootfs, "readonly": True}
        if self.seccomp:
            from bench.bench_run import oci_seccomp

            self.spec["linux"]["seccomp"] = oci_seccomp()

    def version(self) -> str:
        return sh([self.binary, "--version"], check=False).stdout.decode().split("\n")[0].split()[-1]

    def _bundle(self, cid: str, args: list[str]) -> str:
        bundle = os.path.join(self.bundles, cid)
        os.makedirs(bundle, exist_ok=True)
        spec = json.loads(json.dumps(self.spec))
        spec["process"]["args"] = args
        spec["linux"]["cgroupsPath"] = f"/{self.ctx.cgroup_parent}-{self.binary}/{cid}"
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(spec, f)
        return bundle

    def true_cmd(self, network: str):
        if network != "none":
            raise Unsupported(f"{self.binary} sets up no network of its own (a CNI plugin or a hook would)")
        cid = f"{self.ctx.prefix}-{self.name.replace('+', '-')}-{next(self.ids)}"
        return [self.binary, "--root", self.state, "run", "--bundle", self._bundle(cid, ["true"]), cid], None

    def start_cmd(self, name: str):
        return [self.binary, "--root", self.state, "run", "-d", "--bundle", self._bundle(name, SLEEP), name], None

    def exec_cmd(self, name: str):
        return [self.binary, "--root", self.state, "exec", name, "true"], None

    def kept(self, names):
        return {n: [] for n in names}

    def import_cmd(self, ref: str):
        dest = os.path.join(self.ctx.work, "untar", ref.replace("/", "_").replace(":", "_"))
        os.makedirs(dest, exist_ok=True)
        return ["tar", "-C", dest, "-xf", self.ctx.rootfs_tar], None

    def unimport(self, ref: str) -> None:
        shutil.rmtree(os.path.join(self.ctx.work, "untar"), ignore_errors=True)

    def remove(self, names: list[str]) -> None:
        for n in names:
            sh([self.binary, "--root", self.state, "delete", "-f", n], check=False)
            shutil.rmtree(os.path.join(self.bundles, n), ignore_errors=True)

    def teardown(self) -> None:
        if os.path.isdir(self.state):
            self.remove(os.listdir(self.state))
        rmdir_cgroups(f"{self.ctx.cgroup_parent}-{self.binary}")


class Crun(Runc):
    """Checked only: crun refuses cgroup-hybrid hosts (it says so at the first container)."""

    name = "crun"
    packages = ("crun",)
    binary = "crun"
    what = "crun run on the same OCI bundle as runc"


# ---- bwrap --------------------------------------------------------------------------------------


class Bwrap(Peer):
    name = "bwrap"
    packages = ("bubblewrap",)
    what = "bwrap --unshare-all (every namespace, loopback only) with the busybox rootfs bound as /"

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(ctx)
        self.procs: dict[str, subprocess.Popen] = {}

    def setup(self) -> None:
        if shutil.which("bwrap") is None:
            raise Unsupported("bwrap is not installed")

    def version(self) -> str:
        return sh(["bwrap", "--version"], check=False).stdout.decode().split()[-1]

    def _cmd(self, args: list[str], die_with_parent: bool = True) -> list[str]:
        # --die-with-parent is PR_SET_PDEATHSIG: it fires when the *thread* that started bwrap ends,
        # so the fleet's sandboxes (started from a thread pool) go without it; remove() kills them.
        die = ["--die-with-parent"] if die_with_parent else []
        return ["bwrap", "--unshare-all", *die, "--bind", self.ctx.rootfs, "/", "--proc", "/proc",
                "--dev", "/dev", "--tmpfs", "/tmp", *args]

    def true_cmd(self, network: str):
        if network != "none":
            raise Unsupported("bwrap gives a new network namespace with loopback only: no bridge")
        return self._cmd(["true"]), None

    def start(self, name: str) -> float:
        t0 = time.perf_counter()
        p = subprocess.Popen(self._cmd(SLEEP, die_with_parent=False), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs[name] = p
        deadline = time.monotonic() + 10  # started = the sandbox's command is running
        while time.monotonic() < deadline:
            inner = children_of(p.pid)
            if inner and any(comm_of(c) == "sleep" for i in inner for c in children_of(i)):
                return (time.perf_counter() - t0) * 1000
            if p.poll() is not None:
                raise RunError(f"bwrap exited {p.returncode}")
            time.sleep(0.002)
        raise RunError("bwrap's sandbox did not start within 10 s")

    def kept(self, names):
        out = {}
        for n in names:
            p = self.procs[n]
            out[n] = [(p.pid, "outside")] + [(c, "PID 1 inside") for c in children_of(p.pid)]
        return out

    def remove(self, names: list[str]) -> None:
        for n in names:
            p = self.procs.pop(n, None)
            if p is not None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()

    def teardown(self) -> None:
        self.remove(list(self.procs))


# ---- podman -------------------------------------------------------------------------------------


class Podman(Peer):
    name = "podman"
    packages = ("podman", "netavark", "catatonit", "runc")
    what = ("podman --runtime runc (its default, crun, refuses this host), cgroupfs, private storage and network "
            "config, --init (catatonit as PID 1, like labtui's and docker's)")
    ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(ctx)
        d = os.path.join(ctx.work, "podman")
        self.g = ["podman", "--root", f"{d}/root", "--runroot", f"{d}/run", "--tmpdir", f"{d}/tmp",
                  "--network-config-dir", f"{d}/net", "--cgroup-manager", "cgroupfs", "--runtime", "runc",
                  "--events-backend", "file"]
        self.net = f"{ctx.prefix}-net"
        self.run = ["run", *self.ULIMITS, "--cgroup-parent", f"/{ctx.cgroup_parent}-podman"]
        self.bridge_if = ""

    def setup(self) -> None:
        if shutil.which("podman") is None:
            raise Unsupported("podman is not installed")
        sh(self.g + ["import", self.ctx.rootfs_tar, self.ctx.image])
        # --internal: no masquerade (NAT) rules on the host; --disable-dns: no aardvark-dns.
        sh(self.g + ["network", "create", "--internal", "--disable-dns", self.net])
        net = json.loads(sh(self.g + ["network", "inspect", self.net]).stdout)[0]
        self.bridge_if = net.get("network_interface", "")

    def version(self) -> str:
        return sh(["podman", "--version"], check=False).stdout.decode().split()[-1]

    def true_cmd(self, network: str):
        net = "none" if network == "none" else self.net
        return self.g + [*self.run, "--rm", "--network", net, self.ctx.image, "true"], None

    def start_cmd(self, name: str):
        return self.g + [*self.run, "-d", "--init", "--network", "none", "--name", name, self.ctx.image, *SLEEP], None

    def exec_cmd(self, name: str):
        return self.g + ["exec", name, "true"], None

    def kept(self, names):
        out = {}
        for i in range(0, len(names), 25):
            lines = sh(self.g + ["inspect", "--format", "{{.Name}} {{.State.ConmonPid}} {{.State.Pid}}",
                                 *names[i:i + 25]]).stdout.decode().split("\n")
            for line in filter(None, lines):
                n, conmon, pid = line.split()
                out[n.lstrip("/")] = [(int(conmon), "conmon"), (int(pid), "PID 1, --init")]
        return out

    def stats_cmd(self):
        return self.g + ["stats", "--no-stream", "--no-reset", "--format", "{{.ID}} {{.CPUPerc}} {{.MemUsage}}"], None

    def import_cmd(self, ref: str):
        return self.g + ["load", "-q", "-i", self.ctx.archive], None

    def unimport(self, ref: str) -> None:
        sh(self.g + ["rmi", "-f", "localhost/labtui-bench/import:latest"], check=False)

    def remove(self, names: list[str]) -> None:
        for i in range(0, len(names), 25):
            sh(self.g + ["rm", "-f", "-i", "-t", "0", *names[i:i + 25]], check=False)

    def teardown(self) -> None:
        if shutil.which("podman") is None:
            return
        left = sh(self.g + ["ps", "-aq"], check=False).stdout.decode().split()
        if left:
            sh(self.g + ["rm", "-f", "-t", "0", *left], check=False)
        sh(self.g + ["network", "rm", "-f", self.net], check=False)
        sh(self.g + ["system", "reset", "-f"], check=False)
        rmdir_cgroups(f"{self.ctx.cgroup_parent}-podman")


# ---- docker -------------------------------------------------------------------------------------


class Docker(Peer):
    name = "docker"
    packages = ("docker.io",)
    what = ("Debian's docker.io: a dockerd the bench starts on a private socket, data-root and exec-root "
            "(--iptables=false --ip-masq=false --bridge=none: no NAT rules, no docker0), --init")

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(ctx)
        self.dir = os.path.join(ctx.work, "docker")
        self.sock = os.path.join(self.dir, "docker.sock")
        self.d = ["/usr/bin/docker", "-H", f"unix://{self.sock}"]
        self.daemon: subprocess.Popen | None = None
        self.net = f"{ctx.prefix}-net"
        self.run = ["run"]

    def setup(self) -> None:
        if not os.path.exists("/usr/sbin/dockerd") or not os.path.exists("/usr/bin/docker"):
            raise Unsupported("docker.io is not installed")
        os.makedirs(self.dir, exist_ok=True)
        self.log = open(os.path.join(self.dir, "dockerd.log"), "wb")  # noqa: SIM115 - closed in teardown
        self.daemon = subprocess.Popen(
            ["/usr/sbin/dockerd", "--host", f"unix://{self.sock}", "--data-root", f"{self.dir}/data",
             "--exec-root", f"{self.dir}/exec", "--pidfile", f"{self.dir}/docker.pid",
             "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--bridge=none",
             "--cgroup-parent", f"{self.ctx.cgroup_parent}-docker",
             "--containerd-namespace", f"{self.ctx.prefix}", "--containerd-plugins-namespace",
             f"{self.ctx.prefix}-plugins"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while sh(self.d + ["version"], check=False).returncode != 0:
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                with open(os.path.join(self.dir, "dockerd.log"), errors="replace") as f:
                    tail = f.read()[-400:]
                raise Unsupported(f"dockerd did not start: {tail}")
            time.sleep(0.2)
        sh(self.d + ["import", self.ctx.rootfs_tar, self.ctx.image])
        sh(self.d + ["network", "create", "--internal", "-o",
                     f"com.docker.network.bridge.name={self.ctx.bridge_name('d')}", self.net])

    def version(self) -> str:
        return sh(self.d + ["version", "--format", "{{.Server.Version}}"], check=False).stdout.decode().strip()

    def true_cmd(self, network: str):
        net = "none" if network == "none" else self.net
        return self.d + ["run", "--rm", "--network", net, self.ctx.image, "true"], None

    def start_cmd(self, name: str):
        return self.d + ["run", "-d", "--init", "--network", "none", "--name", name, self.ctx.image, *SLEEP], None

    def exec_cmd(self, name: str):
        return self.d + ["exec", name, "true"], None

    def kept(self, names):
        out = {}
        for i in range(0, len(names), 25):
            lines = sh(self.d + ["inspect", "--format", "{{.Name}} {{.State.Pid}}", *names[i:i + 25]]).stdout
            for line in filter(None, lines.decode().split("\n")):
                n, pid = line.split()
                init = int(pid)
                out[n.lstrip("/")] = [(ppid_of(init), "shim"), (init, "PID 1, --init")]
        return out

    def daemons(self):
        if self.daemon is None:
            return []
        return [(self.daemon.pid, "dockerd")] + [(c, comm_of(c)) for c in children_of(self.daemon.pid)
                                                 if comm_of(c) == "containerd"]

    def stats_cmd(self):
        return self.d + ["stats", "--no-stream", "--format", "{{.ID}} {{.CPUPerc}} {{.MemUsage}}"], None

    def import_cmd(self, ref: str):
        return self.d + ["load", "-q", "-i", self.ctx.archive], None

    def unimport(self, ref: str) -> None:
        sh(self.d + ["rmi", "-f", "localhost/labtui-bench/import:latest"], check=False)

    def remove(self, names: list[str]) -> None:
        for i in range(0, len(names), 25):
            sh(self.d + ["rm", "-f", *names[i:i + 25]], check=False)

    def teardown(self) -> None:
        if self.daemon is None:
            return
        if self.daemon.poll() is None:
            left = sh(self.d + ["ps", "-aq"], check=False).stdout.decode().split()
            if left:
                sh(self.d + ["rm", "-f", *left], check=False)
            sh(self.d + ["network", "rm", self.net], check=False)
            self.daemon.terminate()
            try:
                self.daemon.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.daemon.pid, signal.SIGKILL)
                self.daemon.wait()
        self.log.close()
        # Whatever dockerd left mounted under its private roots (normally nothing).
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f]
        for m in sorted((m for m in mounts if m.startswith(self.dir + "/")), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        rmdir_cgroups(f"{self.ctx.cgroup_parent}-docker")


# ---- lxc ----------------------------------------------------------------------------------------


class Lxc(Peer):
    name = "lxc"
    packages = ("lxc", "lxc-templates")
    what = ("Debian's lxc: a busybox container (lxc-create -t busybox) in a private lxcpath, no apparmor profile, "
            "lxc-execute for one command, lxc-start -d for a running one")

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(ctx)
        self.path = os.path.join(ctx.work, "lxc")
        self.base = f"{ctx.prefix}-base"
        self.base_config = ""
        self.bridge_made = False
        self.made: set[str] = set()

    def setup(self) -> None:
        if shutil.which("lxc-create") is None:
            raise Unsupported("lxc is not installed")
        os.makedirs(self.path, exist_ok=True)
        conf = os.path.join(self.ctx.work, "lxc-default.conf")
        with open(conf, "w") as f:  # not /etc/lxc/default.conf: that one wants lxc-net's lxcbr0 (and its NAT)
            f.write("lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n")
        sh(["lxc-create", "-P", self.path, "-n", self.base, "-f", conf, "-t", "busybox"])
        with open(os.path.join(self.path, self.base, "config")) as f:
            self.base_config = f.read()
        br = self.ctx.bridge_name("x")
        sh(["ip", "link", "add", br, "type", "bridge"])
        self.bridge_made = True
        sh(["ip", "link", "set", br, "up"])

    def version(self) -> str:
        return sh(["lxc-create", "--version"], check=False).stdout.decode().strip()

    def _container(self, name: str, network: str) -> str:
        """A container sharing the base's root filesystem (lxc-copy would copy it for each)."""
        if name not in self.made:
            d = os.path.join(self.path, name)
            os.makedirs(d, exist_ok=True)
            conf = self.base_config.replace(f'lxc.uts.name = "{self.base}"', f'lxc.uts.name = "{name}"')
            conf += f"\nlxc.cgroup.dir = {self.ctx.cgroup_parent}-lxc/{name}\n"
            if network == "bridge":
                conf = conf.replace("lxc.net.0.type = empty", f"lxc.net.0.type = veth\nlxc.net.0.link = "
                                    f"{self.ctx.bridge_name('x')}\nlxc.net.0.flags = up")
            with open(os.path.join(d, "config"), "w") as f:
                f.write(conf)
            self.made.add(name)
        return name

    def true_cmd(self, network: str):
        name = self._container(f"{self.ctx.prefix}-true-{network}", network)
        return ["lxc-execute", "-P", self.path, "-n", name, "--", "true"], None

    def start_cmd(self, name: str):
        return ["lxc-start", "-P", self.path, "-n", self._container(name, "none"), "-d", "--", *SLEEP], None

    def import_cmd(self, ref: str):
        raise Unsupported("no image to import: lxc-create builds the rootfs with a template script (-t busybox)")

    def exec_cmd(self, name: str):
        return ["lxc-attach", "-P", self.path, "-n", name, "--", "true"], None

    def kept(self, names):
        out = {}
        for n in names:
            pid = int(sh(["lxc-info", "-P", self.path, "-n", n, "-p", "-H"]).stdout.decode().strip())
            out[n] = [(ppid_of(pid), "monitor")]
        return out

    def remove(self, names: list[str]) -> None:
        for n in names:
            sh(["lxc-stop", "-P", self.path, "-n", n, "-k"], check=False)
            shutil.rmtree(os.path.join(self.path, n), ignore_errors=True)  # config only: the rootfs is the base's
            self.made.discard(n)

    def teardown(self) -> None:
        if os.path.isdir(self.path):
            self.remove([n for n in os.listdir(self.path) if n != self.base])
            if os.path.isdir(os.path.join(self.path, self.base)):
                sh(["lxc-destroy", "-P", self.path, "-n", self.base], check=False)
        if self.bridge_made:
            sh(["ip", "link", "del", self.ctx.bridge_name("x")], check=False)
        rmdir_cgroups(f"{self.ctx.cgroup_parent}-lxc")


PEERS = {"runc": Runc, "podman": Podman, "docker": Docker, "lxc": Lxc, "bwrap": Bwrap, "crun": Crun}
