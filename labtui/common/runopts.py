"""The options of `labtui run` and `labtui create`, and what they become: one definition, parsed by
the command line (labtui.cli.main's `run` and `create`) and by the app's run form
(labtui.tui.adapter.lifecycle), so the form never falls behind the command line.

    add_run_options(parser)   declares every flag, one section per mechanism below
    from_args(args)           validates them into engine.spec.RunOptions: the core fields, plus
                              `extra`, what each mechanism keeps in the container's config
    parse(argv)               both at once for a caller with no parser of its own (the app);
                              a bad flag raises InvalidArgument instead of exiting

Engine modules that validate a flag (cgroup limits, capabilities, restart policies, health
checks) are imported only when the flag is given: `labtui run busybox true` pays for none.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from engine.errors import InvalidArgument

if TYPE_CHECKING:
    from engine.spec import RunOptions


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Every flag of run/create, the image and the command (`-d` is run's own: the CLI adds it)."""
    _add_core(p)
    _add_resources(p)
    _add_network(p)
    _add_security(p)
    _add_living(p)
    _add_lifecycle(p)
    p.add_argument("image", help="image (busybox is built in)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="command and arguments")


def from_args(args: argparse.Namespace) -> RunOptions:
    """RunOptions from parsed run/create arguments; raises InvalidArgument for a bad value."""
    from engine.spec import RunOptions  # here: a command that runs no container need not load it

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    extra: dict = {}
    for section in (resources_extra, network_extra, security_extra, living_extra, lifecycle_extra):
        extra.update(section(args))
    return RunOptions(
        extra=extra,
        image=args.image, command=command, name=args.name, env=args.env, workdir=args.workdir,
        hostname=args.hostname, volumes=args.volume, read_only=args.read_only, tmpfs=args.tmpfs,
        tty=args.tty, interactive=args.interactive, detach=getattr(args, "detach", False),
        autoremove=args.rm, gate=args.gate, entrypoint=args.entrypoint,
        pull=getattr(args, "pull", "missing"), platform=getattr(args, "platform", None),
    )


class ValueParser(argparse.ArgumentParser):
    """argparse, with an option's own value "--" kept as a value: Python 3.11's argparse strips
    it, so `--security-opt=--` handed the engine [] instead of "--" (a traceback, found by
    fuzzing). The CLI's parsers are of this class too (labtui.cli.main._Parser)."""

    def _get_values(self, action: argparse.Action, arg_strings: list[str]):  # type: ignore[override]
        if action.option_strings and arg_strings == ["--"] and action.nargs is None:
            value = self._get_value(action, "--")
            self._check_value(action, value)
            return value
        return super()._get_values(action, arg_strings)


class _Parser(ValueParser):
    """A parser that raises instead of printing usage and exiting (argparse's way in a CLI)."""

    def error(self, message: str):  # type: ignore[override]
        raise InvalidArgument(f"{self.prog}: {message}")


def parse(argv: list[str]) -> RunOptions:
    """`labtui run ARGV` (without the word run) as RunOptions, for callers that are not the CLI."""
    p = _Parser(prog="labtui run", add_help=False)
    p.add_argument("-d", "--detach", action="store_true")
    add_run_options(p)
    return from_args(p.parse_args(argv))


# ---- core: the process and its filesystem --------------------------------------------------------

def _add_core(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--interactive", action="store_true", help="keep STDIN open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    p.add_argument("--name", help="assign a name to the container")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V", help="set an environment variable")
    p.add_argument("-w", "--workdir", help="working directory inside the container")
    p.add_argument("--hostname", help="container host name")
    p.add_argument("-v", "--volume", action="append", default=[], metavar="HOST:CTR[:ro]", help="bind mount a volume")
    p.add_argument("--read-only", action="store_true", help="mount the container's root filesystem read-only")
    p.add_argument("--tmpfs", action="append", default=[], metavar="PATH", help="mount a tmpfs")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("--entrypoint", help="override the image's entrypoint")
    p.add_argument("--gate", action="store_true", help="hold every kernel step until released (labtui gate next)")
    p.add_argument("--pull", default="missing", metavar="POLICY",
                   help="pull the image first: missing (default: when it is not here), always, never")
    p.add_argument("--platform", metavar="OS/ARCH", help="the platform of an image to pull (default: this host's)")


# ---- resources: cgroup limits and scheduling ---------------------------------------------------

LIMIT_FLAGS = [
    (("-m", "--memory"), "memory", "memory limit (e.g. 64m, 1g)"),
    (("--memory-swap",), "memory_swap", "memory+swap limit; -1 for unlimited swap"),
    (("--cpus",), "cpus", "number of CPUs (CFS quota/period)"),
    (("-c", "--cpu-shares"), "cpu_shares", "relative CPU weight (v2: converted to cpu.weight)"),
    (("--cpuset-cpus",), "cpuset_cpus", "CPUs allowed (0-1,3)"),
    (("--pids-limit",), "pids_limit", "maximum number of processes (-1 unlimited)"),
    (("--blkio-weight",), "blkio_weight", "block I/O weight (10-1000) where the kernel has it"),
]


def add_limits(p: argparse.ArgumentParser) -> None:
    """The limit flags (also `labtui update`'s)."""
    for flags, dest, help_ in LIMIT_FLAGS:
        p.add_argument(*flags, dest=dest, default=None, help=help_)


def limits_from_args(args: argparse.Namespace) -> dict:
    """The limits given, validated and normalised ({} when none was)."""
    opts = {dest: getattr(args, dest) for _, dest, _ in LIMIT_FLAGS if getattr(args, dest) is not None}
    if not opts:
        return {}
    from engine.cgroups.limits import limits_from_options

    return limits_from_options(**opts).to_dict()


def _add_resources(p: argparse.ArgumentParser) -> None:
    add_limits(p)
    p.add_argument("--nice", default=None, help="nice value of the command (-20..19)")
    p.add_argument("--sched-policy", default=None, choices=["other", "batch", "idle", "fifo", "rr"],
                   help="scheduling policy of the command")
    p.add_argument("--sched-priority", default=None, help="real-time priority (1-99) for fifo/rr")


def resources_extra(args: argparse.Namespace) -> dict:
    out: dict = {}
    limits = limits_from_args(args)
    if limits:
        out["limits"] = limits
    for key in ("nice", "sched_policy", "sched_priority"):
        if getattr(args, key) is not None:
            out[key] = getattr(args, key)
    return out


# ---- network ------------------------------------------------------------------------------------

def _add_network(p: argparse.ArgumentParser) -> None:
    p.add_argument("--network", "--net", default="none", metavar="NET",
                   help="bridge | none | host | a network's name (default: none, loopback only)")
    p.add_argument("--ip", help="ask for this IPv4 address on the network")
    p.add_argument("--network-alias", action="append", default=[], metavar="ALIAS",
                   help="another name other containers on the network can use")
    p.add_argument("-p", "--publish", action="append", default=[], metavar="[HOSTIP:]HOSTPORT:CPORT[/PROTO]",
                   help="publish a container port on the host")


def network_extra(args: argparse.Namespace) -> dict:
    # Checked against the networks at create (engine.api.validate_network): they may change meanwhile.
    return {"network": args.network, "ip": args.ip, "aliases": list(args.network_alias),
            "ports": list(args.publish)}


# ---- security: capabilities, seccomp, user namespaces, devices ---------------------------------

def _add_security(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cap-add", action="append", default=[], metavar="CAP",
                   help="add a Linux capability (NET_ADMIN, CAP_SYS_PTRACE, ALL)")
    p.add_argument("--cap-drop", action="append", default=[], metavar="CAP",
                   help="drop a Linux capability (ALL drops every one)")
    p.add_argument("--privileged", action="store_true",
                   help="every capability, no seccomp, no masked paths, no device cgroup")
    p.add_argument("--security-opt", action="append", default=[], metavar="OPT",
                   help="no-new-privileges[=true|false], seccomp=PROFILE.json|unconfined, systempaths=unconfined")
    p.add_argument("--userns", default=None, choices=["host", "private"],
                   help="private: container root is an unprivileged host uid (default host)")
    p.add_argument("--device", action="append", default=[], metavar="HOST[:CTR][:rwm]",
                   help="add a host device to the container")


DEFAULT_SECURITY = {"privileged": False, "cap_add": [], "cap_drop": []}


def security_extra(args: argparse.Namespace) -> dict:
    if not (args.cap_add or args.cap_drop or args.privileged or args.security_opt or args.device
            or args.userns not in (None, "host")):
        # The defaults, without importing the security modules (ctypes and all) on every run.
        return {"security": dict(DEFAULT_SECURITY), "userns": "host"}
    from engine import security, userns

    sec = security.security_config(args.cap_add, args.cap_drop, args.privileged, args.security_opt, args.device)
    return {"security": sec, "userns": userns.validate_mode(args.userns)}


# ---- a living container: strace from the start ---------------------------------------------------

def _add_living(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strace", action="store_true",
                   help="trace the container's system calls from the host (strace -f) into its strace.log")


def living_extra(args: argparse.Namespace) -> dict:
    return {"strace": True} if getattr(args, "strace", False) else {}


# ---- lifecycle: restart policy and health checks -----------------------------------------------

def _add_lifecycle(p: argparse.ArgumentParser) -> None:
    p.add_argument("--restart", default=None, metavar="POLICY",
                   help="no | on-failure[:N] | always | unless-stopped")
    p.add_argument("--health-cmd", default=None, help="command run in the container (through /bin/sh -c)")
    p.add_argument("--health-interval", default=None, help="time between checks (default 30s)")
    p.add_argument("--health-timeout", default=None, help="a check taking longer fails (default 30s)")
    p.add_argument("--health-retries", default=None, help="consecutive failures that make it unhealthy (default 3)")
    p.add_argument("--health-start-period", default=None, help="failures in this first period don't count")
    p.add_argument("--health-on-failure", default=None, choices=["none", "restart"],
                   help="what to do once unhealthy")
    p.add_argument("--no-healthcheck", action="store_true", help="no health check")


def lifecycle_extra(args: argparse.Namespace) -> dict:
    from engine import health, restart

    out: dict = {}
    if args.restart is not None:
        pol = restart.parse_policy(args.restart)
        if pol["name"] != "no" and getattr(args, "rm", False):
            raise InvalidArgument("--rm and --restart cannot be used together: a removed container cannot restart")
        out["restart"] = pol
    if args.health_cmd and not args.no_healthcheck:
        out["health"] = health.parse_options(
            cmd=args.health_cmd, interval=args.health_interval, timeout=args.health_timeout,
            retries=args.health_retries, start_period=args.health_start_period,
            on_failure=args.health_on_failure)
    else:
        # Values given without --health-cmd are still checked: a typo is reported, not ignored.
        for opt in ("health_interval", "health_timeout", "health_retries", "health_start_period"):
            if getattr(args, opt) is not None:
                health.parse_options(cmd="true", **{opt[len("health_"):]: getattr(args, opt)})
    return out
