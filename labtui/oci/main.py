"""labtui-oci: a runc-compatible command line on labtui's engine (engine/oci/).

    labtui-oci [--root DIR] [--log FILE] [--log-format text|json] COMMAND ...
      create ID --bundle DIR [--pid-file F] [--console-socket S]
      start ID | state ID | kill [--all] ID [SIGNAL] | delete [--force] ID
      exec [--process F | -- CMD ...] [--detach] [--pid-file F] [--console-socket S] [--tty] ID
      features | --version

As runc, errors are one line on stderr (and a JSON record in --log with --log-format json);
the exit code is labtui's: 125 for the runtime's own errors, 126/127 when the command cannot
be executed or is not found.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from engine.errors import EngineError, InvalidArgument

VERSION = "labtui-oci 0.1.0 (runtime-spec 1.0.2; runc-compatible command line)"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own exit code is 2; runc's usage errors are errors too
        raise InvalidArgument(f"{self.prog}: {message}")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="labtui-oci", description="labtui as an OCI runtime (runc's command line)")
    p.add_argument("--root", help="state directory (default: $LABTUI_ROOT/run/oci or /run/labtui/oci)")
    p.add_argument("--log", help="log file (conmon passes one)")
    p.add_argument("--log-format", choices=["text", "json"], default="text")
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true",
                   help="refused: labtui-oci manages cgroupfs paths only (use podman --cgroup-manager cgroupfs)")
    p.add_argument("--rootless", default=None)
    p.add_argument("--criu", default=None)
    p.add_argument("-v", "--version", action="store_true")
    sub = p.add_subparsers(dest="cmd")
    c = sub.add_parser("create", help="create a container: set up, then wait before execve for start")
    c.add_argument("id")
    c.add_argument("--bundle", "-b", default=".")
    c.add_argument("--pid-file")
    c.add_argument("--console-socket")
    c.add_argument("--no-pivot", action="store_true")
    c.add_argument("--no-new-keyring", action="store_true")
    c.add_argument("--preserve-fds", type=int, default=0)
    s = sub.add_parser("start", help="let a created container's process execve its command")
    s.add_argument("id")
    s = sub.add_parser("state", help="the OCI state JSON")
    s.add_argument("id")
    k = sub.add_parser("kill", help="send a signal (default SIGTERM) to the container's process")
    k.add_argument("--all", "-a", action="store_true")
    k.add_argument("id")
    k.add_argument("signal", nargs="?", default="SIGTERM")
    d = sub.add_parser("delete", help="remove a stopped container (--force: kill it first)")
    d.add_argument("--force", "-f", action="store_true")
    d.add_argument("id")
    e = sub.add_parser("exec", help="run one more process in a running container")
    e.add_argument("--process", "-p")
    e.add_argument("--detach", "-d", action="store_true")
    e.add_argument("--pid-file")
    e.add_argument("--console-socket")
    e.add_argument("--tty", "-t", action="store_true")
    e.add_argument("--cwd")
    e.add_argument("--env", "-e", action="append", default=[])
    e.add_argument("--user", "-u")
    e.add_argument("--preserve-fds", type=int, default=0)
    e.add_argument("--cgroup")
    e.add_argument("id")
    e.add_argument("command", nargs=argparse.REMAINDER)
    for name in ("pause", "resume"):
        x = sub.add_parser(name, help=f"{name} every process of the container (the freezer)")
        x.add_argument("id")
    sub.add_parser("features", help="what this runtime supports (runtime-spec features.md)")
    return p


def _exec_process(a: argparse.Namespace) -> dict:
    if a.process:
        try:
            with open(a.process) as f:
                proc = json.load(f)
        except (OSError, ValueError) as e:
            raise InvalidArgument(f"--process {a.process}: {e}") from None
    else:
        if not a.command:
            raise InvalidArgument("exec: give --process FILE or a command")
        proc = {"args": a.command, "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "cwd": "/"}
    if a.tty:
        proc["terminal"] = True
    if a.cwd:
        proc["cwd"] = a.cwd
    proc.setdefault("env", [])
    proc["env"] = list(proc["env"]) + a.env
    if a.user:
        uid, _, gid = a.user.partition(":")
        proc["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    return proc


def run(argv: list[str]) -> int:
    from engine.oci import runtime

    a = parser().parse_args(argv)
    if a.version:
        print(VERSION)
        return 0
    if a.systemd_cgroup:
        raise InvalidArgument("--systemd-cgroup is not supported: labtui-oci writes cgroupfs paths itself; "
                              "run podman with --cgroup-manager cgroupfs")
    if not a.cmd:
        parser().print_help()
        return 0
    if os.geteuid() != 0:
        raise EngineError("labtui-oci must run as root")
    root = Path(a.root) if a.root else runtime.default_root()
    _log(a, "info", f"{a.cmd} {getattr(a, 'id', '')}".strip())
    if a.cmd == "create":
        runtime.create(root, a.id, a.bundle, a.pid_file, a.console_socket)
    elif a.cmd == "start":
        runtime.start(root, a.id)
    elif a.cmd == "state":
        print(json.dumps(runtime.get_state(root, a.id), indent=2))
    elif a.cmd == "kill":
        runtime.kill(root, a.id, a.signal, a.all)
    elif a.cmd == "delete":
        runtime.delete(root, a.id, a.force)
    elif a.cmd == "exec":
        return runtime.exec_process(root, a.id, _exec_process(a), a.detach, a.pid_file, a.console_socket)
    elif a.cmd in ("pause", "resume"):
        runtime.freeze(root, a.id, a.cmd == "pause")
    elif a.cmd == "features":
        print(json.dumps(runtime.features(), indent=2))
    return 0


def _log(a: argparse.Namespace, level: str, msg: str) -> None:
    if not getattr(a, "log", None):
        return
    try:
        with open(a.log, "a") as f:
            if a.log_format == "json":
                f.write(json.dumps({"level": level, "msg": msg,
                                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")
            else:
                f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {level}: {msg}\n")
    except OSError:
        pass


def _log_args(argv: list[str]) -> argparse.Namespace | None:
    try:
        return parser().parse_known_args(argv)[0]
    except (InvalidArgument, SystemExit):
        return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return run(argv)
    except EngineError as e:
        print(f"labtui-oci: {e}", file=sys.stderr)
        a = _log_args(argv)
        if a is not None:
            _log(a, "error", str(e))
        return e.exit_code
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    sys.exit(main())
